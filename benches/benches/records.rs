//! Delivering 500 records through `KinesisSink` as production does.
//!
//! - `kinesis_sink_deliver`: in process: encoding (data, partition key, size check), the hop to the batcher task,
//!   the cut into PutRecords requests, the per-batch task, the service, and the SDK's request entries, against a
//!   Kinesis that accepts everything at once. No network. Limit: 500,000 records a second.
//! - `kinesis_sdk_put_records`: the whole path, through the SDK's serialization, SigV4 signing and HTTP, to the null
//!   Kinesis endpoint on loopback (`benches::null_kinesis`, its own thread), beside a baseline in the same run: the
//!   same 500 records sent by a plain `aws-sdk-kinesis` `put_records` call on a client built as any SDK user builds
//!   one. Limit: Tributary at least 0.9 times the baseline.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinesis_sink::api::{EntryResult, Placement};
use kinesis_sink::sdk::sdk_entries;
use kinesis_sink::{ApiError, KinesisApi, KinesisConfig, KinesisSink, RequestEntry, SignAs};
use segment_model::Message;
use sink::{Record, Sink};

/// The allocator `tributary` runs with, for both sides of every comparison here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Kinesis that accepts every record at once, after building the SDK's request entries as the real client does.
struct Accepting;

#[async_trait::async_trait]
impl KinesisApi for Accepting {
    async fn put_records(&self, _: &SignAs, _: &str, entries: &[RequestEntry]) -> Result<Vec<EntryResult>, ApiError> {
        black_box(sdk_entries(entries));
        Ok(entries.iter().map(|_| Ok(Placement::default())).collect())
    }

    async fn put_record(&self, _: &SignAs, _: &str, _: &RequestEntry) -> Result<Placement, ApiError> {
        Ok(Placement::default())
    }

    async fn refresh_credentials(&self, _: &SignAs) {}

    async fn list_shards(&self, _: &SignAs, _: &str) -> Result<Vec<kinesis_sink::shards::Shard>, ApiError> {
        Ok(shards(SHARDS))
    }
}

/// Shards enough, at the highest `shard_rate_limit` (10,000 records a second each), that pacing (on, as by
/// default) never holds a record back at the rates measured, though every iteration sends the same 500 keys: what
/// is measured is what pacing costs, not what it holds.
const SHARDS: u128 = 4096;

/// `n` shards splitting the hash-key space evenly.
fn shards(n: u128) -> Vec<kinesis_sink::shards::Shard> {
    let width = u128::MAX / n;
    (0..n)
        .map(|i| kinesis_sink::shards::Shard {
            id: format!("shardId-{i:012}"),
            start: i * width,
            end: if i + 1 == n { u128::MAX } else { (i + 1) * width - 1 },
        })
        .collect()
}

fn entries(c: &mut Criterion) {
    let bytes = benches::track_700();
    let source: Arc<str> = Arc::from("src_web");
    let records: Vec<Record> = (0..500)
        .map(|i| {
            let body = String::from_utf8(bytes.clone()).unwrap().replace("user_1234567890", &format!("user_{i:010}"));
            let mut message = Message::from_slice(body.as_bytes()).unwrap();
            message.enrich_with(time::OffsetDateTime::now_utc(), String::new);
            Record::new(source.clone(), message)
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("kinesis_sink_deliver");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, encoding, pacing, aggregation) in
        [("json", "json", true, "none"), ("json_unpaced", "json", false, "none"), ("base64", "base64", true, "none")]
    {
        let config: KinesisConfig = serde_json::from_value(serde_json::json!({
            "region": "us-west-2", "stream": "bench", "data_encoding": encoding, "pacing": pacing,
            "aggregation": aggregation, "shard_rate_limit": 1000,
        }))
        .unwrap();
        let config = config.resolve().unwrap();
        let sink = runtime.block_on(async { KinesisSink::with_api(Accepting, &config, config.identity_rule(None)) });
        group.bench_function(name, |b| {
            b.iter_batched(
                || records.clone(),
                |records| {
                    let outcomes = runtime.block_on(sink.deliver(records));
                    assert!(outcomes.iter().all(|o| o.is_delivered()));
                    outcomes
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The 500 records both sides of the SDK comparison send: distinct users and messageIds, about 700 bytes each.
fn varied_records(source: &Arc<str>) -> Vec<Record> {
    let bytes = String::from_utf8(benches::track_700()).unwrap();
    (0..500)
        .map(|i| {
            let body = bytes
                .replace("user_1234567890", &format!("user_{i:010}"))
                .replace("0a1b2c3d-4e5f-6789-abcd-ef0123456789", &format!("0a1b2c3d-4e5f-6789-abcd-{i:012}"));
            let mut message = Message::from_slice(body.as_bytes()).unwrap();
            message.enrich_with(time::OffsetDateTime::now_utc(), String::new);
            Record::new(source.clone(), message)
        })
        .collect()
}

/// Rounds of the SDK comparison; `cargo xtask bench` reads `kinesis_sdk_put_records/{tributary,sdk_baseline}_N`.
const SDK_ROUNDS: usize = 3;

fn through_the_sdk(c: &mut Criterion) {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;

    let port = benches::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let counts = benches::null_kinesis::start(std::net::SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    let source: Arc<str> = Arc::from("src_web");
    let records = varied_records(&source);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let credentials = Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench");

    // Pacing off on our side: the baseline does not pace, and the in-process bench measures what pacing costs.
    let config: KinesisConfig = serde_json::from_value(serde_json::json!({
        "region": "us-east-1", "stream": "bench", "endpoint": endpoint, "pacing": false,
    }))
    .unwrap();
    let config = config.resolve().unwrap();
    let base = kinesis_sink::BaseCredentials::Static(credentials.clone());
    let sink = runtime.block_on(KinesisSink::connect(&config, config.identity_rule(None), &base));

    // A client as the SDK's guide builds one: the default config loader, given a region, an endpoint and keys.
    let shared = runtime.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(credentials)
            .load(),
    );
    let client = aws_sdk_kinesis::Client::new(&shared);
    // What a plain SDK user's loop does with the same records: an entry per record (the enriched JSON as data,
    // keyed by user), then one put_records call. Building the entries is timed on both sides.
    let to_entries = |records: Vec<Record>| -> Vec<PutRecordsRequestEntry> {
        records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(r.payload().to_vec()))
                    .partition_key(r.user_key())
                    .build()
                    .unwrap()
            })
            .collect()
    };
    // The two take turns, three rounds each, so that the machine's drift over the minute weighs on both alike:
    // measured one after the other, a slow few seconds moved the ratio by as much as its margin.
    let mut group = c.benchmark_group("kinesis_sdk_put_records");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.measurement_time(std::time::Duration::from_secs(4)).sample_size(60);
    for round in 1..=SDK_ROUNDS {
        group.bench_function(format!("tributary_{round}"), |b| {
            b.iter_batched(
                || records.clone(),
                |records| {
                    let outcomes = runtime.block_on(sink.deliver(records));
                    assert!(outcomes.iter().all(|o| o.is_delivered()), "{:?}", outcomes.first());
                    outcomes
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("sdk_baseline_{round}"), |b| {
            b.iter_batched(
                || records.clone(),
                |records| {
                    let entries = to_entries(records);
                    let output = runtime
                        .block_on(client.put_records().stream_name("bench").set_records(Some(entries)).send())
                        .unwrap();
                    assert_eq!(output.failed_record_count(), Some(0));
                    output
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    black_box(counts.records());
}

// The SDK comparison runs first, in a fresh process: after the in-process groups' millions of records, the heap
// they leave behind slowed the allocation-heavier side (Tributary's) by 7 to 13% and its twin by 2 to 6%, which
// moved the ratio by up to 0.07 between builds whose code on that path was the same.
criterion_group!(benches, through_the_sdk, entries);
criterion_main!(benches);
