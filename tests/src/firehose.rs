//! Firehose fixtures: buckets and what delivery streams wrote to them, read back from S3, and a proxy in front of
//! the emulator that fails chosen records of PutRecordBatch calls as Firehose does (a 200 with `FailedPutCount`
//! and an `ErrorCode` per failed record), which neither emulator can be made to do.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// The Firehose emulator's URL: Firehose is served where S3 is (moto's, or LocalStack's), and writes to it.
pub fn url() -> String {
    crate::env::s3()
}

/// Where an S3 emulator is and whom to sign as there.
#[derive(Clone)]
pub struct At {
    /// The emulator's URL.
    pub url: String,
    /// The credentials to sign with.
    pub credentials: aws_credential_types::Credentials,
}

impl At {
    /// The S3 emulator the suites share, with the dummy credentials it takes.
    pub fn shared() -> At {
        At { url: crate::env::s3(), credentials: crate::env::dummy_credentials() }
    }

    /// The moto that enforces IAM, as its administrator.
    pub fn enforcing() -> At {
        let (url, credentials) = crate::env::iam();
        At { url, credentials }
    }

    async fn client(&self) -> aws_sdk_s3::Client {
        let shared = crate::env::sdk_config(&self.url, self.credentials.clone()).await;
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build())
    }
}

/// Creates a bucket with a fresh name at `at`; returns its name.
pub async fn bucket(at: &At, prefix: &str) -> String {
    let name = crate::stream::unique_name(prefix).to_lowercase();
    at.client().await.create_bucket().bucket(&name).send().await.expect("create a bucket");
    name
}

/// The objects under `prefix` in `bucket` at `at`, in key order, each whole.
pub async fn objects(at: &At, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let s3 = at.client().await;
    let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.expect("list the bucket");
    let mut objects = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = s3.get_object().bucket(bucket).key(&key).send().await.expect("get an object").body;
        objects.push((key, body.collect().await.unwrap().into_bytes().to_vec()));
    }
    objects.sort();
    objects
}

/// The records under `prefix`, split at each `\n` with the newline kept: what a reader of the objects gets.
/// Panics if an object does not end with a newline (a record without its delimiter).
pub async fn records(at: &At, bucket: &str, prefix: &str) -> Vec<String> {
    let mut records = Vec::new();
    for (key, bytes) in objects(at, bucket, prefix).await {
        let text = String::from_utf8(bytes).expect("objects hold text");
        assert!(text.ends_with('\n'), "{key} does not end with a newline: {text:?}");
        records.extend(text.split_inclusive('\n').map(str::to_owned));
    }
    records
}

/// One PutRecordBatch call the proxy saw: each record's data, and whether the proxy failed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The delivery stream.
    pub stream: String,
    /// Each record's data, decoded, with whether it was failed.
    pub records: Vec<(String, bool)>,
}

/// A proxy in front of the Firehose emulator that fails, with `ServiceUnavailableException`, every `nth` record of a
/// PutRecordBatch call (the 2nd, 4th... for 2) the first time that record is seen, forwards the rest, and answers
/// as Firehose does. Every other call passes through. It stops when dropped.
pub struct FailingFirehose {
    /// The proxy's URL, to use as the destination's endpoint.
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FailingFirehose {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    upstream: String,
    nth: usize,
    seen: Mutex<HashSet<String>>,
    calls: Arc<Mutex<Vec<Call>>>,
    http: reqwest::Client,
}

impl FailingFirehose {
    /// Starts the proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: &str, nth: usize) -> FailingFirehose {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            nth,
            seen: Mutex::new(HashSet::new()),
            calls: calls.clone(),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(move |headers: HeaderMap, body: Bytes| handle(state.clone(), headers, body))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FailingFirehose { url, calls, task }
    }

    /// The PutRecordBatch calls seen so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// Sends `body` upstream with `headers` (the signature is the client's; the emulator does not check it when it
/// does not enforce IAM) and returns the answer.
async fn forward(state: &State, headers: &HeaderMap, body: Vec<u8>) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = state.http.post(format!("{}/", state.upstream)).body(body);
    for (name, value) in headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = request.send().await.expect("the emulator answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) && !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection")
        {
            out.insert(name, value);
        }
    }
    (status, out, answer.bytes().await.unwrap_or_default())
}

async fn handle(state: Arc<State>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !target.ends_with(".PutRecordBatch") {
        let (status, headers, body) = forward(&state, &headers, body.to_vec()).await;
        return (status, headers, body).into_response();
    }
    let mut request: Value = serde_json::from_slice(&body).expect("a PutRecordBatch body");
    let stream = request["DeliveryStreamName"].as_str().unwrap_or_default().to_owned();
    let all = request["Records"].as_array().cloned().unwrap_or_default();
    let mut failed = Vec::with_capacity(all.len());
    {
        let mut seen = state.seen.lock().unwrap();
        for (i, record) in all.iter().enumerate() {
            let data = record["Data"].as_str().unwrap_or_default().to_owned();
            failed.push(seen.insert(data) && (i + 1) % state.nth == 0);
        }
    }
    let decode = |record: &Value| {
        let data = base64::engine::general_purpose::STANDARD.decode(record["Data"].as_str().unwrap()).unwrap();
        String::from_utf8(data).unwrap()
    };
    state.calls.lock().unwrap().push(Call {
        stream,
        records: all.iter().zip(&failed).map(|(record, &failed)| (decode(record), failed)).collect(),
    });
    let passed: Vec<Value> = all.iter().zip(&failed).filter(|(_, f)| !**f).map(|(r, _)| r.clone()).collect();
    let mut taken = Vec::new().into_iter();
    if !passed.is_empty() {
        request["Records"] = Value::Array(passed);
        let (status, headers, body) = forward(&state, &headers, serde_json::to_vec(&request).unwrap()).await;
        if status != StatusCode::OK {
            return (status, headers, body).into_response();
        }
        let answer: Value = serde_json::from_slice(&body).expect("a PutRecordBatch answer");
        taken = answer["RequestResponses"].as_array().cloned().unwrap_or_default().into_iter();
    }
    let responses: Vec<Value> = failed
        .iter()
        .map(|&failed| match failed {
            true => json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down (injected)."}),
            false => taken.next().expect("the emulator answers each record it took"),
        })
        .collect();
    let count = failed.iter().filter(|f| **f).count();
    let answer = json!({"FailedPutCount": count, "Encrypted": false, "RequestResponses": responses});
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], answer.to_string()).into_response()
}
