//! The Firehose destination, as Segment's Amazon Kinesis Firehose destination sends: each message's JSON and a
//! newline, to the delivery streams its event maps to.
//!
//! - [`config`]: the `[firehose]` table of a destination file, and its checks.
//! - [`mapping`]: which delivery streams a message goes to (a track event's name, a call type, or `*`).
//! - [`record`]: a message as a Firehose record (its JSON and `\n`, within Firehose's record limit) and the cut of
//!   a stream's records into PutRecordBatch calls within its limits.
//! - [`sink`]: [`FirehoseSink`], which maps each delivery's records to their streams, groups them by identity and
//!   stream, and sends the calls; a record mapped to several streams is delivered once every stream has it.
//! - [`service`]: one call's records on the wire and their retries (only the failed records), the PutRecord
//!   fallback and credential refresh, by the rules every AWS sink shares (`aws_common::retry`).
//! - [`api`]: [`FirehoseApi`], the seam that hides the SDK, with per-record results; [`sdk`] implements it.
//! - [`policy`]: the permission policy a role needs (pure); [`setup`]: `check`, and the delivery-stream calls behind
//!   `streams` and `tail`.
//!
//! The `sdk` feature (on by default) carries `aws-sdk-firehose`: [`sdk`], [`setup`] and [`FirehoseSink::connect`].
//! Without it the config, mapping, policy and the sink over any [`FirehoseApi`] remain, so a build that delivers
//! only to Kinesis (`cargo xtask demo`'s) does not compile the Firehose SDK.
//!
//! Whom calls are signed as, the role's credential cache, the SDK's configuration, error classification and the
//! retry rules are `aws-common`'s, shared with the Kinesis sink; this crate depends on that, on the `sink` trait
//! and on `aws-sdk-firehose`, never on `kinesis-sink`.

pub mod api;
pub mod config;
pub mod mapping;
pub mod policy;
pub mod record;
#[cfg(feature = "sdk")]
pub mod sdk;
pub mod service;
#[cfg(feature = "sdk")]
pub mod setup;
pub mod sink;

pub use api::FirehoseApi;
pub use aws_common::{BaseCredentials, IdentityRule, SignAs};
pub use config::{FirehoseConfig, FirehoseDelivery, MappingRow};
pub use mapping::Mapping;
#[cfg(feature = "sdk")]
pub use sdk::SdkFirehose;
pub use sink::FirehoseSink;
