//! Sinks: where delivered messages go.
//!
//! A [`Sink`] takes a batch of [`Record`]s and reports one [`Outcome`] per record, in order. The runner knows
//! sinks only through this trait, so a new destination type is one new implementation, not edits through the
//! runner. This crate also holds the two built-in sinks that need no cloud account: [`StdoutSink`] and
//! [`FileSink`], both writing NDJSON.

pub mod backoff;
pub mod batch;
mod file;
mod record;
mod secret;
mod stdout;

pub use file::FileSink;
pub use record::{Delivery, Outcome, Record};
pub use secret::{Secret, SecretError, SecretRef};
pub use stdout::{StdoutSink, WriterSink};

/// A destination that messages are delivered to.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `records` and returns exactly one outcome per record, in the same order.
    ///
    /// A sink retries transient failures itself for as long as its own policy says, then reports what is still
    /// failing as [`Outcome::Retryable`] so that the caller can keep the record and try again later.
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome>;

    /// The metric families the sink keeps for `/metrics`, with their samples now; none by default. The runner
    /// adds the destination's name as the first label of each sample and prints every family as it is given, so a
    /// sink adds a metric without a change to the runner.
    fn metrics(&self) -> Vec<MetricFamily> {
        Vec::new()
    }
}

/// A family of metrics a sink keeps: its name, what it means, and its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFamily {
    /// The name after the server's `tributary_` prefix, without the `_total` a counter gets: `kinesis_shard_records`.
    pub name: &'static str,
    /// The help text.
    pub help: &'static str,
    /// A counter (only grows) or a gauge (goes up and down).
    pub kind: MetricKind,
    /// The samples, each with its labels other than the destination.
    pub samples: Vec<Sample>,
}

/// How a family's values behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A count since the sink started.
    Counter,
    /// A value now.
    Gauge,
}

/// One value of a family under labels of the sink's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Label names and values, for example `[("stream", "events"), ("shard", "shardId-000000000000")]`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: u64,
}
