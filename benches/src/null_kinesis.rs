//! A null Kinesis endpoint: answers every PutRecords at once with success for each record, and counts them.
//!
//! It speaks the wire protocol of the AWS SDK (JSON 1.1 with `X-Amz-Target`), so `tributary serve` delivers to it
//! exactly as it would to Kinesis, and it checks the two limits a sender controls (at most 500 records per call,
//! each with data and a partition key), so a sender that breaks them is not measured as fast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// What the endpoint counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// Records accepted, over every call.
    pub records: AtomicU64,
    /// PutRecords and PutRecord calls answered.
    pub calls: AtomicU64,
}

impl Counts {
    /// Records accepted so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
struct PutRecords {
    #[serde(rename = "Records")]
    records: Vec<RequestEntry>,
}

#[derive(Deserialize)]
struct RequestEntry {
    #[serde(rename = "Data")]
    _data: serde::de::IgnoredAny,
    #[serde(rename = "PartitionKey")]
    _partition_key: serde::de::IgnoredAny,
}

fn answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

fn refuse(code: &str, message: &str) -> Response {
    answer(StatusCode::BAD_REQUEST, format!(r#"{{"__type":"{code}","message":"{message}"}}"#))
}

async fn handle(counts: Arc<Counts>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    counts.calls.fetch_add(1, Ordering::Relaxed);
    match target.rsplit('.').next() {
        Some("PutRecords") => {
            let Ok(request) = serde_json::from_slice::<PutRecords>(&body) else {
                return refuse("SerializationException", "the request is not a PutRecords body");
            };
            let n = request.records.len();
            if !(1..=500).contains(&n) {
                return refuse("ValidationException", "Records must hold 1 to 500 entries");
            }
            counts.records.fetch_add(n as u64, Ordering::Relaxed);
            let mut out = String::with_capacity(40 + n * 64);
            out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"SequenceNumber":"4963","ShardId":"shardId-000000000000"}"#);
            }
            out.push_str("]}");
            answer(StatusCode::OK, out)
        }
        Some("PutRecord") => {
            counts.records.fetch_add(1, Ordering::Relaxed);
            answer(StatusCode::OK, r#"{"SequenceNumber":"4963","ShardId":"shardId-000000000000"}"#.to_owned())
        }
        _ => refuse("UnknownOperationException", "the null endpoint answers PutRecords and PutRecord only"),
    }
}

/// Serves the null endpoint on `address` from a thread of its own (with its own runtime, so that a load
/// generator in the same process does not starve it) and returns its counts.
pub fn start(address: SocketAddr) -> anyhow::Result<Arc<Counts>> {
    let counts = Arc::new(Counts::default());
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let served = counts.clone();
    std::thread::Builder::new().name("null-kinesis".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            let app = axum::Router::new()
                .fallback(move |headers: HeaderMap, body: Bytes| handle(served.clone(), headers, body));
            axum::serve(listener, app).await.expect("the null endpoint serves");
        });
    })?;
    Ok(counts)
}
