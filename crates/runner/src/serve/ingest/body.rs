//! Reading request bodies within Segment's limits, checked while reading so an oversize body is never buffered
//! whole, and with gzip bounded by the same limit after decompression.

use std::io::Read as _;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::Refusal;

fn too_large(limit: usize) -> Refusal {
    Refusal::bad_request("body_too_large", format!("the body is larger than the {limit} bytes Segment allows"))
}

/// How long a request may take to read the rest of its body while it holds its turn. A body that has arrived
/// (nearly every one: clients send it with the headers) is read in its turn; a slower one gives the turn back and
/// queues again once it is in, so that slow clients never hold the requests behind them for long.
const IN_TURN: Duration = Duration::from_millis(10);

/// Reads a body of at most `limit` bytes (after any gzip decompression), arriving within `timeout`, in a turn of
/// `turns`: returns it with the turn, which the caller holds while it parses and stores it. Reading in turn
/// leaves the bodies of the requests still waiting in their sockets instead of pulling hundreds into memory at
/// once, which cost 512 clients' ingest a tenth more CPU per message.
pub async fn read<'a>(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
    turns: &'a Semaphore,
) -> Result<(Bytes, SemaphorePermit<'a>), Refusal> {
    let gzip = checked(headers, limit)?;
    let turn = turns.acquire().await.map_err(|_| Refusal::shutting_down())?;
    let mut collect = std::pin::pin!(tokio::time::timeout(timeout, Limited::new(body, limit).collect()));
    let (collected, turn) = match tokio::time::timeout(IN_TURN, collect.as_mut()).await {
        Ok(collected) => (collected, turn),
        Err(_) => {
            drop(turn);
            let collected = collect.await;
            (collected, turns.acquire().await.map_err(|_| Refusal::shutting_down())?)
        }
    };
    let collected = collected.map_err(|_| {
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
    Ok((if gzip { inflate(&raw, limit)? } else { raw }, turn))
}

/// Checks the headers that describe the body: its type, its encoding (whether it is gzip) and its declared length.
fn checked(headers: &HeaderMap, limit: usize) -> Result<bool, Refusal> {
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
    Ok(gzip)
}

/// `raw` decompressed, at most `limit` bytes of it.
fn inflate(raw: &[u8], limit: usize) -> Result<Bytes, Refusal> {
    // Read one byte past the limit to tell "exactly at the limit" from "over it", without inflating a bomb.
    let mut inflated = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(raw)
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
