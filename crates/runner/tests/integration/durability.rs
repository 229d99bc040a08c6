//! Nothing acknowledged is lost: a server killed with SIGKILL, and a Kinesis outage, against the emulator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::env::dummy_credentials;
use tests::proxy::FaultProxy;
use tests::stream::{client, create, read_all, unique_name};

use runner::delivery::worker::{ENTRIES_PER_READ, PIPELINE};

use crate::scratch;
use crate::server::{Server, folder, kinesis_destination};

/// The Kinesis emulator for whole-path suites, and the delivery settings it needs. moto numbers records without
/// a lock, so concurrent PutRecords to one shard overwrite each other there: it gets one call in flight.
fn emulator() -> (String, String, &'static str) {
    let endpoints = tests::env::kinesis_endpoints();
    match endpoints.iter().find(|(name, _)| name != "moto") {
        Some((name, url)) => (name.clone(), url.clone(), ""),
        None => (endpoints[0].0.clone(), endpoints[0].1.clone(), "max_in_flight = 1"),
    }
}

/// One request of 100 messages, with IDs `prefix-batch-0` to `prefix-batch-99`.
fn batch(prefix: &str, number: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..100).map(|i| format!("{prefix}-{number}-{i}")).collect();
    let items: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "track", "userId": format!("user_{}", number % 17), "event": "Load", "messageId": id, "properties": {"padding": "p".repeat(400)}}))
        .collect();
    (ids, json!({"batch": items}))
}

/// Polls the stream until every ID in `acked` is in it; returns how many records carried each ID.
async fn wait_for(url: &str, stream: &str, acked: &HashSet<String>, timeout: Duration) -> HashMap<String, usize> {
    let admin = client(url, dummy_credentials()).await;
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for record in read_all(&admin, stream).await {
            let data: Value = serde_json::from_slice(&record.data).unwrap();
            *seen.entry(data["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let missing = acked.iter().filter(|id| !seen.contains_key(*id)).count();
        if missing == 0 {
            return seen;
        }
        assert!(tokio::time::Instant::now() < give_up, "{missing} acknowledged messages never reached the stream");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn sigkill_midway_loses_nothing_acknowledged() {
    let (name, url, delivery) = emulator();
    let stream = unique_name("crash");
    create(&client(&url, dummy_credentials()).await, &stream, 2).await;
    let config = folder("crash", &[("main", &kinesis_destination("main", &stream, &url, delivery))]);
    let spool = scratch("crash-spool");
    let http = reqwest::Client::new();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let attempted = Arc::new(Mutex::new(HashSet::<usize>::new()));

    // Phase one: four clients send until the server dies under them.
    let mut server = Server::start(&config, &spool, &[]).await;
    let killer = {
        let acked = acked.clone();
        async move {
            while acked.lock().unwrap().len() < 8_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let senders = (0..4).map(|lane| {
        let (http, url, acked, attempted) = (http.clone(), server.url.clone(), acked.clone(), attempted.clone());
        async move {
            for number in (lane..200).step_by(4) {
                attempted.lock().unwrap().insert(number);
                let (ids, body) = batch("crash", number);
                let response = http
                    .post(format!("{url}/v1/batch"))
                    .basic_auth(crate::server::WRITE_KEY, Some(""))
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    _ => return,
                }
            }
        }
    });
    let sending = futures::future::join_all(senders);
    tokio::pin!(sending);
    tokio::select! {
        _ = &mut sending => panic!("every request finished before the kill; the test did not kill midway"),
        () = killer => server.signal("KILL"),
    }
    sending.await;
    assert!(server.wait(Duration::from_secs(5)).await.is_some(), "the server survived SIGKILL");
    let acked_before = acked.lock().unwrap().len();

    // Phase two: restart on the same spool and send what was not acknowledged.
    let server = Server::start(&config, &spool, &[]).await;
    let pending: Vec<usize> = (0..200)
        .filter(|n| {
            let (ids, _) = batch("crash", *n);
            !acked.lock().unwrap().contains(&ids[0])
        })
        .collect();
    for number in pending {
        let (ids, body) = batch("crash", number);
        let (status, _) = server.post(&http, "/v1/batch", &body).await;
        assert_eq!(status, 200);
        acked.lock().unwrap().extend(ids);
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 20_000);
    let seen = wait_for(&url, &stream, &acked, Duration::from_secs(180)).await;
    let unknown: Vec<&String> = seen.keys().filter(|id| !acked.contains(*id)).take(5).collect();
    assert!(unknown.is_empty(), "records with IDs that were never sent: {unknown:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!("crash test on {name}: {acked_before} acknowledged before SIGKILL, 20000 in all, {duplicates} duplicates");
    // A duplicate is a message delivered twice, which SIGKILL causes in two ways only. Messages on the wire when
    // the server died were delivered and not yet settled, so the restarted server sends them again: at most
    // PIPELINE deliveries of ENTRIES_PER_READ entries each (the sink's `max_in_flight` PutRecords calls of 500
    // records are parts of those deliveries, so they bound nothing further), each entry one request of 100.
    // Requests stored but not answered when it died are sent again by their client: one per client, 4 clients.
    let in_flight = PIPELINE * ENTRIES_PER_READ * 100;
    let unanswered = 4 * 100;
    assert!(
        duplicates <= in_flight + unanswered,
        "{duplicates} duplicates, more than the {in_flight} messages in flight and {unanswered} unanswered"
    );
}

#[tokio::test]
async fn a_twenty_second_outage_loses_nothing_acknowledged() {
    let (name, url, delivery) = emulator();
    let stream = unique_name("outage");
    create(&client(&url, dummy_credentials()).await, &stream, 1).await;
    let proxy = FaultProxy::start(&url).await;
    let config = folder("outage", &[("main", &kinesis_destination("main", &stream, &proxy.url, delivery))]);
    let server = Server::start(&config, &scratch("outage-spool"), &[]).await;
    let http = reqwest::Client::new();
    let mut acked = HashSet::new();
    let started = tokio::time::Instant::now();
    let mut down_since = None;
    for number in 0..60 {
        let elapsed = started.elapsed();
        if down_since.is_none() && elapsed >= Duration::from_secs(3) {
            proxy.set_up(false);
            down_since = Some(tokio::time::Instant::now());
        }
        if let Some(since) = down_since
            && since.elapsed() >= Duration::from_secs(20)
        {
            proxy.set_up(true);
        }
        let (ids, body) = batch("outage", number);
        let (status, _) = server.post(&http, "/v1/batch", &body).await;
        assert_eq!(status, 200, "ingest must keep acknowledging while Kinesis is down");
        acked.extend(ids);
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    proxy.set_up(true);
    let retries = server.metric(&http, "tributary_delivery_retries_total{destination=\"main\"}").await;
    assert!(retries > 0.0, "the outage caused no retries");
    assert!(server.metric(&http, "tributary_spool_commits_total").await > 0.0, "acknowledged appends were committed");
    let seen = wait_for(&url, &stream, &acked, Duration::from_secs(120)).await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!("outage test on {name}: {} acknowledged, all delivered, {duplicates} duplicates", acked.len());
}
