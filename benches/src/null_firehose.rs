//! A null Firehose endpoint: answers every PutRecordBatch and PutRecord at once with success for each record, and
//! counts them.
//!
//! It speaks the SDK's wire protocol (JSON 1.1 with `X-Amz-Target`), so `tributary serve` delivers to it exactly as
//! it would to Firehose, and it checks what Firehose enforces of a sender (1 to 500 records and at most 4 MiB per
//! call, at most 1,000 KiB per record) and what Segment's destination promises (each record one message's JSON
//! and a newline), so that a sender that breaks them is refused rather than measured as fast. It notes the
//! messageId of every message it takes ([`crate::traffic::Arrivals`]), so that a benchmark can show that every
//! message it was acknowledged arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use crate::traffic::{Arrivals, message_id_of};

/// What the endpoint counted.
pub struct Counts {
    /// Records (messages) accepted, over every call.
    pub records: AtomicU64,
    /// Calls answered.
    pub calls: AtomicU64,
    /// The messages that arrived, by number.
    pub arrivals: Arrivals,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts { records: AtomicU64::default(), calls: AtomicU64::default(), arrivals: Arrivals::new(1 << 28) }
    }
}

impl Counts {
    /// Records accepted so far: one message each.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(rename = "DeliveryStreamName")]
    _stream: serde::de::IgnoredAny,
    #[serde(rename = "Records", borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "Data", borrow)]
    data: &'a str,
}

#[derive(Deserialize)]
struct Single<'a> {
    #[serde(rename = "DeliveryStreamName")]
    _stream: serde::de::IgnoredAny,
    #[serde(rename = "Record", borrow)]
    record: Record<'a>,
}

/// Firehose's limits: records per call, bytes per call, bytes per record (before base64).
const MAX_RECORDS: usize = 500;
const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1_000 * 1024;

fn answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

fn refuse(code: &str, message: &str) -> Response {
    answer(StatusCode::BAD_REQUEST, format!(r#"{{"__type":"{code}","message":"{message}"}}"#))
}

/// Decodes one record and checks it is one message's JSON and a newline within the record limit; returns its
/// size.
fn take(data: &str, arrivals: &Arrivals) -> Result<usize, &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| "a record's Data is not base64")?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err("a record is over 1,000 KiB");
    }
    let Some(json) = bytes.strip_suffix(b"\n") else { return Err("a record does not end with a newline") };
    if json.first() != Some(&b'{') || json.contains(&b'\n') {
        return Err("a record is not one JSON message and a newline");
    }
    arrivals.mark(message_id_of(json));
    Ok(bytes.len())
}

async fn handle(counts: Arc<Counts>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    counts.calls.fetch_add(1, Ordering::Relaxed);
    match target.rsplit('.').next() {
        Some("PutRecordBatch") => {
            let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
                return refuse("SerializationException", "the request is not a PutRecordBatch body");
            };
            let n = batch.records.len();
            if !(1..=MAX_RECORDS).contains(&n) {
                return refuse("InvalidArgumentException", "Records must hold 1 to 500 entries");
            }
            let mut bytes = 0;
            for record in &batch.records {
                match take(record.data, &counts.arrivals) {
                    Ok(size) => bytes += size,
                    Err(why) => return refuse("InvalidArgumentException", why),
                }
            }
            if bytes > MAX_CALL_BYTES {
                return refuse("InvalidArgumentException", "the call is over 4 MiB");
            }
            counts.records.fetch_add(n as u64, Ordering::Relaxed);
            let mut out = String::with_capacity(64 + n * 48);
            out.push_str(r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":["#);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"RecordId":"49546986683135544286507457936321625675700192471156785154"}"#);
            }
            out.push_str("]}");
            answer(StatusCode::OK, out)
        }
        Some("PutRecord") => {
            let Ok(single) = serde_json::from_slice::<Single>(&body) else {
                return refuse("SerializationException", "the request is not a PutRecord body");
            };
            if let Err(why) = take(single.record.data, &counts.arrivals) {
                return refuse("InvalidArgumentException", why);
            }
            counts.records.fetch_add(1, Ordering::Relaxed);
            answer(
                StatusCode::OK,
                r#"{"RecordId":"49546986683135544286507457936321625675700192471156785154","Encrypted":false}"#
                    .to_owned(),
            )
        }
        _ => refuse("UnknownOperationException", "the null endpoint answers PutRecordBatch and PutRecord"),
    }
}

/// Serves the null endpoint on `address` from a thread of its own (with its own runtime, so that a load generator
/// in the same process does not starve it) and returns its counts.
pub fn start(address: SocketAddr) -> anyhow::Result<Arc<Counts>> {
    let counts = Arc::new(Counts::default());
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let served = counts.clone();
    std::thread::Builder::new().name("null-firehose".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            // A 4 MiB call is about 5.6 MB once base64 and JSON wrap it.
            let app = axum::Router::new()
                .fallback(move |headers: HeaderMap, body: Bytes| handle(served.clone(), headers, body))
                .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024));
            axum::serve(listener, app).await.expect("the null endpoint serves");
        });
    })?;
    Ok(counts)
}
