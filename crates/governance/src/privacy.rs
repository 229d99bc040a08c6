//! Privacy controls on a source or a destination: fields hashed (HMAC-SHA-256, so that a value still joins across
//! messages but cannot be read back) or dropped, named by path or found by a matcher. Values are never returned or
//! logged: what a change reports is the matcher and the action.

use std::collections::BTreeMap;
use std::sync::Arc;

use segment_model::Message;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::fql::field_path;
use crate::matchers::{BUILT_IN, Matcher, MatcherConfig, normalize_key};

/// A `[privacy]` table, on a source or a destination. `K` is how the config refers to the key (the runner's secret
/// reference: `{ env = "NAME" }` or `{ file = "PATH" }`).
///
/// ```toml
/// [privacy]
/// hash = ["traits.email", "matcher:phone"]      # HMAC-SHA-256, hex, keyed with privacy_key
/// drop = ["context.ip", "matcher:credit_card"]
/// privacy_key = { env = "TRIBUTARY_PRIVACY_KEY" }
///
/// [privacy.matchers.loyalty_id]
/// key = "loyalty_?id"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "K: Deserialize<'de>"))]
pub struct PrivacyConfig<K> {
    /// What to replace with its HMAC-SHA-256 under `privacy_key`, as 64 lowercase hex digits: paths under
    /// `properties`, `traits` or `context` (`"traits.email"`, other characters escaped with `\` as in FQL), and
    /// matchers as `"matcher:NAME"`. A path that names an object or a list hashes its JSON whole.
    #[serde(default)]
    pub hash: Vec<String>,
    /// What to remove, named as in `hash`. A field both lists take is removed.
    #[serde(default)]
    pub drop: Vec<String>,
    /// The HMAC key, at least 16 bytes (`openssl rand -hex 32`): `{ env = "NAME" }` or `{ file = "PATH" }`. Needed
    /// when `hash` is not empty. Keep it secret and keep it: the same key gives the same hashes, so values still
    /// join across messages, sources and runs; a new key starts new ones.
    #[serde(default)]
    pub privacy_key: Option<K>,
    /// Custom matchers, by name: `[privacy.matchers.NAME]` with `key` (a pattern for key names) and/or `value` (a
    /// pattern for values). Built in: `email`, `phone`, `credit_card` (with a Luhn check), `ssn`, `ip_address`,
    /// `street_address` (by key name).
    #[serde(default)]
    pub matchers: BTreeMap<String, MatcherConfig>,
}

impl<K> Default for PrivacyConfig<K> {
    fn default() -> Self {
        PrivacyConfig { hash: Vec::new(), drop: Vec::new(), privacy_key: None, matchers: BTreeMap::new() }
    }
}

/// What a privacy control does to a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrivacyAction {
    /// Replaced by its HMAC.
    Hash,
    /// Removed.
    Drop,
}

impl PrivacyAction {
    /// How `/metrics` names it.
    pub fn name(self) -> &'static str {
        match self {
            PrivacyAction::Hash => "hash",
            PrivacyAction::Drop => "drop",
        }
    }
}

/// One field a privacy control changed: by which matcher (`field` for a path named in `hash` or `drop`), and how.
/// Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The matcher's name, or `field`.
    pub matcher: Arc<str>,
    /// What was done.
    pub action: PrivacyAction,
}

/// A problem with a `[privacy]` table: the key (`hash[1]`, `privacy_key`, `matchers.NAME.value`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyProblem {
    /// The key at fault, within the table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A path rule: the object it lives in and the path within it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    top: &'static str,
    path: Vec<String>,
    action: PrivacyAction,
}

/// The shortest key a team may hash with: shorter ones can be guessed.
pub const MIN_KEY_BYTES: usize = 16;

/// HMAC-SHA-256 (RFC 2104) with the key's padded blocks hashed once, at load.
#[derive(Clone)]
struct HmacKey {
    inner: sha2::Sha256,
    outer: sha2::Sha256,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

impl HmacKey {
    fn new(key: &[u8]) -> HmacKey {
        let mut block = [0u8; 64];
        match key.len() > 64 {
            true => block[..32].copy_from_slice(&sha2::Sha256::digest(key)),
            false => block[..key.len()].copy_from_slice(key),
        }
        let pad = |byte: u8| block.map(|b| b ^ byte);
        HmacKey {
            inner: sha2::Sha256::new().chain_update(pad(0x36)),
            outer: sha2::Sha256::new().chain_update(pad(0x5c)),
        }
    }

    fn hex(&self, data: &[u8]) -> String {
        let inner = self.inner.clone().chain_update(data).finalize();
        let mac = self.outer.clone().chain_update(inner).finalize();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        mac.iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]).collect()
    }
}

/// The HMAC-SHA-256 of `data` under `key`, as 64 lowercase hex digits: what `hash` writes, for tools that need to
/// compute the same value (to look a user up by a hashed email).
pub fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    HmacKey::new(key).hex(data)
}

/// A `[privacy]` table, compiled: paths split, matchers built, the key's blocks hashed.
#[derive(Debug, Clone, Default)]
pub struct Privacy {
    paths: Vec<PathRule>,
    /// The matchers in use, each with what it does (drop before hash: a field both take is dropped).
    matchers: Vec<(Matcher, PrivacyAction)>,
    key: Option<HmacKey>,
    /// Whether some matcher compares normalized key names.
    normalize: bool,
}

impl PartialEq for Privacy {
    /// Two controls are the same when they were compiled from the same rules (keys compare by their hashed blocks).
    fn eq(&self, other: &Privacy) -> bool {
        let names = |p: &Privacy| p.matchers.iter().map(|(m, a)| (m.name.clone(), *a)).collect::<Vec<_>>();
        let key = |p: &Privacy| p.key.as_ref().map(|k| k.hex(b""));
        self.paths == other.paths && names(self) == names(other) && key(self) == key(other)
    }
}

/// The objects privacy controls reach into.
const TOPS: [&str; 3] = ["properties", "traits", "context"];

impl Privacy {
    /// Compiles `config` with the key it refers to (read by the caller), reporting every problem.
    pub fn compile<K>(config: &PrivacyConfig<K>, key: Option<&[u8]>) -> Result<Privacy, Vec<PrivacyProblem>> {
        let mut problems = Vec::new();
        let mut add = |key: String, message: String| problems.push(PrivacyProblem { key, message });
        let mut custom = BTreeMap::new();
        for (name, matcher) in &config.matchers {
            if BUILT_IN.contains(&name.as_str()) {
                add(format!("matchers.{name}"), format!("{name:?} is a built-in matcher; give yours another name"));
            } else if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                add(format!("matchers.{name}"), "a matcher's name is lowercase letters, digits and _".to_owned());
            } else {
                match Matcher::custom(name, matcher) {
                    Ok(matcher) => {
                        custom.insert(name.clone(), matcher);
                    }
                    Err((field, message)) => add(format!("matchers.{name}.{field}"), message),
                }
            }
        }
        let mut privacy = Privacy::default();
        // Drop first, so that a field both lists name is dropped.
        for (list, action) in [(&config.drop, PrivacyAction::Drop), (&config.hash, PrivacyAction::Hash)] {
            for (i, entry) in list.iter().enumerate() {
                let at = format!("{}[{i}]", action.name());
                match entry.strip_prefix("matcher:") {
                    Some(name) => {
                        let matcher = custom.get(name).cloned().or_else(|| Matcher::built_in(name));
                        match matcher {
                            Some(_) if privacy.matchers.iter().any(|(m, _)| &*m.name == name) => {}
                            Some(matcher) => privacy.matchers.push((matcher, action)),
                            None => {
                                let mut known: Vec<&str> = BUILT_IN.to_vec();
                                known.extend(custom.keys().map(String::as_str));
                                add(at, format!("no matcher is named {name:?} (known: {})", known.join(", ")));
                            }
                        }
                    }
                    None => match split_path(entry) {
                        Ok((top, path)) => privacy.paths.push(PathRule { top, path, action }),
                        Err(message) => add(at, message),
                    },
                }
            }
        }
        let hashes = !config.hash.is_empty();
        match key {
            Some(key) if key.len() < MIN_KEY_BYTES => add(
                "privacy_key".to_owned(),
                format!("is {} bytes; use at least {MIN_KEY_BYTES} (openssl rand -hex 32)", key.len()),
            ),
            Some(key) => privacy.key = Some(HmacKey::new(key)),
            None if hashes => add(
                "privacy_key".to_owned(),
                "hash needs a key: privacy_key = { env = \"TRIBUTARY_PRIVACY_KEY\" }".to_owned(),
            ),
            None => {}
        }
        privacy.normalize = privacy.matchers.iter().any(|(m, _)| m.uses_normalized_key());
        match problems.is_empty() {
            true => Ok(privacy),
            false => Err(problems),
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.matchers.is_empty()
    }

    /// Whether the controls may change the object `top` of `message`: always with matchers; with paths only, when
    /// one of their keys may be in it (a byte test, no parse).
    fn reaches(&self, message: &Message, top: &str) -> bool {
        match self.matchers.is_empty() {
            false => message.raw(top).is_some(),
            // The first key of a path, looked up in the members the message keeps.
            true => self.paths.iter().any(|rule| {
                rule.top == top && rule.path.first().is_some_and(|key| message.object_member(top, key).is_some())
            }),
        }
    }

    /// Whether [`Privacy::apply`] may change `message`; when not, a caller need not copy it first.
    pub fn may_change(&self, message: &Message) -> bool {
        !self.is_empty() && TOPS.iter().any(|top| self.reaches(message, top))
    }

    /// Applies the controls to `message`, in place; returns one [`Change`] per field changed.
    pub fn apply(&self, message: &mut Message) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.is_empty() {
            return changes;
        }
        for top in TOPS {
            if !self.reaches(message, top) {
                continue;
            }
            if self.matchers.is_empty() && self.paths.iter().all(|rule| rule.top != top || rule.path.len() == 1) {
                self.apply_members(message, top, &mut changes);
                continue;
            }
            let Some(Value::Object(mut object)) = message.get(top) else { continue };
            let before = changes.len();
            match self.matchers.is_empty() {
                // Only paths: go straight to them.
                true => self.apply_paths(top, &mut object, &mut changes),
                false => self.walk(top, &mut object, &mut Vec::new(), &mut changes),
            }
            if changes.len() > before {
                message.replace_object(top, &Value::Object(object));
            }
        }
        changes
    }

    /// Rules that name members of `top` itself, applied to its text without a tree: each member dropped or its
    /// value replaced by its hash, the others' bytes as they were.
    fn apply_members(&self, message: &mut Message, top: &str, changes: &mut Vec<Change>) {
        let Some(raw) = message.raw(top) else { return };
        let mut made = Vec::new();
        let rebuilt = crate::raw::rebuild(raw.get(), |key, value| {
            let Some(rule) = self.paths.iter().find(|rule| rule.top == top && rule.path[0] == key) else {
                return crate::raw::Edit::Keep;
            };
            let edit = match rule.action {
                PrivacyAction::Drop => crate::raw::Edit::Drop,
                PrivacyAction::Hash => {
                    let mut parsed = crate::raw::parse(value);
                    match self.hash_in_place(&mut parsed) {
                        true => crate::raw::Edit::Replace(parsed.to_string()),
                        false => return crate::raw::Edit::Keep,
                    }
                }
            };
            made.push(Change { matcher: Arc::from("field"), action: rule.action });
            edit
        });
        if let Some(rebuilt) = rebuilt
            && message.replace_object_json(top, rebuilt)
        {
            changes.extend(made);
        }
    }

    fn apply_paths(&self, top: &str, object: &mut Map<String, Value>, changes: &mut Vec<Change>) {
        for rule in self.paths.iter().filter(|rule| rule.top == top) {
            let Some((last, parents)) = rule.path.split_last() else { continue };
            let Some(at) = object_at(object, parents) else { continue };
            let done = match rule.action {
                PrivacyAction::Drop => at.shift_remove(last).is_some(),
                PrivacyAction::Hash => at.get_mut(last).is_some_and(|value| self.hash_in_place(value)),
            };
            if done {
                changes.push(Change { matcher: Arc::from("field"), action: rule.action });
            }
        }
    }

    /// Visits every member of `object` (at `path` under `top`): a path rule that names it acts on it whole; else an
    /// object or list is visited in turn, and a string or number is given to the matchers.
    fn walk(&self, top: &str, object: &mut Map<String, Value>, path: &mut Vec<String>, changes: &mut Vec<Change>) {
        let keys: Vec<String> = object.keys().cloned().collect();
        for key in keys {
            path.push(key.clone());
            let key = key.as_str();
            let rule = self.paths.iter().find(|rule| rule.top == top && rule.path == *path);
            let action = match rule {
                Some(rule) => Some((Arc::<str>::from("field"), rule.action)),
                None => match object.get_mut(key) {
                    Some(Value::Object(inner)) => {
                        self.walk(top, inner, path, changes);
                        None
                    }
                    Some(Value::Array(items)) => {
                        self.walk_list(top, key, items, path, changes);
                        None
                    }
                    Some(value) => self.matched(key, value),
                    None => None,
                },
            };
            if let Some((matcher, action)) = action {
                let done = match action {
                    PrivacyAction::Drop => object.shift_remove(key).is_some(),
                    PrivacyAction::Hash => object.get_mut(key).is_some_and(|value| self.hash_in_place(value)),
                };
                if done {
                    changes.push(Change { matcher, action });
                }
            }
            path.pop();
        }
    }

    /// Visits a list's items: objects and lists in turn, and strings and numbers as members named `key` (the
    /// list's), so that `emails: ["…"]` is matched as `email` would be by value.
    fn walk_list(
        &self,
        top: &str,
        key: &str,
        items: &mut Vec<Value>,
        path: &mut Vec<String>,
        changes: &mut Vec<Change>,
    ) {
        let mut keep = Vec::with_capacity(items.len());
        for item in items.iter_mut() {
            let action = match &mut *item {
                Value::Object(inner) => {
                    self.walk(top, inner, path, changes);
                    None
                }
                Value::Array(inner) => {
                    self.walk_list(top, key, inner, path, changes);
                    None
                }
                value => self.matched(key, value),
            };
            keep.push(true);
            if let Some((matcher, action)) = action {
                match action {
                    PrivacyAction::Drop => *keep.last_mut().expect("just pushed") = false,
                    PrivacyAction::Hash => {
                        self.hash_in_place(item);
                    }
                }
                changes.push(Change { matcher, action });
            }
        }
        if keep.contains(&false) {
            let mut flags = keep.into_iter();
            items.retain(|_| flags.next().unwrap_or(true));
        }
    }

    /// The first matcher (droppers before hashers) that takes a member named `key` holding `value`; only strings
    /// and numbers are matched.
    fn matched(&self, key: &str, value: &Value) -> Option<(Arc<str>, PrivacyAction)> {
        let number;
        let text = match value {
            Value::String(text) => text.as_str(),
            Value::Number(n) => {
                number = n.to_string();
                number.as_str()
            }
            _ => return None,
        };
        let normalized = match self.normalize {
            true => normalize_key(key),
            false => String::new(),
        };
        self.matchers
            .iter()
            .find(|(matcher, _)| matcher.matches(key, &normalized, text))
            .map(|(matcher, action)| (matcher.name.clone(), *action))
    }

    /// Replaces `value` with its HMAC (of a string's UTF-8, or of anything else's compact JSON); `null` is left as
    /// it is, having nothing to hide. Returns whether it changed.
    fn hash_in_place(&self, value: &mut Value) -> bool {
        let Some(key) = &self.key else { return false };
        let hashed = match &*value {
            Value::Null => return false,
            Value::String(text) => key.hex(text.as_bytes()),
            other => key.hex(&serde_json::to_vec(other).expect("a JSON value serializes")),
        };
        *value = Value::String(hashed);
        true
    }
}

/// The object at `path` within `object`, if every step is an object.
fn object_at<'a>(object: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Map<String, Value>> {
    match path.split_first() {
        None => Some(object),
        Some((first, rest)) => match object.get_mut(first) {
            Some(Value::Object(inner)) => object_at(inner, rest),
            _ => None,
        },
    }
}

/// Splits a path of a `hash` or `drop` list into the object it lives in and the path within it.
fn split_path(text: &str) -> Result<(&'static str, Vec<String>), String> {
    let segments = field_path(text).map_err(|why| format!("{text:?}: {why}"))?;
    match segments.split_first() {
        Some((top, rest)) if !rest.is_empty() => match TOPS.iter().find(|t| **t == top) {
            Some(top) => Ok((top, rest.to_vec())),
            None => Err(not_reachable(text)),
        },
        _ => Err(not_reachable(text)),
    }
}

fn not_reachable(text: &str) -> String {
    format!(
        "{text:?} is not a path under properties, traits or context, nor matcher:NAME (userId and anonymousId stay \
         as they are: destinations join on them)"
    )
}
