//! `tributary tail --destination NAME`: print the records of a destination's stream.

use kinesis_sink::setup::admin::{self, ReadRecord, StartAt};
use serde_json::{Value, json};

use super::{base_credentials, kinesis_destination};
use crate::config::Config;

/// One record as `tail` prints it: its shard, sequence number and partition key, and its data as JSON when it is
/// JSON (as records of a `json` destination are), else as a string (a `base64` destination's text).
pub fn render(record: &ReadRecord) -> Value {
    let data = serde_json::from_slice::<Value>(&record.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&record.data).into_owned()));
    json!({
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": record.partition_key,
        "data": data,
    })
}

/// Reads every shard of the destination's stream and prints one JSON line per record to `out`.
///
/// From the oldest record with `from_start`, else from now on. Without `follow`, stops once every shard is
/// caught up; with it, keeps polling until interrupted. Returns how many records were printed.
pub async fn tail(
    config: &Config,
    destination: &str,
    from_start: bool,
    follow: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    let (kinesis, identity) = kinesis_destination(config, destination)?;
    let client = admin::client(kinesis, identity, &base_credentials()).await?;
    let start = if from_start { StartAt::TrimHorizon } else { StartAt::Latest };
    let mut printed = 0;
    let mut failure = None;
    admin::read(&client, &kinesis.stream, start, follow, |record| {
        let line = render(&record).to_string();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            failure = Some(e);
            return false;
        }
        printed += 1;
        true
    })
    .await?;
    match failure {
        // A closed pipe (`tributary tail | head`) is the reader saying it has seen enough.
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(printed),
    }
}

/// `tributary tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The destination's name.
    #[arg(long)]
    pub destination: String,
    /// Start at the oldest record kept and stop when caught up (unless --follow); without it, print new records
    /// as they arrive.
    #[arg(long)]
    pub from_start: bool,
    /// Keep polling for new records after catching up (implied without --from-start).
    #[arg(long)]
    pub follow: bool,
}

/// Prints the destination's records to `out`, and their count to `err`.
pub async fn run(
    dir: &std::path::Path,
    args: Args,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = super::load(dir, err)?;
    let follow = args.follow || !args.from_start;
    let printed = tail(&config, &args.destination, args.from_start, follow, out).await?;
    writeln!(err, "{printed} records")?;
    Ok(std::process::ExitCode::SUCCESS)
}
