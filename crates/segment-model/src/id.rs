//! Identifiers that Segment accepts as a string or a number.

use std::fmt;

/// A `userId`, `anonymousId`, `groupId` or `previousId`.
///
/// Segment accepts a number where it documents a string, and keeps it as sent; the number is only turned into
/// text where a string is needed (a partition key), using its JSON spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    /// A non-empty string.
    Str(&'a str),
    /// A JSON number.
    Number(&'a serde_json::Number),
}

impl Id<'_> {
    /// The identifier as text: the string itself, or the number's JSON spelling.
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Id::Str(s) => std::borrow::Cow::Borrowed(s),
            Id::Number(n) => std::borrow::Cow::Owned(n.to_string()),
        }
    }
}

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Str(s) => f.write_str(s),
            Id::Number(n) => write!(f, "{n}"),
        }
    }
}
