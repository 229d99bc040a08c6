//! Latency under load: a source over its rate, and idle connections, must not slow anyone else. These compare
//! latencies, so `cargo xtask test` runs them on their own, one at a time, after every other suite.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::libraries::basic;
use crate::server::{Server, WRITE_KEY, file_destination, folder};
use crate::{scratch, write_files};

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

/// The p99 of `rounds` rounds of `count` calls, the lowest of them: the figure least disturbed by whatever else the
/// machine is doing at that moment.
async fn best_p99(http: &reqwest::Client, url: &str, key: &str, rounds: usize, count: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        best = best.min(p99(&latencies(http, url, key, count).await));
    }
    best
}

/// A config folder with a quiet source and a noisy one, each with its own key, both delivering to one file.
fn two_sources(name: &str, noisy_extra: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let out = scratch(&format!("{name}-out")).join("out.ndjson");
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
    let config = two_sources("rate", "max_messages_per_second = 100");
    let server =
        Server::start_with_env(&config, &scratch("rate-spool"), &[], &[("NOISY_WRITE_KEY", "noisy-key")]).await;
    let http = reqwest::Client::new();
    latencies(&http, &server.url, WRITE_KEY, 50).await;
    let unloaded = best_p99(&http, &server.url, WRITE_KEY, 5, 200).await;

    // The noisy source sends 100-message batches at 20 requests a second: twenty times its rate.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noisy = {
        let (stop, url) = (stop.clone(), server.url.clone());
        tokio::spawn(async move {
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
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = best_p99(&http, &server.url, WRITE_KEY, 5, 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, limited) = noisy.await.unwrap();
    eprintln!(
        "quiet source p99: {unloaded:?} alone, {loaded:?} beside the noisy one ({ok} batches taken, {limited} refused)"
    );
    assert!(limited > ok * 5, "the noisy source was not limited: {ok} taken, {limited} refused");
    assert!(
        loaded.as_secs_f64() <= unloaded.as_secs_f64() * 1.2,
        "the quiet source's p99 went from {unloaded:?} to {loaded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_slow_an_active_client() {
    let out = scratch("idle-out").join("out.ndjson");
    let config = folder("idle", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("idle-spool"), &[]).await;
    let http = reqwest::Client::new();
    latencies(&http, &server.url, WRITE_KEY, 50).await;
    let unloaded = best_p99(&http, &server.url, WRITE_KEY, 5, 200).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loaded = best_p99(&http, &server.url, WRITE_KEY, 5, 200).await;
    eprintln!("active client p99: {unloaded:?} alone, {loaded:?} beside 2,000 idle connections");
    assert!(
        loaded.as_secs_f64() <= unloaded.as_secs_f64() * 1.2,
        "the active client's p99 went from {unloaded:?} to {loaded:?}"
    );
    drop(idle);
}
