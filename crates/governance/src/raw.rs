//! Reading into a message's raw JSON without building it: the members of an object found in one pass over its bytes,
//! the values not asked for skipped. Filters, privacy controls and tracking plans each read a few fields of a
//! message; parsing a whole `context` to read its `locale` would cost more than all the rest of ingest.
//!
//! The JSON read here is a message's, which ingest has parsed and checked already: the scan finds where each member
//! starts and ends (strings by their quotes, with `memchr`, objects and lists by their brackets) without checking
//! it again. On anything it does not expect it finds nothing, and never panics.

use std::borrow::Cow;

/// Where the string starting at `at` (its opening quote) ends: the position of its closing quote.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut from = at + 1;
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', bytes.get(from..)?)?;
        match bytes[found] {
            b'\\' => from = found + 2,
            _ => return Some(found),
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// Where the value starting at `at` ends (exclusive).
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => string_end(bytes, at).map(|end| end + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *bytes.get(i)? {
                    b'"' => i = string_end(bytes, i)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let rest = bytes.get(at..)?;
            Some(
                at + rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                    .unwrap_or(rest.len()),
            )
        }
    }
}

/// The members of the object `json` named `keys`, each `None` where it has none; all `None` when `json` is not an
/// object. One pass over its bytes; a key given twice counts last, as when the object is parsed whole.
pub fn members<'a>(json: &'a str, keys: &[&str]) -> Vec<Option<&'a str>> {
    let mut found = vec![None; keys.len()];
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return found;
    }
    at += 1;
    loop {
        at = skip_space(bytes, at);
        if bytes.get(at) != Some(&b'"') {
            return found;
        }
        let Some(key_end) = string_end(bytes, at) else { return found };
        let key_text = &json[at + 1..key_end];
        at = skip_space(bytes, key_end + 1);
        if bytes.get(at) != Some(&b':') {
            return found;
        }
        let start = skip_space(bytes, at + 1);
        let Some(end) = value_end(bytes, start) else { return found };
        let key: Cow<'_, str> = match key_text.contains('\\') {
            false => Cow::Borrowed(key_text),
            true => serde_json::from_str(&json[at_quote(key_text, json)..key_end + 1]).unwrap_or(Cow::Borrowed("")),
        };
        if let Some(position) = keys.iter().position(|k| *k == key) {
            found[position] = Some(&json[start..end]);
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at += 1,
            _ => return found,
        }
    }
}

/// Where the key `key_text` (a slice of `json`) starts with its opening quote.
fn at_quote(key_text: &str, json: &str) -> usize {
    key_text.as_ptr() as usize - json.as_ptr() as usize - 1
}

/// The member `key` of the object `json`, if it has one.
pub fn member<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    members(json, &[key]).pop().flatten()
}

/// The value at `path` below `json`, if there is one.
pub fn at_path<'a>(json: &'a str, path: &[impl AsRef<str>]) -> Option<&'a str> {
    let mut at = json;
    for segment in path {
        at = member(at, segment.as_ref())?;
    }
    Some(at)
}

/// Whether `json` may have the member `key`: `false` only when it surely has not (the key's text, quoted, is
/// nowhere in it, and nothing in it is escaped, so it cannot be spelled otherwise). A test of its bytes, no parse.
pub fn may_have(json: &str, key: &str) -> bool {
    let bytes = json.as_bytes();
    let quoted = |at: usize| at > 0 && bytes[at - 1] == b'"' && bytes.get(at + key.len()) == Some(&b'"');
    memchr::memchr(b'\\', bytes).is_some() || memchr::memmem::find_iter(bytes, key.as_bytes()).any(quoted)
}

/// Parses a value into a tree.
pub fn parse(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_in_one_pass_whatever_surrounds_them() {
        let json = r#" { "a" : [1, {"b": "]}\"{"}], "k\u0065y": "escaped", "n": -1.5e3 , "o": {"x": {"y": true}}, "a": null } "#;
        assert_eq!(
            members(json, &["a", "key", "n", "o", "missing"]),
            [Some("null"), Some("\"escaped\""), Some("-1.5e3"), Some(r#"{"x": {"y": true}}"#), None]
        );
        assert_eq!(at_path(json, &["o", "x", "y"]), Some("true"));
        assert_eq!(at_path(json, &["n", "x"]), None);
        for broken in ["", "[1]", "{", "{\"a\"", "{\"a\":", "{\"a\": \"open", "{\"a\": [1, 2", "\"text\""] {
            assert!(members(broken, &["a"]).iter().all(Option::is_none), "{broken}");
        }
        assert!(may_have(json, "o") && !may_have(r#"{"shipping": 1}"#, "ip") && may_have(r#"{"\u0069p": 1}"#, "ip"));
    }
}
