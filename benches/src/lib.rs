//! Inputs and set-up shared by the benchmarks.

pub mod governance;
pub mod null_firehose;
pub mod null_kinesis;
pub mod traffic;
pub mod verdict;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The write key of the benchmarks' source.
pub const WRITE_KEY: &str = "bench-write-key";

/// A child process, killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value after `--name` on the command line, if it is there.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port").local_addr().expect("an address").port()
}

/// Polls `url/health` until it answers 200.
pub async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // A minute at most: a server loading tens of millions of dedupe keys takes some seconds to answer.
    for _ in 0..1_200 {
        if client.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not become ready")
}

/// A `tributary serve` whose one source (key [`WRITE_KEY`]) delivers to one destination, in a scratch folder.
pub struct Served {
    /// The server process.
    pub server: Guard,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The file the sink writes, for a file destination.
    pub out: PathBuf,
    /// The scratch folder; removed on drop when this server made it.
    pub dir: PathBuf,
    owns_dir: bool,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.0.kill();
        let _ = self.server.0.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A scratch folder for a benchmark's server, emptied first.
pub fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tributary-{name}-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("configs/sources"))?;
    std::fs::create_dir_all(dir.join("configs/destinations"))?;
    Ok(dir)
}

impl Served {
    /// Starts `tributary` (the binary at `tributary`) serving with a durable spool and a file destination, and
    /// waits until it answers.
    pub async fn start(tributary: &Path, name: &str) -> anyhow::Result<Served> {
        Served::start_with(tributary, name, &[]).await
    }

    /// As [`Served::start`], with `args` added to `serve`'s.
    pub async fn start_with(tributary: &Path, name: &str, args: &[&str]) -> anyhow::Result<Served> {
        let dir = scratch(name)?;
        let out = dir.join("out.ndjson");
        let destination =
            format!("name = \"archive\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string());
        let mut served = Served::start_in(tributary, &dir, "archive", &destination, &[], args).await?;
        served.owns_dir = true;
        Ok(served)
    }

    /// Starts `tributary serve` with its configs and spool in `dir` (kept on drop), one source delivering to the
    /// destination `name` described by `destination` (a destination file's TOML), with `env` set and `args` added
    /// to `serve`'s, and waits until it answers.
    pub async fn start_in(
        tributary: &Path,
        dir: &Path,
        name: &str,
        destination: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Served> {
        Served::start_in_with(tributary, dir, (name, destination), "", env, args).await
    }

    /// As [`Served::start`], with the governance of [`governance`]: the destination's ten filters, the source's
    /// 50-event tracking plan and privacy controls.
    pub async fn start_governed(tributary: &Path, name: &str, args: &[&str]) -> anyhow::Result<Served> {
        let dir = scratch(name)?;
        let out = dir.join("out.ndjson");
        std::fs::create_dir_all(dir.join("configs/tracking-plans"))?;
        std::fs::write(dir.join("configs/tracking-plans/bench.json"), governance::plan())?;
        let destination = format!(
            "name = \"archive\"\ntype = \"file\"\n{}\n[file]\npath = {:?}\n",
            governance::FILTERS,
            out.display().to_string()
        );
        let env = [("BENCH_PRIVACY_KEY", governance::PRIVACY_KEY)];
        let archive = ("archive", destination.as_str());
        let mut served =
            Served::start_in_with(tributary, &dir, archive, governance::SOURCE_CONTROLS, &env, args).await?;
        served.owns_dir = true;
        Ok(served)
    }

    /// As [`Served::start_in`], with `source_extra` (TOML) at the end of the source's file.
    pub async fn start_in_with(
        tributary: &Path,
        dir: &Path,
        (name, destination): (&str, &str),
        source_extra: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Served> {
        std::fs::write(
            dir.join("configs/sources/bench.toml"),
            format!(
                "id = \"src_bench\"\nname = \"Bench\"\nwrite_key = {{ env = \"BENCH_WRITE_KEY\" }}\ndestinations = [\"{name}\"]\n{source_extra}\n"
            ),
        )?;
        std::fs::write(dir.join(format!("configs/destinations/{name}.toml")), destination)?;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let server = Guard(
            Command::new(tributary)
                .arg("--config")
                .arg(dir.join("configs"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--spool-dir"])
                .arg(dir.join("spool"))
                .args(args)
                .env("BENCH_WRITE_KEY", WRITE_KEY)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting tributary serve")?,
        );
        let served = Served { server, url, out: dir.join("out.ndjson"), dir: dir.to_owned(), owns_dir: false };
        wait_ready(&served.url).await?;
        Ok(served)
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.server.0.id()
    }
}

/// A realistic track call of about 700 bytes, as analytics-node sends it (messageId, timestamps and a library
/// context included).
pub fn track_700() -> Vec<u8> {
    let body = serde_json::json!({
        "type": "track",
        "event": "Order Completed",
        "userId": "user_1234567890",
        "anonymousId": "6f1c2d6e-2f4b-4d0b-9f3e-2b8e1c9a7d55",
        "messageId": "node-next-1732580095123-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "timestamp": "2026-11-25T23:54:55.123Z",
        "sentAt": "2026-11-25T23:54:55.456Z",
        "properties": {
            "order_id": "50314b8e9bcf000000000000",
            "total": 27.5,
            "revenue": 25.0,
            "currency": "USD",
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "name": "Monopoly", "price": 19, "quantity": 1},
                {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "name": "Uno", "price": 3, "quantity": 2}
            ]
        },
        "context": {
            "library": {"name": "@segment/analytics-node", "version": "2.1.2"},
            "ip": "203.0.113.7"
        },
        "integrations": {"All": true},
        "_metadata": {"jsRuntime": "node"}
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!((650..=760).contains(&bytes.len()), "the sample is {} bytes", bytes.len());
    bytes
}

/// Throughput and latency of one run.
pub struct Figures {
    /// Acknowledged messages per second over the measured window.
    pub messages_per_second: f64,
    /// Median acknowledgement latency.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Requests answered 429 (the spool full) in the measured window; the ingest benchmark allows none.
    pub pushed_back: u64,
    /// The numbers ([`traffic::Request::number`]) of every request answered 200, warm-up included: what the
    /// server promised to deliver.
    pub acknowledged: Vec<u64>,
}

/// Posts requests of `traffic` over `connections` keep-alive connections for `warmup` plus `measure`; the
/// throughput and latencies cover `measure`, the acknowledged requests the whole run.
pub async fn load(
    url: &str,
    traffic: &Arc<traffic::Traffic>,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Figures> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + measure;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (url, traffic) = (format!("{url}/v1/batch"), traffic.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
                let (mut latencies, mut pushed_back, mut acknowledged) = (Vec::new(), 0u64, Vec::new());
                loop {
                    let request = traffic.next();
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let response = client
                        .post(&url)
                        .basic_auth(WRITE_KEY, Some(""))
                        .header("content-type", "application/json")
                        .body(request.body)
                        .send()
                        .await?;
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map_or(Duration::from_millis(100), Duration::from_secs);
                    response.bytes().await?;
                    let done = Instant::now();
                    if status == 429 {
                        pushed_back += u64::from(sent >= measure_from && done <= until);
                        // As a Segment library does, wait as long as the answer asks before sending again.
                        tokio::time::sleep(retry_after.min(until.saturating_duration_since(done))).await;
                        continue;
                    }
                    if status != 200 {
                        bail!("the server answered {status}");
                    }
                    acknowledged.push(request.number);
                    if sent >= measure_from && done <= until {
                        latencies.push(done - sent);
                    }
                }
                Ok((latencies, pushed_back, acknowledged))
            })
        })
        .collect();
    let (mut latencies, mut pushed_back, mut acknowledged) = (Vec::new(), 0, Vec::new());
    for task in tasks {
        let (more, refused, acked) = task.await??;
        latencies.extend(more);
        pushed_back += refused;
        acknowledged.extend(acked);
    }
    anyhow::ensure!(!latencies.is_empty(), "no request was answered within the measured window");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        messages_per_second: latencies.len() as f64 * traffic::PER_REQUEST as f64 / measure.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        pushed_back,
        acknowledged,
    })
}
