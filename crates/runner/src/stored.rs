//! How messages are kept in a spool entry: postcard (a compact serde format) of `(messageId, partition key,
//! message JSON)` triples. The keys travel with the message so that delivery never parses it again, and reading
//! an entry back is little more than copying its bytes.

use std::sync::Arc;

use bytes::Bytes;
use sink::Record;

/// Encodes triples of (messageId, partition key, message JSON).
pub fn encode<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let triples: Vec<(&str, &str, &str)> = items
        .into_iter()
        // Messages are serialized from parsed JSON, which is UTF-8.
        .map(|(id, key, message)| (id, key, std::str::from_utf8(message).expect("a message's JSON is UTF-8")))
        .collect();
    postcard::to_stdvec(&triples).expect("encoding strings cannot fail")
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
}
