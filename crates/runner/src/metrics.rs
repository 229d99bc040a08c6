//! Prometheus metrics, served at `GET /metrics`.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A rejection reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The error code the client received.
    pub reason: String,
}

/// A Kinesis shard of a destination's stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The destination's name.
    pub destination: String,
    /// The stream.
    pub stream: String,
    /// The shard ID.
    pub shard: String,
}

/// A hot partition key of a destination's stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HotKey {
    /// The destination's name.
    pub destination: String,
    /// The stream.
    pub stream: String,
    /// The partition key.
    pub key: String,
}

/// Why a message of an accepted request was not delivered: the field at fault and the kind of problem.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Invalid {
    /// The field Segment's rules found wrong (`event`, `userId or anonymousId`), or `message` for the whole of it.
    pub field: String,
    /// The kind of problem: `missing`, `wrong_type`, `too_large`.
    pub problem: String,
}

/// A destination and one of its states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationState {
    /// The destination's name.
    pub destination: String,
    /// `ok`, `degraded` or `stopped`.
    pub state: String,
}

/// A destination label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Destination {
    /// The destination's name.
    pub destination: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Messages received, valid or not.
    pub received: Counter,
    /// Messages stored and acknowledged.
    pub accepted: Counter,
    /// Messages refused, by the error code returned.
    pub rejected: Family<Reason, Counter>,
    /// Invalid messages of accepted requests, kept in the rejected table instead of delivered, by field and problem.
    pub invalid: Family<Invalid, Counter>,
    /// Rejected-table entries dropped to keep it within `--rejected-max`.
    pub rejections_evicted: Counter,
    /// Requests whose handler panicked (answered 500).
    pub panics: Counter,
    /// Messages delivered, per destination.
    pub delivered: Family<Destination, Counter>,
    /// Delivery attempts that failed and were scheduled again, per destination.
    pub retried: Family<Destination, Counter>,
    /// Messages that failed permanently and went to the dead-letter table, per destination.
    pub failed: Family<Destination, Counter>,
    /// Messages waiting in the spool.
    pub spool_depth: Gauge,
    /// Transactions the spool's writer committed: appends that arrive together share one (group commit).
    pub spool_commits: Counter,
    /// Seconds from acknowledgement to delivery, per destination.
    pub delivery_latency: Family<Destination, Histogram, fn() -> Histogram>,
    /// Delivery workers restarted after a panic, per destination.
    pub restarts: Family<Destination, Counter>,
    /// Messages none of whose `partition_key` paths held a value, keyed by `messageId` instead, per destination.
    pub partition_key_fallbacks: Family<Destination, Counter>,
    /// Messages sent without their `explicit_hash_key` (missing or not a number below 2^128), per destination.
    pub explicit_hash_keys_ignored: Family<Destination, Counter>,
    /// Messages a templated stream could not name a stream for, sent to its default stream, per destination.
    pub stream_defaults: Family<Destination, Counter>,
    /// Records Kinesis took, per destination, stream and shard.
    pub shard_records: Family<ShardLabel, Counter>,
    /// Their bytes (data plus partition key), per destination, stream and shard.
    pub shard_bytes: Family<ShardLabel, Counter>,
    /// Entries Kinesis throttled, per destination, stream and shard.
    pub shard_throttled: Family<ShardLabel, Counter>,
    /// Records of the hottest partition keys over the last minute, per destination and stream.
    pub hot_keys: Family<HotKey, Gauge>,
    /// 1 for each destination's current state, 0 for the others.
    pub state: Family<DestinationState, Gauge>,
    /// Seconds the oldest waiting message of each destination has waited.
    pub oldest_waiting: Family<Destination, Gauge>,
    /// Seconds the oldest message ingest stored for each destination and no delivery failed has waited; 0 for a
    /// failing destination. `serve --max-lag` bounds it.
    pub lag: Family<Destination, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Messages waiting, per destination.
    pub backlog_messages: Family<Destination, Gauge>,
    /// Bytes of stored messages waiting, per destination.
    pub backlog_bytes: Family<Destination, Gauge>,
    /// Messages moved to the dead-letter table because their destination was over its backlog budget.
    pub overflowed: Family<Destination, Counter>,
}

impl Default for Metrics {
    /// Long on purpose: one registration per metric, each with its help text, in the order `/metrics` lists them.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tributary");
        let metrics = Metrics {
            received: Counter::default(),
            accepted: Counter::default(),
            rejected: Family::default(),
            invalid: Family::default(),
            rejections_evicted: Counter::default(),
            panics: Counter::default(),
            delivered: Family::default(),
            retried: Family::default(),
            failed: Family::default(),
            spool_depth: Gauge::default(),
            spool_commits: Counter::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            restarts: Family::default(),
            partition_key_fallbacks: Family::default(),
            explicit_hash_keys_ignored: Family::default(),
            stream_defaults: Family::default(),
            shard_records: Family::default(),
            shard_bytes: Family::default(),
            shard_throttled: Family::default(),
            hot_keys: Family::default(),
            state: Family::default(),
            oldest_waiting: Family::default(),
            lag: Family::default(),
            backlog_messages: Family::default(),
            backlog_bytes: Family::default(),
            overflowed: Family::default(),
            registry: Registry::default(),
        };
        registry.register("messages_received", "Messages received, valid or not", metrics.received.clone());
        registry.register("messages_accepted", "Messages stored and acknowledged", metrics.accepted.clone());
        registry.register("messages_rejected", "Messages refused, by error code", metrics.rejected.clone());
        registry.register(
            "messages_invalid",
            "Invalid messages of accepted requests, kept in the rejected table, by field and problem",
            metrics.invalid.clone(),
        );
        registry.register(
            "rejected_evicted",
            "Rejected-table entries dropped, oldest first, to keep it within --rejected-max",
            metrics.rejections_evicted.clone(),
        );
        registry.register(
            "handler_panics",
            "Requests whose handler panicked and were answered 500",
            metrics.panics.clone(),
        );
        registry.register("messages_delivered", "Messages delivered, per destination", metrics.delivered.clone());
        registry.register("delivery_retries", "Failed delivery attempts scheduled again", metrics.retried.clone());
        registry.register("messages_failed", "Messages moved to the dead-letter table", metrics.failed.clone());
        registry.register("spool_depth", "Messages waiting in the spool", metrics.spool_depth.clone());
        registry.register(
            "spool_commits",
            "Transactions the spool's writer committed; concurrent appends share one",
            metrics.spool_commits.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Seconds from acknowledgement to delivery",
            metrics.delivery_latency.clone(),
        );
        registry.register("worker_restarts", "Delivery workers restarted after a panic", metrics.restarts.clone());
        registry.register(
            "partition_key_fallbacks",
            "Messages none of whose partition_key paths held a value, keyed by messageId instead",
            metrics.partition_key_fallbacks.clone(),
        );
        registry.register(
            "explicit_hash_keys_ignored",
            "Messages sent without their explicit_hash_key, missing or not a number below 2^128",
            metrics.explicit_hash_keys_ignored.clone(),
        );
        registry.register(
            "stream_defaults",
            "Messages whose stream template did not resolve, sent to the default stream",
            metrics.stream_defaults.clone(),
        );
        registry.register("kinesis_shard_records", "Records Kinesis took, per shard", metrics.shard_records.clone());
        registry.register(
            "kinesis_shard_bytes",
            "Bytes (data plus partition key) Kinesis took, per shard",
            metrics.shard_bytes.clone(),
        );
        registry.register(
            "kinesis_shard_throttled",
            "Entries Kinesis throttled (ProvisionedThroughputExceeded), per shard",
            metrics.shard_throttled.clone(),
        );
        registry.register(
            "kinesis_hot_key_records",
            "Records of the ten hottest partition keys over the last minute, per stream",
            metrics.hot_keys.clone(),
        );
        registry.register(
            "destination_state",
            "1 for each destination's current state (ok, degraded, stopped)",
            metrics.state.clone(),
        );
        registry.register(
            "oldest_waiting_seconds",
            "Seconds the oldest waiting message of each destination has waited",
            metrics.oldest_waiting.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Seconds the oldest message of each destination that no delivery failed has waited (0 while the \
             destination fails); requests get 429 past serve --max-lag",
            metrics.lag.clone(),
        );
        registry.register("backlog_messages", "Messages waiting, per destination", metrics.backlog_messages.clone());
        registry.register(
            "backlog_bytes",
            "Bytes of stored messages waiting, per destination",
            metrics.backlog_bytes.clone(),
        );
        registry.register(
            "backlog_overflow",
            "Messages moved to the dead-letter table because their destination was over its backlog budget",
            metrics.overflowed.clone(),
        );
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// Counts a rejection.
    pub fn reject(&self, reason: &str, messages: u64) {
        self.rejected.get_or_create(&Reason { reason: reason.to_owned() }).inc_by(messages);
    }

    /// Counts an invalid message of an accepted request.
    pub fn drop_invalid(&self, field: &str, problem: &str) {
        self.invalid.get_or_create(&Invalid { field: field.to_owned(), problem: problem.to_owned() }).inc();
    }

    /// Copies a sink's own counts (`Sink::counters`) into their families.
    pub fn sink_counters(&self, destination: &str, counters: &[(&'static str, u64)]) {
        for (name, value) in counters {
            let family = match *name {
                "partition_key_fallbacks" => &self.partition_key_fallbacks,
                "explicit_hash_keys_ignored" => &self.explicit_hash_keys_ignored,
                "stream_defaults" => &self.stream_defaults,
                _ => continue,
            };
            family.get_or_create(&Metrics::destination(destination)).inner().store(*value, Ordering::Relaxed);
        }
    }

    /// Copies a sink's labelled counts (`Sink::labelled_counters`) into their families. The caller clears
    /// `hot_keys` before the first destination, so that a key that cooled down leaves the page.
    pub fn sink_labelled(&self, destination: &str, counts: &[sink::LabelledCount]) {
        let label = |counted: &sink::LabelledCount, name: &str| {
            counted.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        for counted in counts {
            let shard = || ShardLabel {
                destination: destination.to_owned(),
                stream: label(counted, "stream"),
                shard: label(counted, "shard"),
            };
            let family = match counted.name {
                "shard_records" => &self.shard_records,
                "shard_bytes" => &self.shard_bytes,
                "shard_throttled" => &self.shard_throttled,
                "hot_key_records" => {
                    let key = HotKey {
                        destination: destination.to_owned(),
                        stream: label(counted, "stream"),
                        key: label(counted, "key"),
                    };
                    self.hot_keys.get_or_create(&key).set(counted.value as i64);
                    continue;
                }
                _ => continue,
            };
            family.get_or_create(&shard()).inner().store(counted.value, Ordering::Relaxed);
        }
    }

    /// The label of a destination.
    pub fn destination(name: &str) -> Destination {
        Destination { destination: name.to_owned() }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
