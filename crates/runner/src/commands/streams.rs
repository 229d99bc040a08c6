//! `tributary streams create|describe --destination NAME`.

use std::time::Duration;

use kinesis_sink::setup::admin::{self, Created, StreamSummary};

use super::{base_credentials, kinesis_destination};
use crate::config::Config;

/// Creates the destination's stream with `shards` shards, or finds it, and waits until it is `ACTIVE`.
pub async fn create(config: &Config, destination: &str, shards: i32) -> anyhow::Result<(String, Created)> {
    anyhow::ensure!(shards >= 1, "--shards must be at least 1");
    let (kinesis, identity) = kinesis_destination(config, destination)?;
    let client = admin::client(kinesis, identity, &base_credentials()).await?;
    let name = kinesis.stream.rsplit('/').next().unwrap_or(&kinesis.stream).to_owned();
    let created = admin::create(&client, &name, shards, Duration::from_secs(120)).await?;
    Ok((name, created))
}

/// Describes the destination's stream.
pub async fn describe(config: &Config, destination: &str) -> anyhow::Result<StreamSummary> {
    let (kinesis, identity) = kinesis_destination(config, destination)?;
    let client = admin::client(kinesis, identity, &base_credentials()).await?;
    Ok(admin::describe(&client, &kinesis.stream).await?)
}

/// `tributary streams`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create the stream (or report that it exists) and wait until it is ACTIVE.
    Create {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The number of shards.
        #[arg(long, default_value_t = 1)]
        shards: i32,
    },
    /// Print the stream's status, shards, retention and maximum record size.
    Describe {
        /// The destination's name.
        #[arg(long)]
        destination: String,
    },
}

/// Creates or describes the destination's stream, writing what it found to `out`.
pub async fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = super::load(dir, err)?;
    match action {
        Action::Create { destination, shards } => match create(&config, &destination, shards).await? {
            (name, Created::New) => writeln!(out, "created stream {name} with {shards} shards; it is ACTIVE")?,
            (name, Created::Existing) => writeln!(out, "stream {name} already exists; it is ACTIVE")?,
        },
        Action::Describe { destination } => {
            let s = describe(&config, &destination).await?;
            writeln!(out, "stream:          {}", s.name)?;
            writeln!(out, "arn:             {}", s.arn)?;
            writeln!(out, "status:          {}", s.status)?;
            writeln!(out, "open shards:     {}", s.open_shards)?;
            writeln!(out, "retention:       {} hours", s.retention_hours)?;
            match s.max_record_size_kib {
                Some(kib) => writeln!(out, "max record size: {kib} KiB")?,
                None => writeln!(out, "max record size: not reported (1024 KiB unless raised)")?,
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
