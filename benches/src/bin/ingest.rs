//! The ingest benchmark: `/v1/batch` requests of 100 calls shaped like one app's traffic (`benches::traffic`), over
//! keep-alive connections, against `tributary serve` (durable spool, delivering to the file sink) with dedupe off,
//! on (the spool's own keys), and on with its keys in a Redis on loopback (Debian's `redis-server`, started here),
//! with dedupe off and the governance of `benches::governance` (ten filters, a 50-event plan, privacy controls),
//! and against a bare axum handler that only parses the body and answers 200. Prints throughput and
//! acknowledgement latency for each, Redis's memory per key, and the ratios, each beside its limit as PASS or FAIL;
//! a FAIL makes it exit non-zero.
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

/// The modes, then the rounds; long on purpose: every server of a round in turn, so that a slow minute weighs on
/// each alike.
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
    if let Some(keys) = arg("--store-keys") {
        return runtime.block_on(with_a_full_store(&tributary, keys.parse()?, &traffic));
    }
    let connections = 8;
    let (warmup, measure) = (Duration::from_secs(2), Duration::from_secs(10));

    // The machine's speed drifts by up to a fifth over minutes: the two servers take turns, three rounds each, and
    // the ratio is of the sums, so that a slow minute weighs on both alike.
    let rounds = 3;
    let (mut ours_all, mut bare_all, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut deduped_all = Vec::new();
    let mut shared_all = Vec::new();
    let mut governed_all = Vec::new();
    let mut delivered_all = true;
    let (redis, shared) = shared_store()?;
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let mut bytes_per_key = Vec::new();
    for _ in 0..rounds {
        // Tributary three times: dedupe off (`--dedupe-window 0`), the figure the bare handler is compared with;
        // on (the default), compared with off; and on with Redis, compared with off. Every messageId is new, so
        // dedupe looks each one up and records it.
        let mut all = Vec::new();
        for args in [&["--dedupe-window", "0"][..], &[], &shared[..]] {
            redis.cli(&["FLUSHALL"]);
            let empty = redis.info("used_memory");
            let served = runtime.block_on(Served::start_with(&tributary, "ingest", args))?;
            let figures = runtime.block_on(load(&served.url, connections, warmup, measure))?;
            anyhow::ensure!(figures.pushed_back == 0, "the server answered 429 to {} requests", figures.pushed_back);
            // Let delivery catch up, to check that the file sink kept pace.
            std::thread::sleep(Duration::from_secs(2));
            let delivered = lines(&served.out)?;
            let acknowledged = figures.acknowledged.len() as f64 * benches::traffic::PER_REQUEST as f64 * 0.9;
            delivered_all &= delivered as f64 >= acknowledged;
            drop(served);
            bytes_per_key.extend(redis_bytes_per_key(&redis, empty));
            all.push(figures);
        }
        let (ours, deduped, in_redis) = (all.remove(0), all.remove(0), all.remove(0));
        deduped_all.push(deduped);
        shared_all.push(in_redis);
        let (governed, kept_pace) = governed_round(&runtime, &tributary, &traffic, connections, (warmup, measure))?;
        delivered_all &= kept_pace;
        governed_all.push(governed);

        let baseline = bare_round(&runtime, &traffic, connections, (warmup, measure))?;
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
    let bytes_per_key = bytes_per_key.iter().sum::<f64>() / bytes_per_key.len().max(1) as f64;
    let tributary = Tributary {
        ours: &ours_all,
        deduped: &deduped_all,
        shared: &shared_all,
        governed: &governed_all,
        bytes_per_key,
    };
    report(&heading, connections, &tributary, &bare_all, &ratios, delivered_all)
}

/// One round of the bare handler, in a process of its own.
fn bare_round(
    runtime: &tokio::runtime::Runtime,
    traffic: &std::sync::Arc<Traffic>,
    connections: usize,
    (warmup, measure): (Duration, Duration),
) -> anyhow::Result<benches::Figures> {
    let port = free_port();
    let bare_url = format!("http://127.0.0.1:{port}");
    let bare = Guard(Command::new(std::env::current_exe()?).args(["--bare-server", &port.to_string()]).spawn()?);
    runtime.block_on(wait_ready(&bare_url))?;
    let baseline = runtime.block_on(benches::load(&bare_url, traffic, connections, warmup, measure))?;
    drop(bare);
    Ok(baseline)
}

/// One round of the same server as dedupe off's, with the governance of `benches::governance` (ten filters on the
/// destination, a 50-event tracking plan and privacy controls on the source): its figures, and whether the file
/// sink kept pace.
fn governed_round(
    runtime: &tokio::runtime::Runtime,
    tributary: &std::path::Path,
    traffic: &std::sync::Arc<Traffic>,
    connections: usize,
    (warmup, measure): (Duration, Duration),
) -> anyhow::Result<(benches::Figures, bool)> {
    let served = runtime.block_on(Served::start_governed(tributary, "ingest-governed", &["--dedupe-window", "0"]))?;
    let governed = runtime.block_on(benches::load(&served.url, traffic, connections, warmup, measure))?;
    anyhow::ensure!(governed.pushed_back == 0, "the server answered 429 to {} requests", governed.pushed_back);
    std::thread::sleep(Duration::from_secs(2));
    let acknowledged = governed.acknowledged.len() as f64 * benches::traffic::PER_REQUEST as f64 * 0.9;
    let kept_pace = lines(&served.out)? as f64 >= acknowledged;
    Ok((governed, kept_pace))
}

/// Redis on loopback (Debian's `redis-server`, on a free port), and the `serve` arguments that keep the dedupe keys
/// there.
fn shared_store() -> anyhow::Result<(tests::redis::Redis, Vec<String>)> {
    let dir = benches::scratch("ingest-redis")?;
    let redis = tests::redis::Redis::start(&dir);
    let secret = dir.join("dedupe-secret");
    std::fs::write(&secret, "the fleet's dedupe secret, for the benchmark\n")?;
    let secret = secret.to_str().context("a UTF-8 path")?.to_owned();
    let args = vec!["--dedupe-store".to_owned(), redis.url(), "--dedupe-secret-file".to_owned(), secret];
    Ok((redis, args))
}

/// Redis's memory per dedupe key held, from its memory when it was `empty`; `None` when it holds none.
fn redis_bytes_per_key(redis: &tests::redis::Redis, empty: f64) -> Option<f64> {
    // The keys are packed 8 bytes each in the `k` field of the stream's entries.
    let count = "local n = 0 for _, s in ipairs(redis.call('KEYS', 'trd:s:*')) do for _, e in ipairs(redis.call('XRANGE', s, '-', '+')) do n = n + string.len(e[2][4]) / 8 end end return n";
    let keys: f64 = redis.cli(&["EVAL", count, "0"]).parse().unwrap_or(0.0);
    (keys > 0.0).then(|| (redis.info("used_memory") - empty) / keys)
}

/// The figures of `tributary serve` in the three configurations.
struct Tributary<'a> {
    /// Dedupe off.
    ours: &'a [benches::Figures],
    /// Dedupe on, in the spool.
    deduped: &'a [benches::Figures],
    /// With ten filters, a 50-event tracking plan and privacy controls, dedupe off.
    governed: &'a [benches::Figures],
    /// Dedupe on, in Redis.
    shared: &'a [benches::Figures],
    /// Redis's memory per key held, measured after each Redis round.
    bytes_per_key: f64,
}

/// `ingest --tributary PATH --store-keys N`: dedupe on with a key store already holding `N` keys (random, as the
/// runner's keyed hashes are) against dedupe off, two rounds each, with the server's start-up time, its resident
/// memory, and the largest the write-ahead log grew while it took the load. Run by hand (50 million keys take
/// minutes to write and 400 MB of disk); the figures are in docs/benchmarks.md.
async fn with_a_full_store(
    tributary: &std::path::Path,
    keys: u64,
    traffic: &std::sync::Arc<Traffic>,
) -> anyhow::Result<()> {
    let template = benches::scratch("ingest-store-template")?;
    let written = std::time::Instant::now();
    let wal = prefill(&template.join("spool"), keys).await?;
    let file_size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    // Until a checkpoint copies them, the newest pages are in the write-ahead log: the store is both files.
    let (database, log) =
        (file_size(&template.join("spool/spool.sqlite3")), file_size(&template.join("spool/spool.sqlite3-wal")));
    println!(
        "a store of {keys} keys written in {:.0} s: database {:.0} MiB and write-ahead log {:.0} MiB ({:.1} bytes a key in both), the log at most {:.0} MiB while writing",
        written.elapsed().as_secs_f64(),
        database as f64 / 1048576.0,
        log as f64 / 1048576.0,
        (database + log) as f64 / keys as f64,
        wal as f64 / 1048576.0
    );
    let (connections, warmup, measure) = (8, Duration::from_secs(2), Duration::from_secs(10));
    let (mut off_all, mut on_all) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let served = Served::start_with(tributary, "ingest", &["--dedupe-window", "0"]).await?;
        off_all.push(benches::load(&served.url, traffic, connections, warmup, measure).await?);
        drop(served);

        let (served, dir, start_up) = start_on_a_copy(tributary, &template).await?;
        let rss_before = resident(served.pid());
        let wal_path = dir.join("spool/spool.sqlite3-wal");
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let (watching, wal_path) = (watching.clone(), wal_path.clone());
            std::thread::spawn(move || {
                let mut largest = 0;
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    largest = largest.max(std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(100));
                }
                largest
            })
        };
        let figures = benches::load(&served.url, traffic, connections, warmup, measure).await?;
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        let wal_largest = sampler.join().expect("the sampler ends");
        println!(
            "  dedupe on, {keys} keys held: started in {:.1} s, resident {:.0} MiB before the load and {:.0} MiB after; write-ahead log at most {:.0} MiB under load; {:.0} messages/s (p99 {:.1} ms)",
            start_up.as_secs_f64(),
            rss_before as f64 / 1048576.0,
            resident(served.pid()) as f64 / 1048576.0,
            wal_largest as f64 / 1048576.0,
            figures.messages_per_second,
            figures.p99.as_secs_f64() * 1e3
        );
        on_all.push(figures);
        drop(served);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&template);
    let mean = |all: &[benches::Figures]| all.iter().map(|f| f.messages_per_second).sum::<f64>() / all.len() as f64;
    println!("  dedupe off: {:.0} messages/s", mean(&off_all));
    let mut verdicts = Verdicts::default();
    verdicts.at_least(
        format!("ingest with {keys} dedupe keys held, ratio to dedupe off"),
        mean(&on_all) / mean(&off_all),
        0.85,
        "",
    );
    verdicts.finish()
}

/// Starts `tributary serve` (dedupe on) on a copy of the spool in `template`; returns it, its folder, and how long
/// it took to answer.
async fn start_on_a_copy(
    tributary: &std::path::Path,
    template: &std::path::Path,
) -> anyhow::Result<(Served, PathBuf, Duration)> {
    let dir = benches::scratch("ingest-store")?;
    std::fs::create_dir_all(dir.join("spool"))?;
    for file in std::fs::read_dir(template.join("spool"))? {
        let file = file?.path();
        if file.extension().is_none_or(|x| x != "lock") {
            std::fs::copy(&file, dir.join("spool").join(file.file_name().expect("a file")))?;
        }
    }
    let out = dir.join("out.ndjson");
    let destination = format!("name = \"archive\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string());
    let started = std::time::Instant::now();
    let served = Served::start_in(tributary, &dir, "archive", &destination, &[], &[]).await?;
    Ok((served, dir, started.elapsed()))
}

/// Writes `keys` random keys into a new spool at `dir`, 100,000 a commit; returns the largest the write-ahead log
/// grew meanwhile.
async fn prefill(dir: &std::path::Path, keys: u64) -> anyhow::Result<u64> {
    let spool = spool::Spool::open(dir, u64::MAX)?;
    spool.set_dedupe(Duration::from_secs(86_400), u64::MAX)?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut largest = 0;
    let wal = dir.join("spool.sqlite3-wal");
    let mut written = 0;
    while written < keys {
        let n = (keys - written).min(100_000);
        let chunk: Vec<i64> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as i64
            })
            .collect();
        spool.append_keyed(Vec::new(), Vec::new(), chunk).await?;
        written += n;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    spool.close();
    Ok(largest)
}

/// The resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
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
    tributary: &Tributary<'_>,
    bare_all: &[benches::Figures],
    ratios: &[f64],
    delivered_all: bool,
) -> anyhow::Result<()> {
    let (ours_all, deduped_all, shared_all) = (tributary.ours, tributary.deduped, tributary.shared);
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
        "  tributary serve, dedupe in Redis on loopback (--dedupe-store): {:.0} messages/s, ack latency p50 {:.1} ms, p99 {:.1} ms (worst round); Redis holds {:.0} bytes a key",
        mean(shared_all),
        median_p50(shared_all).as_secs_f64() * 1e3,
        worst_p99(shared_all).as_secs_f64() * 1e3,
        tributary.bytes_per_key,
    );
    println!(
        "  tributary serve --dedupe-window 0 with ten destination filters, a 50-event tracking plan and privacy controls: {:.0} messages/s, ack latency p50 {:.1} ms, p99 {:.1} ms (worst round)",
        mean(tributary.governed),
        median_p50(tributary.governed).as_secs_f64() * 1e3,
        worst_p99(tributary.governed).as_secs_f64() * 1e3,
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
    verdicts.at_least("ingest with dedupe in Redis, ratio to dedupe off", mean(shared_all) / mean(ours_all), 0.70, "");
    verdicts.at_least(
        "ingest with ten filters, a 50-event tracking plan and privacy controls, ratio to without",
        mean(tributary.governed) / mean(ours_all),
        0.80,
        "",
    );
    verdicts.at_least("ingest acknowledged", mean(ours_all), 50_000.0, "messages/s");
    verdicts.holds("ingest: the file sink kept pace (90% of what was acknowledged delivered 2 s later)", delivered_all);
    verdicts.finish()
}
