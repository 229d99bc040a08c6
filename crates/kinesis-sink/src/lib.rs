//! The Kinesis destination: delivers Segment messages to an AWS Kinesis Data Stream exactly as Segment's Amazon
//! Kinesis destination does, as code you run yourself.
//!
//! - [`config`]: the `[kinesis]` table of a destination file, and its checks.
//! - [`partition`]: which partition key and explicit hash key a record gets (user, `messageId`, or paths).
//! - [`route`]: which stream a record goes to (the configured one, or a template of message fields).
//! - [`shards`]: a stream's shards and which one a record lands on (the MD5 of its key, or its explicit hash key).
//! - [`pace`]: shard-aware pacing (a sliding second per shard), per-shard counts and hot keys.
//! - [`aggregate`]: KPL aggregation of the records of one shard.
//! - [`request_builder`]: records to entries (data encoding, partition key, size limit) and entries to requests.
//! - [`record`]: the entry, per-entry results, error classification, and [`KinesisApi`], the seam that hides the
//!   SDK.
//! - [`service`]: one batch on the wire, with retries of only the failed entries (throttling and outages; faults an
//!   operator fixes go back to the caller at once), the PutRecord fallback and credential refresh.
//! - [`identity`]: whom a call is signed as ([`SignAs`]), by Segment's rule ([`IdentityRule`]).
//! - [`credentials`]: assumed-role credentials per External ID.
//! - [`sdk`]: the AWS SDK behind the seams.
//! - [`sink`]: [`KinesisSink`], which batches records from all callers.
//! - [`setup`]: what operators run around delivery: `admin` (creating, describing and reading streams) and `iam`
//!   (the permission and trust policies a destination needs, and `check`, which tries each identity).
//!
//! With `s3-export` (S3 only), the only product crate that depends on `aws-sdk-*` (the `tests` package uses them to
//! set up emulators).

pub mod aggregate;
pub mod api;
pub mod config;
pub mod credentials;
pub mod entry;
pub mod identity;
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
pub use config::{Aggregation, DataEncoding, DeliveryConfig, KinesisConfig};
pub use entry::RequestEntry;
pub use identity::{ExternalId, IdentityRule, SignAs};
pub use sdk::{BaseCredentials, SdkKinesis};
pub use sink::KinesisSink;

/// Credentials type used by [`BaseCredentials::Static`], re-exported so callers need not depend on the AWS crates.
pub use aws_credential_types::Credentials;
