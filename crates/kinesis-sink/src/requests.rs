//! Cutting a gathered batch into PutRecords requests: the one place requests are made. With aggregation, the
//! batch's entries are first packed into KPL aggregated records per shard, and the packed records are what is cut.

use std::ops::Range;

use sink::Outcome;

use crate::entry::RequestEntry;
use crate::shards::ShardMap;

/// The caps a destination's requests keep, and whether its records are aggregated.
#[derive(Debug, Clone, Copy)]
pub struct RequestCaps {
    /// The stream's record size limit (data plus key), which an aggregated record fills up to.
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

impl RequestCaps {
    /// Cuts `entries` into PutRecords requests under the caps, in order: the index ranges of the requests. An entry
    /// larger than the byte cap still goes, alone; the record limit is what refuses it.
    fn cut(&self, entries: &[RequestEntry]) -> Vec<std::ops::Range<usize>> {
        sink::batch::cut(entries.iter().map(RequestEntry::size), self.max_batch_records, self.max_batch_bytes)
    }

    /// The most user records a batch gathers before it is sent.
    fn gather_cap(&self) -> usize {
        if self.aggregate { self.max_batch_records * AGGREGATED_BATCH_FACTOR } else { self.max_batch_records }
    }

    /// Whether a batch of `count` records and `bytes` bytes must go before a record of `size` bytes can join it:
    /// the caps of a request without aggregation; with it, the byte cap and [`AGGREGATED_BATCH_FACTOR`] times the
    /// record cap (the packed entries are cut into requests again).
    pub fn must_gather_before(&self, count: usize, bytes: usize, size: usize) -> bool {
        count > 0 && (count >= self.gather_cap() || bytes + size > self.max_batch_bytes)
    }

    /// Whether a batch of `count` user records is full.
    pub fn is_gathered(&self, count: usize) -> bool {
        count >= self.gather_cap()
    }
    /// The requests a gathered batch is sent as: its entries cut under the caps, or with aggregation, the records
    /// they are packed into (by the shards of `map`, or by hash key without one) cut under the caps.
    pub fn requests(&self, entries: Vec<RequestEntry>, map: Option<&ShardMap>) -> Requests {
        if !self.aggregate {
            let cuts = self.cut(&entries);
            return Requests { count: entries.len(), wire: entries, cuts, carried: None };
        }
        let packed = crate::aggregate::pack(&entries, map, self.max_record_bytes);
        let (wire, carried): (Vec<RequestEntry>, Vec<Vec<usize>>) =
            packed.into_iter().map(|p| (p.entry, p.members)).unzip();
        Requests { count: entries.len(), cuts: self.cut(&wire), wire, carried: Some(carried) }
    }
}

/// A batch as it goes on the wire: what each request sends, and which of the batch's records each sent entry
/// carries.
#[derive(Debug)]
pub struct Requests {
    /// How many records the batch held.
    count: usize,
    /// The entries sent, in order.
    wire: Vec<RequestEntry>,
    /// The requests, as ranges of `wire`.
    cuts: Vec<Range<usize>>,
    /// With aggregation, the records each entry of `wire` carries; without, entry `i` is record `i`.
    carried: Option<Vec<Vec<usize>>>,
}

impl Requests {
    /// The requests' entries, one slice per PutRecords call, in order.
    pub fn each(&self) -> impl Iterator<Item = &[RequestEntry]> {
        self.cuts.iter().map(|cut| &self.wire[cut.clone()])
    }

    /// The outcome of each record of the batch, from `sent`, the outcome of each entry of every request in order:
    /// an aggregated record's outcome is that of each record it carries.
    pub fn outcomes(&self, sent: Vec<Outcome>) -> Vec<Outcome> {
        let Some(carried) = &self.carried else { return sent };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.count];
        for (members, outcome) in carried.iter().zip(sent) {
            for &member in members {
                outcomes[member] = Some(outcome.clone());
            }
        }
        outcomes.into_iter().map(|o| o.expect("every record is in one aggregate")).collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn caps(max_batch_records: usize, max_batch_bytes: usize) -> RequestCaps {
        RequestCaps { max_record_bytes: 1 << 20, max_batch_records, max_batch_bytes, aggregate: false }
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

    /// Cuts entries of `sizes` (key included) into requests with [`RequestCaps::requests`], which the service sends
    /// by, and compares the request ranges with `expected`.
    #[track_caller]
    fn check(max_records: usize, max_bytes: usize, sizes: &[usize], expected: &[std::ops::Range<usize>]) {
        let requests = caps(max_records, max_bytes).requests(entries(sizes), None);
        assert_eq!(requests.cuts, expected);
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

    #[test]
    fn the_500_record_cap() {
        let sizes = vec![10; 1201];
        check(500, 5 << 20, &sizes, &[0..500, 500..1000, 1000..1201]);
    }

    #[test]
    fn aggregated_records_answer_for_every_record_they_carry() {
        let aggregating = RequestCaps { aggregate: true, ..caps(2, 1 << 20) };
        let requests = aggregating.requests(entries(&[10, 10, 10]), None);
        // One key, so one shard: the three records make one aggregated record and one request.
        assert_eq!(requests.each().map(<[RequestEntry]>::len).collect::<Vec<_>>(), [1]);
        let outcomes = requests.outcomes(vec![Outcome::Retryable("throttled".into())]);
        assert_eq!(outcomes, vec![Outcome::Retryable("throttled".into()); 3]);
    }
}
