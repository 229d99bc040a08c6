//! `tributary streams create|describe --destination NAME [--stream NAME]`.

use std::time::Duration;

use kinesis_sink::setup::admin::{self, Created, NewStream, StreamSummary};

use super::kinesis_stream;
use crate::config::Config;

/// Creates the destination's stream as `new` says, or finds it, and waits until it is `ACTIVE`. `kms_key`
/// defaults to the destination's `kms_key`.
pub async fn create(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    mut new: NewStream,
) -> anyhow::Result<(String, Created, NewStream)> {
    anyhow::ensure!(new.shards.is_none_or(|n| n >= 1), "--shards must be at least 1");
    let (kinesis, client, stream) = kinesis_stream(config, destination, stream).await?;
    if new.kms_key.is_none() {
        new.kms_key = kinesis.config.kms_key.clone();
    }
    if let Some(key) = &new.kms_key {
        anyhow::ensure!(
            kinesis_sink::config::is_kms_key_arn(key),
            "--kms-key {key:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        );
    }
    let name = stream.rsplit('/').next().unwrap_or(&stream).to_owned();
    let created = admin::create(&client, &name, &new, Duration::from_secs(120)).await?;
    Ok((name, created, new))
}

/// Describes the destination's stream and, with `hot_keys`, lists its ten hottest partition keys of the last
/// minute (key, records, bytes), through one client.
pub async fn describe(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    hot_keys: bool,
) -> anyhow::Result<(StreamSummary, Option<Vec<(String, u64, u64)>>)> {
    let (_, client, stream) = kinesis_stream(config, destination, stream).await?;
    let summary = admin::describe(&client, &stream).await?;
    let hot = if hot_keys { Some(admin::hot_keys(&client, &stream, Duration::from_secs(60), 10).await?) } else { None };
    Ok((summary, hot))
}

/// `tributary streams`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create the stream (or report that it exists) and wait until it is ACTIVE.
    Create {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// Of a destination with a templated stream, the resolved stream to create (default: its default_stream).
        #[arg(long)]
        stream: Option<String>,
        /// The number of shards of a provisioned stream.
        #[arg(long, default_value_t = 1, conflicts_with = "on_demand")]
        shards: i32,
        /// Make an on-demand stream, which adds and removes shards with the load, instead of a provisioned one.
        #[arg(long)]
        on_demand: bool,
        /// Encrypt the stream with this customer-managed KMS key (an ARN); default: the destination's kms_key.
        #[arg(long)]
        kms_key: Option<String>,
    },
    /// Print the stream's status, mode, shards, encryption, retention and maximum record size.
    Describe {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// Of a destination with a templated stream, the resolved stream to describe (default: its
        /// default_stream).
        #[arg(long)]
        stream: Option<String>,
        /// Also print the ten partition keys with the most records over the last minute, read back from the
        /// stream (aggregated records count the records they carry).
        #[arg(long)]
        hot_keys: bool,
    },
}

/// Creates or describes the destination's stream, writing what it found to `out`.
pub async fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    match action {
        Action::Create { destination, stream, shards, on_demand, kms_key } => {
            let new = NewStream { shards: (!on_demand).then_some(shards), kms_key };
            let (name, created, new) = create(&config, &destination, stream.as_deref(), new).await?;
            let kind = match new.shards {
                Some(n) => format!("with {n} shards"),
                None => "on demand".to_owned(),
            };
            let encrypted = match &new.kms_key {
                Some(key) => format!(", encrypted with {key}"),
                None => String::new(),
            };
            match created {
                Created::New => writeln!(out, "created stream {name} {kind}{encrypted}; it is ACTIVE")?,
                Created::Existing => writeln!(out, "stream {name} already exists{encrypted}; it is ACTIVE")?,
            }
        }
        Action::Describe { destination, stream, hot_keys } => {
            let (s, hot) = describe(&config, &destination, stream.as_deref(), hot_keys).await?;
            writeln!(out, "stream:          {}", s.name)?;
            writeln!(out, "arn:             {}", s.arn)?;
            writeln!(out, "status:          {}", s.status)?;
            writeln!(out, "mode:            {}", s.mode.to_lowercase().replace('_', "-"))?;
            writeln!(out, "open shards:     {}", s.open_shards)?;
            writeln!(
                out,
                "encryption:      {}",
                s.kms_key.as_deref().map_or("none".to_owned(), |k| format!("KMS {k}"))
            )?;
            writeln!(out, "retention:       {} hours", s.retention_hours)?;
            match s.max_record_size_kib {
                Some(kib) => writeln!(out, "max record size: {kib} KiB")?,
                None => writeln!(out, "max record size: not reported (1024 KiB unless raised)")?,
            }
            if let Some(top) = hot {
                writeln!(out, "hot keys (last minute, by records):")?;
                if top.is_empty() {
                    writeln!(out, "  none: nothing was written in the last minute")?;
                }
                for (key, records, bytes) in top {
                    writeln!(out, "  {records:>8} records {bytes:>12} bytes  {key:?}")?;
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
