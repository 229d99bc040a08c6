//! The members of a message's free-form objects (`context`, `properties`, `traits`), found by one scan of the
//! object's text and kept with the message: its tracking plan, its privacy controls and every destination's filters
//! read them, and each after the first finds them without scanning again.

use std::ops::Range;
use std::sync::OnceLock;

use crate::Message;

/// The objects whose members a message keeps once read.
const OBJECTS: [&str; 3] = ["context", "properties", "traits"];

/// One member: its key (a span of the object's text, or unescaped when the client escaped it) and its value's span.
#[derive(Debug, Clone)]
enum Key {
    At(Range<u32>),
    Unescaped(Box<str>),
}

/// The members of one object, in order; `None` when the field is not an object read to its end.
type Members = Option<Vec<(Key, Range<u32>)>>;

/// What a message keeps of its objects' members, each read at its first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectMembers([OnceLock<Members>; 3]);

impl ObjectMembers {
    /// Forgets what was read of `field`, whose value is being replaced.
    pub(crate) fn forget(&mut self, field: &str) {
        if let Some(at) = OBJECTS.iter().position(|o| *o == field) {
            self.0[at] = OnceLock::new();
        }
    }
}

/// Scans the object `json`.
fn read(json: &str) -> Members {
    // Spans are kept as u32: a message is far below 4 GiB (ingest refuses anything over a few hundred KiB).
    let offset = |part: &str| (part.as_ptr() as usize - json.as_ptr() as usize) as u32;
    let mut members = Vec::new();
    let read = crate::scan::each_member_raw(json, |key_text, key, value| {
        let key = match key_text == key {
            true => Key::At(offset(key_text)..offset(key_text) + key_text.len() as u32),
            false => Key::Unescaped(key.into()),
        };
        let start = offset(value);
        members.push((key, start..start + value.len() as u32));
        true
    });
    read.then_some(members)
}

/// The members of one of a message's objects, as [`Message::object_members`] lends them.
#[derive(Debug, Clone)]
pub struct ObjectMembersIter<'m> {
    json: &'m str,
    members: std::slice::Iter<'m, (Key, Range<u32>)>,
}

impl<'m> Iterator for ObjectMembersIter<'m> {
    type Item = (&'m str, &'m str);

    fn next(&mut self) -> Option<(&'m str, &'m str)> {
        let (key, value) = self.members.next()?;
        Some((key_of(self.json, key), &self.json[value.start as usize..value.end as usize]))
    }
}

impl DoubleEndedIterator for ObjectMembersIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (key, value) = self.members.next_back()?;
        Some((key_of(self.json, key), &self.json[value.start as usize..value.end as usize]))
    }
}

fn key_of<'m>(json: &'m str, key: &'m Key) -> &'m str {
    match key {
        Key::At(span) => &json[span.start as usize..span.end as usize],
        Key::Unescaped(key) => key,
    }
}

impl Message {
    /// What was read of the object `field`, reading it first if need be; `None` for a field that is not one of
    /// [`OBJECTS`].
    fn members_of(&self, field: &str) -> Option<(&str, &Members)> {
        let at = OBJECTS.iter().position(|o| *o == field)?;
        let json = self.raw(field)?.get();
        Some((json, self.members.0[at].get_or_init(|| read(json))))
    }

    /// The members of `context`, `properties` or `traits` (keys unescaped, values as raw JSON), in the client's
    /// order, scanned once and kept until the field changes; `None` when the message has no such object, and for any
    /// other field (read those with [`crate::scan`]).
    pub fn object_members(&self, field: &str) -> Option<ObjectMembersIter<'_>> {
        let (json, members) = self.members_of(field)?;
        Some(ObjectMembersIter { json, members: members.as_ref()?.iter() })
    }

    /// The member `key` of the object `field` (the last, when the client sent it twice, as a parser takes it): for
    /// `context`, `properties` and `traits` from what [`Message::object_members`] keeps, for another field by a scan.
    pub fn object_member(&self, field: &str, key: &str) -> Option<&str> {
        let Some((json, members)) = self.members_of(field) else {
            return crate::scan::member(self.raw(field)?.get(), key);
        };
        // Bytes compared, lengths first: most keys differ in length, and no slice of the text is checked for UTF-8.
        let is_key = |k: &Key| match k {
            Key::At(span) => {
                span.len() == key.len() && json.as_bytes()[span.start as usize..span.end as usize] == *key.as_bytes()
            }
            Key::Unescaped(k) => **k == *key,
        };
        let found = members.as_ref()?.iter().rev().find(|(k, _)| is_key(k))?;
        Some(&json[found.1.start as usize..found.1.end as usize])
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn members_are_read_once_and_forgotten_when_the_object_changes() {
        let json = r#"{"type": "track", "event": "E", "userId": "u",
            "properties": {"a": 1, "k\u0065y": "escaped", "a": {"b": [2]}},
            "integrations": {"All": false}}"#;
        let mut message = Message::from_slice(json.as_bytes()).unwrap();
        let members: Vec<(&str, &str)> = message.object_members("properties").unwrap().collect();
        assert_eq!(members, [("a", "1"), ("key", "\"escaped\""), ("a", r#"{"b": [2]}"#)]);
        // The last of a member sent twice, as a parser takes it; an escaped key by its text.
        assert_eq!(message.object_member("properties", "a"), Some(r#"{"b": [2]}"#));
        assert_eq!(message.object_member("properties", "key"), Some("\"escaped\""));
        assert_eq!(message.object_member("properties", "k\\u0065y"), None);
        // Another field is scanned each time; a missing or non-object field has none.
        assert_eq!(message.object_member("integrations", "All"), Some("false"));
        assert!(message.object_members("integrations").is_none() && message.object_members("traits").is_none());
        assert!(message.replace_object_json("properties", r#"{"c": true}"#.to_owned()));
        assert_eq!(message.object_member("properties", "a"), None);
        assert_eq!(message.object_member("properties", "c"), Some("true"));
        assert!(!message.replace_object_json("userId", "{}".to_owned()));
        assert!(!message.replace_object_json("properties", "[1]".to_owned()));
    }
}
