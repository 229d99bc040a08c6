//! The Firehose benchmark: `tributary serve` delivering to a null Firehose endpoint (`benches::null_firehose`), with
//! load generator, server and endpoint on the same machine, as `e2e` does for Kinesis.
//!
//! Eight keep-alive connections post `/v1/batch` requests of 100 calls shaped like one app's traffic
//! (`benches::traffic`) at full speed, honouring 429's `Retry-After`, for 3 seconds of warm-up and then 30
//! measured, to a Firehose destination mapping every message (`*`) to one delivery stream. It prints
//! acknowledged/s and delivered/s (records the endpoint accepted in the same window), then checks by messageId
//! that every acknowledged message arrived. Limits: delivered at least 0.95 of acknowledged, and at least 100,000
//! messages a second; every acknowledged message at the endpoint, and no message no request carried.
//!
//! `cargo xtask bench firehose` runs it as `firehose --tributary PATH`; `--seconds N` changes the window.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use benches::traffic::Traffic;
use benches::verdict::Verdicts;
use benches::{Served, arg, free_port, load, scratch};

/// A Firehose destination sending every message to one delivery stream of the null endpoint at `port`.
fn destination(port: u16) -> String {
    format!(
        "name = \"stream\"\ntype = \"firehose\"\n[firehose]\nregion = \"us-east-1\"\n\
         endpoint = \"http://127.0.0.1:{port}\"\nmapping = [{{ event = \"*\", stream = \"bench\" }}]\n"
    )
}

/// Static credentials for the process's default chain: the endpoint does not check signatures.
const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDBENCH"),
    ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// How long the load runs before its window is measured.
const WARMUP: Duration = Duration::from_secs(3);

/// The connections of the sustained load, as `e2e`'s keeping-pace figure.
const CONNECTIONS: usize = 8;

/// The spool depth the server reports on `/metrics`.
async fn spool_depth(url: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|line| line.strip_prefix("tributary_spool_depth "))
        .context("no tributary_spool_depth in /metrics")?
        .trim()
        .parse()
        .context("tributary_spool_depth is not a number")
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = arg("--seconds").map_or(Ok(30), |s| s.parse()).context("--seconds")?;
    let tributary = PathBuf::from(arg("--tributary").context("usage: firehose --tributary PATH_TO_RELEASE_BINARY")?);
    let runtime = tokio::runtime::Runtime::new()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let traffic = Traffic::new(0);

    let port = free_port();
    let counts = benches::null_firehose::start(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let dir = scratch("firehose-sustained")?;
    let served = runtime.block_on(Served::start_in(&tributary, &dir, "stream", &destination(port), ENV, &[]))?;
    let measure = Duration::from_secs(seconds);
    // Delivery is counted over exactly the window the acknowledgements are.
    let window = {
        let counts = counts.clone();
        std::thread::spawn(move || {
            std::thread::sleep(WARMUP);
            let (before, from) = (counts.records(), Instant::now());
            std::thread::sleep(measure);
            (counts.records() - before) as f64 / from.elapsed().as_secs_f64()
        })
    };
    let figures = runtime.block_on(load(&served.url, &traffic, CONNECTIONS, WARMUP, measure))?;
    let delivered = window.join().expect("the counting thread does not panic");
    let depth = runtime.block_on(spool_depth(&served.url))?;
    let limit = Instant::now() + Duration::from_secs(60);
    while runtime.block_on(spool_depth(&served.url))? > 0 {
        anyhow::ensure!(Instant::now() < limit, "the spool did not empty within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(served);
    let _ = std::fs::remove_dir_all(&dir);

    let acknowledged = figures.messages_per_second;
    let calls = counts.calls.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "firehose ({cores} cores; load generator, server and null Firehose endpoint on the same machine; /v1/batch \
         of 100 calls shaped like one app's traffic, ~{} bytes a call; every message to one delivery stream):",
        traffic.mean_body_bytes() / 100
    );
    println!(
        "  {CONNECTIONS} connections, {seconds}s: {acknowledged:.0} acknowledged/s, {delivered:.0} delivered/s (ratio \
         {:.2}), {} answered 429, spool depth at the end {depth}, ack p99 {:.1} ms, {:.0} records per call",
        delivered / acknowledged,
        figures.pushed_back,
        figures.p99.as_secs_f64() * 1000.0,
        counts.records() as f64 / calls.max(1) as f64
    );
    let mut verdicts = Verdicts::default();
    verdicts.at_least("firehose delivered/acknowledged", delivered / acknowledged, 0.95, "");
    verdicts.at_least("firehose delivered", delivered, 100_000.0, "messages/s");
    let missing = counts.arrivals.missing(&figures.acknowledged);
    let strangers = counts.arrivals.strangers.load(std::sync::atomic::Ordering::Relaxed);
    verdicts.at_most("firehose: acknowledged messages missing at the endpoint", missing as f64, 0.0, "");
    verdicts.at_most("firehose: messages at the endpoint no request carried", strangers as f64, 0.0, "");
    verdicts.finish()
}
