//! ARNs, and the trust-policy building blocks of a role a destination assumes: the document it needs, the
//! principal to trust, and reading a role's trust policy to tell why AssumeRole was refused.

use serde_json::{Value, json};

use crate::error::{ApiError, ErrorKind};
use crate::identity::SignAs;
use crate::sdk::{RoleLookup, SdkConfig, caller_arn, look_up_role};

/// `us-west-2`, `ap-southeast-1`, `us-gov-west-1`, `eu-central-2` and so on.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty() && !name.ends_with('/'))
}

/// The account ID of an IAM role ARN.
pub fn role_account_id(arn: &str) -> Option<&str> {
    is_role_arn(arn).then(|| arn.split(':').nth(4)).flatten()
}

/// `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` (or an `alias/NAME`, which policies cannot name, is refused).
pub fn is_kms_key_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && is_region(parts[3])
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("key/").is_some_and(|id| !id.is_empty())
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`), `aws` when `arn` is none.
pub fn partition_of(arn: Option<&str>) -> &str {
    arn.and_then(|a| a.split(':').nth(1)).unwrap_or("aws")
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

/// Why AssumeRole of a role was refused, as far as the role's trust policy (when these credentials may read it)
/// tells. The sink words it, naming its own keys and commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The role does not exist.
    RoleMissing,
    /// These credentials may not read the role (or its caller), so a missing trust cannot be told from a wrong
    /// External ID.
    Unexplained,
    /// The role's trust policy does not name `caller`.
    Untrusted {
        /// The principal the process signs as.
        caller: String,
    },
    /// The role trusts `caller` with `allowed` External IDs, and the one presented is not among them. The values
    /// are not kept: any of them may be some destination's Secret ID.
    ExternalIdMismatch {
        /// The principal the process signs as.
        caller: String,
        /// How many External IDs the trust policy allows.
        allowed: usize,
    },
    /// The trust policy allows it, yet STS refused: the error as STS gave it.
    Refused(String),
}

/// Works out why assuming `role` as `identity` was refused (`error`), reading the role's trust policy when the
/// credentials of `shared` may.
pub async fn why_refused(shared: &SdkConfig, role: &str, identity: &SignAs, error: &ApiError) -> Refusal {
    if error.kind != ErrorKind::AssumeRoleRefused {
        return Refusal::Refused(error.message.clone());
    }
    let caller = caller_arn(shared).await.ok().map(|arn| principal_of(&arn));
    let document = match look_up_role(shared, role).await {
        RoleLookup::Found(document) => Some(document),
        RoleLookup::Missing => return Refusal::RoleMissing,
        RoleLookup::Unknown => None,
    };
    let (Some(caller), Some(document)) = (caller, document.and_then(|d| parse_document(&d))) else {
        return Refusal::Unexplained;
    };
    let statements = trusting(&document, &caller);
    if statements.is_empty() {
        return Refusal::Untrusted { caller };
    }
    let allowed: Vec<String> = statements.iter().flat_map(|s| external_ids(s)).collect();
    match identity.external_id() {
        Some(id) if !allowed.iter().any(|a| a == id.expose()) && !allowed.is_empty() => {
            Refusal::ExternalIdMismatch { caller, allowed: allowed.len() }
        }
        _ => Refusal::Refused(error.message.clone()),
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

/// Words why AssumeRole was refused for `destination`, naming its key (in its settings table, `table`:
/// `kinesis`, `firehose`) and the command that prints the trust policy.
pub async fn explain_refusal(
    table: &str,
    destination: &str,
    role: &str,
    identity: &SignAs,
    shared: &SdkConfig,
    error: ApiError,
) -> String {
    let external = match identity.external_id() {
        None => "no External ID".to_owned(),
        Some(id) if id.is_secret() => "the secret_id as External ID".to_owned(),
        Some(id) => format!("External ID {:?}", id.expose()),
    };
    let regenerate = format!("`tributary iam trust --destination {destination}` prints the trust policy it needs");
    match why_refused(shared, role, identity, &error).await {
        Refusal::RoleMissing => format!("role {role} does not exist: create it, or fix {table}.role_address"),
        Refusal::Unexplained => format!(
            "assuming role {role} with {external} was refused: either the role does not trust this principal or the \
             External ID does not match its trust policy (these credentials may not read the role to tell which); {regenerate}"
        ),
        Refusal::Untrusted { caller } => {
            format!(
                "role {role} does not trust {caller}: add it as a principal of the role's trust policy; {regenerate}"
            )
        }
        Refusal::ExternalIdMismatch { caller, allowed } => {
            let listed = match identity.external_id() {
                Some(id) if !id.is_secret() => format!("{:?}", id.expose()),
                _ => "the configured secret_id".to_owned(),
            };
            let ids = if allowed == 1 { "1 External ID".to_owned() } else { format!("{allowed} External IDs") };
            format!(
                "the External ID does not match: role {role} trusts {caller} with {ids}, and {listed} is not among \
                 them; {regenerate}"
            )
        }
        Refusal::Refused(message) if error.kind == ErrorKind::AssumeRoleRefused => {
            format!("assuming role {role} with {external} was refused although its trust policy allows it: {message}")
        }
        Refusal::Refused(message) => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for ok in ["us-west-2", "eu-central-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["", "us", "us-west", "US-WEST-2", "us-west-x", "us_west_2", "u-west-2"] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn role_arns() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/tributary"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/to/name"));
        assert_eq!(role_account_id("arn:aws:iam::123456789012:role/x"), Some("123456789012"));
        for bad in [
            "tributary",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/x",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
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
