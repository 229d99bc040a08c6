//! `tributary tail --destination NAME`: print the records of a destination's stream.

use kinesis_sink::setup::admin::{self, ReadRecord, StartAt};
use serde_json::{Value, json};

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

/// The records a KPL aggregated record carries, each as [`render`] prints a record, with its position in the
/// aggregate as `sub_sequence_number` (as the KCL numbers them).
fn render_aggregated(record: &ReadRecord, inner: Vec<kinesis_sink::aggregate::Unpacked>) -> Vec<String> {
    inner
        .into_iter()
        .enumerate()
        .map(|(n, unpacked)| {
            let one = ReadRecord {
                shard_id: record.shard_id.clone(),
                sequence_number: record.sequence_number.clone(),
                partition_key: unpacked.partition_key,
                data: unpacked.data,
            };
            let mut line = render(&one);
            line["sub_sequence_number"] = json!(n);
            line.to_string()
        })
        .collect()
}

/// Reads every shard of the destination's stream and prints one JSON line per record to `out` (per record an
/// aggregated record carries).
///
/// From the oldest record with `from_start`, else from now on. Without `follow`, stops once every shard is
/// caught up; with it, keeps polling until interrupted. Returns how many records were printed.
pub async fn tail(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    from_start: bool,
    follow: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    let (_, client, stream) = super::kinesis_stream(config, destination, stream).await?;
    let start = if from_start { StartAt::TrimHorizon } else { StartAt::Latest };
    let mut printed = 0;
    let mut failure = None;
    admin::read(&client, &stream, start, follow, |record| {
        let lines = match kinesis_sink::aggregate::unpack(&record.data) {
            None => vec![render(&record).to_string()],
            Some(inner) => render_aggregated(&record, inner),
        };
        for line in lines {
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                failure = Some(e);
                return false;
            }
            printed += 1;
        }
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
    /// Of a destination with a templated stream, the resolved stream to read (default: its default_stream); of a
    /// Firehose destination, the delivery stream whose S3 objects to read (needed when it maps to several).
    #[arg(long)]
    pub stream: Option<String>,
    /// Start at the oldest record kept and stop when caught up (unless --follow); without it, print new records
    /// as they arrive. A Firehose destination's tail always prints every object its delivery stream wrote so far
    /// (S3 keeps them all) and stops, unless --follow.
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
    let config = crate::config::load(dir, err)?;
    let follow = args.follow || !args.from_start;
    if config.firehose(&args.destination).is_ok() {
        #[cfg(feature = "firehose")]
        {
            // S3 keeps every object: a Firehose tail always starts at the first, and follows only when asked.
            let stream = args.stream.as_deref();
            let printed = super::firehose::tail(&config, &args.destination, stream, args.follow, out).await?;
            writeln!(err, "{printed} records")?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        #[cfg(not(feature = "firehose"))]
        anyhow::bail!("{}", crate::route::WITHOUT_FIREHOSE);
    }
    let printed = tail(&config, &args.destination, args.stream.as_deref(), args.from_start, follow, out).await?;
    writeln!(err, "{printed} records")?;
    Ok(std::process::ExitCode::SUCCESS)
}
