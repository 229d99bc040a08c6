//! A Kinesis stand-in written for the suites: it speaks the Kinesis JSON protocol the SDK uses for the calls the
//! sink makes (PutRecords, PutRecord, ListShards, DescribeStreamSummary) and enforces what Kinesis enforces and
//! emulators do not: each shard takes at most 1,000 records and 1 MiB in any one-second window, and throttles the
//! rest with `ProvisionedThroughputExceededException`. Tests reshard streams under load (split, merge), inject
//! failures, slow every answer down, and read every record back in process.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// What a shard takes in a second.
pub const RECORDS_PER_SECOND: u64 = 1000;
/// 1 MiB.
pub const BYTES_PER_SECOND: u64 = 1024 * 1024;

/// A record as the stand-in stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The shard it landed on.
    pub shard_id: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Shard {
    id: String,
    parent: Option<String>,
    start: u128,
    end: u128,
    open: bool,
    window: VecDeque<(Instant, u64)>,
    window_bytes: u64,
    accepted: u64,
    throttled: u64,
}

impl Shard {
    fn new(id: String, parent: Option<String>, start: u128, end: u128) -> Shard {
        Shard {
            id,
            parent,
            start,
            end,
            open: true,
            window: VecDeque::new(),
            window_bytes: 0,
            accepted: 0,
            throttled: 0,
        }
    }

    /// Whether a record of `bytes` fits the last second's window now; if so, it is counted.
    fn take(&mut self, now: Instant, bytes: u64) -> bool {
        while self.window.front().is_some_and(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1)) {
            let (_, b) = self.window.pop_front().expect("checked");
            self.window_bytes -= b;
        }
        if self.window.len() as u64 >= RECORDS_PER_SECOND || self.window_bytes + bytes > BYTES_PER_SECOND {
            self.throttled += 1;
            return false;
        }
        self.window.push_back((now, bytes));
        self.window_bytes += bytes;
        self.accepted += 1;
        true
    }
}

#[derive(Debug, Default)]
struct Stream {
    shards: Vec<Shard>,
    next_shard: usize,
    on_demand: bool,
    records: Vec<Stored>,
    next_sequence: u64,
}

impl Stream {
    fn add_shard(&mut self, parent: Option<String>, start: u128, end: u128) {
        let id = format!("shardId-{:012}", self.next_shard);
        self.next_shard += 1;
        self.shards.push(Shard::new(id, parent, start, end));
    }

    fn open_shard(&mut self, hash: u128) -> Option<&mut Shard> {
        self.shards.iter_mut().find(|s| s.open && s.start <= hash && hash <= s.end)
    }
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<String, Stream>,
    /// Entries still to fail with this code, whatever the shard.
    inject: VecDeque<String>,
}

/// A running stand-in; it stops when dropped.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`, the endpoint to configure.
    pub url: String,
    state: Arc<Mutex<State>>,
    /// How long each answer waits before it is given, in milliseconds.
    delay: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Kinesis error answer.
fn error(code: &str, message: &str) -> Response {
    let body = json!({"__type": code, "message": message}).to_string();
    (StatusCode::BAD_REQUEST, [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", code)], body)
        .into_response()
}

fn answer(value: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], value.to_string()).into_response()
}

fn md5_hash(key: &str) -> u128 {
    kinesis_sink::shards::hash_of_key(key)
}

impl StandIn {
    /// Starts a stand-in on a free loopback port.
    pub async fn start() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let delay = Arc::new(AtomicU64::new(0));
        let waits = delay.clone();
        // Kinesis takes requests of up to 10 MiB of data, 13.4 MB once base64 and JSON wrap it; the limits that
        // count are checked on the decoded records.
        let app = axum::Router::new()
            .fallback(axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                let wait = Duration::from_millis(waits.load(Ordering::Relaxed));
                async move {
                    // The wait comes before the request is judged: a slow Kinesis is slow to take records, and
                    // what it holds is what it took after the wait.
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    handle(&state, &headers, &body)
                }
            }))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { url, state, delay, task }
    }

    /// Makes every request from now on wait `delay` before it is answered (zero: answer at once), as a Kinesis
    /// far away or under strain does.
    pub fn slow_down(&self, delay: Duration) {
        self.delay.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Creates `name` with `shards` shards splitting the hash-key space evenly, as CreateStream does.
    pub fn create(&self, name: &str, shards: u32, on_demand: bool) {
        let mut stream = Stream { on_demand, ..Stream::default() };
        let width = u128::MAX / u128::from(shards);
        for i in 0..u128::from(shards) {
            let end = if i + 1 == u128::from(shards) { u128::MAX } else { (i + 1) * width - 1 };
            stream.add_shard(None, i * width, end);
        }
        self.state.lock().unwrap().streams.insert(name.to_owned(), stream);
    }

    /// Splits the open shard `shard` at the middle of its range into two children, as SplitShard does.
    pub fn split(&self, name: &str, shard: &str) {
        let mut state = self.state.lock().unwrap();
        let stream = state.streams.get_mut(name).expect("a stream the test made");
        let parent = stream.shards.iter_mut().find(|s| s.id == shard && s.open).expect("an open shard");
        parent.open = false;
        let (start, end) = (parent.start, parent.end);
        let middle = start + (end - start) / 2;
        stream.add_shard(Some(shard.to_owned()), start, middle);
        stream.add_shard(Some(shard.to_owned()), middle + 1, end);
    }

    /// Merges two open shards with adjacent ranges into one child, as MergeShards does.
    pub fn merge(&self, name: &str, first: &str, second: &str) {
        let mut state = self.state.lock().unwrap();
        let stream = state.streams.get_mut(name).expect("a stream the test made");
        let mut range = (u128::MAX, 0u128);
        for shard in stream.shards.iter_mut().filter(|s| s.open && (s.id == first || s.id == second)) {
            shard.open = false;
            range = (range.0.min(shard.start), range.1.max(shard.end));
        }
        stream.add_shard(Some(first.to_owned()), range.0, range.1);
    }

    /// The open shards of `name`, by ID.
    pub fn open_shards(&self, name: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.streams[name].shards.iter().filter(|s| s.open).map(|s| s.id.clone()).collect()
    }

    /// Fails the next `count` entries sent (to any stream) with `code`, before any limit is looked at.
    pub fn inject(&self, count: usize, code: &str) {
        self.state.lock().unwrap().inject.extend(std::iter::repeat_n(code.to_owned(), count));
    }

    /// Every record `name` holds, in the order they were taken.
    pub fn records(&self, name: &str) -> Vec<Stored> {
        self.state.lock().unwrap().streams[name].records.clone()
    }

    /// Entries throttled so far, per shard ID (every shard the stream ever had).
    pub fn throttled(&self, name: &str) -> Vec<(String, u64)> {
        let state = self.state.lock().unwrap();
        state.streams[name].shards.iter().map(|s| (s.id.clone(), s.throttled)).collect()
    }
}

/// One request: the operation is named by the `X-Amz-Target` header, its input is JSON.
fn handle(state: &Mutex<State>, headers: &HeaderMap, body: &[u8]) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(operation) = target.strip_prefix("Kinesis_20131202.") else {
        return error("UnknownOperationException", &format!("no such operation {target:?}"));
    };
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return error("SerializationException", "the body is not JSON");
    };
    let name = input["StreamName"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| input["StreamARN"].as_str().and_then(|a| a.rsplit('/').next()).map(str::to_owned));
    let mut state = state.lock().unwrap();
    let State { streams, inject } = &mut *state;
    let stream = match &name {
        Some(name) => match streams.get_mut(name) {
            Some(stream) => stream,
            None => {
                return error(
                    "ResourceNotFoundException",
                    &format!("Stream {name} under account 000000000000 not found."),
                );
            }
        },
        None => return error("ValidationException", "StreamName or StreamARN is required"),
    };
    let name = name.expect("matched above");
    match operation {
        "PutRecords" => put_records(stream, inject, &input),
        "PutRecord" => match put_one(stream, inject, &input, Instant::now()) {
            Ok(result) if result.get("ErrorCode").is_none() => answer(result),
            Ok(result) => error(result["ErrorCode"].as_str().unwrap_or_default(), "throttled"),
            Err(message) => error("ValidationException", &message),
        },
        "ListShards" => {
            let shards: Vec<Value> = stream
                .shards
                .iter()
                .map(|s| {
                    let mut sequence = json!({"StartingSequenceNumber": "0"});
                    if !s.open {
                        sequence["EndingSequenceNumber"] = json!("99999999999999999999");
                    }
                    json!({
                        "ShardId": s.id,
                        "ParentShardId": s.parent,
                        "HashKeyRange": {"StartingHashKey": s.start.to_string(), "EndingHashKey": s.end.to_string()},
                        "SequenceNumberRange": sequence,
                    })
                })
                .collect();
            answer(json!({"Shards": shards}))
        }
        "DescribeStreamSummary" => answer(json!({"StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": if stream.on_demand { "ON_DEMAND" } else { "PROVISIONED" }},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 1.7e9,
            "EnhancedMonitoring": [],
            "EncryptionType": "NONE",
            "OpenShardCount": stream.shards.iter().filter(|s| s.open).count(),
            "ConsumerCount": 0,
        }})),
        other => error("UnknownOperationException", &format!("the stand-in does not serve {other}")),
    }
}

/// PutRecords as Kinesis checks it: at most 500 entries and 5 MiB, each entry valid, each judged on its own.
fn put_records(stream: &mut Stream, inject: &mut VecDeque<String>, input: &Value) -> Response {
    let Some(entries) = input["Records"].as_array() else {
        return error("ValidationException", "Records is required");
    };
    if entries.is_empty() || entries.len() > 500 {
        return error("ValidationException", &format!("{} records: between 1 and 500", entries.len()));
    }
    let total: usize = entries
        .iter()
        .map(|e| e["Data"].as_str().map_or(0, |d| d.len() / 4 * 3) + e["PartitionKey"].as_str().map_or(0, str::len))
        .sum();
    if total > 10 * 1024 * 1024 {
        return error("InvalidArgumentException", &format!("the request's records are {total} bytes, over 10 MiB"));
    }
    let now = Instant::now();
    let mut results = Vec::with_capacity(entries.len());
    let mut failed = 0;
    for entry in entries {
        match put_one(stream, inject, entry, now) {
            Ok(result) => {
                failed += usize::from(result.get("ErrorCode").is_some());
                results.push(result);
            }
            Err(message) => return error("ValidationException", &message),
        }
    }
    answer(json!({"FailedRecordCount": failed, "Records": results}))
}

/// One entry: its shard by explicit hash key or the MD5 of its key, then the shard's window.
fn put_one(stream: &mut Stream, inject: &mut VecDeque<String>, entry: &Value, now: Instant) -> Result<Value, String> {
    let key = entry["PartitionKey"].as_str().filter(|k| (1..=256).contains(&k.chars().count()));
    let key = key.ok_or_else(|| "PartitionKey must be 1 to 256 characters".to_owned())?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(entry["Data"].as_str().unwrap_or_default())
        .map_err(|e| format!("Data is not base64: {e}"))?;
    if data.len() + key.len() > 1024 * 1024 {
        return Err("a record is over 1 MiB".to_owned());
    }
    let explicit = entry["ExplicitHashKey"].as_str().map(str::to_owned);
    let hash = match &explicit {
        Some(text) => text.parse::<u128>().map_err(|_| format!("ExplicitHashKey {text:?} is not below 2^128"))?,
        None => md5_hash(key),
    };
    if let Some(code) = inject.pop_front() {
        return Ok(json!({"ErrorCode": code, "ErrorMessage": "injected by the test"}));
    }
    let bytes = (data.len() + key.len()) as u64;
    let shard = stream.open_shard(hash).ok_or_else(|| "no open shard takes the hash key".to_owned())?;
    if !shard.take(now, bytes) {
        return Ok(json!({
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": format!("Rate exceeded for shard {} in stream.", shard.id),
        }));
    }
    let shard_id = shard.id.clone();
    stream.next_sequence += 1;
    let sequence = format!("{:056}", stream.next_sequence);
    stream.records.push(Stored {
        shard_id: shard_id.clone(),
        partition_key: key.to_owned(),
        explicit_hash_key: explicit,
        data,
    });
    Ok(json!({"ShardId": shard_id, "SequenceNumber": sequence}))
}
