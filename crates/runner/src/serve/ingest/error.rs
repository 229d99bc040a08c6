//! Error answers: a status and a JSON body `{"code", "message"}`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use segment_model::{BatchError, ParseError};

/// An error answer to a request: what ingest refuses, and how (kinesis-sink's `ApiError` is an AWS call's failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What is wrong, naming the field (and, in a batch, the message's index).
    pub message: String,
    /// Seconds to wait before retrying, for 429.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into(), retry_after: None }
    }

    /// A 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 500: the server failed on the request (a handler's panic, a task it waited on that failed); nothing of
    /// it was acknowledged, and the client retries.
    pub fn internal() -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed on this request; retry")
    }

    /// A 503 while the server shuts down.
    pub fn shutting_down() -> Refusal {
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
    }

    /// A 429 while the spool is full.
    pub fn spool_full(how: &str) -> Refusal {
        Refusal {
            retry_after: Some(5),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "spool_full",
                format!("the spool is full ({how}); retry later"),
            )
        }
    }

    /// A 429 while delivery to a destination the source feeds is further behind than `--max-lag`. The answer does
    /// not name the destination: a browser's write key is public, the server's layout is not.
    pub fn behind(behind: &crate::serve::lag::Behind<'_>) -> Refusal {
        let seconds = behind_retry_after(behind.max);
        Refusal {
            retry_after: Some(seconds),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "delivery_behind",
                format!(
                    "delivery of this source's messages is {:.1} s behind, more than the server's bound of {:.1} s; \
                     retry in {seconds} s",
                    behind.lag.as_secs_f64(),
                    behind.max.as_secs_f64()
                ),
            )
        }
    }

    /// A 429 for a source over its `max_messages_per_second`.
    pub fn rate_limited(seconds: u64) -> Refusal {
        Refusal {
            retry_after: Some(seconds),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this source is over its max_messages_per_second; retry in {seconds} s"),
            )
        }
    }

    /// The answer to a single call's body that could not be parsed.
    pub fn from_parse(error: ParseError) -> Refusal {
        let code = match &error {
            ParseError::TooLarge { .. } => "body_too_large",
            ParseError::InvalidJson { .. } | ParseError::TooDeep { .. } | ParseError::NotAnObject(_) => "invalid_json",
            ParseError::Invalid(_) => "invalid_message",
        };
        Refusal::bad_request(code, error.to_string())
    }

    /// The answer to a batch envelope that was refused.
    pub fn from_batch(error: BatchError) -> Refusal {
        let code = match &error {
            BatchError::TooLarge { .. } | BatchError::TooLargeMerged { .. } => "body_too_large",
            BatchError::Parse(
                ParseError::InvalidJson { .. } | ParseError::NotAnObject(_) | ParseError::TooDeep { .. },
            ) => "invalid_json",
            BatchError::Parse(_) | BatchError::Envelope { .. } => "invalid_batch",
            BatchError::Empty => "empty_batch",
            BatchError::TooManyMessages { .. } => "too_many_messages",
        };
        Refusal::bad_request(code, error.to_string())
    }
}

/// The wait a 429 for lag asks for: a tenth of the bound, between 1 and 10 seconds. The lag falls as soon as
/// delivery has caught up with the oldest messages, so the wait is short beside the bound, and a refusal costs the
/// server next to nothing.
fn behind_retry_after(max: std::time::Duration) -> u64 {
    (max.as_secs() / 10).clamp(1, 10)
}

/// Why a request was refused, carried on its response to the layer that logs 5xx answers.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The refusal's code.
    pub code: &'static str,
    /// Its message (which names no secret: it is what the client reads).
    pub message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({"code": self.code, "message": self.message}));
        let mut response = (self.status, body).into_response();
        // For the log line of a 5xx answer (`ingest::answered`).
        response.extensions_mut().insert(Answered { code: self.code, message: self.message });
        if let Some(seconds) = self.retry_after {
            // Segment's libraries read either: Retry-After (seconds), or analytics.js's x-ratelimit-reset (seconds).
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            response.headers_mut().insert("x-ratelimit-reset", seconds.into());
        }
        response
    }
}
