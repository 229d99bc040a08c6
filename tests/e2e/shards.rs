//! Shard-aware pacing and resharding against the Kinesis stand-in, which enforces each shard's 1,000 records and
//! 1 MiB a second as Kinesis does (the emulators enforce neither).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinesis_sink::{BaseCredentials, KinesisConfig, KinesisSink};
use serde_json::{Value, json};
use sink::{Outcome, Record, Sink};
use tests::env::dummy_credentials;
use tests::standin::StandIn;

use crate::support::message;

/// A destination on the stand-in, paced or not, that retries throttling long enough for unpaced sending to get
/// through.
fn config(url: &str, stream: &str, pacing: bool) -> KinesisConfig {
    let mut config = crate::support::config(url, stream);
    config.pacing = pacing;
    config.delivery.backoff_base_ms = 50;
    config.delivery.backoff_max_ms = 1000;
    config.delivery.max_attempts = 20;
    config
}

async fn sink(config: &KinesisConfig) -> Arc<KinesisSink> {
    let settings = config.clone().resolve().expect("the suites' configs are valid");
    let identities = settings.identity_rule(None);
    Arc::new(KinesisSink::connect(&settings, identities, &BaseCredentials::Static(dummy_credentials())).await)
}

/// `count` track calls of about 300 bytes from `users` users, as records.
fn load(count: usize, users: usize, tag: &str) -> Vec<Record> {
    let source: Arc<str> = Arc::from("src_load");
    (0..count)
        .map(|i| {
            let body = json!({
                "type": "track",
                "userId": format!("user-{}", i % users),
                "event": "Loaded",
                "properties": {"n": i, "pad": "x".repeat(200)},
            });
            Record::new(source.clone(), message(body, &format!("{tag}-{i}")))
        })
        .collect()
}

/// Delivers `records` as a server's delivery workers do: chunks of 500, `parallel` at a time. Returns the
/// outcomes and the seconds it took.
async fn deliver(sink: &Arc<KinesisSink>, records: Vec<Record>, parallel: usize) -> (Vec<Outcome>, f64) {
    let started = Instant::now();
    let chunks: Vec<Vec<Record>> = records.chunks(500).map(<[Record]>::to_vec).collect();
    let mut outcomes = Vec::new();
    for wave in chunks.chunks(parallel) {
        let tasks: Vec<_> = wave
            .iter()
            .cloned()
            .map(|chunk| {
                let sink = sink.clone();
                tokio::spawn(async move { sink.deliver(chunk).await })
            })
            .collect();
        for task in tasks {
            outcomes.extend(task.await.unwrap());
        }
    }
    (outcomes, started.elapsed().as_secs_f64())
}

/// The messageIds the stand-in holds for `stream`, with how often each was stored.
fn stored_ids(standin: &StandIn, stream: &str) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for record in standin.records(stream) {
        let data: Value = serde_json::from_slice(&record.data).unwrap();
        *ids.entry(data["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_four_shards_out_of_throttling_where_unpaced_sending_is_throttled() {
    const RECORDS: usize = 50_000;
    let standin = StandIn::start().await;
    let mut throttled = Vec::new();
    for pacing in [true, false] {
        let stream = format!("paced-{pacing}");
        standin.create(&stream, 4, false);
        let sink = sink(&config(&standin.url, &stream, pacing)).await;
        let (outcomes, seconds) = deliver(&sink, load(RECORDS, 10_000, &stream), 8).await;
        let count: u64 = standin.throttled(&stream).iter().map(|(_, n)| n).sum();
        eprintln!(
            "pacing {}: {RECORDS} records to 4 shards in {seconds:.1} s ({:.0} records/s), {count} entries throttled \
             ({:.2}%)",
            if pacing { "on" } else { "off" },
            RECORDS as f64 / seconds,
            count as f64 * 100.0 / RECORDS as f64
        );
        assert_eq!(count, sink.throttled(), "the sink counts what the stand-in throttled");
        throttled.push(count);
        if pacing {
            assert!(
                outcomes.iter().all(Outcome::is_delivered),
                "paced: {:?}",
                outcomes.iter().find(|o| !o.is_delivered())
            );
            let ids = stored_ids(&standin, &stream);
            assert_eq!(ids.len(), RECORDS, "every record stored");
            assert!(ids.values().all(|&n| n == 1), "none stored twice");
            // 4 shards at 1,000 records a second: 50,000 records cannot take less than about 12 s.
            assert!(seconds >= 11.0, "paced delivery took {seconds:.1} s, faster than four shards allow");
        }
    }
    assert!(
        (throttled[0] as f64) < RECORDS as f64 * 0.01,
        "paced: {} of {RECORDS} throttled, 1% or more",
        throttled[0]
    );
    assert!(throttled[1] > 0, "unpaced sending at this load is throttled by a stand-in that enforces the limits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_split_and_merged_under_load_delivers_every_record_once() {
    const RECORDS: usize = 20_000;
    let standin = Arc::new(StandIn::start().await);
    let stream = "resharded";
    standin.create(stream, 2, false);
    let sink = sink(&config(&standin.url, stream, true)).await;
    let reshard = {
        let standin = standin.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            standin.split(stream, "shardId-000000000000");
            tokio::time::sleep(Duration::from_secs(3)).await;
            // The two children of the split become one again.
            standin.merge(stream, "shardId-000000000002", "shardId-000000000003");
        })
    };
    let (outcomes, seconds) = deliver(&sink, load(RECORDS, 5_000, "reshard"), 4).await;
    reshard.await.unwrap();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.is_delivered()).collect();
    assert!(failed.is_empty(), "{} not delivered, the first: {:?}", failed.len(), failed.first());
    let ids = stored_ids(&standin, stream);
    assert_eq!(ids.len(), RECORDS);
    assert!(ids.values().all(|&n| n == 1), "none stored twice");
    let shards_used: std::collections::BTreeSet<String> =
        standin.records(stream).into_iter().map(|r| r.shard_id).collect();
    eprintln!("reshard: {RECORDS} records in {seconds:.1} s across {shards_used:?}");
    assert!(shards_used.contains("shardId-000000000004"), "records reached the merged shard: {shards_used:?}");
    // The pacer's map follows: it knows the open shards now, and no closed one.
    let mut known = sink.known_shards(stream);
    known.sort();
    let mut open = standin.open_shards(stream);
    open.sort();
    assert_eq!(known, open);
}

#[tokio::test]
async fn injected_failures_are_retried_alone() {
    let standin = StandIn::start().await;
    standin.create("injected", 1, false);
    let sink = sink(&config(&standin.url, "injected", true)).await;
    standin.inject(3, "InternalFailure");
    let (outcomes, _) = deliver(&sink, load(10, 10, "inj"), 1).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    let ids = stored_ids(&standin, "injected");
    assert_eq!(ids.len(), 10);
    assert!(ids.values().all(|&n| n == 1));
}
