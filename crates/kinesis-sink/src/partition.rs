//! Which partition key (and explicit hash key) a record gets: `userId || anonymousId`, its `messageId`, or the
//! first present value of paths into the message.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;
use sink::Record;

/// A dotted path into a message: `["context", "groupId"]`.
pub type Path = Vec<String>;

/// How a destination keys its records.
#[derive(Debug, Clone, Default)]
pub struct Partitioning {
    /// The partition key's source.
    pub key: KeySource,
    /// The path of the explicit hash key, if set.
    pub explicit_hash_key: Option<Path>,
    /// Counts kept for `/metrics`.
    pub counts: Arc<PartitionCounts>,
}

/// Where a partition key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeySource {
    /// `userId || anonymousId`, as Segment's destination keys records (the default).
    #[default]
    User,
    /// The `messageId` (`use_message_id = true`).
    MessageId,
    /// The first path whose value is present and not empty; the `messageId` when none is.
    Paths(Vec<Path>),
}

/// What keying did that an operator should see.
#[derive(Debug, Default)]
pub struct PartitionCounts {
    /// Records none of whose `partition_key` paths held a value, keyed by their `messageId` instead.
    pub fallbacks: AtomicU64,
    /// Records whose `explicit_hash_key` value was not a decimal number below 2^128, sent without one.
    pub hash_keys_ignored: AtomicU64,
}

impl KeySource {
    /// The source the settings describe: `use_message_id` is shorthand for `["messageId"]`, and the default paths
    /// (`["userId", "anonymousId"]`) are the record's user key, worked out once when it was made.
    pub fn from_settings(use_message_id: bool, paths: Option<&[String]>) -> KeySource {
        match paths {
            _ if use_message_id => KeySource::MessageId,
            None => KeySource::User,
            Some([user, anonymous]) if user == "userId" && anonymous == "anonymousId" => KeySource::User,
            Some([one]) if one == "messageId" => KeySource::MessageId,
            Some(paths) => KeySource::Paths(paths.iter().map(|p| split(p)).collect()),
        }
    }
}

/// `"context.app.name"` as its segments.
pub fn split(path: &str) -> Path {
    path.split('.').map(str::to_owned).collect()
}

/// Why a path setting is unusable, if it is.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("{path:?} is not a dotted path into the message (for example \"context.groupId\")"));
    }
    Ok(())
}

/// The value at `path` in a JSON object, as key text: a string as it is, a number or boolean as written; `None`
/// for a missing, null, empty, object or array value. Reads only the objects on the path.
pub fn lookup<'p>(payload: &'p [u8], path: &[String]) -> Option<Cow<'p, str>> {
    // Each object on the path is a slice of the payload: nothing is copied but the final string's unescaping.
    let mut value: &'p RawValue = serde_json::from_slice(payload).ok()?;
    for segment in path {
        value = field(value.get(), segment)?;
    }
    let text = value.get().trim();
    let key: Cow<'p, str> = match text.as_bytes().first()? {
        b'"' => serde_json::from_str(text).ok()?,
        b'{' | b'[' | b'n' => return None,
        _ => Cow::Borrowed(text),
    };
    (!key.is_empty()).then_some(key)
}

/// The raw value of `name` in the JSON object `text`.
fn field<'t>(text: &'t str, name: &str) -> Option<&'t RawValue> {
    let fields: BTreeMap<Cow<'t, str>, &'t RawValue> = serde_json::from_str(text).ok()?;
    fields.get(name).copied()
}

impl Partitioning {
    /// The partition key of `record`, before the cut to Kinesis's 256 characters.
    pub fn key<'r>(&self, record: &'r Record) -> Cow<'r, str> {
        match &self.key {
            KeySource::User => Cow::Borrowed(record.user_key()),
            KeySource::MessageId => Cow::Borrowed(record.message_id()),
            KeySource::Paths(paths) => match paths.iter().find_map(|p| lookup(record.payload(), p)) {
                Some(key) => key,
                None => {
                    self.counts.fallbacks.fetch_add(1, Ordering::Relaxed);
                    Cow::Borrowed(record.message_id())
                }
            },
        }
    }

    /// The explicit hash key of `record`: the value at the path when it is a decimal number below 2^128, which is
    /// all Kinesis takes (one bad key would refuse the whole request). A message without the path gets none; one
    /// with a value Kinesis would refuse gets none and is counted.
    pub fn explicit_hash_key(&self, record: &Record) -> Option<String> {
        let value = lookup(record.payload(), self.explicit_hash_key.as_ref()?)?;
        match value.bytes().all(|b| b.is_ascii_digit()).then(|| value.parse::<u128>().ok()).flatten() {
            // Written as Kinesis writes hash keys: no leading zeros.
            Some(number) => Some(number.to_string()),
            None => {
                self.counts.hash_keys_ignored.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_strings_numbers_and_booleans() {
        let body = br#"{"userId":"u1","context":{"groupId":"g\u00e9","app":{"name":"ios"}},"properties":{"account_id":42,"vip":true,"empty":"","none":null,"list":[1]}}"#;
        let at = |path: &str| lookup(body, &split(path)).map(Cow::into_owned);
        assert_eq!(at("userId").as_deref(), Some("u1"));
        assert_eq!(at("context.groupId").as_deref(), Some("gé"));
        assert_eq!(at("context.app.name").as_deref(), Some("ios"));
        assert_eq!(at("properties.account_id").as_deref(), Some("42"));
        assert_eq!(at("properties.vip").as_deref(), Some("true"));
        for missing in ["properties.empty", "properties.none", "properties.list", "context", "nope", "userId.x"] {
            assert_eq!(at(missing), None, "{missing}");
        }
    }

    #[test]
    fn settings_pick_the_fast_paths() {
        assert_eq!(KeySource::from_settings(false, None), KeySource::User);
        assert_eq!(KeySource::from_settings(true, None), KeySource::MessageId);
        let default = ["userId".to_owned(), "anonymousId".to_owned()];
        assert_eq!(KeySource::from_settings(false, Some(&default)), KeySource::User);
        assert_eq!(KeySource::from_settings(false, Some(&["messageId".to_owned()])), KeySource::MessageId);
        assert!(check_path("context..groupId").is_err());
        assert!(check_path("").is_err());
        assert!(check_path("properties.account_id").is_ok());
    }
}
