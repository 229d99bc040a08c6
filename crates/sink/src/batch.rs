//! Cutting a batch into requests under a service's caps: at most so many records, and so many bytes, a request.
//! The AWS sinks' batch APIs (Kinesis PutRecords, Firehose PutRecordBatch) share the rule.

use std::ops::Range;

/// The index ranges of the requests that records of `sizes` bytes make, in order, each holding at most
/// `max_records` records and, where more than one record, at most `max_bytes` bytes. A record larger than
/// `max_bytes` still goes, alone: the record limit, checked before, is what refuses a record.
pub fn cut(sizes: impl IntoIterator<Item = usize>, max_records: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut requests = Vec::new();
    let (mut start, mut bytes, mut end) = (0, 0, 0);
    for (i, size) in sizes.into_iter().enumerate() {
        let count = i - start;
        if count > 0 && (count >= max_records || bytes + size > max_bytes) {
            requests.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
        end = i + 1;
    }
    if start < end {
        requests.push(start..end);
    }
    requests
}
