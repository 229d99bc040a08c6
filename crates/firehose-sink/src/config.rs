//! The `[firehose]` table of a destination file.

use aws_common::iam::{is_region, is_role_arn};
use segment_model::ConfigProblem;
use serde::Deserialize;
use sink::SecretRef;

/// The longest name a delivery stream may have.
const MAX_STREAM_NAME: usize = 64;

/// Settings of a Firehose destination: the ones Segment's Amazon Kinesis Firehose destination offers.
///
/// ```toml
/// [firehose]
/// region = "us-west-2"
/// role_address = "arn:aws:iam::123456789012:role/tributary-firehose"
/// secret_id = { env = "FIREHOSE_SECRET_ID" }
/// mapping = [
///   { event = "Order Completed", stream = "orders" },
///   { event = "page", stream = "pages" },
///   { event = "*", stream = "everything" },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The AWS region of the delivery streams, for example `us-west-2`.
    pub region: String,
    /// An endpoint URL for both Firehose and STS, for LocalStack, moto or another emulator, for example
    /// `http://127.0.0.1:4566`. Leave unset for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The ARN of the IAM role to assume ("Role Address" in Segment). Without it, the default AWS credential
    /// chain of the process is used directly.
    #[serde(default)]
    pub role_address: Option<String>,
    /// The External ID to present when assuming the role ("Secret ID" in Segment). Without it, the ID of the
    /// source each message came from is the External ID, as a Kinesis destination's. Write it as
    /// `{ env = "NAME" }` or `{ file = "PATH" }`, not inline.
    #[serde(default)]
    pub secret_id: Option<SecretRef>,
    /// Which messages go to which delivery streams ("Map Segment Events to Firehose Delivery Streams" in
    /// Segment), as rows `{ event = "...", stream = "..." }`. A row's `event` is a track event's name or a call
    /// type (`page`, `track`, `identify`, `screen`, `group`, `alias`), matched without regard to case: `track`
    /// takes every track call, `Order Completed` the track calls of that name. `*` takes every message. A message
    /// goes to the stream of every row it matches, once each; a message no row matches is not sent (counted, not
    /// an error). A stream is a delivery stream's name, used as written.
    pub mapping: Vec<MappingRow>,
    /// How records are sent and retried (`[firehose.delivery]`); every key has a default.
    #[serde(default)]
    pub delivery: FirehoseDelivery,
}

/// `[firehose.delivery]`: how a Firehose destination sends and retries. Batches are always cut at Firehose's own
/// limits (500 records, 4 MiB per PutRecordBatch call, 1,000 KiB per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirehoseDelivery {
    /// How many times a failing record is sent within one delivery before it goes back to the spool, to be tried
    /// again later (until the destination's `max_retry_duration`). Default 8.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling in milliseconds; it doubles per attempt, with full jitter. Default 100.
    pub backoff_base_ms: u64,
    /// The largest backoff ceiling in milliseconds. Default 10000.
    pub backoff_max_ms: u64,
    /// How many PutRecordBatch calls may be in flight at once. Default 4.
    pub max_in_flight: usize,
    /// The timeout of one API call, in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
}

impl Default for FirehoseDelivery {
    fn default() -> FirehoseDelivery {
        FirehoseDelivery {
            max_attempts: 8,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            max_in_flight: 4,
            request_timeout_ms: 30_000,
        }
    }
}

impl FirehoseDelivery {
    /// The retry policy these settings make.
    pub fn retry(&self) -> aws_common::retry::RetryPolicy {
        aws_common::retry::RetryPolicy {
            max_attempts: self.max_attempts,
            base: std::time::Duration::from_millis(self.backoff_base_ms),
            max: std::time::Duration::from_millis(self.backoff_max_ms),
        }
    }
}

/// One row of `mapping`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRow {
    /// A track event's name, a call type, or `*`.
    pub event: String,
    /// The delivery stream's name.
    pub stream: String,
}

impl FirehoseConfig {
    /// Every problem of the table, by key; none for a table production can use.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut add = |key: &'static str, message: String| problems.push(ConfigProblem { key, message });
        if !is_region(&self.region) {
            add("region", format!("{:?} is not an AWS region (for example \"us-west-2\")", self.region));
        }
        if let Some(role) = self.role_address.as_deref().filter(|role| !is_role_arn(role)) {
            add("role_address", format!("{role:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"));
        }
        if let Some(endpoint) =
            self.endpoint.as_deref().filter(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            add("endpoint", format!("{endpoint:?} is not an http:// or https:// URL"));
        }
        if self.mapping.is_empty() {
            add(
                "mapping",
                "maps no event to a delivery stream, so nothing would be sent; add rows such as { event = \"*\", stream = \"NAME\" }"
                    .to_owned(),
            );
        }
        let delivery = &self.delivery;
        for (key, value) in [
            ("delivery.max_attempts", u64::from(delivery.max_attempts)),
            ("delivery.max_in_flight", delivery.max_in_flight as u64),
            ("delivery.request_timeout_ms", delivery.request_timeout_ms),
            ("delivery.backoff_max_ms", delivery.backoff_max_ms),
        ] {
            if value == 0 {
                add(key, "must be at least 1".to_owned());
            }
        }
        if delivery.backoff_base_ms > delivery.backoff_max_ms {
            add(
                "delivery.backoff_base_ms",
                format!("{} is above delivery.backoff_max_ms ({})", delivery.backoff_base_ms, delivery.backoff_max_ms),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (n, row) in self.mapping.iter().enumerate() {
            let at = format!("row {} ({{ event = {:?}, stream = {:?} }})", n + 1, row.event, row.stream);
            if row.event.trim().is_empty() {
                add("mapping", format!("{at}: its event is empty; name a track event, a call type, or \"*\""));
            }
            if let Err(why) = check_stream(&row.stream) {
                add("mapping", format!("{at}: {why}"));
            }
            if !seen.insert((row.event.to_lowercase(), row.stream.as_str())) {
                add("mapping", format!("{at} repeats an earlier row"));
            }
        }
        problems
    }
}

/// Whether `name` is a delivery stream's name as Firehose takes it: 1 to 64 letters, digits, `_`, `.` or `-`.
pub fn check_stream(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_STREAM_NAME {
        return Err(format!("the stream {name:?} is not 1 to {MAX_STREAM_NAME} characters long"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!(
            "the stream {name:?} holds {bad:?}; a delivery stream's name has letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}
