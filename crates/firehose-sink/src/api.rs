//! [`FirehoseApi`], the trait that hides the SDK client and is the seam for tests of retries, per-record failures,
//! the PutRecord fallback and credential refresh.

pub use aws_common::{ApiError, ErrorKind, SignAs};
use bytes::Bytes;

/// The outcome of one record of a PutRecordBatch call: its `RecordId`, or why it failed.
pub type RecordResult = Result<String, RecordError>;

/// A per-record failure inside a successful PutRecordBatch response (`FailedPutCount > 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// `ErrorCode`, for example `ServiceUnavailableException`.
    pub code: String,
    /// `ErrorMessage`.
    pub message: String,
}

/// The Firehose calls the sink makes. The SDK implementation is [`crate::SdkFirehose`]; tests supply their own.
#[async_trait::async_trait]
pub trait FirehoseApi: Send + Sync {
    /// One PutRecordBatch call to the delivery stream `stream`: a result per record, in order, or an error for the
    /// whole call.
    async fn put_record_batch(
        &self,
        identity: &SignAs,
        stream: &str,
        records: &[Bytes],
    ) -> Result<Vec<RecordResult>, ApiError>;

    /// One PutRecord call; the record's `RecordId`.
    async fn put_record(&self, identity: &SignAs, stream: &str, record: &Bytes) -> Result<String, ApiError>;

    /// Drops cached credentials for `identity`, so the next call assumes the role again.
    async fn refresh_credentials(&self, identity: &SignAs);
}
