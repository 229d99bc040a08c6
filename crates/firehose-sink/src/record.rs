//! A message as a Firehose record, and a stream's records cut into PutRecordBatch calls.
//!
//! Segment's destination writes `JSON.stringify(message) + "\n"`: Firehose adds no delimiter of its own, and the
//! objects it concatenates in S3 split into lines only with it.

use std::ops::Range;

/// The most bytes a Firehose record holds (before base64): 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1_000 * 1024;

/// The most records a PutRecordBatch call takes.
pub const MAX_BATCH_RECORDS: usize = 500;

/// The most bytes a PutRecordBatch call takes, its records' data summed: 4 MiB.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Why a message cannot be a Firehose record: dead-lettered with this reason, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The record's size, newline included.
    pub bytes: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the message takes {} bytes as a Firehose record (its JSON and a newline); Firehose takes at most {MAX_RECORD_BYTES}",
            self.bytes
        )
    }
}

/// The record of a message whose JSON is `json`: the JSON and `\n`.
pub fn frame(json: &[u8]) -> Result<Vec<u8>, TooLarge> {
    let bytes = json.len() + 1;
    if bytes > MAX_RECORD_BYTES {
        return Err(TooLarge { bytes });
    }
    let mut record = Vec::with_capacity(bytes);
    record.extend_from_slice(json);
    record.push(b'\n');
    Ok(record)
}

/// The PutRecordBatch calls that records of `sizes` bytes make, in order, within Firehose's limits.
pub fn calls(sizes: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    sink::batch::cut(sizes, MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
}
