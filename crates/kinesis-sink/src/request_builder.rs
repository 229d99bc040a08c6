//! Encoding records as Kinesis entries: the partition key and explicit hash key, the data, and the record size
//! limit. Cutting entries into requests is `requests.rs`'s.

use base64::Engine as _;
use bytes::Bytes;
use sink::Record;

use crate::config::DataEncoding;
use crate::entry::RequestEntry;
use crate::partition::Partitioning;

/// Kinesis accepts partition keys of 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Turns records into entries under one destination's settings.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    /// How records are keyed.
    pub partitioning: Partitioning,
    /// What the data holds.
    pub data_encoding: DataEncoding,
    /// The stream's record size limit (data plus key).
    pub max_record_bytes: usize,
}

impl RequestBuilder {
    /// The partition key of a record: as Segment's Kinesis destination makes it, `userId || anonymousId`, or its
    /// `messageId` with `use_message_id`; or the first value of the `partition_key` paths (see
    /// [`Partitioning::key`]). A record without a `messageId` (not yet enriched) falls back to its identity. Cut to
    /// [`MAX_PARTITION_KEY_CHARS`] characters, and never empty, since Kinesis refuses a whole request over one empty
    /// key.
    pub fn partition_key<'r>(&self, record: &'r Record) -> std::borrow::Cow<'r, str> {
        let mut key = self.partitioning.key(record);
        if key.is_empty() {
            key = std::borrow::Cow::Borrowed(record.user_key());
        }
        if key.is_empty() {
            // Unreachable for a validated message; a fixed key keeps Kinesis from refusing the whole batch.
            key = std::borrow::Cow::Borrowed("anonymous");
        }
        match key.char_indices().nth(MAX_PARTITION_KEY_CHARS) {
            None => key,
            Some((cut, _)) => std::borrow::Cow::Owned(key[..cut].to_owned()),
        }
    }

    /// The entry for one record, or the reason it can never be sent.
    pub fn encode(&self, record: &Record) -> Result<RequestEntry, String> {
        let partition_key = self.partition_key(record).into_owned();
        let explicit_hash_key = self.partitioning.explicit_hash_key(record);
        let data = match self.data_encoding {
            // Cloning `Bytes` shares the record's buffer; nothing is copied.
            DataEncoding::Json => record.payload().clone(),
            DataEncoding::Base64 => Bytes::from(base64::engine::general_purpose::STANDARD.encode(record.payload())),
        };
        let entry = RequestEntry { partition_key, explicit_hash_key, data };
        let size = entry.size();
        if size > self.max_record_bytes {
            return Err(format!(
                "record of message {} is {size} bytes with its partition key, more than the stream's {}-byte record limit",
                record.message_id(),
                self.max_record_bytes
            ));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> RequestBuilder {
        RequestBuilder {
            partitioning: Partitioning::default(),
            data_encoding: DataEncoding::Json,
            max_record_bytes: 1 << 20,
        }
    }

    fn record(message_id: &str, user_key: &str) -> Record {
        Record::from_stored("src".into(), message_id.into(), user_key.into(), Bytes::from_static(b"{}"))
    }

    #[test]
    fn partition_keys() {
        let by_user = builder();
        let message_id = Partitioning { key: crate::partition::KeySource::MessageId, ..Partitioning::default() };
        let by_id = RequestBuilder { partitioning: message_id, ..by_user.clone() };
        assert_eq!(by_user.partition_key(&record("m-1", "user_1")), "user_1");
        assert_eq!(by_id.partition_key(&record("m-1", "user_1")), "m-1");
        // Not enriched: no messageId, so the identity stands in rather than an empty key.
        assert_eq!(by_id.partition_key(&record("", "u")), "u");
        assert_eq!(by_user.partition_key(&record("m-1", "")), "anonymous");
        // Cut to 256 characters, not bytes, on a character boundary.
        let (long, wide) = ("k".repeat(300), "ü".repeat(300));
        assert_eq!(by_user.partition_key(&record("", &long)), "k".repeat(256));
        assert_eq!(by_user.partition_key(&record("", &wide)), "ü".repeat(256));
        let exact = "z".repeat(256);
        assert_eq!(by_user.partition_key(&record("", &exact)), exact);
    }

    #[test]
    fn partition_key_paths_fall_back_to_the_message_id_and_count_it() {
        let paths = crate::partition::KeySource::Paths(vec![crate::partition::split("properties.account_id")]);
        let keyed = RequestBuilder {
            partitioning: Partitioning {
                key: paths,
                explicit_hash_key: Some(crate::partition::split("properties.hash")),
                ..Partitioning::default()
            },
            ..builder()
        };
        let with = |body: &'static str| {
            Record::from_stored("src".into(), "m-1".into(), "u".into(), Bytes::from_static(body.as_bytes()))
        };
        let entry = keyed.encode(&with(r#"{"properties":{"account_id":"acme","hash":"007"}}"#)).unwrap();
        assert_eq!((entry.partition_key.as_str(), entry.explicit_hash_key.as_deref()), ("acme", Some("7")));
        let entry =
            keyed.encode(&with(r#"{"properties":{"hash":"340282366920938463463374607431768211456"}}"#)).unwrap();
        assert_eq!((entry.partition_key.as_str(), entry.explicit_hash_key), ("m-1", None));
        let counts = &keyed.partitioning.counts;
        assert_eq!(counts.fallbacks.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(counts.hash_keys_ignored.load(std::sync::atomic::Ordering::Relaxed), 1, "2^128 is one too many");
    }
}
