//! Encoding records as Kinesis entries, and cutting them into PutRecords requests.

use base64::Engine as _;
use bytes::Bytes;
use sink::Record;

use crate::config::DataEncoding;
use crate::record::Entry;

/// Turns records into entries under one destination's settings.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    /// Partition by `messageId` rather than by user.
    pub use_message_id: bool,
    /// What the data holds.
    pub data_encoding: DataEncoding,
    /// The stream's record size limit (data plus key).
    pub max_record_bytes: usize,
    /// The most entries per request.
    pub max_batch_records: usize,
    /// The most bytes (data plus keys) per request.
    pub max_batch_bytes: usize,
}

impl RequestBuilder {
    /// The entry for one record, or the reason it can never be sent.
    pub fn encode(&self, record: &Record) -> Result<Entry, String> {
        let partition_key = record.partition_key(self.use_message_id).to_owned();
        let data = match self.data_encoding {
            // Cloning `Bytes` shares the record's buffer; nothing is copied.
            DataEncoding::Json => record.payload().clone(),
            DataEncoding::Base64 => Bytes::from(base64::engine::general_purpose::STANDARD.encode(record.payload())),
        };
        let entry = Entry { partition_key, data };
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

    /// Cuts `entries` into consecutive requests that respect the count and byte caps, as index ranges.
    pub fn split(&self, entries: &[Entry]) -> Vec<std::ops::Range<usize>> {
        let mut requests = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, entry) in entries.iter().enumerate() {
            let size = entry.size();
            if i > start && (i - start == self.max_batch_records || bytes + size > self.max_batch_bytes) {
                requests.push(start..i);
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        if start < entries.len() {
            requests.push(start..entries.len());
        }
        requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(max_batch_records: usize, max_batch_bytes: usize) -> RequestBuilder {
        RequestBuilder {
            use_message_id: false,
            data_encoding: DataEncoding::Json,
            max_record_bytes: 1 << 20,
            max_batch_records,
            max_batch_bytes,
        }
    }

    fn entries(sizes: &[usize]) -> Vec<Entry> {
        sizes.iter().map(|&n| Entry { partition_key: "k".into(), data: Bytes::from(vec![b'x'; n - 1]) }).collect()
    }

    /// Splits entries of `sizes` (key included) and compares the request ranges with `expected`.
    #[track_caller]
    fn check(max_records: usize, max_bytes: usize, sizes: &[usize], expected: &[std::ops::Range<usize>]) {
        assert_eq!(builder(max_records, max_bytes).split(&entries(sizes)), expected);
    }

    #[test]
    fn splitting() {
        check(500, 100, &[], &[]);
        check(500, 100, &[10, 10, 10], &[0..3]);
        check(2, 100, &[10, 10, 10, 10, 10], &[0..2, 2..4, 4..5]);
        check(500, 25, &[10, 10, 10, 10], &[0..2, 2..4]);
        check(500, 20, &[10, 10, 10], &[0..2, 2..3]);
        // An entry larger than the byte cap still goes, alone; the record limit is what rejects it.
        check(500, 20, &[5, 30, 5], &[0..1, 1..2, 2..3]);
    }

    #[test]
    fn the_500_record_cap() {
        let sizes = vec![10; 1201];
        check(500, 5 << 20, &sizes, &[0..500, 500..1000, 1000..1201]);
    }
}
