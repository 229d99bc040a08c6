//! The raw-object codec: a JSON object read as its top-level keys with each value's raw JSON, and written back
//! byte for byte; and the one table of JSON type names that error messages use.
//!
//! Every step here is linear in its input, whatever its shape: repeated keys are found through a hash table once an
//! object has more than a few keys, and nesting is bounded before anything is parsed into a tree.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ParseError;

/// An object's top-level fields: keys with their raw values, in the client's order.
pub(crate) type Fields = Vec<(Key, Box<RawValue>)>;

/// A field's key: the names of Segment's spec borrowed (see [`key_if_known`]), any other name owned. A message holds
/// a dozen keys, nearly all of them Segment's, so this saves that many allocations per message.
pub(crate) type Key = std::borrow::Cow<'static, str>;

/// `name` as a [`Key`]: borrowed when it is one of Segment's ([`key_if_known`]).
pub(crate) fn key(name: &str) -> Key {
    match key_if_known(name) {
        Some(known) => Key::Borrowed(known),
        None => Key::Owned(name.to_owned()),
    }
}

/// Reads a key as a [`Key`] without allocating for a known one.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(key(name))
    }

    fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Key, E> {
        Ok(match key_if_known(&name) {
            Some(known) => Key::Borrowed(known),
            None => Key::Owned(name),
        })
    }
}

/// The static copy of `name` when it is a key of Segment's spec (top level or `context`). A `match`, which compiles
/// to a comparison of lengths and then bytes, so an unknown key costs about what a known one does.
fn key_if_known(name: &str) -> Option<&'static str> {
    Some(match name {
        "type" => "type",
        "userId" => "userId",
        "anonymousId" => "anonymousId",
        "event" => "event",
        "properties" => "properties",
        "context" => "context",
        "timestamp" => "timestamp",
        "messageId" => "messageId",
        "sentAt" => "sentAt",
        "receivedAt" => "receivedAt",
        "originalTimestamp" => "originalTimestamp",
        "integrations" => "integrations",
        "traits" => "traits",
        "name" => "name",
        "category" => "category",
        "groupId" => "groupId",
        "previousId" => "previousId",
        "_metadata" => "_metadata",
        "writeKey" => "writeKey",
        "version" => "version",
        "channel" => "channel",
        "library" => "library",
        "ip" => "ip",
        "userAgent" => "userAgent",
        "page" => "page",
        "locale" => "locale",
        "app" => "app",
        "device" => "device",
        "os" => "os",
        "screen" => "screen",
        "timezone" => "timezone",
        "campaign" => "campaign",
        "network" => "network",
        "direct" => "direct",
        _ => return None,
    })
}

/// How deep arrays and objects may nest in a message or a batch body.
///
/// serde_json refuses to build a tree of 128 levels or more, and its raw values do not check depth at all, so a
/// deeper body would be accepted as raw JSON and then fail wherever a field is parsed. Bounding the body up front
/// keeps every later parse of a field infallible.
pub const MAX_DEPTH: usize = 127;

/// Up to this many keys, a repeated key is found by scanning; past it, by a hash table.
const SCAN_KEYS: usize = 16;

/// The top-level keys of a JSON object with their raw values; a repeated key keeps its last value, as a parse into
/// a map would.
pub(crate) struct RawFields(pub(crate) Fields);

impl<'de> serde::Deserialize<'de> for RawFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawFields, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawFields, A::Error> {
                collect_fields(map).map(RawFields)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Reads an object's top-level fields with their raw values; a repeated key keeps its last value, in the place of
/// its first appearance.
///
/// Linear in the number of keys: a small object is scanned, a large one indexed by a hash table whose keys are
/// hashed with a per-process random seed, so a client cannot choose keys that collide.
pub(crate) fn collect_fields<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Fields, A::Error> {
    let mut fields: Fields = Vec::with_capacity(SCAN_KEYS);
    let mut index: Option<HashMap<Key, usize>> = None;
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let value: Box<RawValue> = map.next_value()?;
        let seen = match &index {
            Some(index) => index.get(&key).copied(),
            None => fields.iter().position(|(k, _)| *k == key),
        };
        match seen {
            Some(at) => fields[at].1 = value,
            None => {
                if let Some(index) = &mut index {
                    index.insert(key.clone(), fields.len());
                }
                fields.push((key, value));
                if index.is_none() && fields.len() > SCAN_KEYS {
                    index = Some(fields.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
                }
            }
        }
    }
    Ok(fields)
}

/// Checks that `bytes` hold a JSON object, by its first token; otherwise says what they are (or why they are not
/// JSON at all).
pub(crate) fn expect_object(bytes: &[u8]) -> Result<(), ParseError> {
    match bytes.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        Some(b'{') => Ok(()),
        // Only a value that is not an object gets here; it is parsed for the error message, depth-checked first so
        // that the parse cannot fail on nesting alone.
        _ => {
            prescan(bytes)?;
            Err(match serde_json::from_slice::<Value>(bytes) {
                Ok(other) => ParseError::NotAnObject(json_type(&other)),
                Err(e) => ParseError::from_json(&e),
            })
        }
    }
}

/// Checks, in one pass that skips string contents with `memchr`, what serde_json's tree parser would refuse but its
/// raw values let through: arrays and objects nested deeper than [`MAX_DEPTH`] levels, and numbers too large for
/// an `f64` (`1e999`). Every raw value that passes parses into a tree later, so no field can fail where it is used.
/// Malformed JSON is left for the parser to report.
pub(crate) fn prescan(bytes: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                // Skip to the closing quote, stepping over each escape and the character it escapes.
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                        Some(found) if bytes[at + found] == b'\\' => {
                            at += found;
                            at = (at + escape_length(bytes, at)?).min(bytes.len());
                        }
                        Some(found) => {
                            at += found + 1;
                            break;
                        }
                        None => return Ok(()),
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::TooDeep { max: MAX_DEPTH });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = at
                    + bytes[at..]
                        .iter()
                        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .unwrap_or(bytes.len() - at);
                check_number(bytes, at, end)?;
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The length of the escape at `bytes[at]` (a backslash). A `\\u` escape of a UTF-16 surrogate must be half of a
/// pair, as serde_json's tree parser requires (its raw values do not check); any other malformed escape is the
/// parser's to report.
fn escape_length(bytes: &[u8], at: usize) -> Result<usize, ParseError> {
    let unit = |from: usize| -> Option<u16> {
        let hex = bytes.get(from..from + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    match unit(at) {
        Some(0xD800..=0xDBFF) => match unit(at + 6) {
            Some(0xDC00..=0xDFFF) => Ok(12),
            _ => Err(invalid_at(bytes, at, "lone leading surrogate in hex escape")),
        },
        Some(0xDC00..=0xDFFF) => Err(invalid_at(bytes, at, "lone trailing surrogate in hex escape")),
        Some(_) => Ok(6),
        None => Ok(2),
    }
}

/// An [`ParseError::InvalidJson`] at byte `at`, with its line and column as serde_json counts them.
fn invalid_at(bytes: &[u8], at: usize, message: &str) -> ParseError {
    let line = 1 + memchr::memchr_iter(b'\n', &bytes[..at]).count();
    let column = at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |newline| newline + 1) + 1;
    ParseError::InvalidJson { line, column, message: message.to_owned() }
}

/// Refuses a number literal whose value is beyond an `f64`, as serde_json does when it parses one. Short integers
/// are taken without parsing; anything else is parsed once, in time linear in its length.
fn check_number(bytes: &[u8], start: usize, end: usize) -> Result<(), ParseError> {
    let token = &bytes[start..end];
    if token.len() <= 20 && !token.iter().any(|b| matches!(b, b'e' | b'E')) {
        return Ok(());
    }
    // The token holds only ASCII, and a malformed one is the parser's to report.
    let text = std::str::from_utf8(token).unwrap_or_default();
    match text.parse::<f64>() {
        Ok(value) if value.is_infinite() => Err(invalid_at(bytes, start, "number out of range")),
        _ => Ok(()),
    }
}

/// Checks a body before it is parsed: a JSON object (by its first token), UTF-8 throughout (so that nothing in it,
/// even a field that is skipped, is invalid), and within [`prescan`]'s bounds. Validating UTF-8 once here lets the
/// parser read a `str`, which does not validate each raw value again.
pub(crate) fn checked_text(bytes: &[u8]) -> Result<&str, ParseError> {
    expect_object(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|e| invalid_at(bytes, e.valid_up_to(), "invalid UTF-8"))?;
    prescan(bytes)?;
    Ok(text)
}

/// Parses the top level of a JSON object; anything else is [`ParseError::NotAnObject`].
pub(crate) fn parse_fields(bytes: &[u8]) -> Result<Fields, ParseError> {
    let text = checked_text(bytes)?;
    serde_json::from_str::<RawFields>(text).map(|f| f.0).map_err(|e| ParseError::from_json(&e))
}

/// The index of `name` among `fields`.
pub(crate) fn position(fields: &[(Key, Box<RawValue>)], name: &str) -> Option<usize> {
    fields.iter().position(|(k, _)| k == name)
}

/// Writes `fields` as one compact JSON object.
pub(crate) fn write_object(fields: &[(Key, Box<RawValue>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(object_size(fields));
    append_object(fields, &mut out);
    out
}

/// Appends `fields` to `out` as one compact JSON object.
pub(crate) fn append_object(fields: &[(Key, Box<RawValue>)], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a string to a Vec cannot fail.
        serde_json::to_writer(&mut *out, key).expect("a string serializes");
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
}

/// The size of `fields` as compact JSON, give or take the escapes in keys: braces, and per field its quoted key, a
/// colon, the value and a comma.
pub(crate) fn object_size(fields: &[(Key, Box<RawValue>)]) -> usize {
    2 + fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>()
}

/// A JSON value as raw JSON.
pub(crate) fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value always serializes")
}

/// A JSON string as raw JSON.
pub(crate) fn raw_string(text: &str) -> Box<RawValue> {
    // Serializing a string cannot fail, and its JSON is valid raw JSON.
    RawValue::from_string(serde_json::to_string(text).expect("a string serializes")).expect("a string is valid JSON")
}

/// Parses a raw value of a message. Every raw value was depth-checked or built from a tree, so this cannot fail.
pub(crate) fn parse(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).expect("raw values are valid JSON within serde_json's depth")
}

/// The JSON types, by the names error messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    /// The type of a parsed value.
    pub(crate) fn of(value: &Value) -> JsonType {
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// The type of a raw value, from its first byte.
    pub(crate) fn of_raw(raw: &RawValue) -> JsonType {
        match raw.get().as_bytes().first() {
            Some(b'{') => JsonType::Object,
            Some(b'[') => JsonType::Array,
            Some(b'"') => JsonType::String,
            Some(b't' | b'f') => JsonType::Boolean,
            Some(b'n') => JsonType::Null,
            _ => JsonType::Number,
        }
    }

    /// The name error messages use: "an object", "a string", "null".
    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    JsonType::of(value).name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, refused: bool) {
        assert_eq!(prescan(json.as_bytes()).is_err(), refused, "{json}");
        // Whatever passes, serde_json parses.
        if !refused {
            assert!(
                serde_json::from_str::<Value>(json).is_ok()
                    || serde_json::from_str::<Value>(json).unwrap_err().to_string().contains("EOF"),
                "{json}"
            );
        }
    }

    #[test]
    fn depth_and_numbers() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check(&nested(MAX_DEPTH), false);
        check(&nested(MAX_DEPTH + 1), true);
        // Brackets inside strings, escaped quotes and escaped backslashes do not count.
        check(&format!(r#"{{"a":"{}"}}"#, "[".repeat(500)), false);
        check(&format!(r#"{{"a":"\"{}"}}"#, "[".repeat(500)), false);
        check(&format!(r#"{{"a":"\\","b":{}}}"#, nested(MAX_DEPTH)), true);
        check(&format!(r#"{{"a":"\\\"{}"}}"#, "{".repeat(500)), false);
        // An unterminated string ends the scan; the parser reports it.
        check(r#"{"a":"[[["#, false);
        // Numbers beyond an f64 are refused, with their position; large and tiny ones that fit are not.
        check("[1e308, 12345678901234567890123, -1.5e-999, 0.000000000000000000000001]", false);
        check("[1e309]", true);
        // Lone surrogates, which serde_json's tree parser refuses and its raw values let through.
        check(r#"["\ud83d\ude00", "\\ud83d", "\u00e9"]"#, false);
        check(r#"["\ud83d"]"#, true);
        check(r#"["\ud83dx"]"#, true);
        check(r#"["\ude00"]"#, true);
        check(r#"["\ud83d\u0041"]"#, true);
        // An escape at the very end.
        check(r#"["\"#, false);
        check(&format!("[{}]", "9".repeat(400)), true);
        check(&format!("[-{}.5]", "9".repeat(300)), false);
        assert_eq!(
            prescan(b"{\"a\":\n 1e999}").unwrap_err().to_string(),
            "invalid JSON at line 2, column 2: number out of range"
        );
        // Serde_json parses what passes.
        let ok = format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH - 1));
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
    }

    #[test]
    fn repeated_keys_keep_the_last_value_in_the_first_place() {
        for keys in [3, SCAN_KEYS, SCAN_KEYS + 1, 200] {
            let mut json = String::from("{");
            for i in 0..keys {
                json.push_str(&format!(r#""k{i}":{i},"#));
            }
            json.push_str(r#""k0":"last","k1":"again"}"#);
            let fields = parse_fields(json.as_bytes()).unwrap();
            assert_eq!(fields.len(), keys.max(2), "{keys} keys");
            assert_eq!((&*fields[0].0, fields[0].1.get()), ("k0", r#""last""#));
            assert_eq!(fields[1].1.get(), r#""again""#);
        }
    }
}
