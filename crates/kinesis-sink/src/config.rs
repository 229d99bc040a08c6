//! The `[kinesis]` table of a destination file.

pub use aws_common::iam::is_kms_key_arn;
use serde::Deserialize;
use sink::SecretRef;

/// Settings of a Kinesis destination: the ones Segment's Amazon Kinesis destination offers, plus the knobs a
/// self-hosted sender needs.
///
/// ```toml
/// [kinesis]
/// region = "us-west-2"
/// stream = "segment-events"
/// role_address = "arn:aws:iam::123456789012:role/tributary-kinesis"
/// secret_id = { env = "KINESIS_SECRET_ID" }
/// use_message_id = false
/// # partition_key = ["context.groupId", "userId"]   # paths tried in order; default userId, anonymousId
/// # explicit_hash_key = "properties.shard_hash"     # optional
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// The AWS region of the stream ("AWS Kinesis Stream Region" in Segment), for example `us-west-2`.
    pub region: String,
    /// The stream's name, or its ARN ("AWS Kinesis Stream Name" in Segment). A name may hold `{path}` fields of
    /// the message, dotted as in `partition_key`: `"segment-{type}"` sends each call type to its own stream,
    /// `"events-{context.app.name}"` each app. A field's characters that a stream name cannot hold become `-`;
    /// each resolved stream is batched on its own.
    pub stream: String,
    /// With a templated `stream`, where messages go whose fields are missing, or make a name longer than 128
    /// characters (required with a template, refused without one). Counted in `/metrics` as
    /// `stream_defaults`.
    #[serde(default)]
    pub default_stream: Option<String>,
    /// The ARN of the IAM role to assume ("Role Address" in Segment). Without it, the default AWS credential
    /// chain of the process is used directly.
    #[serde(default)]
    pub role_address: Option<String>,
    /// The External ID to present when assuming the role ("Secret ID" in Segment). Without it, the ID of the
    /// source each message came from is the External ID, so one destination shared by several sources assumes
    /// the role once per source. Write it as `{ env = "NAME" }` or `{ file = "PATH" }`, not inline.
    #[serde(default)]
    pub secret_id: Option<SecretRef>,
    /// Partition by `messageId` instead of `userId || anonymousId` ("Use Segment Message ID" in Segment):
    /// spreads load evenly across shards at the cost of per-user ordering.
    #[serde(default)]
    pub use_message_id: bool,
    /// Dotted paths into the message whose first present, non-empty value is the partition key (strings as they
    /// are, numbers and booleans as written): `["context.groupId", "userId"]` keeps an account's events on one
    /// shard. Default `["userId", "anonymousId"]`; `use_message_id = true` is shorthand for `["messageId"]`. A
    /// message where no path holds a value is keyed by its `messageId` (counted in `/metrics` as
    /// `partition_key_fallbacks`), never dropped.
    #[serde(default)]
    pub partition_key: Option<Vec<String>>,
    /// A dotted path whose value, a decimal number below 2^128, is the record's `ExplicitHashKey`: it picks the
    /// shard directly instead of the MD5 of the partition key. A message without the path is sent without one; a
    /// value that is not such a number is left out too, and counted in `/metrics` as `explicit_hash_keys_ignored`.
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
    /// An endpoint URL for both Kinesis and STS, for LocalStack or another emulator, for example
    /// `http://127.0.0.1:4566`. Leave unset for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// What a record's data holds: `json` (default), the message's JSON as consumers of Segment's destination
    /// read it; or `base64`, the base64 text of that JSON, for consumers built against the old wording of
    /// Segment's docs that decode base64 themselves.
    #[serde(default)]
    pub data_encoding: DataEncoding,
    /// Pace each shard below its limits: the sink reads the stream's shards (ListShards, again after a reshard
    /// and every 30 s), maps each record to its shard as Kinesis does (the MD5 of the partition key, or the
    /// explicit hash key), and holds what a shard cannot take this second instead of sending it into throttling.
    /// Default true. Without kinesis:ListShards the stream is sent to unpaced, with a warning.
    #[serde(default = "yes")]
    pub pacing: bool,
    /// The share of a shard's write limits (1,000 records and 1 MiB a second) pacing keeps each shard to, in
    /// percent, 1 to 1000. Default 100; the KPL uses 150, trading some throttling (retried) for throughput.
    #[serde(default = "full_rate")]
    pub shard_rate_limit: u32,
    /// `none` (default) sends one Kinesis record per message. `kpl` packs the messages bound for one shard into
    /// aggregated records in the Kinesis Producer Library's format (up to `delivery.max_record_bytes` each), which
    /// consumers must deaggregate: the KCL does, as do AWS's `aws-kinesis-agg` libraries and Lambda's
    /// deaggregation modules. It pays when records are small and many per shard: the 1,000 records a second
    /// limit stops counting messages.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// The ARN of the customer-managed KMS key the stream is encrypted with, if any: `iam policy` then grants
    /// `kms:GenerateDataKey` on it, and `check` tries it.
    #[serde(default)]
    pub kms_key: Option<String>,
    /// Tuning of batching and retries; the defaults suit most streams.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

fn yes() -> bool {
    true
}

fn full_rate() -> u32 {
    100
}

/// Whether messages are aggregated into KPL records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// One Kinesis record per message.
    #[default]
    None,
    /// KPL aggregated records.
    Kpl,
}

/// How a record's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataEncoding {
    /// The message's UTF-8 JSON (the SDK base64-encodes it on the wire, and Kinesis decodes it).
    #[default]
    Json,
    /// The base64 text of the message's JSON, stored as the record's data.
    Base64,
}

/// Batching and retry settings of a Kinesis destination (`[kinesis.delivery]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The most records in one PutRecords call, 1 to 500. Default 500, the Kinesis limit.
    pub max_batch_records: usize,
    /// The most bytes in one PutRecords call, data plus partition keys before base64. Default 5 MiB (5242880):
    /// Kinesis took 10 MiB from late 2025, but emulators and older regions may still enforce 5 MiB.
    pub max_batch_bytes: usize,
    /// The stream's maximum record size, data plus partition key. Default 1 MiB (1048576), the Kinesis default.
    /// A larger record fails permanently before it is sent, and the rest of its batch is delivered.
    pub max_record_bytes: usize,
    /// How long a partial batch waits for more records before it is sent, in milliseconds. Default 50.
    pub linger_ms: u64,
    /// How many times a failing record is sent before it is reported as still retryable. Default 8.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling in milliseconds; it doubles per attempt, with full jitter. Default 100.
    pub backoff_base_ms: u64,
    /// The largest backoff ceiling in milliseconds. Default 10000.
    pub backoff_max_ms: u64,
    /// How many PutRecords calls may be in flight at once. Default 4.
    pub max_in_flight: usize,
    /// The timeout of one API call, in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_batch_records: 500,
            max_batch_bytes: 5 * 1024 * 1024,
            max_record_bytes: 1024 * 1024,
            linger_ms: 50,
            max_attempts: 8,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            max_in_flight: 4,
            request_timeout_ms: 30_000,
        }
    }
}

impl KinesisConfig {
    /// The problems of `partition_key` and `explicit_hash_key`.
    pub(crate) fn key_problems(&self, add: &mut impl FnMut(&'static str, String)) {
        match (&self.partition_key, self.use_message_id) {
            (Some(_), true) => add(
                "partition_key",
                "is set beside use_message_id = true; keep one (use_message_id is partition_key = [\"messageId\"])"
                    .to_owned(),
            ),
            (Some(paths), false) if paths.is_empty() => {
                add("partition_key", "lists no path; leave it out for userId, anonymousId".to_owned())
            }
            (Some(paths), false) => {
                for path in paths {
                    if let Err(message) = crate::partition::check_path(path) {
                        add("partition_key", message);
                    }
                }
            }
            _ => {}
        }
        if let Some(Err(message)) = self.explicit_hash_key.as_deref().map(crate::partition::check_path) {
            add("explicit_hash_key", message);
        }
    }
}

impl DeliveryConfig {
    /// The problems of `[kinesis.delivery]`, keyed from the `[kinesis]` table.
    pub(crate) fn problems(&self, add: &mut impl FnMut(&'static str, String)) {
        let d = self;
        if !(1..=500).contains(&d.max_batch_records) {
            add("delivery.max_batch_records", format!("{} is not between 1 and 500", d.max_batch_records));
        }
        if !(1..=10 * 1024 * 1024).contains(&d.max_batch_bytes) {
            add("delivery.max_batch_bytes", format!("{} is not between 1 and 10485760", d.max_batch_bytes));
        }
        if !(1..=10 * 1024 * 1024).contains(&d.max_record_bytes) {
            add("delivery.max_record_bytes", format!("{} is not between 1 and 10485760", d.max_record_bytes));
        }
        if d.max_attempts == 0 {
            add("delivery.max_attempts", "must be at least 1".to_owned());
        }
        if d.max_in_flight == 0 {
            add("delivery.max_in_flight", "must be at least 1".to_owned());
        }
        if d.backoff_base_ms > d.backoff_max_ms {
            add(
                "delivery.backoff_base_ms",
                format!("{} is more than backoff_max_ms ({})", d.backoff_base_ms, d.backoff_max_ms),
            );
        }
    }
}
