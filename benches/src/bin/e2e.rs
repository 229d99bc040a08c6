//! The end-to-end benchmark: `tributary serve` delivering to a null Kinesis endpoint (`benches::null_kinesis`),
//! with load generator, server and endpoint on the same machine.
//!
//! - Levels: 8, 64 and 512 keep-alive connections (each on a fresh server with the default `--max-lag`) post
//!   `/v1/batch` requests of 100 calls shaped like one app's traffic (`benches::traffic`) at full speed, honouring
//!   429's `Retry-After`, for 3 seconds of warm-up and then 30 measured; prints per level acknowledged/s,
//!   delivered/s (records the endpoint accepted in the same window), the 429 answers, how long the oldest waiting
//!   message had waited when the load stopped, and the p99 of acknowledgements. Limits: delivered at least 0.9 of
//!   acknowledged at every level, delivered at 64 and 512 connections at least the 8-connection figure, the oldest
//!   waiting within `--max-lag`. `e2e --levels` runs only these.
//! - Sustained with aggregation: eight connections to a destination with `aggregation = "kpl"`.
//! - Drain: the same load for 10 seconds while the endpoint is down (the spool fills), then the server restarts
//!   with the endpoint up and no load; prints how fast the backlog reaches the endpoint.
//! - Replay: 5 seconds of load on a destination whose record limit no message fits (each message becomes a dead
//!   letter), then `tributary dlq replay` to the endpoint, timed from start to exit.
//!
//! Every phase then checks, by messageId, that every message the server acknowledged reached the endpoint (a message
//! dropped as a duplicate of one already acknowledged counts as arrived: the check is by messageId, and the first
//! copy's arrival is the duplicate's). Each
//! figure is printed as PASS or FAIL against its limit, and any FAIL makes the benchmark exit non-zero.
//!
//! `cargo xtask bench e2e` runs it as `e2e --tributary PATH`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use benches::null_kinesis::{self, Counts};
use benches::traffic::Traffic;
use benches::verdict::Verdicts;
use benches::{Served, arg, free_port, load, scratch};

/// A Kinesis destination sending to the null endpoint at `port`, unpaced (the endpoint has no limits to keep
/// under).
fn destination(port: u16) -> String {
    format!(
        "name = \"stream\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"bench\"\n\
         endpoint = \"http://127.0.0.1:{port}\"\npacing = false\n"
    )
}

/// The same destination packing its messages into KPL aggregated records.
fn aggregating(port: u16) -> String {
    destination(port).replace("pacing = false", "pacing = false\naggregation = \"kpl\"")
}

/// Static credentials for the process's default chain: the endpoint does not check signatures.
const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDBENCH"),
    ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The concurrency levels of the sustained load: a few clients, many, and more than a server usually sees.
const LEVELS: &[usize] = &[8, 64, 512];

/// How long each level's load runs before its window is measured.
const WARMUP: Duration = Duration::from_secs(3);

/// A spool that takes the whole backlog of the drain phase.
const BIG: &[&str] = &["--spool-max", "100000000"];

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

/// Waits until the endpoint has `target` messages or `limit` passes; returns when it got there.
fn wait_for(counts: &Counts, target: u64, limit: Duration) -> anyhow::Result<Instant> {
    let start = Instant::now();
    while counts.messages() < target {
        if start.elapsed() > limit {
            bail!("the endpoint has {} of {target} messages after {limit:?}", counts.messages());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(Instant::now())
}

/// Waits until the server's spool is empty (everything it acknowledged delivered or dead-lettered), for at most a
/// minute.
fn wait_empty(runtime: &tokio::runtime::Runtime, url: &str) -> anyhow::Result<()> {
    let limit = Instant::now() + Duration::from_secs(60);
    while runtime.block_on(spool_depth(url))? > 0 {
        anyhow::ensure!(Instant::now() < limit, "the spool did not empty within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_endpoint(port: u16) -> anyhow::Result<Arc<Counts>> {
    null_kinesis::start(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// What an endpoint got, checked against what a load was acknowledged.
struct Arrived {
    /// Acknowledged messages that never reached the endpoint.
    missing: u64,
    /// Messages the endpoint got whose messageId no request carried.
    strangers: u64,
}

impl Arrived {
    fn of(counts: &Counts, acknowledged: &[u64]) -> Arrived {
        let strangers = counts.arrivals.strangers.load(std::sync::atomic::Ordering::Relaxed);
        Arrived { missing: counts.arrivals.missing(acknowledged), strangers }
    }

    /// The two checks, for the phase `name`.
    fn verdicts(&self, name: &str, verdicts: &mut Verdicts) {
        verdicts.at_most(
            format!("{name}: acknowledged messages missing at the endpoint"),
            self.missing as f64,
            0.0,
            "",
        );
        verdicts.at_most(
            format!("{name}: messages at the endpoint no request carried"),
            self.strangers as f64,
            0.0,
            "",
        );
    }
}

struct Sustained {
    /// Acknowledged messages per second.
    acknowledged: f64,
    /// What the endpoint got of what was acknowledged.
    arrived: Arrived,
    delivered: f64,
    depth: u64,
    pushed_back: u64,
    /// Kinesis records per message delivered.
    records_per_message: f64,
}

fn sustained(
    runtime: &tokio::runtime::Runtime,
    tributary: &Path,
    traffic: &Arc<Traffic>,
    seconds: u64,
    destination: fn(u16) -> String,
) -> anyhow::Result<Sustained> {
    let port = free_port();
    let counts = start_endpoint(port)?;
    let dir = scratch("e2e-sustained")?;
    let served = runtime.block_on(Served::start_in(tributary, &dir, "stream", &destination(port), ENV, &[]))?;
    let (records_before, before) = (counts.records(), counts.messages());
    let window = Duration::from_secs(seconds);
    let started = Instant::now();
    let figures = runtime.block_on(load(&served.url, traffic, 8, Duration::ZERO, window))?;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = counts.messages() - before;
    let records = counts.records() - records_before;
    let depth = runtime.block_on(spool_depth(&served.url))?;
    wait_empty(runtime, &served.url)?;
    drop(served);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Sustained {
        acknowledged: figures.messages_per_second,
        arrived: Arrived::of(&counts, &figures.acknowledged),
        delivered: delivered as f64 / elapsed,
        depth,
        pushed_back: figures.pushed_back,
        records_per_message: records as f64 / delivered.max(1) as f64,
    })
}

/// What one concurrency level of the sustained load measured.
struct Level {
    connections: usize,
    /// Acknowledged messages per second.
    acknowledged: f64,
    /// Messages the endpoint took per second during the load.
    delivered: f64,
    /// Requests answered 429 during the measured window.
    pushed_back: u64,
    /// How long the oldest message waiting when the load stopped had waited, in seconds (0 when none waited).
    oldest: f64,
    /// The 99th percentile of the time to an answer, 200 or 429.
    p99: Duration,
    /// What the endpoint got of what was acknowledged.
    arrived: Arrived,
}

/// How long the oldest message waiting for the destination `stream` has waited, from `/health`.
async fn oldest_waiting(url: &str) -> anyhow::Result<f64> {
    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await?.json().await?;
    Ok(health["destinations"]["stream"]["oldest_waiting_seconds"].as_f64().unwrap_or(0.0))
}

/// `seconds` of load over `connections` connections on a fresh server with the default `--max-lag`.
fn level(
    runtime: &tokio::runtime::Runtime,
    tributary: &Path,
    traffic: &Arc<Traffic>,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<Level> {
    let port = free_port();
    let counts = start_endpoint(port)?;
    let dir = scratch(&format!("e2e-level-{connections}"))?;
    let served = runtime.block_on(Served::start_in(tributary, &dir, "stream", &destination(port), ENV, &[]))?;
    // Delivery is counted over exactly the window the acknowledgements are: after the warm-up (connections
    // opened, the first requests answered) and up to its end, not over the tail of answers that come after it.
    let measure = Duration::from_secs(seconds);
    let window = {
        let counts = counts.clone();
        std::thread::spawn(move || {
            std::thread::sleep(WARMUP);
            let (before, from) = (counts.messages(), Instant::now());
            std::thread::sleep(measure);
            (counts.messages() - before) as f64 / from.elapsed().as_secs_f64()
        })
    };
    let figures = runtime.block_on(load(&served.url, traffic, connections, WARMUP, measure))?;
    let delivered = window.join().expect("the counting thread does not panic");
    let oldest = runtime.block_on(oldest_waiting(&served.url))?;
    wait_empty(runtime, &served.url)?;
    drop(served);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Level {
        connections,
        acknowledged: figures.messages_per_second,
        delivered,
        pushed_back: figures.pushed_back,
        oldest,
        p99: figures.p99,
        arrived: Arrived::of(&counts, &figures.acknowledged),
    })
}

struct Drained {
    messages: u64,
    per_second: f64,
    /// What the endpoint got of what was acknowledged.
    arrived: Arrived,
}

fn drain(
    runtime: &tokio::runtime::Runtime,
    tributary: &Path,
    traffic: &Arc<Traffic>,
    seconds: u64,
) -> anyhow::Result<Drained> {
    // Nothing listens on `port` while the spool fills, so every delivery attempt fails and waits.
    let port = free_port();
    let dir = scratch("e2e-drain")?;
    let served = runtime.block_on(Served::start_in(tributary, &dir, "stream", &destination(port), ENV, BIG))?;
    let figures = runtime.block_on(load(&served.url, traffic, 8, Duration::ZERO, Duration::from_secs(seconds)))?;
    let messages = runtime.block_on(spool_depth(&served.url))?;
    let acknowledged = figures.acknowledged.len() as u64 * benches::traffic::PER_REQUEST;
    if messages < acknowledged {
        bail!("{acknowledged} messages were acknowledged but only {messages} wait in the spool");
    }
    drop(served);

    let counts = start_endpoint(port)?;
    let started = Instant::now();
    let served = runtime.block_on(Served::start_in(tributary, &dir, "stream", &destination(port), ENV, BIG))?;
    let done = wait_for(&counts, messages, Duration::from_secs(300))?;
    let per_second = messages as f64 / (done - started).as_secs_f64();
    drop(served);

    let _ = std::fs::remove_dir_all(&dir);
    Ok(Drained { messages, per_second, arrived: Arrived::of(&counts, &figures.acknowledged) })
}

/// Dead letters made by `seconds` of load on a destination whose record limit no message fits, then replayed by
/// `tributary dlq replay` (no server running) to the null endpoint: (letters, messages per second, what arrived).
fn replay(
    runtime: &tokio::runtime::Runtime,
    tributary: &Path,
    traffic: &Arc<Traffic>,
    seconds: u64,
) -> anyhow::Result<(u64, f64, Arrived)> {
    let port = free_port();
    let dir = scratch("e2e-replay")?;
    let refusing = destination(port).replace("endpoint =", "delivery = { max_record_bytes = 10 }\nendpoint =");
    let served = runtime.block_on(Served::start_in(tributary, &dir, "stream", &refusing, ENV, BIG))?;
    let figures = runtime.block_on(load(&served.url, traffic, 8, Duration::ZERO, Duration::from_secs(seconds)))?;
    // Every message becomes a dead letter at once; wait until the spool is empty.
    let limit = Instant::now() + Duration::from_secs(120);
    while runtime.block_on(spool_depth(&served.url))? > 0 {
        anyhow::ensure!(Instant::now() < limit, "the messages did not all become dead letters");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(served);
    std::fs::write(dir.join("configs/destinations/stream.toml"), destination(port))?;
    let counts = start_endpoint(port)?;
    let started = Instant::now();
    let output = std::process::Command::new(tributary)
        .arg("--config")
        .arg(dir.join("configs"))
        .args(["dlq", "replay", "--spool-dir"])
        .arg(dir.join("spool"))
        .envs(ENV.iter().copied())
        .env("BENCH_WRITE_KEY", benches::WRITE_KEY)
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "dlq replay failed: {}", String::from_utf8_lossy(&output.stderr));
    let letters = counts.messages();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((letters, letters as f64 / elapsed, Arrived::of(&counts, &figures.acknowledged)))
}

/// Prints each level's figures and checks them against the limits.
fn report_levels(levels: &[Level], seconds: u64, verdicts: &mut Verdicts) {
    for l in levels {
        println!(
            "  {:>3} connections, {seconds}s: {:.0} acknowledged/s, {:.0} delivered/s (ratio {:.2}), {} answered 429, \
             oldest waiting at the end {:.1}s, ack p99 {:.1} ms",
            l.connections,
            l.acknowledged,
            l.delivered,
            l.delivered / l.acknowledged,
            l.pushed_back,
            l.oldest,
            l.p99.as_secs_f64() * 1000.0
        );
    }
    let base = levels[0].delivered;
    for l in levels {
        let n = l.connections;
        verdicts.at_least(format!("e2e {n} connections delivered/acknowledged"), l.delivered / l.acknowledged, 0.9, "");
        if n != LEVELS[0] {
            verdicts.at_least(
                format!("e2e {n} connections delivered"),
                l.delivered,
                base,
                "messages/s (the 8-connection figure)",
            );
        }
        verdicts.at_most(format!("e2e {n} connections oldest waiting at the end"), l.oldest, 30.0, "s (--max-lag)");
        l.arrived.verdicts(&format!("e2e {n} connections"), verdicts);
    }
    verdicts.at_least(
        "e2e 8 connections delivered/acknowledged (keeping pace)",
        levels[0].delivered / levels[0].acknowledged,
        0.95,
        "",
    );
    verdicts.at_least("e2e 8 connections delivered", levels[0].delivered, 100_000.0, "messages/s");
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = arg("--seconds").map_or(Ok(30), |s| s.parse()).context("--seconds")?;
    if let Some(port) = arg("--null-endpoint") {
        // The endpoint alone, printing records per second, for profiling a server started by hand.
        let counts = start_endpoint(port.parse()?)?;
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = counts.records();
            eprintln!("{} records/s ({now} in all)", now - last);
            last = now;
        }
    }
    let tributary = PathBuf::from(arg("--tributary").context("usage: e2e --tributary PATH_TO_RELEASE_BINARY")?);
    let runtime = tokio::runtime::Runtime::new()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let traffic = Traffic::new(0);
    let only_levels = std::env::args().any(|a| a == "--levels");
    let mut levels = Vec::new();
    for &connections in LEVELS {
        levels.push(level(&runtime, &tributary, &traffic, seconds, connections)?);
    }
    println!(
        "end to end ({cores} cores; load generator, server and null Kinesis endpoint on the same machine; \
         /v1/batch of 100 calls shaped like one app's traffic, ~{} bytes a call, LZ4 ratio {:.2}; --max-lag 30s):",
        traffic.mean_body_bytes() / 100,
        traffic.lz4_ratio()
    );
    let mut verdicts = Verdicts::default();
    report_levels(&levels, seconds, &mut verdicts);
    if only_levels {
        return verdicts.finish();
    }
    let drained = drain(&runtime, &tributary, &traffic, 10)?;
    let packed = sustained(&runtime, &tributary, &traffic, seconds, aggregating)?;
    let (letters, replayed, replay_arrived) = replay(&runtime, &tributary, &traffic, 5)?;
    println!(
        "  sustained {seconds}s with aggregation = \"kpl\" (4 shards), 8 connections: {:.0} acknowledged/s, {:.0} \
         messages delivered/s (ratio {:.2}), {:.4} Kinesis records per message (1/{:.0}), spool depth at the end {}, \
         {} requests answered 429",
        packed.acknowledged,
        packed.delivered,
        packed.delivered / packed.acknowledged,
        packed.records_per_message,
        1.0 / packed.records_per_message,
        packed.depth,
        packed.pushed_back
    );
    println!("  drain alone: {} messages at {:.0} delivered/s", drained.messages, drained.per_second);
    println!("  dlq replay: {letters} dead letters at {replayed:.0} delivered/s");
    verdicts.at_least("e2e kpl delivered/acknowledged", packed.delivered / packed.acknowledged, 0.95, "");
    verdicts.at_least("e2e kpl delivered", packed.delivered, 100_000.0, "messages/s");
    verdicts.at_most("e2e kpl Kinesis records per message", packed.records_per_message, 1.0 / 50.0, "");
    packed.arrived.verdicts("e2e kpl", &mut verdicts);
    verdicts.at_least("drain", drained.per_second, 250_000.0, "messages/s");
    drained.arrived.verdicts("drain", &mut verdicts);
    verdicts.at_least("replay", replayed, 50_000.0, "messages/s");
    replay_arrived.verdicts("replay", &mut verdicts);
    verdicts.finish()
}
