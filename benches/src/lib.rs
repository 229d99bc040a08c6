//! Inputs and set-up shared by the benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    for _ in 0..200 {
        if client.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not become ready")
}

/// A `tributary serve` whose one source (key [`WRITE_KEY`]) delivers to a file sink, in a scratch folder that is
/// removed when it stops.
pub struct Served {
    /// The server process.
    pub server: Guard,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The file the sink writes.
    pub out: PathBuf,
    dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.0.kill();
        let _ = self.server.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Served {
    /// Starts `tributary` (the binary at `tributary`) serving with a durable spool and a file destination, and
    /// waits until it answers.
    pub async fn start(tributary: &Path, name: &str) -> anyhow::Result<Served> {
        let dir = std::env::temp_dir().join(format!("tributary-{name}-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("configs/sources"))?;
        std::fs::create_dir_all(dir.join("configs/destinations"))?;
        let out = dir.join("out.ndjson");
        std::fs::write(
            dir.join("configs/sources/bench.toml"),
            "id = \"src_bench\"\nname = \"Bench\"\nwrite_key = { env = \"BENCH_WRITE_KEY\" }\ndestinations = [\"archive\"]\n",
        )?;
        std::fs::write(
            dir.join("configs/destinations/archive.toml"),
            format!("name = \"archive\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string()),
        )?;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let server = Guard(
            Command::new(tributary)
                .arg("--config")
                .arg(dir.join("configs"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--spool-dir"])
                .arg(dir.join("spool"))
                .env("BENCH_WRITE_KEY", WRITE_KEY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting tributary serve")?,
        );
        let served = Served { server, url, out, dir };
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
