//! Reading request bodies within Segment's limits, checked while reading so an oversize body is never buffered
//! whole, and with gzip bounded by the same limit after decompression.

use std::io::Read as _;

use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::Refusal;

fn too_large(limit: usize) -> Refusal {
    Refusal::bad_request("body_too_large", format!("the body is larger than the {limit} bytes Segment allows"))
}

/// Reads a body of at most `limit` bytes (after any gzip decompression), arriving within `timeout`.
pub async fn read(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Refusal> {
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(kind.as_str(), "application/json" | "text/plain" | "") {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {kind:?} is not accepted; send application/json"),
            ));
        }
    }
    let gzip =
        match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase()) {
            None => false,
            Some(encoding) if encoding == "gzip" => true,
            Some(encoding) if encoding == "identity" => false,
            Some(encoding) => {
                return Err(Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    format!("Content-Encoding {encoding:?} is not accepted; send gzip or none"),
                ));
            }
        };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await.map_err(|_| {
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )
    })?;
    let raw = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(limit)),
        Err(e) => return Err(Refusal::bad_request("unreadable_body", format!("reading the body: {e}"))),
    };
    if !gzip {
        return Ok(raw);
    }
    // Read one byte past the limit to tell "exactly at the limit" from "over it", without inflating a bomb.
    let mut inflated = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| Refusal::bad_request("invalid_gzip", format!("the gzip body could not be decompressed: {e}")))?;
    if inflated.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(inflated))
}

/// Reads and drops at most `limit` bytes of a body that will not be used, without decompressing or parsing it.
pub async fn discard(body: axum::body::Body, limit: usize) {
    let _ = Limited::new(body, limit).collect().await;
}
