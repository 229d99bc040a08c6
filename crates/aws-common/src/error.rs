//! A failed AWS call and how it is handled, classified from its error code and HTTP status.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// How a failed call should be handled.
///
/// Only [`ErrorKind::Invalid`] fails a record for good. Everything else an operator can fix (a policy, a trust
/// policy, a stream, a KMS key) or that passes by itself, so the record waits: [`ErrorKind::Retryable`] is retried
/// within the delivery, the rest when the runner next retries the entry, for up to the destination's
/// `max_retry_duration`.
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
    /// Something else to fix outside Tributary, or an error code no sink knows: a missing stream, a disabled or
    /// missing KMS key.
    Fixable,
    /// The request was refused for what a record holds (a validation error): that record cannot be delivered.
    Invalid,
}

/// A failed AWS call (a sink's service, STS or IAM).
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

/// How an AWS error code is handled, whether for a whole call or one entry of a batch response. The codes are
/// those Kinesis, Firehose, STS and KMS answer; an unknown one is [`ErrorKind::Fixable`], so a record waits.
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

/// Turns an SDK error into an [`ApiError`] that names what was being done (`doing`, for example
/// `kinesis:PutRecords on stream events`).
pub fn api_error<E>(error: &SdkError<E, HttpResponse>, doing: &str) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|response| response.status().as_u16());
    let detail = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match status {
            Some(status) => format!("HTTP {status}: {}", DisplayErrorContext(error)),
            None => DisplayErrorContext(error).to_string(),
        },
    };
    ApiError::classify(error.code(), status, format!("{doing}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_before_statuses() {
        let throttled = ApiError::classify(Some("ProvisionedThroughputExceededException"), Some(400), String::new());
        assert_eq!(throttled.kind, ErrorKind::Retryable);
        assert_eq!(ApiError::classify(None, Some(403), String::new()).kind, ErrorKind::AccessDenied);
        assert_eq!(ApiError::classify(None, Some(503), String::new()).kind, ErrorKind::Retryable);
        assert_eq!(ApiError::classify(None, Some(404), String::new()).kind, ErrorKind::Fixable);
        assert_eq!(classify_code("ValidationException"), ErrorKind::Invalid);
        assert_eq!(classify_code("ResourceNotFoundException"), ErrorKind::Fixable);
        assert_eq!(classify_code("ExpiredTokenException"), ErrorKind::ExpiredToken);
    }
}
