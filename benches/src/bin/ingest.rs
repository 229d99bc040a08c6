//! The ingest benchmark: `/v1/batch` requests of 100 calls shaped like one app's traffic (`benches::traffic`), over
//! keep-alive connections, against `tributary serve` (durable spool, delivering to the file sink) with dedupe off
//! and on, and against a bare axum handler that only parses the body and answers 200. Prints throughput and acknowledgement latency for
//! both, and the ratio, each beside its limit as PASS or FAIL; a FAIL makes it exit non-zero.
//!
//! `cargo xtask bench` runs it as `ingest --tributary PATH`; `ingest --bare-server PORT` is the baseline server.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use benches::traffic::Traffic;
use benches::verdict::Verdicts;
use benches::{Guard, Served, arg, free_port, wait_ready};

/// The same allocator as `tributary`, so that the bare baseline is not handicapped by a slower one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn bare_server(port: u16) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/v1/batch",
            post(|body: axum::body::Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => (axum::http::StatusCode::OK, "{\"success\":true}"),
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, "{\"code\":\"invalid_json\"}"),
                }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(port) = arg("--bare-server") {
        return runtime.block_on(bare_server(port.parse()?));
    }
    let traffic = Traffic::new(0);
    let load = |url: &str, connections, warmup, measure| {
        let (url, traffic) = (url.to_owned(), traffic.clone());
        async move { benches::load(&url, &traffic, connections, warmup, measure).await }
    };
    if let Some(url) = arg("--load") {
        // Load alone, against a server started by hand (for profiling).
        let figures = runtime.block_on(load(&url, 8, Duration::from_secs(2), Duration::from_secs(10)))?;
        println!("{:.0} messages/s, p99 {:.1} ms", figures.messages_per_second, figures.p99.as_secs_f64() * 1e3);
        return Ok(());
    }
    let tributary = PathBuf::from(arg("--tributary").context("usage: ingest --tributary PATH_TO_RELEASE_BINARY")?);
    let connections = 8;
    let (warmup, measure) = (Duration::from_secs(2), Duration::from_secs(10));

    // The machine's speed drifts by up to a fifth over minutes: the two servers take turns, three rounds each, and
    // the ratio is of the sums, so that a slow minute weighs on both alike.
    let rounds = 3;
    let (mut ours_all, mut bare_all, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut deduped_all = Vec::new();
    let mut delivered_all = true;
    for _ in 0..rounds {
        // Tributary twice: dedupe off (`--dedupe-window 0`), the figure the bare handler is compared with, and on
        // (the default), compared with off. Every messageId is new, so dedupe looks each one up and records it.
        let mut both = Vec::new();
        for args in [&["--dedupe-window", "0"][..], &[]] {
            let served = runtime.block_on(Served::start_with(&tributary, "ingest", args))?;
            let figures = runtime.block_on(load(&served.url, connections, warmup, measure))?;
            anyhow::ensure!(figures.pushed_back == 0, "the server answered 429 to {} requests", figures.pushed_back);
            // Let delivery catch up, to check that the file sink kept pace.
            std::thread::sleep(Duration::from_secs(2));
            let delivered = lines(&served.out)?;
            let acknowledged = figures.acknowledged.len() as f64 * benches::traffic::PER_REQUEST as f64 * 0.9;
            delivered_all &= delivered as f64 >= acknowledged;
            drop(served);
            both.push(figures);
        }
        let (ours, deduped) = (both.remove(0), both.remove(0));
        deduped_all.push(deduped);

        let port = free_port();
        let bare_url = format!("http://127.0.0.1:{port}");
        let bare = Guard(Command::new(std::env::current_exe()?).args(["--bare-server", &port.to_string()]).spawn()?);
        runtime.block_on(wait_ready(&bare_url))?;
        let baseline = runtime.block_on(load(&bare_url, connections, warmup, measure))?;
        drop(bare);
        ratios.push(ours.messages_per_second / baseline.messages_per_second);
        ours_all.push(ours);
        bare_all.push(baseline);
    }

    let heading = format!(
        "/v1/batch of 100 calls shaped like one app's traffic, ~{} bytes a call, LZ4 ratio {:.2}; {rounds} rounds of \
         {}s each, taking turns",
        traffic.mean_body_bytes() / 100,
        traffic.lz4_ratio(),
        measure.as_secs()
    );
    report(&heading, connections, (&ours_all, &deduped_all), &bare_all, &ratios, delivered_all)
}

/// Lines in the file at `path`, counted without holding it in memory (a round writes gigabytes).
fn lines(path: &std::path::Path) -> anyhow::Result<usize> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let (mut buffer, mut count) = (vec![0u8; 1 << 20], 0);
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(count);
        }
        count += memchr::memchr_iter(b'\n', &buffer[..read]).count();
    }
}

/// Prints the figures of every round (throughput and latency of both servers, and the ratio) and the verdicts.
fn report(
    heading: &str,
    connections: usize,
    (ours_all, deduped_all): (&[benches::Figures], &[benches::Figures]),
    bare_all: &[benches::Figures],
    ratios: &[f64],
    delivered_all: bool,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("ingest ({cores} cores, {connections} keep-alive connections, {heading}):");
    let mean = |figures: &[benches::Figures]| {
        figures.iter().map(|f| f.messages_per_second).sum::<f64>() / figures.len() as f64
    };
    let worst_p99 = |figures: &[benches::Figures]| figures.iter().map(|f| f.p99).max().unwrap_or_default();
    let median_p50 = |figures: &[benches::Figures]| {
        let mut p50s: Vec<Duration> = figures.iter().map(|f| f.p50).collect();
        p50s.sort();
        p50s[p50s.len() / 2]
    };
    println!(
        "  tributary serve --dedupe-window 0 (durable spool, file sink): {:.0} messages/s, ack latency p50 {:.1} ms, p99 {:.1} ms (worst round); the file sink kept pace: {}",
        mean(ours_all),
        median_p50(ours_all).as_secs_f64() * 1e3,
        worst_p99(ours_all).as_secs_f64() * 1e3,
        if delivered_all { "yes" } else { "no" }
    );
    println!(
        "  tributary serve, dedupe on (the default, 24h): {:.0} messages/s, ack latency p50 {:.1} ms, p99 {:.1} ms (worst round)",
        mean(deduped_all),
        median_p50(deduped_all).as_secs_f64() * 1e3,
        worst_p99(deduped_all).as_secs_f64() * 1e3,
    );
    println!(
        "  bare axum handler (parse and 200, mimalloc): {:.0} messages/s, latency p50 {:.1} ms, p99 {:.1} ms (worst round)",
        mean(bare_all),
        median_p50(bare_all).as_secs_f64() * 1e3,
        worst_p99(bare_all).as_secs_f64() * 1e3
    );
    let rounds_text: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!("  ratio of the means: {:.2}; per round: {}", mean(ours_all) / mean(bare_all), rounds_text.join(", "));
    let mut verdicts = Verdicts::default();
    verdicts.at_least("ingest ratio to the bare handler (dedupe off)", mean(ours_all) / mean(bare_all), 0.50, "");
    verdicts.at_least("ingest with dedupe on, ratio to dedupe off", mean(deduped_all) / mean(ours_all), 0.85, "");
    verdicts.at_least("ingest acknowledged", mean(ours_all), 50_000.0, "messages/s");
    verdicts.holds("ingest: the file sink kept pace (90% of what was acknowledged delivered 2 s later)", delivered_all);
    verdicts.finish()
}
