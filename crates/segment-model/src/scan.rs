//! Reading into a message's raw JSON without building it: the members of an object found in one pass over its bytes,
//! the values not asked for skipped. Filters, privacy controls and tracking plans each read a few fields of a
//! message; parsing a whole `context` to read its `locale` would cost more than all the rest of ingest.
//! [`crate::Message::object_members`] keeps what a scan of `context`, `properties` or `traits` found, so that every
//! reader after the first finds them without scanning again.
//!
//! The JSON read here is a message's, which ingest has parsed and checked already: the scan finds where each member
//! starts and ends (strings by their quotes, with `memchr`, objects and lists by their brackets) without checking
//! it again. On anything it does not expect it finds nothing, and never panics.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is zero. Only the lowest one is sure (a borrow may mark a byte above
/// it), which is the only one read.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// The first byte at or after `from` for which `wanted` (on eight bytes at a time, as a word read little-endian)
/// marks a high bit, or `None`. Eight bytes a step: most of what a scan passes over is text.
fn find_by_word(
    bytes: &[u8],
    mut from: usize,
    wanted: impl Fn(u64) -> u64,
    byte: impl Fn(u8) -> bool,
) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let marks = wanted(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if marks != 0 {
            return Some(from + (marks.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes.get(from..)?.iter().position(|&b| byte(b)).map(|offset| from + offset)
}

/// The next quote or backslash at or after `from`.
fn quote_or_escape(bytes: &[u8], from: usize) -> Option<usize> {
    find_by_word(
        bytes,
        from,
        |word| zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\'))),
        |b| matches!(b, b'"' | b'\\'),
    )
}

/// The next quote or bracket (`{`, `[`, `}`, `]`) at or after `from`. `[` and `{` differ only in the bit `0x20`,
/// as do `]` and `}`: with it set, two comparisons find all four.
fn quote_or_bracket(bytes: &[u8], from: usize) -> Option<usize> {
    let folded = |word: u64| word | (ONES * 0x20);
    find_by_word(
        bytes,
        from,
        |word| {
            zero_bytes(word ^ (ONES * u64::from(b'"')))
                | zero_bytes(folded(word) ^ (ONES * u64::from(b'{')))
                | zero_bytes(folded(word) ^ (ONES * u64::from(b'}')))
        },
        |b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'),
    )
}

/// Where the string starting at `at` (its opening quote) ends: the position of its closing quote.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut from = at + 1;
    loop {
        let found = quote_or_escape(bytes, from)?;
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
                i = quote_or_bracket(bytes, i)?;
                match bytes[i] {
                    b'"' => i = string_end(bytes, i)?,
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
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

/// Calls `visit` with each member of the object `json` (its key unescaped, its value's raw JSON), in order, until
/// `visit` answers `false`. Answers whether `json` is an object read to its end (`false` when `visit` stopped it).
pub fn each_member<'a>(json: &'a str, mut visit: impl FnMut(&str, &'a str) -> bool) -> bool {
    scan_members(json, |_, key, value| visit(key, value))
}

/// As [`each_member`], with each key's text as written between its quotes too (the same as the key unless it has
/// escapes).
pub(crate) fn each_member_raw<'a>(json: &'a str, mut visit: impl FnMut(&'a str, &str, &'a str) -> bool) -> bool {
    scan_members(json, |whole, key, value| {
        let key_text = &whole[1..whole.len() - value.len()];
        let key_text = &key_text[..key_text.rfind('"').unwrap_or(0)];
        visit(key_text, key, value)
    })
}

/// As [`each_member`], with each member's whole text too (from its key's opening quote to the end of its value).
fn scan_members<'a>(json: &'a str, mut visit: impl FnMut(&'a str, &str, &'a str) -> bool) -> bool {
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return true;
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return false;
        }
        let Some(key_end) = string_end(bytes, at) else { return false };
        let key_text = &json[at + 1..key_end];
        let key_at = at;
        at = skip_space(bytes, key_end + 1);
        if bytes.get(at) != Some(&b':') {
            return false;
        }
        let start = skip_space(bytes, at + 1);
        // No value (`"a": }`) is no object: as `each_element` refuses an empty element.
        let Some(end) = value_end(bytes, start).filter(|end| *end > start) else { return false };
        let whole = &json[key_at..end];
        let go_on = match memchr::memchr(b'\\', key_text.as_bytes()) {
            None => visit(whole, key_text, &json[start..end]),
            Some(_) => match serde_json::from_str::<String>(&json[key_at..key_end + 1]) {
                Ok(key) => visit(whole, &key, &json[start..end]),
                Err(_) => return false,
            },
        };
        if !go_on {
            return false;
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return true,
            _ => return false,
        }
    }
}

/// What [`rebuild`] does with one member.
pub enum Edit {
    /// Keeps it as it is.
    Keep,
    /// Leaves it out.
    Drop,
    /// Keeps its key with this value (raw JSON).
    Replace(String),
}

/// The object `json` with each member kept, left out or given a new value as `edit` says (the others' bytes as
/// they were), or `None` when nothing changed or `json` is not an object. One pass, no tree.
pub fn rebuild(json: &str, mut edit: impl FnMut(&str, &str) -> Edit) -> Option<String> {
    let mut out = String::with_capacity(json.len());
    out.push('{');
    let mut changed = false;
    let read = scan_members(json, |whole, key, value| {
        let kept = match edit(key, value) {
            Edit::Keep => Some(None),
            Edit::Drop => None,
            Edit::Replace(new) => Some(Some(new)),
        };
        changed |= !matches!(kept, Some(None));
        if let Some(replacement) = kept {
            if out.len() > 1 {
                out.push(',');
            }
            match replacement {
                None => out.push_str(whole),
                Some(new) => {
                    out.push_str(&whole[..whole.len() - value.len()]);
                    out.push_str(&new);
                }
            }
        }
        true
    });
    out.push('}');
    (read && changed).then_some(out)
}

/// Calls `visit` with each element of the list `json`, in order, until `visit` answers `false`. Answers whether
/// `json` is a list read to its end (`false` when `visit` stopped it).
pub fn each_element<'a>(json: &'a str, mut visit: impl FnMut(&'a str) -> bool) -> bool {
    let bytes = json.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return false;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b']') {
        return true;
    }
    loop {
        let Some(end) = value_end(bytes, at) else { return false };
        if end == at || !visit(&json[at..end]) {
            return false;
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => return true,
            _ => return false,
        }
    }
}

/// The text of the string `json` when it needs no unescaping (no `\\` in it), without copying it.
pub fn plain_str(json: &str) -> Option<&str> {
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', inner.as_bytes()).is_none().then_some(inner)
}

/// The members of the object `json` named `keys`, each `None` where it has none; all `None` when `json` is not an
/// object. One pass over its bytes; a key given twice counts last, as when the object is parsed whole.
pub fn members<'a>(json: &'a str, keys: &[&str]) -> Vec<Option<&'a str>> {
    let mut found = vec![None; keys.len()];
    each_member(json, |key, value| {
        if let Some(position) = keys.iter().position(|k| *k == key) {
            found[position] = Some(value);
        }
        true
    });
    found
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
        for broken in [
            "",
            "[1]",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\": }",
            "{\"a\":,\"b\": 1}",
            "{\"a\": \"open",
            "{\"a\": [1, 2",
            "\"text\"",
        ] {
            assert!(members(broken, &["a"]).iter().all(Option::is_none), "{broken}");
        }
        let rebuilt = rebuild(json, |key, _| match key {
            "a" => Edit::Drop,
            "n" => Edit::Replace("\"x\"".to_owned()),
            _ => Edit::Keep,
        });
        assert_eq!(rebuilt.as_deref(), Some(r#"{"k\u0065y": "escaped","n": "x","o": {"x": {"y": true}}}"#));
        assert_eq!(rebuild(json, |_, _| Edit::Keep), None);
        assert_eq!(rebuild("{}", |_, _| Edit::Drop), None);
        let mut elements = Vec::new();
        assert!(each_element(r#"[ 1, "a,]", {"b": [2]} , null]"#, |e| {
            elements.push(e);
            true
        }));
        assert_eq!(elements, ["1", r#""a,]""#, r#"{"b": [2]}"#, "null"]);
        assert!(each_element("[]", |_| false) && !each_element("[1,", |_| true) && !each_element("{}", |_| true));
        assert_eq!(plain_str(r#""abc""#), Some("abc"));
        assert_eq!(plain_str(r#""a\"b""#), None);
        assert!(may_have(json, "o") && !may_have(r#"{"shipping": 1}"#, "ip") && may_have(r#"{"\u0069p": 1}"#, "ip"));
    }
}
