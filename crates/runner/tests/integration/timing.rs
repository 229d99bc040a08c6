//! Latency under load: a source over its rate, and idle connections, must not slow anyone else. These compare
//! latencies, so `cargo xtask test` runs them on their own, one at a time, after every other suite.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::libraries::basic;
use crate::server::{Server, WRITE_KEY, file_destination, folder};
use crate::{scratch, scratch_in_memory, write_files};

/// Sends `count` single track calls one after another and returns their acknowledgement latencies, sorted.
async fn latencies(http: &reqwest::Client, url: &str, key: &str, count: usize) -> Vec<Duration> {
    let mut all = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/track"))
            .header(AUTHORIZATION, basic(key))
            .json(&json!({"userId": format!("quiet_{i}"), "event": "Quiet"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        all.push(started.elapsed());
    }
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// The p99 of one round of `count` calls.
async fn round_p99(http: &reqwest::Client, url: &str, key: &str, count: usize) -> Duration {
    p99(&latencies(http, url, key, count).await)
}

/// The median of per-round figures: a typical round, where the lowest would let one lucky round pass a comparison.
fn median(mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// A config folder with a quiet source and a noisy one, each with its own key, both delivering to one file.
fn two_sources(name: &str, noisy_extra: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let out = scratch_in_memory(&format!("{name}-out")).join("out.ndjson");
    write_files(
        &dir,
        &[
            (
                "sources/quiet.toml",
                "id = \"src_quiet\"\nname = \"Quiet\"\nwrite_key = { env = \"TEST_WRITE_KEY\" }\ndestinations = [\"archive\"]\n",
            ),
            (
                "sources/noisy.toml",
                &format!(
                    "id = \"src_noisy\"\nname = \"Noisy\"\nwrite_key = {{ env = \"NOISY_WRITE_KEY\" }}\ndestinations = [\"archive\"]\n{noisy_extra}\n"
                ),
            ),
            ("destinations/archive.toml", &file_destination("archive", &out)),
        ],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_gets_429_without_slowing_another() {
    // The bucket holds ten messages: a 100-message batch passes, then the source waits ten seconds, so what it may
    // send weighs nothing beside what it is refused.
    let config = two_sources("rate", "max_messages_per_second = 10");
    let server =
        Server::start_with_env(&config, &scratch_in_memory("rate-spool"), &[], &[("NOISY_WRITE_KEY", "noisy-key")])
            .await;
    let http = reqwest::Client::new();
    latencies(&http, &server.url, WRITE_KEY, 50).await;

    // The noisy source sends 100-message batches at 20 requests a second: two hundred times its rate. Its client
    // runs on a thread and runtime of its own, so that what is measured is the server, not the quiet client's tasks
    // waiting behind the noisy client's on a shared runtime.
    let noisy = |stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        let url = server.url.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let http = reqwest::Client::new();
                let batch: Vec<Value> =
                    (0..100).map(|i| json!({"type": "track", "userId": format!("n{i}"), "event": "Noise"})).collect();
                let body = serde_json::to_vec(&json!({"batch": batch})).unwrap();
                let (mut ok, mut limited) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = http
                        .post(format!("{url}/v1/batch"))
                        .header(AUTHORIZATION, basic("noisy-key"))
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    match response.status().as_u16() {
                        200 => ok += 1,
                        429 => {
                            assert!(response.headers().contains_key("x-ratelimit-reset"));
                            limited += 1
                        }
                        other => panic!("the noisy source got {other}"),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (ok, limited)
            })
        })
    };
    // Without and with the noisy source in turns, eleven rounds of each, compared by their medians, so that the
    // machine's drift over the run weighs on both; the p99 of 1,000 requests (the tenth slowest) rather than of 200 (the second slowest), which one hiccup decides.
    let (mut unloaded, mut loaded) = (Vec::new(), Vec::new());
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..11 {
        unloaded.push(round_p99(&http, &server.url, WRITE_KEY, 1_000).await);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = noisy(stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        loaded.push(round_p99(&http, &server.url, WRITE_KEY, 1_000).await);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (taken, refused) = tokio::task::spawn_blocking(move || running.join().unwrap()).await.unwrap();
        (ok, limited) = (ok + taken, limited + refused);
    }
    eprintln!("quiet source p99 per round: {unloaded:?} alone, {loaded:?} beside the noisy one");
    let (unloaded, loaded) = (median(unloaded), median(loaded));
    eprintln!(
        "quiet source median p99: {unloaded:?} alone, {loaded:?} beside the noisy one ({ok} batches taken, \
         {limited} refused)"
    );
    assert!(limited > ok * 5, "the noisy source was not limited: {ok} taken, {limited} refused");
    assert!(
        loaded.as_secs_f64() <= unloaded.as_secs_f64() * 1.2,
        "the quiet source's p99 went from {unloaded:?} to {loaded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_slow_an_active_client() {
    let out = scratch_in_memory("idle-out").join("out.ndjson");
    let config = folder("idle", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch_in_memory("idle-spool"), &[]).await;
    let http = reqwest::Client::new();
    latencies(&http, &server.url, WRITE_KEY, 50).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // Without and with the idle connections in turns, so that the machine's drift over the run weighs on both; the
    // p99 of 1,000 requests (the tenth slowest) rather than of 200 (the second slowest), which one hiccup decides.
    let (mut unloaded, mut loaded) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        unloaded.push(round_p99(&http, &server.url, WRITE_KEY, 1_000).await);
        let mut idle = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        loaded.push(round_p99(&http, &server.url, WRITE_KEY, 1_000).await);
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("active client p99 per round: {unloaded:?} alone, {loaded:?} beside 2,000 idle connections");
    let (unloaded, loaded) = (median(unloaded), median(loaded));
    eprintln!("active client median p99: {unloaded:?} alone, {loaded:?} beside 2,000 idle connections");
    assert!(
        loaded.as_secs_f64() <= unloaded.as_secs_f64() * 1.2,
        "the active client's p99 went from {unloaded:?} to {loaded:?}"
    );
}

/// Counts of what a paced load got acknowledged, shared with the test.
#[derive(Default)]
struct Paced {
    acknowledged: std::sync::Mutex<Vec<String>>,
    refused: std::sync::atomic::AtomicU64,
}

// Named to run last of these (they run one at a time, in name order): its emulator work must not overlap the
// latency comparisons above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_destinations_role_is_revoked_ingest_and_the_other_keep_their_pace() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (url, admin) = tests::env::iam();
    let (caller_arn, caller) = tests::iam::caller("budget-caller", &["sts:AssumeRole"]).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords"], "Resource": "*"}]});
    let role_name = tests::stream::unique_name("budget-role");
    let trust = kinesis_sink::setup::iam::trust_policy(&caller_arn, &["src_test".to_owned()]);
    let role = tests::iam::role(&role_name, &trust, Some(&policy)).await;
    let stream = tests::stream::unique_name("budget");
    let kinesis = tests::stream::client(&url, admin).await;
    tests::stream::create(&kinesis, &stream, 1).await;

    let out = scratch("budget-out").join("out.ndjson");
    // One PutRecords at a time: moto, the one emulator that enforces IAM, loses records and fails reads under
    // concurrent PutRecords to one shard.
    let broken = format!(
        "name = \"broken\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\nendpoint = {url:?}\nrole_address = {role:?}\n[kinesis.delivery]\nlinger_ms = 5\nmax_attempts = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 50\nmax_in_flight = 1\n"
    );
    let config = folder("budget", &[("healthy", &file_destination("healthy", &out)), ("broken", &broken)]);
    let spool = scratch("budget-spool");
    let (key, secret) = (caller.access_key_id().to_owned(), caller.secret_access_key().to_owned());
    let env = [("AWS_ACCESS_KEY_ID", key.as_str()), ("AWS_SECRET_ACCESS_KEY", secret.as_str())];
    // Two destinations: 2 MB each.
    let server = Server::start_with_env(&config, &spool, &["--spool-max-bytes", "4MB"], &env).await;

    // 2,000 messages a second, in batches of 100 every 50 ms, each with its own messageId.
    let paced = Arc::new(Paced::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (paced, stop, url) = (paced.clone(), stop.clone(), server.url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let ids: Vec<String> = (0..100).map(|i| format!("b-{n}-{i}")).collect();
                n += 1;
                let batch: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| json!({"type": "track", "userId": "u", "event": "Budget", "messageId": id, "properties": {"pad": tests::incompressible(300, (n * 100 + i) as u64)}}))
                    .collect();
                let response = http
                    .post(format!("{url}/v1/batch"))
                    .header(AUTHORIZATION, basic(WRITE_KEY))
                    .json(&json!({ "batch": batch }))
                    .send()
                    .await
                    .unwrap();
                if response.status() == 200 {
                    paced.acknowledged.lock().unwrap().extend(ids);
                } else {
                    paced.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let lines = || std::fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
    let acked = || paced.acknowledged.lock().unwrap().len();
    // One phase: (acknowledged/s, delivered to the healthy destination/s) over `seconds`.
    let phase = async |seconds: u64| {
        let (a0, l0, t0) = (acked(), lines(), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let elapsed = t0.elapsed().as_secs_f64();
        ((acked() - a0) as f64 / elapsed, (lines() - l0) as f64 / elapsed)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ingest_before, healthy_before) = phase(5).await;
    tests::iam::delete_role_policy(&role_name, "kinesis").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ingest_during, healthy_during) = phase(8).await;
    let health: Value = reqwest::get(format!("{}/health", server.url)).await.unwrap().json().await.unwrap();
    tests::iam::put_role_policy(&role_name, "kinesis", &policy).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    eprintln!(
        "ingest {ingest_before:.0}/s before, {ingest_during:.0}/s while the role was revoked; the healthy \
         destination {healthy_before:.0}/s before, {healthy_during:.0}/s during"
    );
    assert_eq!(paced.refused.load(Ordering::Relaxed), 0, "requests were refused");
    for (what, before, during) in
        [("ingest", ingest_before, ingest_during), ("healthy", healthy_before, healthy_during)]
    {
        assert!(during >= before * 0.9, "{what} went from {before:.0}/s to {during:.0}/s");
    }
    let broken_state = &health["destinations"]["broken"];
    assert_eq!(broken_state["state"], "degraded", "{health}");
    assert!(
        broken_state["waiting_bytes"].as_u64().unwrap() <= 2_000_000 + 200_000,
        "the broken destination's backlog went past its budget: {health}"
    );

    // The overflow is in the dead-letter table; after the fix, the backlog drains and a replay sends the rest.
    let dlq = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap(), "dlq"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--spool-dir", spool.to_str().unwrap()]);
        crate::tributary(&all, &env, None)
    };
    let (ok, listed, _) = dlq(&["list", "--destination", "broken"]);
    assert!(ok);
    let letters: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!letters.is_empty(), "nothing overflowed");
    assert!(letters.iter().all(|l| l["reason"] == "backlog budget exceeded"), "{}", letters[0]);
    let (ok, _, stderr) = dlq(&["replay", "--destination", "broken"]);
    assert!(ok, "{stderr}");
    let mut expected = paced.acknowledged.lock().unwrap().clone();
    expected.sort();
    let mut got = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        got = tests::stream::read_all(&kinesis, &stream)
            .await
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap()["messageId"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        got.dedup();
        if got.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(got.len(), expected.len(), "{}", server.log());
    assert_eq!(got, expected);
    assert_eq!(lines(), expected.len(), "the healthy destination missed messages");
}
