//! Setup as code: the IAM documents a Kinesis destination needs, derived from its config, and a check that
//! tries every identity the destination will use without sending an event.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{ApiError, ErrorKind};
use crate::config::{KinesisConfig, role_account_id};
use crate::identity::SignAs;
use crate::sdk::{BaseCredentials, api_error, role_cache, sdk_config, signing_as};

/// The Kinesis actions the permission policy grants: the two that deliver, the one pacing and aggregation read
/// shards with, and the one `check` uses.
pub const ACTIONS: [&str; 4] =
    ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"];

/// The ARN of stream `name` (or `name` if it is one), in the destination's region and `account_id`.
pub fn arn_of(config: &KinesisConfig, name: &str, account_id: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    let partition = config.role_address.as_deref().and_then(|r| r.split(':').nth(1)).unwrap_or("aws");
    format!("arn:{partition}:kinesis:{}:{account_id}:stream/{name}", config.region)
}

/// The stream's ARN: the configured one, or built from the region, the account and the name.
pub fn stream_arn(config: &KinesisConfig, account_id: &str) -> String {
    arn_of(config, &config.stream, account_id)
}

/// The streams the destination can send to, as policy resources: the stream's ARN; for a template, a wildcard
/// ARN of the names it can make (each field a `*`) and the default stream's ARN.
pub fn stream_resources(config: &KinesisConfig, account_id: &str) -> Vec<String> {
    let route = config.route();
    let mut resources = vec![arn_of(config, &route.pattern(), account_id)];
    if route.is_template() {
        resources.push(arn_of(config, route.fixed(), account_id));
    }
    resources
}

/// The account a policy is for: `explicit` if given, else the role's.
pub fn account_id<'a>(config: &'a KinesisConfig, explicit: Option<&'a str>) -> Option<&'a str> {
    explicit.or_else(|| config.role_address.as_deref().and_then(role_account_id))
}

/// The permission policy for the role: [`ACTIONS`] on the destination's streams, and with a `kms_key`,
/// `kms:GenerateDataKey` on it (Kinesis asks for a data key as the writer, to encrypt records).
pub fn permission_policy(config: &KinesisConfig, account_id: &str) -> Value {
    let resources = stream_resources(config, account_id);
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

/// The role's trust policy: `sts:AssumeRole` for `principal`, on condition that the External ID is one of
/// `external_ids`, as Segment's "Multiple Sources" section describes.
pub fn trust_policy(principal: &str, external_ids: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_ids}}
        }]
    })
}

/// The principal to trust for the caller ARN STS reports: an assumed-role session is trusted through its role.
pub fn principal_of(caller_arn: &str) -> String {
    // arn:aws:sts::123456789012:assumed-role/ROLE/SESSION -> arn:aws:iam::123456789012:role/ROLE
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if parts.len() == 6
        && parts[2] == "sts"
        && let Some(rest) = parts[5].strip_prefix("assumed-role/")
    {
        let role = rest.split('/').next().unwrap_or(rest);
        return format!("arn:{}:iam::{}:role/{role}", parts[1], parts[4]);
    }
    caller_arn.to_owned()
}

/// The ARN of the identity the process's own credentials belong to, from STS `GetCallerIdentity`.
pub async fn caller_arn(config: &KinesisConfig, base: &BaseCredentials) -> Result<String, ApiError> {
    let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, Duration::from_secs(30)).await;
    let output = aws_sdk_sts::Client::new(&shared)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| api_error(&e, "sts:GetCallerIdentity"))?;
    output
        .arn()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::classify(None, None, "sts:GetCallerIdentity returned no ARN".into()))
}

/// The result of checking one identity of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The identity checked, or `None` when the destination has none to check; print it with
    /// [`CheckResult::label`], which never shows a Secret ID.
    pub identity: Option<SignAs>,
    /// `Ok` with a summary, or `Err` with an explanation an operator can act on.
    pub outcome: Result<String, String>,
}

impl CheckResult {
    /// How the identity is printed: the sender's ID, `secret_id`, `own credentials`, or `-` for none.
    pub fn label(&self) -> &str {
        self.identity.as_ref().map_or("-", SignAs::label)
    }
}

/// Tries each identity: assumes the role with its External ID (when there is a role), then describes the stream.
/// Nothing is written to the stream.
/// With a templated stream, `stream` picks which of its streams (by default its `default_stream`).
pub async fn check(
    destination: &str,
    config: &KinesisConfig,
    stream: &str,
    identities: &[SignAs],
    base: &BaseCredentials,
) -> Vec<CheckResult> {
    let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, Duration::from_secs(30)).await;
    let mut results = Vec::new();
    for identity in identities {
        let outcome = check_one(destination, config, stream, identity, &shared).await;
        results.push(CheckResult { identity: Some(identity.clone()), outcome });
    }
    results
}

/// What IAM says of a role.
// Without the `iam` feature nothing looks a role up, so only `Unknown` is made.
#[cfg_attr(not(feature = "iam"), allow(dead_code))]
enum RoleLookup {
    /// It exists, with this trust policy document (URL-encoded, as IAM returns it).
    Found(String),
    /// It does not exist.
    Missing,
    /// These credentials may not read it, or this build looks nothing up in IAM (without the `iam` feature).
    Unknown,
}

/// Looks the role `role` (an ARN) up with IAM GetRole.
#[cfg(feature = "iam")]
async fn look_up_role(shared: &aws_config::SdkConfig, role: &str) -> RoleLookup {
    let name = role.rsplit('/').next().unwrap_or(role);
    match aws_sdk_iam::Client::new(shared).get_role().role_name(name).send().await {
        Ok(output) => match output.role() {
            Some(found) => RoleLookup::Found(found.assume_role_policy_document().unwrap_or_default().to_owned()),
            None => RoleLookup::Unknown,
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => RoleLookup::Missing,
        Err(_) => RoleLookup::Unknown,
    }
}

/// Without the `iam` feature, roles are not looked up; a refusal is explained without the role's trust policy.
#[cfg(not(feature = "iam"))]
async fn look_up_role(_: &aws_config::SdkConfig, _: &str) -> RoleLookup {
    RoleLookup::Unknown
}

async fn check_one(
    destination: &str,
    config: &KinesisConfig,
    stream: &str,
    identity: &SignAs,
    shared: &aws_config::SdkConfig,
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
            return Err(explain_refusal(destination, role, identity, shared, error).await);
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
    let summary = match crate::setup::admin::describe(&client, stream).await {
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
    let encryption = match (&config.kms_key, &summary.kms_key) {
        (Some(want), Some(has)) if key_matches(want, has) => format!(", encrypted with {has}"),
        (Some(want), Some(has)) => {
            return Err(format!(
                "stream {stream} is encrypted with {has}, not kinesis.kms_key {want}: the policy grants \
                 kms:GenerateDataKey on the wrong key; set kms_key to the stream's key"
            ));
        }
        (Some(want), None) => {
            return Err(format!(
                "stream {stream} is not encrypted but kinesis.kms_key is {want}: encrypt it (`tributary streams \
                 create --destination {destination} --kms-key {want}` turns encryption on) or remove kms_key"
            ));
        }
        (None, Some(has)) => format!(", encrypted with {has} (set kinesis.kms_key to grant its use in `iam policy`)"),
        (None, None) => String::new(),
    };
    Ok(format!(
        "{assumed}stream {} is {} with {shards} open shards ({}){encryption}",
        summary.name,
        summary.status,
        summary.mode.to_lowercase().replace('_', "-")
    ))
}

/// Whether the key a stream reports (an ARN, a key ID or an alias) is the configured key ARN.
fn key_matches(configured: &str, reported: &str) -> bool {
    configured == reported || configured.rsplit('/').next() == Some(reported)
}

/// Works out why AssumeRole was refused, reading the role's trust policy when these credentials may.
async fn explain_refusal(
    destination: &str,
    role: &str,
    identity: &SignAs,
    shared: &aws_config::SdkConfig,
    error: ApiError,
) -> String {
    if error.kind != ErrorKind::AssumeRoleRefused {
        return error.message;
    }
    let external = match identity.external_id() {
        None => "no External ID".to_owned(),
        Some(id) if id.is_secret() => "the secret_id as External ID".to_owned(),
        Some(id) => format!("External ID {:?}", id.expose()),
    };
    let regenerate = format!("`tributary iam trust --destination {destination}` prints the trust policy it needs");
    let caller = aws_sdk_sts::Client::new(shared)
        .get_caller_identity()
        .send()
        .await
        .ok()
        .and_then(|o| o.arn().map(principal_of));
    let document = match look_up_role(shared, role).await {
        RoleLookup::Found(document) => Some(document),
        RoleLookup::Missing => return format!("role {role} does not exist: create it, or fix kinesis.role_address"),
        RoleLookup::Unknown => None,
    };
    let (Some(caller), Some(document)) = (caller, document.and_then(|d| parse_document(&d))) else {
        return format!(
            "assuming role {role} with {external} was refused: either the role does not trust this principal or the \
             External ID does not match its trust policy (these credentials may not read the role to tell which); {regenerate}"
        );
    };
    let statements = trusting(&document, &caller);
    if statements.is_empty() {
        return format!(
            "role {role} does not trust {caller}: add it as a principal of the role's trust policy; {regenerate}"
        );
    }
    let allowed: Vec<String> = statements.iter().flat_map(|s| external_ids(s)).collect();
    match identity.external_id() {
        Some(id) if !allowed.iter().any(|a| a == id.expose()) && !allowed.is_empty() => {
            // The trust policy's values are not printed: any of them may be some destination's secret_id.
            let listed = match id.is_secret() {
                true => "the configured secret_id".to_owned(),
                false => format!("{:?}", id.expose()),
            };
            let count = allowed.len();
            let ids = if count == 1 { "1 External ID" } else { &format!("{count} External IDs") };
            format!(
                "the External ID does not match: role {role} trusts {caller} with {ids}, and {listed} is not among \
                 them; {regenerate}"
            )
        }
        _ => format!(
            "assuming role {role} with {external} was refused although its trust policy allows it: {}",
            error.message
        ),
    }
}

/// A trust policy from GetRole, which AWS returns URL-encoded.
fn parse_document(text: &str) -> Option<Value> {
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(&percent_encoding::percent_decode_str(text).decode_utf8_lossy()).ok())
}

/// One string or a list of strings.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The Allow statements for `sts:AssumeRole` whose principal covers `caller`.
fn trusting<'a>(document: &'a Value, caller: &str) -> Vec<&'a Value> {
    let account = caller.split(':').nth(4).unwrap_or_default();
    let statements: Vec<&Value> = match &document["Statement"] {
        Value::Array(items) => items.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => Vec::new(),
    };
    statements
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .filter(|s| strings(&s["Action"]).iter().any(|a| a == "sts:AssumeRole" || a == "sts:*" || a == "*"))
        .filter(|s| {
            let principals = match &s["Principal"] {
                Value::String(p) => vec![p.clone()],
                other => strings(&other["AWS"]),
            };
            principals
                .iter()
                .any(|p| p == "*" || p == caller || p == account || *p == format!("arn:aws:iam::{account}:root"))
        })
        .collect()
}

/// The External IDs a statement's condition allows; empty when it sets none (any External ID is accepted).
fn external_ids(statement: &Value) -> Vec<String> {
    strings(&statement["Condition"]["StringEquals"]["sts:ExternalId"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(stream: &str, role: Option<&str>) -> KinesisConfig {
        serde_json::from_value(json!({"region": "us-west-2", "stream": stream, "role_address": role})).unwrap()
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
        assert_eq!(stream_arn(&china, "123456789012"), "arn:aws-cn:kinesis:us-west-2:123456789012:stream/events");
        let by_arn = self::config("arn:aws:kinesis:eu-west-1:111111111111:stream/x", None);
        assert_eq!(stream_arn(&by_arn, "ignored"), "arn:aws:kinesis:eu-west-1:111111111111:stream/x");
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

    fn config_with_partition() -> KinesisConfig {
        config("events", Some("arn:aws-cn:iam::123456789012:role/tributary"))
    }

    #[test]
    fn assumed_role_sessions_are_trusted_through_their_role() {
        assert_eq!(
            principal_of("arn:aws:sts::123456789012:assumed-role/deployer/i-0abc"),
            "arn:aws:iam::123456789012:role/deployer"
        );
        assert_eq!(principal_of("arn:aws:iam::123456789012:user/ci"), "arn:aws:iam::123456789012:user/ci");
    }

    #[test]
    fn reading_trust_policies() {
        let caller = "arn:aws:iam::123456789012:user/ci";
        let document = trust_policy(caller, &["src_a".into(), "src_b".into()]);
        let found = trusting(&document, caller);
        assert_eq!(found.len(), 1);
        assert_eq!(external_ids(found[0]), ["src_a", "src_b"]);
        assert!(trusting(&document, "arn:aws:iam::123456789012:user/other").is_empty());
        let account_wide = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}});
        assert_eq!(trusting(&account_wide, caller).len(), 1);
        let encoded = "%7B%22Statement%22%3A%5B%5D%7D";
        assert_eq!(parse_document(encoded), Some(json!({"Statement": []})));
    }
}
