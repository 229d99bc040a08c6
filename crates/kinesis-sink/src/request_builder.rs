//! Encoding records as Kinesis entries (data, partition key, size), and the caps that cut them into PutRecords
//! requests, which the sink's batcher applies.

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
    /// The most entries per request.
    pub max_batch_records: usize,
    /// The most bytes (data plus keys) per request.
    pub max_batch_bytes: usize,
    /// Whether records are packed into KPL aggregated records: then a batch gathers records up to the byte cap,
    /// since many of them make one entry.
    pub aggregate: bool,
}

/// With aggregation, how many times `max_batch_records` user records one batch gathers before it goes: enough that
/// a stream of up to 40 shards gets 50 or more records per aggregate from a full batch, few enough that a busy
/// sender fills batches without waiting for the linger.
pub const AGGREGATED_BATCH_FACTOR: usize = 4;

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

    /// Whether a request of `count` entries and `bytes` bytes must go before an entry of `size` bytes can join
    /// it: it holds `max_batch_records` entries, or the entry would take it past `max_batch_bytes`. An entry larger
    /// than the byte cap still goes, alone; the record limit is what refuses it.
    pub fn must_send_before(&self, count: usize, bytes: usize, size: usize) -> bool {
        count > 0 && (count >= self.max_batch_records || bytes + size > self.max_batch_bytes)
    }

    /// Cuts `entries` into PutRecords requests under the caps, in order: the index ranges of the requests.
    pub fn cut(&self, entries: &[RequestEntry]) -> Vec<std::ops::Range<usize>> {
        let mut requests = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, entry) in entries.iter().enumerate() {
            if self.must_send_before(i - start, bytes, entry.size()) {
                requests.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += entry.size();
        }
        if start < entries.len() {
            requests.push(start..entries.len());
        }
        requests
    }

    /// The most user records a batch gathers before it is sent.
    fn gather_cap(&self) -> usize {
        if self.aggregate { self.max_batch_records * AGGREGATED_BATCH_FACTOR } else { self.max_batch_records }
    }

    /// [`RequestBuilder::must_send_before`] for the records a batch gathers before packing: the same caps without
    /// aggregation; with it, the byte cap and [`AGGREGATED_BATCH_FACTOR`] times the record cap (the packed
    /// entries are cut into requests again).
    pub fn must_gather_before(&self, count: usize, bytes: usize, size: usize) -> bool {
        count > 0 && (count >= self.gather_cap() || bytes + size > self.max_batch_bytes)
    }

    /// Whether a batch of `count` user records is full.
    pub fn is_gathered(&self, count: usize) -> bool {
        count >= self.gather_cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(max_batch_records: usize, max_batch_bytes: usize) -> RequestBuilder {
        RequestBuilder {
            partitioning: Partitioning::default(),
            data_encoding: DataEncoding::Json,
            max_record_bytes: 1 << 20,
            max_batch_records,
            max_batch_bytes,
            aggregate: false,
        }
    }

    fn entries(sizes: &[usize]) -> Vec<RequestEntry> {
        sizes
            .iter()
            .map(|&n| RequestEntry {
                partition_key: "k".into(),
                explicit_hash_key: None,
                data: Bytes::from(vec![b'x'; n - 1]),
            })
            .collect()
    }

    /// Cuts entries of `sizes` (key included) into requests with [`RequestBuilder::cut`], which the service sends
    /// by, and compares the request ranges with `expected`.
    #[track_caller]
    fn check(max_records: usize, max_bytes: usize, sizes: &[usize], expected: &[std::ops::Range<usize>]) {
        assert_eq!(builder(max_records, max_bytes).cut(&entries(sizes)), expected);
    }

    #[test]
    fn splitting() {
        check(500, 100, &[], &[]);
        check(500, 100, &[10, 10, 10], &[std::ops::Range { start: 0, end: 3 }]);
        check(2, 100, &[10, 10, 10, 10, 10], &[0..2, 2..4, 4..5]);
        check(500, 25, &[10, 10, 10, 10], &[0..2, 2..4]);
        check(500, 20, &[10, 10, 10], &[0..2, 2..3]);
        // An entry larger than the byte cap still goes, alone; the record limit is what rejects it.
        check(500, 20, &[5, 30, 5], &[0..1, 1..2, 2..3]);
    }

    fn record(message_id: &str, user_key: &str) -> Record {
        Record::from_stored("src".into(), message_id.into(), user_key.into(), Bytes::from_static(b"{}"))
    }

    #[test]
    fn partition_keys() {
        let by_user = builder(500, 5 << 20);
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
            ..builder(500, 5 << 20)
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

    #[test]
    fn the_500_record_cap() {
        let sizes = vec![10; 1201];
        check(500, 5 << 20, &sizes, &[0..500, 500..1000, 1000..1201]);
    }
}
