//! The Kinesis destination: delivers Segment messages to an AWS Kinesis Data Stream exactly as Segment's Amazon
//! Kinesis destination does, as code you run yourself.
//!
//! - [`config`]: the `[kinesis]` table of a destination file, and its checks; [`KinesisConfig::resolve`] turns it,
//!   once, into [`KinesisSettings`] ([`settings`]), what production uses.
//! - [`partition`]: which partition key and explicit hash key a record gets (user, `messageId`, or paths).
//! - [`route`]: which stream a record goes to (the configured one, or a template of message fields).
//! - [`request_builder`]: records to entries (partition key, data encoding, record size limit).
//! - [`entry`]: [`RequestEntry`], a record as a request carries it.
//! - [`sink`]: [`KinesisSink`], which keys each caller's entries by identity and stream and gathers batches from
//!   all callers under the caps.
//! - [`requests`]: the one place a batch is cut into requests, with KPL aggregation ([`aggregate`]) inside it.
//! - [`service`]: one request on the wire and its retries: only the failed entries, throttling and outages only
//!   (faults an operator fixes go back to the caller at once), the PutRecord fallback and credential refresh.
//! - [`registry`]: per stream, the shard map ([`shards`]), the pacing windows ([`pace`]), the per-shard counts and
//!   hot keys; `metrics` turns them and the partitioning counts into `/metrics` families.
//! - [`api`]: [`KinesisApi`], the seam that hides the SDK, with per-entry results; [`sdk`] implements it.
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
pub mod registry;
pub mod request_builder;
pub mod requests;
pub mod route;
pub mod sdk;
pub mod service;
pub mod settings;
pub mod setup;
pub mod shards;
pub mod sink;

pub use api::{ApiError, ErrorKind, KinesisApi};
pub use aws_common::{BaseCredentials, Credentials, ExternalId, IdentityRule, SignAs};
pub use config::{Aggregation, DataEncoding, DeliveryConfig, KinesisConfig};
pub use entry::RequestEntry;
pub use sdk::SdkKinesis;
pub use settings::KinesisSettings;
pub use sink::KinesisSink;
