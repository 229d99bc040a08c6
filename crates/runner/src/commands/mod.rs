//! The commands of the command line. Each is `run(config folder, args, out, err) -> ExitCode`: its output goes to
//! `out`, its warnings, summaries and progress to `err`, so that it can be driven and read whole by a test or
//! another program. `serve` lives beside this module (`crate::serve`); the binary only parses arguments, installs
//! signals and logging, and prints a failed command's error.

pub mod dlq;
pub mod personas;
pub mod rejected;
pub mod send;
pub mod setup;
pub mod streams;
pub mod tail;
pub mod validate;

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use kinesis_sink::{BaseCredentials, KinesisConfig, SignAs};

use crate::config::Config;

/// Where a command writes: its output, or its diagnostics.
pub type Out<'a> = &'a mut (dyn Write + Send);

/// Loads the config folder `dir`, writing its warnings to `err`; on errors, writes every problem and fails.
pub fn load(dir: &Path, err: &mut dyn Write) -> anyhow::Result<Config> {
    match Config::load(dir) {
        Ok(config) => {
            write!(err, "{}", config.warnings)?;
            Ok(config)
        }
        Err(problems) => {
            write!(err, "{problems}")?;
            bail!("the config in {} has errors", dir.display())
        }
    }
}

/// The `[kinesis]` table of the destination `name`, and the identity to use for admin calls: the first it signs
/// as ([`Config::identities`]).
pub(crate) fn kinesis_destination<'a>(config: &'a Config, name: &str) -> anyhow::Result<(&'a KinesisConfig, SignAs)> {
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
/// one fixed stream ([`KinesisConfig::stream_for`]).
pub(crate) async fn kinesis_stream<'a>(
    config: &'a Config,
    name: &str,
    stream: Option<&str>,
) -> anyhow::Result<(&'a KinesisConfig, kinesis_sink::setup::admin::Client, String)> {
    let (kinesis, identity) = kinesis_destination(config, name)?;
    let stream = kinesis.stream_for(stream).map_err(|e| anyhow::anyhow!("destination {name:?}: {e}"))?;
    let client = kinesis_sink::setup::admin::client(kinesis, identity, &base_credentials()).await?;
    Ok((kinesis, client, stream))
}

/// The credentials every command starts from: the AWS default chain.
pub fn base_credentials() -> BaseCredentials {
    BaseCredentials::DefaultChain
}

/// A new `messageId` for a message that came without one: a random UUID, as Segment's libraries make.
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Writes a duration as the config writes it: `4h`, `30m`, `90s`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Formats Unix milliseconds as Segment formats times (`2026-11-25T23:54:55.123Z`).
pub fn format_millis(millis: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    segment_model::format_timestamp(at)
}
