//! The metric families a Kinesis destination reports in `/metrics`: its partitioning and routing counts, and per
//! stream its shards' records, bytes and throttled entries and its hottest keys.

use sink::{MetricFamily, MetricKind, Sample};

/// What the per-stream registry counted, as samples labelled by stream and shard (or key).
#[derive(Debug, Default)]
pub(crate) struct StreamSamples {
    pub(crate) records: Vec<Sample>,
    pub(crate) bytes: Vec<Sample>,
    pub(crate) throttled: Vec<Sample>,
    pub(crate) hot_keys: Vec<Sample>,
}

/// The sink's counts now.
pub(crate) struct Counts {
    pub(crate) partition_key_fallbacks: u64,
    pub(crate) explicit_hash_keys_ignored: u64,
    pub(crate) stream_defaults: u64,
    pub(crate) streams: StreamSamples,
}

/// The families, in the order `/metrics` lists them.
pub(crate) fn families(counts: Counts) -> Vec<MetricFamily> {
    let one = |value| vec![Sample { labels: Vec::new(), value }];
    let counter = |name, help, samples| MetricFamily { name, help, kind: MetricKind::Counter, samples };
    let streams = counts.streams;
    vec![
        counter(
            "partition_key_fallbacks",
            "Messages none of whose partition_key paths held a value, keyed by messageId instead",
            one(counts.partition_key_fallbacks),
        ),
        counter(
            "explicit_hash_keys_ignored",
            "Messages sent without their explicit_hash_key, missing or not a number below 2^128",
            one(counts.explicit_hash_keys_ignored),
        ),
        counter(
            "stream_defaults",
            "Messages whose stream template did not resolve, sent to the default stream",
            one(counts.stream_defaults),
        ),
        counter("kinesis_shard_records", "Records Kinesis took, per shard", streams.records),
        counter("kinesis_shard_bytes", "Bytes (data plus partition key) Kinesis took, per shard", streams.bytes),
        counter(
            "kinesis_shard_throttled",
            "Entries Kinesis throttled (ProvisionedThroughputExceeded), per shard",
            streams.throttled,
        ),
        MetricFamily {
            name: "kinesis_hot_key_records",
            help: "Records of the ten hottest partition keys over the last minute, per stream",
            kind: MetricKind::Gauge,
            samples: streams.hot_keys,
        },
    ]
}
