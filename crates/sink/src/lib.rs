//! Sinks: where delivered messages go.
//!
//! A [`Sink`] takes a batch of [`Record`]s and reports one [`Outcome`] per record, in order. The runner knows
//! sinks only through this trait, so a new destination type is one new implementation, not edits through the
//! runner. This crate also holds the two built-in sinks that need no cloud account: [`StdoutSink`] and
//! [`FileSink`], both writing NDJSON.

pub mod backoff;
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

    /// Counts the sink keeps for `/metrics`, by name (for example `partition_key_fallbacks`); none by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Counts with labels of their own (a Kinesis shard's records, a hot key), for `/metrics`; none by default.
    fn labelled_counters(&self) -> Vec<LabelledCount> {
        Vec::new()
    }
}

/// A count a sink keeps under labels of its own, beside the destination's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledCount {
    /// The family, for example `shard_records`.
    pub name: &'static str,
    /// Label names and values, for example `[("stream", "events"), ("shard", "shardId-000000000000")]`.
    pub labels: Vec<(&'static str, String)>,
    /// The count.
    pub value: u64,
}
