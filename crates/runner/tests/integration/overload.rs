//! Overload: when clients send more than a destination takes, ingest answers 429 once delivery is further behind
//! than `serve --max-lag`, loses nothing it acknowledged, and takes traffic again once the backlog drains; a
//! destination that is failing never makes it refuse.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::standin::StandIn;

use crate::scratch;
use crate::server::{Server, WRITE_KEY, file_destination, folder_with, kinesis_destination};

/// The second source's key: its only destination is a file, which keeps up whatever the Kinesis one does.
const OTHER_KEY: &str = "other-write-key";

/// A second source, `src_other`, feeding the `file` destination `side`.
fn other_source(config: &std::path::Path, side: &std::path::Path) {
    crate::write_files(
        config,
        &[
            (
                "sources/other.toml",
                "id = \"src_other\"\nname = \"Other\"\nwrite_key = { env = \"OTHER_WRITE_KEY\" }\ndestinations = [\"side\"]\n",
            ),
            ("destinations/side.toml", &file_destination("side", side)),
        ],
    );
}

/// One batch of 100 track calls with message IDs `{prefix}-{first}` onwards, sent with `key`.
async fn post_batch(client: &reqwest::Client, url: &str, key: &str, prefix: &str, first: usize) -> reqwest::Response {
    let batch: Vec<Value> = (first..first + 100)
        .map(|i| json!({"type": "track", "userId": format!("u{}", i % 50), "event": "Pressed", "messageId": format!("{prefix}-{i}")}))
        .collect();
    client
        .post(format!("{url}/v1/batch"))
        .basic_auth(key, Some(""))
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .expect("the server answers")
}

fn stored_ids(standin: &StandIn, stream: &str) -> HashSet<String> {
    standin
        .records(stream)
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap()["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// What the load phase saw.
#[derive(Default)]
struct Load {
    /// Message IDs answered 200.
    acknowledged: Vec<String>,
    /// Message IDs answered 429.
    refused: Vec<String>,
    /// When the first 429 came, from the start of the load.
    first_refusal: Option<Duration>,
}

/// Posts batches of 100 to the slow destination's source at about 3,000 messages a second (three times what the
/// destination takes) until 429s have come for `after_refusals`, checking each 429's answer, and a batch to the
/// other source each round, which must always be taken.
async fn overload(server: &Server, after_refusals: Duration) -> Load {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut load = Load::default();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    for round in 0.. {
        tick.tick().await;
        if load.first_refusal.is_some_and(|at| started.elapsed() > at + after_refusals) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no 429 in 30 s of overload\n{}", server.log());
        let response = post_batch(&client, &server.url, WRITE_KEY, "slow", round * 100).await;
        let status = response.status().as_u16();
        let ids = (round * 100..round * 100 + 100).map(|i| format!("slow-{i}"));
        match status {
            200 => load.acknowledged.extend(ids),
            429 => {
                let headers = response.headers().clone();
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["code"], "delivery_behind", "{body}");
                let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert_eq!(retry_after, 1, "a tenth of the 2 s bound, at least a second");
                assert_eq!(headers["x-ratelimit-reset"], headers["retry-after"]);
                load.first_refusal.get_or_insert(started.elapsed());
                load.refused.extend(ids);
            }
            other => panic!("answered {other}: {}\n{}", response.text().await.unwrap(), server.log()),
        }
        let side = post_batch(&client, &server.url, OTHER_KEY, "side", round * 100).await;
        assert_eq!(
            side.status(),
            200,
            "a source whose destination keeps up is refused: {}",
            side.text().await.unwrap()
        );
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_makes_ingest_push_back_then_drain_and_take_traffic_again() {
    let standin = StandIn::start().await;
    standin.create("slow", 4, false);
    // One request of 100 records at a time, each answered after 100 ms: about 1,000 messages a second.
    standin.slow_down(Duration::from_millis(100));
    let destination = kinesis_destination("slow", "slow", &standin.url, "max_batch_records = 100\nmax_in_flight = 1");
    let config = folder_with("overload", &[("slow", &destination)], "");
    let side = scratch("overload-side").join("side.jsonl");
    other_source(&config, &side);
    let spool = scratch("overload-spool");
    let server = Server::start_with_env(&config, &spool, &["--max-lag", "2s"], &[("OTHER_WRITE_KEY", OTHER_KEY)]).await;

    let load = overload(&server, Duration::from_secs(2)).await;
    let first = load.first_refusal.expect("the loop ends on refusals");
    // The lag cannot pass 2 s before 2 s of load; a burst shorter than the bound is absorbed.
    assert!(first > Duration::from_secs(2), "refused after {first:?}, before the lag could pass the bound");
    assert!(load.refused.len() >= 500, "only {} messages refused in 2 s past the bound", load.refused.len());
    let client = reqwest::Client::new();
    let lag = server.metric(&client, "tributary_delivery_lag_seconds{destination=\"slow\"}").await;
    assert!(lag > 2.0, "the lag gauge reads {lag} while requests are refused");
    let refused = server.metric(&client, "tributary_messages_rejected_total{reason=\"delivery_behind\"}").await;
    assert!(refused >= 5.0, "{refused} refusals counted");
    let health: Value = reqwest::get(format!("{}/health", server.url)).await.unwrap().json().await.unwrap();
    assert!(health["destinations"]["slow"]["lag_seconds"].as_f64().unwrap() > 2.0, "{health}");

    // The backlog drains: every acknowledged message arrives, none of the refused ones does.
    let acknowledged: HashSet<String> = load.acknowledged.iter().cloned().collect();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stored_ids(&standin, "slow");
        if acknowledged.is_subset(&stored) {
            let smuggled: Vec<&String> = load.refused.iter().filter(|id| stored.contains(*id)).take(3).collect();
            assert!(smuggled.is_empty(), "messages answered 429 were delivered: {smuggled:?}");
            assert_eq!(stored.len(), acknowledged.len());
            break;
        }
        assert!(Instant::now() < give_up, "{} of {} acknowledged messages arrived", stored.len(), acknowledged.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(standin.records("slow").len(), acknowledged.len(), "a message was delivered twice");

    // Caught up, the server takes traffic again (the lag is read four times a second).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let response = post_batch(&client, &server.url, WRITE_KEY, "after", 0).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(server.log().contains("back within --max-lag"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_never_makes_ingest_refuse() {
    // Nothing listens on the port: every delivery fails, and the destination is degraded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let destination = kinesis_destination("down", "down", &format!("http://{closed}"), "");
    let config = folder_with("overload-down", &[("down", &destination)], "");
    let spool = scratch("overload-down-spool");
    let server = Server::start(&config, &spool, &["--max-lag", "1s"]).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let response = post_batch(&client, &server.url, WRITE_KEY, "down", round * 100).await;
        assert_eq!(response.status(), 200, "after {:?}: {}", started.elapsed(), response.text().await.unwrap());
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health: Value = reqwest::get(format!("{}/health", server.url)).await.unwrap().json().await.unwrap();
    let down = &health["destinations"]["down"];
    assert_eq!(down["state"], "degraded", "{health}");
    assert!(down["oldest_waiting_seconds"].as_f64().unwrap() > 1.0, "{health}");
    assert_eq!(down["lag_seconds"], 0.0, "{health}");
}
