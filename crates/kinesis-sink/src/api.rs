//! [`KinesisApi`], the trait that hides the SDK client and is the seam for tests of retries, partial failures, the
//! PutRecord fallback and credential refresh, with the per-entry results and errors of its calls.

use sink::Delivery;

use crate::entry::RequestEntry;
use crate::identity::SignAs;

/// The outcome of one entry of a PutRecords call.
pub type EntryResult = Result<Delivery, EntryError>;

/// A per-entry failure inside a successful PutRecords response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// `ErrorCode`, for example `ProvisionedThroughputExceededException`.
    pub code: String,
    /// `ErrorMessage`.
    pub message: String,
}

/// How a failed call should be handled.
///
/// Only [`ErrorKind::Invalid`] fails a record for good. Everything else an operator can fix (a policy, a trust
/// policy, a stream, a KMS key) or that passes by itself, so the record waits: [`ErrorKind::Retryable`] is retried
/// within the delivery, the rest on the spool's schedule, for up to the destination's `max_retry_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling, an internal failure, an outage or a timeout: retry with backoff.
    Retryable,
    /// The session credentials expired: refresh them, then retry.
    ExpiredToken,
    /// The caller may not perform the action (HTTP 403): wait until a policy allows it.
    AccessDenied,
    /// Assuming the role was refused: wait until the trust policy or External ID is fixed.
    AssumeRoleRefused,
    /// Something else to fix outside Tributary, or an error code this sink does not know: a missing stream, a
    /// disabled or missing KMS key.
    Fixable,
    /// The request was refused for what a record holds (a validation error): that record cannot be delivered.
    Invalid,
}

/// A failed Kinesis or STS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// How to handle it.
    pub kind: ErrorKind,
    /// The AWS error code, when the response had one.
    pub code: Option<String>,
    /// A description that names the stream or role involved.
    pub message: String,
}

impl ApiError {
    /// An error classified from its code and HTTP status.
    pub fn classify(code: Option<&str>, status: Option<u16>, message: String) -> ApiError {
        let kind = match code {
            Some(code) => classify_code(code),
            None => match status {
                Some(403) => ErrorKind::AccessDenied,
                Some(429) | Some(500..) | None => ErrorKind::Retryable,
                Some(_) => ErrorKind::Fixable,
            },
        };
        ApiError { kind, code: code.map(str::to_owned), message }
    }
}

/// How an AWS error code is handled, whether for a whole call or one entry of a PutRecords response.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Retryable,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => ErrorKind::ExpiredToken,
        "AccessDenied" | "AccessDeniedException" => ErrorKind::AccessDenied,
        "ValidationException" | "InvalidArgumentException" | "SerializationException" => ErrorKind::Invalid,
        _ => ErrorKind::Fixable,
    }
}

/// The Kinesis calls the sink makes. The SDK implementation is [`crate::SdkKinesis`]; tests supply their own.
#[async_trait::async_trait]
pub trait KinesisApi: Send + Sync {
    /// One PutRecords call to `stream` (a name or an ARN): a result per entry, in order, or an error for the whole
    /// call.
    async fn put_records(
        &self,
        identity: &SignAs,
        stream: &str,
        entries: &[RequestEntry],
    ) -> Result<Vec<EntryResult>, ApiError>;

    /// One PutRecord call.
    async fn put_record(&self, identity: &SignAs, stream: &str, entry: &RequestEntry) -> Result<Delivery, ApiError>;

    /// The open shards of `stream` and their hash-key ranges (ListShards, every page).
    async fn list_shards(&self, identity: &SignAs, stream: &str) -> Result<Vec<crate::shards::Shard>, ApiError>;

    /// Drops cached credentials for `identity`, so the next call assumes the role again.
    async fn refresh_credentials(&self, identity: &SignAs);
}
