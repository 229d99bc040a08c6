//! The commands of the command line.

pub mod dlq;
pub mod personas;
pub mod send;
pub mod serve;
pub mod setup;
pub mod streams;
pub mod tail;

use anyhow::{Context as _, bail};
use kinesis_sink::{BaseCredentials, ExternalId, KinesisConfig};

use crate::config::{Config, DestinationType};

/// The `[kinesis]` table of the destination `name`, and the identity to use for admin calls: the Secret ID, or
/// else the first source connected to it.
pub(crate) fn kinesis_destination<'a>(
    config: &'a Config,
    name: &str,
) -> anyhow::Result<(&'a KinesisConfig, ExternalId, bool)> {
    let Some(loaded) = config.destination(name) else {
        let known: Vec<&str> = config.destinations.iter().map(|d| d.config.name.as_str()).collect();
        bail!("no destination is named {name:?} (known: {})", known.join(", "));
    };
    if loaded.config.kind != DestinationType::Kinesis {
        bail!("destination {name:?} is of type {:?}, not kinesis", loaded.config.kind);
    }
    let kinesis = loaded.config.kinesis.as_ref().expect("checked when loading");
    if kinesis.role_address.is_none() {
        return Ok((kinesis, None, false));
    }
    if let Some(secret) = &kinesis.secret_id {
        let secret =
            secret.resolve(&config.dir).with_context(|| format!("{}: kinesis.secret_id", loaded.file.display()))?;
        return Ok((kinesis, Some(secret.expose().to_owned()), true));
    }
    match config.senders_of(name).first() {
        Some(source) => Ok((kinesis, Some((*source).to_owned()), false)),
        None => bail!(
            "destination {name:?} assumes a role without a secret_id, and no source is connected to it to give an External ID"
        ),
    }
}

/// The credentials every command starts from: the AWS default chain.
pub fn base_credentials() -> BaseCredentials {
    BaseCredentials::DefaultChain
}
