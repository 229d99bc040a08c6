//! The commands of the command line. Each is `run(config folder, args, out, err) -> ExitCode`: its output goes to
//! `out`, its warnings, summaries and progress to `err`, so that it can be driven and read whole by a test or
//! another program. `serve` lives beside this module (`crate::serve`); the binary only parses arguments, installs
//! signals and logging, and prints a failed command's error.

pub mod dlq;
pub mod filters;
#[cfg(feature = "firehose")]
pub mod firehose;
pub mod personas;
pub mod plan;
pub mod privacy;
pub mod rejected;
pub mod reload;
pub mod send;
pub mod setup;
pub mod streams;
pub mod tail;
pub mod validate;

use anyhow::bail;
use kinesis_sink::{KinesisSettings, SignAs};

use crate::config::Config;

pub use crate::Out;

/// The `[kinesis]` table of the destination `name`, and the identity to use for admin calls: the first it signs
/// as ([`Config::identities`]).
pub(crate) fn kinesis_destination<'a>(config: &'a Config, name: &str) -> anyhow::Result<(&'a KinesisSettings, SignAs)> {
    let kinesis = config.kinesis(name)?;
    match config.identities(name)?.into_iter().next() {
        Some(identity) => Ok((kinesis, identity)),
        None => bail!(
            "destination {name:?} assumes a role without a secret_id, and no source or audience is connected to it to \
             give an External ID"
        ),
    }
}

/// The `[kinesis]` table of the destination `name`, an admin client for it (signing as
/// [`kinesis_destination`] says), and the stream asked for: `stream` if the destination can send to it, else its
/// one fixed stream ([`KinesisSettings::stream_for`]).
pub(crate) async fn kinesis_stream<'a>(
    config: &'a Config,
    name: &str,
    stream: Option<&str>,
) -> anyhow::Result<(&'a KinesisSettings, kinesis_sink::setup::admin::Client, String)> {
    let (kinesis, identity) = kinesis_destination(config, name)?;
    let stream = kinesis.stream_for(stream).map_err(|e| anyhow::anyhow!("destination {name:?}: {e}"))?;
    let client = kinesis_sink::setup::admin::client(kinesis, identity, &crate::route::base_credentials()).await?;
    Ok((kinesis, client, stream))
}

/// The messages of the NDJSON file `file`, each with its line number (blank lines skipped); a line that is not a
/// message is named on `err` with its number and counted. For the commands that try a config on a file.
pub(crate) fn file_messages(
    file: &std::path::Path,
    err: Out<'_>,
) -> anyhow::Result<(Vec<(usize, segment_model::Message)>, usize)> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (mut messages, mut malformed) = (Vec::new(), 0);
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match segment_model::Message::from_slice(line.as_bytes()) {
            Ok(message) => messages.push((n + 1, message)),
            Err(e) => {
                malformed += 1;
                writeln!(err, "{}:{}: {e}", file.display(), n + 1)?;
            }
        }
    }
    Ok((messages, malformed))
}
