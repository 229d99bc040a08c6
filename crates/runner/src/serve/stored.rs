//! How messages are kept in a spool entry: a format mark, then postcard (a compact serde format) of `(messageId,
//! user key, message JSON)` triples. The keys travel with the message so that delivery never parses it again, and
//! reading an entry back is little more than copying its bytes.
//!
//! The mark is a zero byte and the format's version. Entries of the first layout had no mark; they start with the
//! postcard count of their messages, which is never zero, so both read back.

use std::sync::Arc;

use bytes::Bytes;
use sink::Record;

/// Encodes triples of (messageId, user key, message JSON): the mark, then what postcard makes of a
/// `Vec<(&str, &str, &str)>`.
///
/// Written out rather than through serde, which grows the buffer as it goes and checks each message's UTF-8
/// again: the entry is sized once and copied into. `decode` reads it back through postcard, which checks it.
pub fn encode<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let items: Vec<(&str, &str, &[u8])> = items.into_iter().collect();
    const VARINT_MAX: usize = 10;
    let size = MARK.len()
        + VARINT_MAX
        + items.iter().map(|(id, key, message)| 3 * VARINT_MAX + id.len() + key.len() + message.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&MARK);
    varint(&mut out, items.len());
    for (id, key, message) in items {
        for field in [id.as_bytes(), key.as_bytes(), message] {
            varint(&mut out, field.len());
            out.extend_from_slice(field);
        }
    }
    out
}

/// The version of the entry format this build writes and reads.
pub const FORMAT: u8 = 1;

/// What an entry of this format starts with.
const MARK: [u8; 2] = [0, FORMAT];

/// Why a stored entry cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// A newer Tributary wrote it.
    #[error("the entry was written in format {0} by a newer Tributary, and this one reads format {FORMAT}")]
    Newer(u8),
    /// Its bytes are not an entry.
    #[error("the entry is damaged: {0}")]
    Damaged(#[from] postcard::Error),
}

/// Postcard's unsigned varint: seven bits a byte, low bits first, the high bit set on every byte but the last.
fn varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes an entry into records from `source_id`; each record's payload is a slice of `items`, not a copy.
pub fn decode(source_id: &str, items: &Bytes) -> Result<Vec<Record>, StoredError> {
    let triples = triples(items)?;
    let source: Arc<str> = Arc::from(source_id);
    Ok(triples
        .into_iter()
        .map(|(id, key, message)| {
            Record::from_stored(source.clone(), id.to_owned(), key.to_owned(), items.slice_ref(message.as_bytes()))
        })
        .collect())
}

/// The (messageId, user key, message JSON) triples of an entry, borrowed from it.
pub fn triples(items: &[u8]) -> Result<Vec<(&str, &str, &str)>, StoredError> {
    let body = match items {
        [0, FORMAT, body @ ..] => body,
        [0, newer, ..] => return Err(StoredError::Newer(*newer)),
        // The first layout, without a mark.
        body => body,
    };
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let items = encode([("m1", "user \"1\"", br#"{"a":1}"#.as_slice()), ("m2", "ü", br#"{"b":[2]}"#.as_slice())]);
        let records = decode("src", &Bytes::from(items)).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].message_id(), records[0].user_key()), ("m1", "user \"1\""));
        assert_eq!(records[1].payload().as_ref(), br#"{"b":[2]}"#);
        assert_eq!(records[1].source_id(), "src");
        assert!(decode("src", &Bytes::from_static(b"\x05garbage")).is_err());
    }

    #[test]
    fn encodes_as_postcard_does() {
        let long = "x".repeat(20_000);
        let triples = vec![("m1", "k", "{}"), ("", "ü", long.as_str()), ("m3", &long[..127], &long[..128])];
        let ours = encode(triples.iter().map(|(id, key, message)| (*id, *key, message.as_bytes())));
        assert_eq!(ours[..2], [0, FORMAT]);
        assert_eq!(ours[2..], postcard::to_stdvec(&triples).unwrap());
        assert_eq!(encode([])[2..], postcard::to_stdvec::<Vec<(&str, &str, &str)>>(&vec![]).unwrap());
    }

    #[test]
    fn entries_of_the_first_layout_read_and_newer_ones_are_named() {
        let triples = vec![("m1", "k", "{}")];
        let first_layout = Bytes::from(postcard::to_stdvec(&triples).unwrap());
        assert_eq!(decode("src", &first_layout).unwrap()[0].message_id(), "m1");
        let newer = Bytes::from([&[0, FORMAT + 1][..], &first_layout[..]].concat());
        let error = decode("src", &newer).unwrap_err().to_string();
        assert!(error.contains("format 2 by a newer Tributary"), "{error}");
    }
}
