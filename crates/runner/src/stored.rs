//! How messages are kept in a spool entry: postcard (a compact serde format) of `(messageId, partition key,
//! message JSON)` triples. The keys travel with the message so that delivery never parses it again, and reading
//! an entry back is little more than copying its bytes.

use std::sync::Arc;

use bytes::Bytes;
use sink::Record;

/// Encodes triples of (messageId, partition key, message JSON), as postcard encodes a `Vec<(&str, &str, &str)>`.
///
/// Written out rather than through serde, which grows the buffer as it goes and checks each message's UTF-8
/// again: the entry is sized once and copied into. `decode` reads it back through postcard, which checks it.
pub fn encode<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let items: Vec<(&str, &str, &[u8])> = items.into_iter().collect();
    const VARINT_MAX: usize = 10;
    let size = VARINT_MAX
        + items.iter().map(|(id, key, message)| 3 * VARINT_MAX + id.len() + key.len() + message.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    varint(&mut out, items.len());
    for (id, key, message) in items {
        for field in [id.as_bytes(), key.as_bytes(), message] {
            varint(&mut out, field.len());
            out.extend_from_slice(field);
        }
    }
    out
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
pub fn decode(source_id: &str, items: &Bytes) -> Result<Vec<Record>, postcard::Error> {
    let triples = triples(items)?;
    let source: Arc<str> = Arc::from(source_id);
    Ok(triples
        .into_iter()
        .map(|(id, key, message)| {
            Record::from_stored(source.clone(), id.to_owned(), key.to_owned(), items.slice_ref(message.as_bytes()))
        })
        .collect())
}

/// The (messageId, partition key, message JSON) triples of an entry, borrowed from it.
pub fn triples(items: &[u8]) -> Result<Vec<(&str, &str, &str)>, postcard::Error> {
    postcard::from_bytes(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let items = encode([("m1", "user \"1\"", br#"{"a":1}"#.as_slice()), ("m2", "ü", br#"{"b":[2]}"#.as_slice())]);
        let records = decode("src", &Bytes::from(items)).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].message_id(), records[0].partition_key(false)), ("m1", "user \"1\""));
        assert_eq!(records[1].payload().as_ref(), br#"{"b":[2]}"#);
        assert_eq!(records[1].source_id(), "src");
        assert!(decode("src", &Bytes::from_static(b"\x05garbage")).is_err());
    }

    #[test]
    fn encodes_as_postcard_does() {
        let long = "x".repeat(20_000);
        let triples = vec![("m1", "k", "{}"), ("", "ü", long.as_str()), ("m3", &long[..127], &long[..128])];
        let ours = encode(triples.iter().map(|(id, key, message)| (*id, *key, message.as_bytes())));
        assert_eq!(ours, postcard::to_stdvec(&triples).unwrap());
        assert_eq!(encode([]), postcard::to_stdvec::<Vec<(&str, &str, &str)>>(&vec![]).unwrap());
    }
}
