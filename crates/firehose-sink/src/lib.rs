//! The Firehose destination, as Segment's Amazon Kinesis Firehose destination sends: each message's JSON and a
//! newline, to the delivery streams its event maps to.
//!
//! - [`config`]: the `[firehose]` table of a destination file, and its checks.
//! - [`mapping`]: which delivery streams a message goes to (a track event's name, a call type, or `*`).
//! - [`record`]: a message as a Firehose record (its JSON and `\n`, within Firehose's record limit) and the cut of
//!   a stream's records into PutRecordBatch calls within its limits.
//!
//! Delivery itself (the SDK, retries of only the failed records, the PutRecord fallback) and the runner's
//! registration are not built yet: nothing in the runner reads this crate so far.

pub mod config;
pub mod mapping;
pub mod record;

pub use config::{FirehoseConfig, MappingRow};
pub use mapping::Mapping;
