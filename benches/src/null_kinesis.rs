//! A null Kinesis endpoint: answers every PutRecords at once with success for each record, and counts them.
//!
//! It speaks the wire protocol of the AWS SDK (JSON 1.1 with `X-Amz-Target`), so `tributary serve` delivers to it
//! exactly as it would to Kinesis, and it checks the two limits a sender controls (at most 500 records per call,
//! each with data and a partition key), so a sender that breaks them is not measured as fast. It lists four shards
//! (for aggregation, which packs per shard), and counts the messages inside KPL aggregated records, unpacked and
//! checked, so that an aggregating sender is measured by what a consumer gets. It notes the messageId of every
//! message it takes ([`crate::traffic::Arrivals`]), so that a benchmark can show that every message it was
//! acknowledged arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::traffic::{Arrivals, message_id_of};

/// What the endpoint counted.
pub struct Counts {
    /// Records accepted, over every call.
    pub records: AtomicU64,
    /// PutRecords and PutRecord calls answered.
    pub calls: AtomicU64,
    /// Messages: records, with an aggregated record counted as the records it carries.
    pub messages: AtomicU64,
    /// The messages that arrived, by number.
    pub arrivals: Arrivals,
}

/// Message numbers the endpoint has room for: 2^28 (32 MiB of bits), more than an hour at 50,000 a second.
const ARRIVALS: u64 = 1 << 28;

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            records: AtomicU64::default(),
            calls: AtomicU64::default(),
            messages: AtomicU64::default(),
            arrivals: Arrivals::new(ARRIVALS),
        }
    }
}

impl Counts {
    /// Records accepted so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Messages accepted so far (the records inside aggregated records counted one by one).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

/// Notes the messages a record's base64 data carries, and returns how many: an aggregated record's members (its
/// digest checked, as a consumer's deaggregator does), else one.
fn take_record(data: &str, arrivals: &Arrivals) -> anyhow::Result<u64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
    // F3 89 9A C2, the KPL's magic, is "84maw" in base64.
    if !data.starts_with("84maw") {
        arrivals.mark(message_id_of(&bytes));
        return Ok(1);
    }
    let members = kinesis_sink::aggregate::unpack(&bytes).ok_or_else(|| anyhow::anyhow!("a broken aggregate"))?;
    for member in &members {
        arrivals.mark(message_id_of(&member.data));
    }
    Ok(members.len() as u64)
}

#[derive(Deserialize)]
struct PutRecords<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<RequestEntry<'a>>,
}

#[derive(Deserialize)]
struct RequestEntry<'a> {
    #[serde(rename = "Data", borrow)]
    data: &'a str,
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
            let mut messages = 0;
            for entry in &request.records {
                match take_record(entry.data, &counts.arrivals) {
                    Ok(n) => messages += n,
                    Err(_) => return refuse("ValidationException", "a record holds a broken aggregated record"),
                }
            }
            counts.records.fetch_add(n as u64, Ordering::Relaxed);
            counts.messages.fetch_add(messages, Ordering::Relaxed);
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
            let Ok(entry) = serde_json::from_slice::<RequestEntry>(&body) else {
                return refuse("SerializationException", "the request is not a PutRecord body");
            };
            let Ok(messages) = take_record(entry.data, &counts.arrivals) else {
                return refuse("ValidationException", "the record holds a broken aggregated record");
            };
            counts.records.fetch_add(1, Ordering::Relaxed);
            counts.messages.fetch_add(messages, Ordering::Relaxed);
            answer(StatusCode::OK, r#"{"SequenceNumber":"4963","ShardId":"shardId-000000000000"}"#.to_owned())
        }
        Some("ListShards") => answer(StatusCode::OK, four_shards()),
        _ => refuse("UnknownOperationException", "the null endpoint answers PutRecords, PutRecord and ListShards"),
    }
}

/// A ListShards answer: four open shards splitting the hash-key space evenly.
fn four_shards() -> String {
    let width = u128::MAX / 4;
    let shards: Vec<serde_json::Value> = (0..4u128)
        .map(|i| {
            let end = if i == 3 { u128::MAX } else { (i + 1) * width - 1 };
            serde_json::json!({
                "ShardId": format!("shardId-{i:012}"),
                "HashKeyRange": {"StartingHashKey": (i * width).to_string(), "EndingHashKey": end.to_string()},
                "SequenceNumberRange": {"StartingSequenceNumber": "0"},
            })
        })
        .collect();
    serde_json::json!({"Shards": shards}).to_string()
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
            // Kinesis takes requests of up to 10 MiB of data, 13.4 MB once base64 and JSON wrap it.
            let app = axum::Router::new()
                .fallback(move |headers: HeaderMap, body: Bytes| handle(served.clone(), headers, body))
                .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
            axum::serve(listener, app).await.expect("the null endpoint serves");
        });
    })?;
    Ok(counts)
}
