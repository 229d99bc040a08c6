//! Setup as code: the IAM documents a Kinesis destination needs, derived from its config, and a check that
//! tries every identity the destination will use without sending an event.

use std::time::Duration;

use aws_common::iam::{explain_refusal, partition_of, role_account_id};
pub use aws_common::iam::{principal_of, trust_policy};
use aws_common::sdk::{RoleLookup, SdkConfig, look_up_role, role_cache};
use aws_common::{ApiError, BaseCredentials, ErrorKind, SignAs, sdk_config};
use serde_json::{Value, json};

use crate::config::KinesisConfig;
use crate::sdk::signing_as;
use crate::settings::KinesisSettings;

/// The Kinesis actions the permission policy grants: the two that deliver, the one pacing and aggregation read
/// shards with, and the one `check` uses.
pub const ACTIONS: [&str; 4] =
    ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"];

/// The ARN of stream `name` (or `name` if it is one), in the destination's region and `account_id`.
pub fn arn_of(config: &KinesisConfig, name: &str, account_id: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    let partition = partition_of(config.role_address.as_deref());
    format!("arn:{partition}:kinesis:{}:{account_id}:stream/{name}", config.region)
}

/// The stream's ARN: the configured one, or built from the region, the account and the name.
pub fn stream_arn(config: &KinesisConfig, account_id: &str) -> String {
    arn_of(config, &config.stream, account_id)
}

/// The streams the destination can send to, as policy resources: the stream's ARN; for a template, a wildcard
/// ARN of the names it can make (each field a `*`) and the default stream's ARN.
pub fn stream_resources(settings: &KinesisSettings, account_id: &str) -> Vec<String> {
    let (config, route) = (&settings.config, &settings.route);
    let mut resources = vec![arn_of(config, &route.pattern(), account_id)];
    if route.is_template() {
        resources.push(arn_of(config, route.fixed(), account_id));
    }
    resources
}

/// The account a policy is for: `explicit` if given, else the role's.
pub fn account_id<'a>(settings: &'a KinesisSettings, explicit: Option<&'a str>) -> Option<&'a str> {
    explicit.or_else(|| settings.config.role_address.as_deref().and_then(role_account_id))
}

/// The permission policy for the role: [`ACTIONS`] on the destination's streams, and with a `kms_key`,
/// `kms:GenerateDataKey` on it (Kinesis asks for a data key as the writer, to encrypt records).
pub fn permission_policy(settings: &KinesisSettings, account_id: &str) -> Value {
    let resources = stream_resources(settings, account_id);
    let config = &settings.config;
    let resource = if resources.len() == 1 { json!(resources[0]) } else { json!(resources) };
    let mut statements = vec![json!({
        "Sid": "TributaryKinesisDelivery",
        "Effect": "Allow",
        "Action": ACTIONS,
        "Resource": resource,
    })];
    if let Some(key) = &config.kms_key {
        statements.push(json!({
            "Sid": "TributaryKinesisEncryption",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey"],
            "Resource": key,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The ARN of the identity the process's own credentials belong to, from STS `GetCallerIdentity`, in the
/// destination's region and endpoint.
pub async fn caller_arn(settings: &KinesisSettings, base: &BaseCredentials) -> Result<String, ApiError> {
    let config = &settings.config;
    let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, Duration::from_secs(30)).await;
    aws_common::sdk::caller_arn(&shared).await
}

pub use aws_common::iam::CheckResult;

/// Tries each identity: assumes the role with its External ID (when there is a role), then describes the stream.
/// Nothing is written to the stream.
/// With a templated stream, `stream` picks which of its streams (by default its `default_stream`).
pub async fn check(
    destination: &str,
    settings: &KinesisSettings,
    stream: &str,
    identities: &[SignAs],
    base: &BaseCredentials,
) -> Vec<CheckResult> {
    let config = &settings.config;
    let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, Duration::from_secs(30)).await;
    let mut results = Vec::new();
    for identity in identities {
        let outcome = check_one(destination, config, stream, identity, &shared).await;
        results.push(CheckResult { identity: Some(identity.clone()), outcome });
    }
    results
}

async fn check_one(
    destination: &str,
    config: &KinesisConfig,
    stream: &str,
    identity: &SignAs,
    shared: &SdkConfig,
) -> Result<String, String> {
    let mut builder = aws_sdk_kinesis::config::Builder::from(shared);
    let mut assumed = String::new();
    if let Some(role) = &config.role_address {
        // Looking the role up first, where these credentials may, tells a missing role from a refusal.
        if let RoleLookup::Missing = look_up_role(shared, role).await {
            return Err(format!("role {role} does not exist: create it, or fix kinesis.role_address"));
        }
        let cache = role_cache(shared, role);
        if let Err(error) = cache.get(identity).await {
            return Err(explain_refusal("kinesis", destination, role, identity, shared, error).await);
        }
        assumed = format!("assumed {role}; ");
        builder = signing_as(builder, cache, identity.clone());
    }
    let client = aws_sdk_kinesis::Client::from_conf(builder.build());
    let who = config.role_address.as_deref().unwrap_or("these credentials");
    let lacks = |action: &str, e: &ApiError| {
        format!(
            "the policy of {who} lacks {action} on stream {stream}: attach the policy that \
             `tributary iam policy --destination {destination}` prints ({})",
            e.message
        )
    };
    let summary =
        match crate::setup::admin::describe(&crate::setup::admin::Client::from_sdk(client.clone()), stream).await {
            Ok(summary) => summary,
            Err(e) if e.kind == ErrorKind::AccessDenied => return Err(lacks("kinesis:DescribeStreamSummary", &e)),
            Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {
                return Err(format!(
                    "stream {stream} does not exist in region {}: create it with `tributary streams create \
                 --destination {destination} --stream {stream}`, or fix kinesis.stream or kinesis.region",
                    config.region
                ));
            }
            Err(e) => return Err(e.message),
        };
    // Pacing and aggregation read the shards; without ListShards they are off, so a missing grant is a failure
    // when either is on.
    let shards = if config.pacing || config.aggregation == crate::config::Aggregation::Kpl {
        match crate::sdk::list_shards(&client, stream).await {
            Ok(shards) => shards.len(),
            Err(e) if e.kind == ErrorKind::AccessDenied => return Err(lacks("kinesis:ListShards", &e)),
            Err(e) => return Err(e.message),
        }
    } else {
        usize::try_from(summary.open_shards).unwrap_or_default()
    };
    let encryption = encryption(destination, config, stream, summary.kms_key.as_deref())?;
    Ok(format!(
        "{assumed}stream {} is {} with {shards} open shards ({}){encryption}",
        summary.name,
        summary.status,
        summary.mode.to_lowercase().replace('_', "-")
    ))
}

/// How `check` describes the stream's encryption, or why it does not match `kms_key`: the key the stream reports,
/// `reported`, against the configured one.
fn encryption(
    destination: &str,
    config: &KinesisConfig,
    stream: &str,
    reported: Option<&str>,
) -> Result<String, String> {
    match (&config.kms_key, reported) {
        (Some(want), Some(has)) if key_matches(want, has) => Ok(format!(", encrypted with {has}")),
        (Some(want), Some(has)) => Err(format!(
            "stream {stream} is encrypted with {has}, not kinesis.kms_key {want}: the policy grants \
                 kms:GenerateDataKey on the wrong key; set kms_key to the stream's key"
        )),
        (Some(want), None) => Err(format!(
            "stream {stream} is not encrypted but kinesis.kms_key is {want}: encrypt it (`tributary streams \
                 create --destination {destination} --kms-key {want}` turns encryption on) or remove kms_key"
        )),
        (None, Some(has)) => {
            Ok(format!(", encrypted with {has} (set kinesis.kms_key to grant its use in `iam policy`)"))
        }
        (None, None) => Ok(String::new()),
    }
}

/// Whether the key a stream reports (an ARN, a key ID or an alias) is the configured key ARN.
fn key_matches(configured: &str, reported: &str) -> bool {
    configured == reported || configured.rsplit('/').next() == Some(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(stream: &str, role: Option<&str>) -> KinesisSettings {
        let config: KinesisConfig =
            serde_json::from_value(json!({"region": "us-west-2", "stream": stream, "role_address": role})).unwrap();
        config.resolve().unwrap()
    }

    #[test]
    fn the_permission_policy_names_the_stream() {
        let config = config("events", Some("arn:aws:iam::123456789012:role/tributary"));
        let account = account_id(&config, None).unwrap();
        assert_eq!(
            permission_policy(&config, account),
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "TributaryKinesisDelivery",
                "Effect": "Allow",
                "Action": ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"],
                "Resource": "arn:aws:kinesis:us-west-2:123456789012:stream/events"
            }]})
        );
        assert_eq!(account_id(&config, Some("999999999999")), Some("999999999999"));
        let china = config_with_partition();
        assert_eq!(
            stream_arn(&china.config, "123456789012"),
            "arn:aws-cn:kinesis:us-west-2:123456789012:stream/events"
        );
        let by_arn = self::config("arn:aws:kinesis:eu-west-1:111111111111:stream/x", None);
        assert_eq!(stream_arn(&by_arn.config, "ignored"), "arn:aws:kinesis:eu-west-1:111111111111:stream/x");
        assert_eq!(account_id(&by_arn, None), None);
    }

    #[test]
    fn templated_and_encrypted_streams_are_granted() {
        let config: KinesisConfig = serde_json::from_value(json!({
            "region": "us-west-2",
            "stream": "segment-{type}-{context.app.name}",
            "default_stream": "segment-other",
            "kms_key": "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        }))
        .unwrap();
        let config = config.resolve().unwrap();
        let policy = permission_policy(&config, "123456789012");
        assert_eq!(
            policy["Statement"][0]["Resource"],
            json!([
                "arn:aws:kinesis:us-west-2:123456789012:stream/segment-*-*",
                "arn:aws:kinesis:us-west-2:123456789012:stream/segment-other"
            ])
        );
        assert_eq!(
            policy["Statement"][1],
            json!({
                "Sid": "TributaryKinesisEncryption",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey"],
                "Resource": "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            })
        );
        assert_eq!(config.stream_for(Some("segment-track-ios")), Ok("segment-track-ios".to_owned()));
        assert_eq!(config.stream_for(None), Ok("segment-other".to_owned()));
        assert!(config.stream_for(Some("other")).unwrap_err().contains("not one this destination sends to"));
    }

    fn config_with_partition() -> KinesisSettings {
        config("events", Some("arn:aws-cn:iam::123456789012:role/tributary"))
    }
}
