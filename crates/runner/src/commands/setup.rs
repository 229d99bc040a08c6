//! `tributary iam policy|trust` and `tributary check`: Segment's manual setup steps, derived from the config.

use anyhow::{Context as _, bail};
use kinesis_sink::setup::iam::{self, CheckResult};
use kinesis_sink::{ExternalId, SignAs};
use serde_json::Value;

use crate::config::{Config, DestinationKind};
use crate::route::base_credentials;

/// The permission policy for the destination's role (a Kinesis or a Firehose destination).
pub fn policy(config: &Config, destination: &str, account_id: Option<&str>) -> anyhow::Result<Value> {
    let no_account = || {
        anyhow::anyhow!(
            "destination {destination:?} has no role_address to take the account ID from; pass --account-id"
        )
    };
    if let Ok(firehose) = config.firehose(destination) {
        let account = firehose_sink::policy::account_id(firehose, account_id).ok_or_else(no_account)?;
        return Ok(firehose_sink::policy::permission_policy(firehose, account));
    }
    let kinesis = config.kinesis(destination)?;
    let account = iam::account_id(kinesis, account_id).ok_or_else(no_account)?;
    Ok(iam::permission_policy(kinesis, account))
}

/// The ARN of the identity the process's own credentials belong to, asked of STS in the region and endpoint of
/// the AWS destination `destination`.
async fn caller_of(config: &Config, destination: &str) -> anyhow::Result<String> {
    let base = base_credentials();
    if let Ok(firehose) = config.firehose(destination) {
        #[cfg(feature = "firehose")]
        return Ok(firehose_sink::setup::caller_arn(firehose, &base).await?);
        #[cfg(not(feature = "firehose"))]
        bail!("{}: {}", firehose.region, crate::route::WITHOUT_FIREHOSE);
    }
    Ok(iam::caller_arn(config.kinesis(destination)?, &base).await?)
}

/// The trust policy for the destination's role, trusting `principal` (by default, the caller STS reports).
pub async fn trust(config: &Config, destination: &str, principal: Option<String>) -> anyhow::Result<Value> {
    let loaded = config.destination(destination);
    let role = match loaded.and_then(|d| d.config.kind.aws_role()) {
        Some((_, role, _)) => role,
        None => &config.kinesis(destination)?.config.role_address,
    };
    if role.is_none() {
        bail!("destination {destination:?} assumes no role (no role_address), so it needs no trust policy");
    }
    let identities = config.identities(destination)?;
    if identities.is_empty() {
        bail!("destination {destination:?} has no secret_id and no source is connected to it: no External ID to trust");
    }
    let principal = match principal {
        Some(principal) => principal,
        None => iam::principal_of(
            &caller_of(config, destination)
                .await
                .context("finding the principal to trust (pass --principal ARN to name it yourself)")?,
        ),
    };
    let ids: Vec<String> =
        identities.iter().filter_map(SignAs::external_id).map(ExternalId::expose).map(str::to_owned).collect();
    Ok(iam::trust_policy(&principal, &ids))
}

/// Checks every enabled Kinesis and Firehose destination, or one (and of a templated Kinesis one, `stream` or its
/// default stream); returns (destination, result) pairs.
pub async fn check(
    config: &Config,
    only: Option<&str>,
    stream: Option<&str>,
) -> anyhow::Result<Vec<(String, CheckResult)>> {
    anyhow::ensure!(stream.is_none() || only.is_some(), "--stream needs --destination: it names one of its streams");
    let names: Vec<&str> = match only {
        Some(name) => {
            if config.firehose(name).is_err() {
                config.kinesis(name)?;
            }
            vec![name]
        }
        None => config
            .destinations
            .iter()
            .filter(|d| {
                d.config.enabled && matches!(d.config.kind, DestinationKind::Kinesis(_) | DestinationKind::Firehose(_))
            })
            .map(|d| d.config.name.as_str())
            .collect(),
    };
    let mut results = Vec::new();
    for name in names {
        let identities = config.identities(name)?;
        if identities.is_empty() {
            let outcome =
                Err("no source is connected and there is no secret_id: nothing would be sent as any External ID"
                    .to_owned());
            results.push((name.to_owned(), CheckResult { identity: None, outcome }));
            continue;
        }
        let checked = match config.firehose(name) {
            Ok(firehose) => {
                anyhow::ensure!(
                    stream.is_none(),
                    "--stream names a stream of a templated Kinesis destination; a Firehose destination's check \
                     describes every delivery stream its mapping names"
                );
                #[cfg(not(feature = "firehose"))]
                bail!("destination {name:?} ({}): {}", firehose.region, crate::route::WITHOUT_FIREHOSE);
                #[cfg(feature = "firehose")]
                firehose_sink::setup::check(name, firehose, &identities, &base_credentials()).await
            }
            Err(_) => {
                let kinesis = config.kinesis(name)?;
                let stream = kinesis.stream_for(stream).map_err(|e| anyhow::anyhow!("destination {name:?}: {e}"))?;
                iam::check(name, kinesis, &stream, &identities, &base_credentials()).await
            }
        };
        results.extend(checked.into_iter().map(|result| (name.to_owned(), result)));
    }
    Ok(results)
}

/// `tributary iam`.
#[derive(Debug, clap::Subcommand)]
pub enum IamAction {
    /// The permission policy. Kinesis: kinesis:PutRecord, PutRecords, ListShards and DescribeStreamSummary on the
    /// stream (every stream a template can name), and kms:GenerateDataKey on the kms_key if set. Firehose:
    /// firehose:PutRecord, PutRecordBatch and DescribeDeliveryStream on each mapped delivery stream.
    Policy {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The account that owns the stream, when the role_address does not say.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// The trust policy: sts:AssumeRole for the principal, with each External ID the destination presents.
    Trust {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The principal to trust; by default the identity of this process's AWS credentials.
        #[arg(long)]
        principal: Option<String>,
    },
}

/// Writes the policy document asked for to `out`, as pretty JSON.
pub async fn run_iam(
    dir: &std::path::Path,
    action: IamAction,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let document = match action {
        IamAction::Policy { destination, account_id } => policy(&config, &destination, account_id.as_deref())?,
        IamAction::Trust { destination, principal } => trust(&config, &destination, principal).await?,
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `tributary check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only this destination.
    #[arg(long)]
    pub destination: Option<String>,
    /// Of a destination with a templated stream, the resolved stream to check (default: its default_stream).
    #[arg(long)]
    pub stream: Option<String>,
}

/// Checks the destinations, one line per identity to `out` and the count to `err`; fails if any check failed.
pub async fn run_check(
    dir: &std::path::Path,
    args: CheckArgs,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let results = check(&config, args.destination.as_deref(), args.stream.as_deref()).await?;
    let mut failed = 0;
    for (name, result) in &results {
        match &result.outcome {
            Ok(summary) => writeln!(out, "ok    {name} ({}): {summary}", result.label())?,
            Err(problem) => {
                failed += 1;
                writeln!(out, "FAIL  {name} ({}): {problem}", result.label())?;
            }
        }
    }
    writeln!(err, "{} checked, {failed} failed", results.len())?;
    Ok(if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}
