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
