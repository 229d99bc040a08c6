//! `tributary iam policy|trust` and `tributary check`: Segment's manual setup steps, derived from the config.

use anyhow::{Context as _, bail};
use kinesis_sink::iam::{self, CheckResult};
use kinesis_sink::{ExternalId, KinesisConfig};
use serde_json::Value;

use super::base_credentials;
use crate::config::{Config, DestinationType};

/// The `[kinesis]` table of a Kinesis destination.
pub(crate) fn kinesis<'a>(config: &'a Config, destination: &str) -> anyhow::Result<&'a KinesisConfig> {
    let Some(loaded) = config.destination(destination) else {
        let known: Vec<&str> = config.destinations.iter().map(|d| d.config.name.as_str()).collect();
        bail!("no destination is named {destination:?} (known: {})", known.join(", "));
    };
    match (&loaded.config.kind, &loaded.config.kinesis) {
        (DestinationType::Kinesis, Some(kinesis)) => Ok(kinesis),
        (kind, _) => bail!("destination {destination:?} is of type {kind:?}, not kinesis"),
    }
}

/// The External IDs a destination presents, as (value, how to print it): its Secret ID, or else the ID of every
/// source connected to it and the `source_id` of every audience or trait that delivers there. A destination without a role has one identity, its own credentials.
pub fn identities(config: &Config, destination: &str) -> anyhow::Result<(Vec<(ExternalId, String)>, bool)> {
    let kinesis = kinesis(config, destination)?;
    if kinesis.role_address.is_none() {
        return Ok((vec![(None, "own credentials".to_owned())], false));
    }
    if let Some(secret) = &kinesis.secret_id {
        let loaded = config.destination(destination).expect("found above");
        let secret =
            secret.resolve(&config.dir).with_context(|| format!("{}: kinesis.secret_id", loaded.file.display()))?;
        return Ok((vec![(Some(secret.expose().to_owned()), "secret_id".to_owned())], true));
    }
    let senders = config.senders_of(destination);
    Ok((senders.into_iter().map(|s| (Some(s.to_owned()), s.to_owned())).collect(), false))
}

/// The permission policy for the destination's role.
pub fn policy(config: &Config, destination: &str, account_id: Option<&str>) -> anyhow::Result<Value> {
    let kinesis = kinesis(config, destination)?;
    let Some(account) = iam::account_id(kinesis, account_id) else {
        bail!("destination {destination:?} has no role_address to take the account ID from; pass --account-id");
    };
    Ok(iam::permission_policy(kinesis, account))
}

/// The trust policy for the destination's role, trusting `principal` (by default, the caller STS reports).
pub async fn trust(config: &Config, destination: &str, principal: Option<String>) -> anyhow::Result<Value> {
    let kinesis = kinesis(config, destination)?;
    if kinesis.role_address.is_none() {
        bail!("destination {destination:?} assumes no role (no role_address), so it needs no trust policy");
    }
    let (identities, _) = identities(config, destination)?;
    if identities.is_empty() {
        bail!("destination {destination:?} has no secret_id and no source is connected to it: no External ID to trust");
    }
    let principal = match principal {
        Some(principal) => principal,
        None => iam::principal_of(
            &iam::caller_arn(kinesis, &base_credentials())
                .await
                .context("finding the principal to trust (pass --principal ARN to name it yourself)")?,
        ),
    };
    let ids: Vec<String> = identities.into_iter().filter_map(|(id, _)| id).collect();
    Ok(iam::trust_policy(&principal, &ids))
}

/// Checks every enabled Kinesis destination, or one; returns (destination, result) pairs.
pub async fn check(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<(String, CheckResult)>> {
    let names: Vec<&str> = match only {
        Some(name) => {
            kinesis(config, name)?;
            vec![name]
        }
        None => config
            .destinations
            .iter()
            .filter(|d| d.config.enabled && d.config.kind == DestinationType::Kinesis)
            .map(|d| d.config.name.as_str())
            .collect(),
    };
    let mut results = Vec::new();
    for name in names {
        let kinesis = kinesis(config, name)?;
        let (identities, secret) = identities(config, name)?;
        if identities.is_empty() {
            let outcome =
                Err("no source is connected and there is no secret_id: nothing would be sent as any External ID"
                    .to_owned());
            results.push((name.to_owned(), CheckResult { external_id: None, shown: "-".into(), outcome }));
            continue;
        }
        for result in iam::check(name, kinesis, &identities, secret, &base_credentials()).await {
            results.push((name.to_owned(), result));
        }
    }
    Ok(results)
}
