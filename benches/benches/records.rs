//! Delivering 500 records through `KinesisSink` as production does: encoding (data, partition key, size check),
//! the hop to the batcher task, the cut into PutRecords requests, the per-batch task, the service, and the SDK's
//! request entries, against a Kinesis that accepts everything at once. No network.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinesis_sink::record::EntryResult;
use kinesis_sink::sdk::sdk_entries;
use kinesis_sink::{ApiError, Entry, IdentityRule, KinesisApi, KinesisConfig, KinesisSink, SignAs};
use segment_model::Message;
use sink::{Delivery, Record, Sink};

/// A Kinesis that accepts every record at once, after building the SDK's request entries as the real client does.
struct Accepting;

#[async_trait::async_trait]
impl KinesisApi for Accepting {
    async fn put_records(&self, _: &SignAs, _: &str, entries: &[Entry]) -> Result<Vec<EntryResult>, ApiError> {
        black_box(sdk_entries(entries));
        Ok(entries.iter().map(|_| Ok(Delivery::default())).collect())
    }

    async fn put_record(&self, _: &SignAs, _: &str, _: &Entry) -> Result<Delivery, ApiError> {
        Ok(Delivery::default())
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
        let sink =
            runtime.block_on(async { KinesisSink::with_api(Accepting, &config, IdentityRule::new(&config, None)) });
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

criterion_group!(benches, entries);
criterion_main!(benches);
