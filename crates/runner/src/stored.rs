//! How messages are kept in a spool entry: a JSON array of `[messageId, partition key, message]` triples, the
//! message embedded as raw JSON. The keys travel with the message so that delivery never parses it again.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use sink::Record;

/// Encodes triples of (messageId, partition key, message JSON).
pub fn encode<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    for (i, (id, key, message)) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        // Writing a string to a Vec cannot fail.
        serde_json::to_writer(&mut out, id).expect("a string serializes");
        out.push(b',');
        serde_json::to_writer(&mut out, key).expect("a string serializes");
        out.push(b',');
        out.extend_from_slice(message);
        out.push(b']');
    }
    out.push(b']');
    out
}

/// Decodes an entry into records from `source_id`.
pub fn decode(source_id: &str, items: &[u8]) -> serde_json::Result<Vec<Record>> {
    let triples: Vec<(String, String, &RawValue)> = serde_json::from_slice(items)?;
    let source: Arc<str> = Arc::from(source_id);
    Ok(triples
        .into_iter()
        .map(|(id, key, message)| Record::from_stored(source.clone(), id, key, Bytes::copy_from_slice(message.get().as_bytes())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let items = encode([("m1", "user \"1\"", br#"{"a":1}"#.as_slice()), ("m2", "ü", br#"{"b":[2]}"#.as_slice())]);
        assert_eq!(String::from_utf8(items.clone()).unwrap(), r#"[["m1","user \"1\"",{"a":1}],["m2","ü",{"b":[2]}]]"#);
        let records = decode("src", &items).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].message_id(), records[0].partition_key(false)), ("m1", "user \"1\""));
        assert_eq!(records[1].payload().as_ref(), br#"{"b":[2]}"#);
        assert_eq!(records[1].source_id(), "src");
        assert!(decode("src", b"[[1]]").is_err());
    }
}
