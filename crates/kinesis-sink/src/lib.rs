//! The Kinesis destination: delivers Segment messages to an AWS Kinesis Data Stream exactly as Segment's Amazon
//! Kinesis destination does, as code you run yourself.
//!
//! - [`config`]: the `[kinesis]` table of a destination file, and its checks.
//! - [`partition`]: which partition key and explicit hash key a record gets (user, `messageId`, or paths).
//! - [`route`]: which stream a record goes to (the configured one, or a template of message fields).
//! - [`shards`]: a stream's shards and which one a record lands on (the MD5 of its key, or its explicit hash key).
//! - `metrics`: the families the sink reports in `/metrics` (shard counts, hot keys, partitioning fallbacks).
//! - [`pace`]: shard-aware pacing (a sliding second per shard), per-shard counts and hot keys.
//! - [`aggregate`]: KPL aggregation of the records of one shard.
//! - [`request_builder`]: records to entries (data encoding, partition key, size limit) and entries to requests.
//! - [`record`]: the entry, per-entry results, error classification, and [`KinesisApi`], the seam that hides the
//!   SDK.
//! - [`service`]: one batch on the wire, with retries of only the failed entries (throttling and outages; faults an
//!   operator fixes go back to the caller at once), the PutRecord fallback and credential refresh.
//! - [`sdk`]: the Kinesis SDK behind the seam; its credentials, by Segment's rule, come from `aws-common`.
//! - [`sink`]: [`KinesisSink`], which batches records from all callers.
//! - [`setup`]: what operators run around delivery: `admin` (creating, describing and reading streams) and `iam`
//!   (the permission and trust policies a destination needs, and `check`, which tries each identity).
//!
//! Whom calls are signed as, the role's credential cache, the SDK's configuration, error classification and the
//! trust-policy helpers are `aws-common`'s, which a second AWS sink shares; this crate depends on that and on
//! `aws-sdk-kinesis` alone.

pub mod aggregate;
pub mod api;
pub mod config;
pub mod entry;
pub(crate) mod metrics;
pub mod pace;
pub mod partition;
pub mod request_builder;
pub mod route;
pub mod sdk;
pub mod service;
pub mod setup;
pub mod shards;
pub mod sink;

pub use api::{ApiError, ErrorKind, KinesisApi};
pub use aws_common::{BaseCredentials, Credentials, ExternalId, IdentityRule, SignAs};
pub use config::{Aggregation, DataEncoding, DeliveryConfig, KinesisConfig};
pub use entry::RequestEntry;
pub use sdk::SdkKinesis;
pub use sink::KinesisSink;
