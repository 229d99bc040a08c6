//! Prometheus metrics, served at `GET /metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sink::{MetricFamily, MetricKind};

/// A rejection reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The error code the client received.
    pub reason: String,
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
    /// `ok`, `degraded`, `stopped`, `removed` or `disabled`.
    pub state: String,
}

/// An HTTP status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// The status code, for example `200`.
    pub code: u16,
}

/// A source label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The source's ID.
    pub source: String,
}

/// How a reload of the config folder ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadOutcome {
    /// `applied`, or `refused` (the config had problems; the running one stayed).
    pub outcome: String,
}

/// A destination and what one of its filters did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FilterAction {
    /// The destination's name.
    pub destination: String,
    /// `sample`, `drop`, `drop_properties`, `allow_properties`, or `error` (a condition that failed dropped it).
    pub action: String,
}

/// A privacy control's change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrivacyChange {
    /// The matcher that found the field, or `field` for a path named in `hash` or `drop`.
    pub matcher: String,
    /// `hash` or `drop`.
    pub action: String,
}

/// A tracking plan's violation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanViolation {
    /// The source whose plan it broke.
    pub source: String,
    /// `unplanned`, or the JSON Schema keyword that failed, in snake case (`required`, `type`,
    /// `additional_properties`…).
    pub kind: String,
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
    /// Answers of the ingest API (and the status pages on its port), by status code.
    pub responses: Family<Code, Counter>,
    /// Messages delivered, per destination.
    pub delivered: Family<Destination, Counter>,
    /// Delivery attempts that failed and were scheduled again, per destination.
    pub retried: Family<Destination, Counter>,
    /// Messages that failed permanently and went to the dead-letter table, per destination.
    pub failed: Family<Destination, Counter>,
    /// Messages waiting in the spool.
    pub spool_depth: Gauge,
    /// Bytes of stored messages waiting in the spool.
    pub spool_bytes: Gauge,
    /// The most bytes the spool holds before requests get 429.
    pub spool_budget_bytes: Gauge,
    /// Transactions the spool's writer committed: appends that arrive together share one (group commit).
    pub spool_commits: Counter,
    /// Seconds from acknowledgement to delivery, per destination.
    pub delivery_latency: Family<Destination, Histogram, fn() -> Histogram>,
    /// Delivery workers restarted after a panic, per destination.
    pub restarts: Family<Destination, Counter>,
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
    /// Reloads of the config folder, by outcome (`applied`, `refused`).
    pub reloads: Family<ReloadOutcome, Counter>,
    /// Valid messages not stored because their messageId was accepted within the dedupe window, per source.
    pub duplicates: Family<SourceLabel, Counter>,
    /// Messages a destination's filters dropped or changed, by the action that decided.
    pub filtered: Family<FilterAction, Counter>,
    /// Messages dropped at ingest because a suppression list names their user, per source.
    pub suppressed: Family<SourceLabel, Counter>,
    /// Fields privacy controls hashed or dropped, by matcher and action.
    pub privacy_changes: Family<PrivacyChange, Counter>,
    /// Violations of sources' tracking plans, by source and kind.
    pub plan_violations: Family<PlanViolation, Counter>,
    /// How far back the dedupe keys held reach, in seconds (the window, or less once the key budget is full).
    pub dedupe_window: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Dedupe keys held.
    pub dedupe_keys: Gauge,
    /// Requests the shared dedupe store could not check or record in time.
    pub dedupe_unavailable: Counter,
    /// The families each destination's sink reported at the last scrape ([`Metrics::set_sink_metrics`]).
    sinks: Arc<SinkMetrics>,
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The families sinks report ([`sink::Sink::metrics`]), printed as each sink names them, with the destination as
/// the first label: the runner knows no sink's metric by name.
#[derive(Debug, Default)]
struct SinkMetrics {
    /// Per destination, in the order of the config.
    reported: Mutex<Vec<(String, Vec<MetricFamily>)>>,
}

impl Collector for SinkMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reported = self.reported.lock().expect("sink metrics lock poisoned");
        // One family across destinations, in the order the families were first reported.
        let mut names: Vec<&MetricFamily> = Vec::new();
        for family in reported.iter().flat_map(|(_, families)| families) {
            if !names.iter().any(|seen| seen.name == family.name) {
                names.push(family);
            }
        }
        for first in names {
            let samples: Vec<(&str, &sink::Sample)> = reported
                .iter()
                .flat_map(|(destination, families)| {
                    families
                        .iter()
                        .filter(|f| f.name == first.name)
                        .flat_map(move |f| f.samples.iter().map(move |sample| (destination.as_str(), sample)))
                })
                .collect();
            // As the registry does for its own families: a family with no sample is left off the page.
            if samples.is_empty() {
                continue;
            }
            let kind = match first.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
            };
            let help = format!("{}.", first.help);
            let mut family = encoder.encode_descriptor(first.name, &help, None, kind)?;
            for (destination, sample) in samples {
                // prometheus-client writes label values as they are; a partition key is a client's userId, which
                // could otherwise end the value and add lines of its own to the page.
                let mut labels: Vec<(&str, String)> = vec![("destination", escape(destination))];
                labels.extend(sample.labels.iter().map(|(name, value)| (*name, escape(value))));
                let mut metric = family.encode_family(&labels)?;
                match first.kind {
                    MetricKind::Counter => metric.encode_counter::<NoLabelSet, _, u64>(&sample.value, None)?,
                    MetricKind::Gauge => metric.encode_gauge(&i64::try_from(sample.value).unwrap_or(i64::MAX))?,
                }
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Counts a message a destination's filters dropped or changed, by the action that decided.
    pub fn filtered(&self, destination: &str, action: &str) {
        let labels = FilterAction { destination: destination.to_owned(), action: action.to_owned() };
        self.filtered.get_or_create(&labels).inc();
    }

    /// Counts one message's violations of `source`'s tracking plan, by kind.
    pub fn plan_violations(&self, source: &str, violations: &[governance::Violation]) {
        for violation in violations {
            let labels = PlanViolation { source: source.to_owned(), kind: violation.kind.clone() };
            self.plan_violations.get_or_create(&labels).inc();
        }
    }

    /// Counts the fields privacy controls changed in one message (never their values).
    pub fn privacy(&self, changes: &[governance::Change]) {
        for change in changes {
            let labels = PrivacyChange { matcher: change.matcher.to_string(), action: change.action.name().to_owned() };
            self.privacy_changes.get_or_create(&labels).inc();
        }
    }
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
            responses: Family::default(),
            delivered: Family::default(),
            retried: Family::default(),
            failed: Family::default(),
            spool_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_budget_bytes: Gauge::default(),
            spool_commits: Counter::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            restarts: Family::default(),
            state: Family::default(),
            oldest_waiting: Family::default(),
            lag: Family::default(),
            backlog_messages: Family::default(),
            backlog_bytes: Family::default(),
            overflowed: Family::default(),
            reloads: Family::default(),
            duplicates: Family::default(),
            filtered: Family::default(),
            privacy_changes: Family::default(),
            plan_violations: Family::default(),
            suppressed: Family::default(),
            dedupe_window: Gauge::default(),
            dedupe_keys: Gauge::default(),
            dedupe_unavailable: Counter::default(),
            sinks: Arc::default(),
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
        registry.register("http_responses", "Answers of the ingest API by HTTP status code", metrics.responses.clone());
        registry.register("messages_delivered", "Messages delivered, per destination", metrics.delivered.clone());
        registry.register(
            "messages_filtered",
            "Messages a destination's filters dropped or changed, by the action that decided (error: a condition that failed on the message dropped it)",
            metrics.filtered.clone(),
        );
        registry.register(
            "suppressed",
            "Messages dropped at ingest, never stored, because a suppression list names their userId or anonymousId, per source",
            metrics.suppressed.clone(),
        );
        registry.register(
            "privacy_changes",
            "Fields privacy controls hashed or dropped, by matcher (field: a path named in hash or drop) and action",
            metrics.privacy_changes.clone(),
        );
        registry.register(
            "plan_violations",
            "Violations of a source's tracking plan, by source and kind (unplanned, or the JSON Schema keyword that failed)",
            metrics.plan_violations.clone(),
        );
        registry.register("delivery_retries", "Failed delivery attempts scheduled again", metrics.retried.clone());
        registry.register("messages_failed", "Messages moved to the dead-letter table", metrics.failed.clone());
        registry.register("spool_depth", "Messages waiting in the spool", metrics.spool_depth.clone());
        registry.register("spool_bytes", "Bytes of stored messages waiting in the spool", metrics.spool_bytes.clone());
        registry.register(
            "spool_budget_bytes",
            "The most bytes of messages the spool holds before requests are answered 429",
            metrics.spool_budget_bytes.clone(),
        );
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
            "destination_state",
            "1 for each destination's current state (ok, degraded, stopped; removed or disabled while messages wait for it)",
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
        registry.register(
            "config_reloads",
            "Reloads of the config folder (SIGHUP, tributary reload, --watch-config), applied or refused",
            metrics.reloads.clone(),
        );
        // Shown at 0 from the start, so that an alert on a refusal has a series to watch.
        for outcome in ["applied", "refused"] {
            drop(metrics.reloads.get_or_create(&ReloadOutcome { outcome: outcome.to_owned() }));
        }
        registry.register(
            "duplicates",
            "Valid messages not stored again because their messageId was accepted within the dedupe window, per source",
            metrics.duplicates.clone(),
        );
        registry.register(
            "dedupe_window_seconds",
            "How far back the dedupe keys held reach: serve --dedupe-window, or less once --dedupe-max-bytes is full",
            metrics.dedupe_window.clone(),
        );
        registry.register("dedupe_keys", "Dedupe keys held", metrics.dedupe_keys.clone());
        registry.register(
            "dedupe_unavailable",
            "Requests taken while the shared dedupe store (--dedupe-store) was not answering (its keys not shared within --dedupe-timeout, or the other nodes' keys unreadable): checked against this node's keys only, or refused with --dedupe-required",
            metrics.dedupe_unavailable.clone(),
        );
        registry.register_collector(Box::new(metrics.sinks.clone()));
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// Counts a rejection.
    pub fn reject(&self, reason: &str, messages: u64) {
        self.rejected.get_or_create(&Reason { reason: reason.to_owned() }).inc_by(messages);
    }

    /// Counts an answer with status `code`.
    pub fn answered(&self, code: u16) {
        self.responses.get_or_create(&Code { code }).inc();
    }

    /// Counts an invalid message of an accepted request.
    pub fn drop_invalid(&self, field: &str, problem: &str) {
        self.invalid.get_or_create(&Invalid { field: field.to_owned(), problem: problem.to_owned() }).inc();
    }

    /// Keeps what each destination's sink reports now, for the next [`Metrics::render`].
    pub fn set_sink_metrics(&self, reported: Vec<(String, Vec<MetricFamily>)>) {
        *self.sinks.reported.lock().expect("sink metrics lock poisoned") = reported;
    }

    /// Counts a reload that ended as `outcome` (`applied` or `refused`).
    pub fn reloaded(&self, outcome: &str) {
        self.reloads.get_or_create(&ReloadOutcome { outcome: outcome.to_owned() }).inc();
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

#[cfg(test)]
mod tests {
    use sink::{MetricFamily, MetricKind, Sample};

    use super::Metrics;

    fn family(name: &'static str, kind: MetricKind, samples: Vec<Sample>) -> MetricFamily {
        MetricFamily { name, help: "What it counts", kind, samples }
    }

    fn sample(labels: &[(&'static str, &str)], value: u64) -> Sample {
        Sample { labels: labels.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(), value }
    }

    #[test]
    fn sink_families_print_as_registered_ones_with_the_destination_first() {
        let metrics = Metrics::default();
        let shard = [("stream", "events"), ("shard", "shardId-000000000001")];
        metrics.set_sink_metrics(vec![
            ("a".into(), vec![family("kinesis_shard_records", MetricKind::Counter, vec![sample(&shard, 7)])]),
            (
                "b".into(),
                vec![
                    family("kinesis_shard_records", MetricKind::Counter, vec![sample(&shard, 2)]),
                    family("kinesis_hot_key_records", MetricKind::Gauge, vec![sample(&[("key", "u\"1\\\n# x")], 3)]),
                    family("nothing_yet", MetricKind::Counter, Vec::new()),
                ],
            ),
        ]);
        let page = metrics.render();
        let expected = "# HELP tributary_kinesis_shard_records What it counts.\n\
             # TYPE tributary_kinesis_shard_records counter\n\
             tributary_kinesis_shard_records_total{destination=\"a\",stream=\"events\",shard=\"shardId-000000000001\"} 7\n\
             tributary_kinesis_shard_records_total{destination=\"b\",stream=\"events\",shard=\"shardId-000000000001\"} 2\n\
             # HELP tributary_kinesis_hot_key_records What it counts.\n\
             # TYPE tributary_kinesis_hot_key_records gauge\n\
             tributary_kinesis_hot_key_records{destination=\"b\",key=\"u\\\"1\\\\\\n# x\"} 3\n";
        assert!(page.contains(expected), "{page}");
        assert!(!page.contains("nothing_yet"), "a family without samples is left off, as the registry's own are");
        // What a sink stops reporting leaves the page.
        metrics.set_sink_metrics(Vec::new());
        assert!(!metrics.render().contains("kinesis"));
    }
}
