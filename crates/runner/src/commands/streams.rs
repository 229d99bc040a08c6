//! `tributary streams create|describe --destination NAME [--stream NAME]`.

use std::time::Duration;

use anyhow::bail;
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
    /// Create the stream (or report that it exists) and wait until it is ACTIVE. For a Firehose destination, a
    /// Direct PUT delivery stream writing to an S3 bucket, made with your own credentials.
    Create {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// Of a destination with a templated stream, the resolved stream to create (default: its default_stream);
        /// of a Firehose destination, the delivery stream (one its mapping names; needed when it names several).
        #[arg(long)]
        stream: Option<String>,
        /// Kinesis: the number of shards of a provisioned stream (default 1).
        #[arg(long, conflicts_with = "on_demand")]
        shards: Option<i32>,
        /// Kinesis: make an on-demand stream, which adds and removes shards with the load, instead of a
        /// provisioned one.
        #[arg(long)]
        on_demand: bool,
        /// Kinesis: encrypt the stream with this customer-managed KMS key (an ARN); default: the destination's
        /// kms_key.
        #[arg(long)]
        kms_key: Option<String>,
        /// Firehose: the ARN of the S3 bucket the delivery stream writes to (arn:aws:s3:::BUCKET).
        #[arg(long)]
        bucket_arn: Option<String>,
        /// Firehose: the IAM role Firehose itself assumes to write the bucket (not the role Tributary sends as).
        #[arg(long)]
        delivery_role: Option<String>,
        /// Firehose: the key prefix of the objects it writes (Firehose adds YYYY/MM/DD/HH/ after it).
        #[arg(long)]
        prefix: Option<String>,
        /// Firehose: how long it buffers records before it writes an object, 0 to 900 seconds. Default 60:
        /// Firehose's own default of 300 makes a first test look broken.
        #[arg(long)]
        buffer_seconds: Option<i32>,
    },
    /// Print the stream's status, mode, shards, encryption, retention and maximum record size; for a Firehose
    /// destination, each delivery stream's status, source and S3 bucket, prefix and buffer.
    Describe {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// Of a destination with a templated stream, the resolved stream to describe (default: its
        /// default_stream); of a Firehose destination, one delivery stream (default: every one it maps to).
        #[arg(long)]
        stream: Option<String>,
        /// Also print the ten partition keys with the most records over the last minute, read back from the
        /// stream (aggregated records count the records they carry).
        #[arg(long)]
        hot_keys: bool,
    },
}

impl Action {
    /// The destination the action is for.
    fn destination(&self) -> &str {
        match self {
            Action::Create { destination, .. } | Action::Describe { destination, .. } => destination,
        }
    }
}

/// `streams create|describe` of a Firehose destination: refuses the Kinesis flags, and hands the rest to
/// `commands::firehose`.
async fn firehose(config: &Config, action: Action, out: super::Out<'_>) -> anyhow::Result<()> {
    match action {
        Action::Create {
            destination,
            stream,
            shards,
            on_demand,
            kms_key,
            bucket_arn,
            delivery_role,
            prefix,
            buffer_seconds,
        } => {
            if shards.is_some() || on_demand || kms_key.is_some() {
                bail!(
                    "--shards, --on-demand and --kms-key are for Kinesis destinations, and {destination:?} is a \
                     Firehose destination"
                );
            }
            #[cfg(feature = "firehose")]
            {
                let flags = super::firehose::CreateFlags { bucket_arn, delivery_role, prefix, buffer_seconds };
                super::firehose::create(config, &destination, stream.as_deref(), flags, out).await
            }
            #[cfg(not(feature = "firehose"))]
            {
                let _ = (config, stream, bucket_arn, delivery_role, prefix, buffer_seconds, out);
                bail!("{}", crate::route::WITHOUT_FIREHOSE)
            }
        }
        Action::Describe { destination, stream, hot_keys } => {
            if hot_keys {
                bail!("--hot-keys reads a Kinesis stream's shards, and {destination:?} is a Firehose destination");
            }
            #[cfg(feature = "firehose")]
            return super::firehose::describe(config, &destination, stream.as_deref(), out).await;
            #[cfg(not(feature = "firehose"))]
            {
                let _ = (config, stream, out);
                bail!("{}", crate::route::WITHOUT_FIREHOSE)
            }
        }
    }
}

/// Creates or describes the destination's stream, writing what it found to `out`.
pub async fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    if config.firehose(action.destination()).is_ok() {
        firehose(&config, action, out).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    match action {
        Action::Create {
            destination,
            stream,
            shards,
            on_demand,
            kms_key,
            bucket_arn,
            delivery_role,
            prefix,
            buffer_seconds,
        } => {
            if bucket_arn.is_some() || delivery_role.is_some() || prefix.is_some() || buffer_seconds.is_some() {
                bail!(
                    "--bucket-arn, --delivery-role, --prefix and --buffer-seconds are for Firehose destinations, and \
                     {destination:?} is a Kinesis destination"
                );
            }
            let new = NewStream { shards: (!on_demand).then_some(shards.unwrap_or(1)), kms_key };
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
