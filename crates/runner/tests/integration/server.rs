//! A `tributary serve` process for a test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The write key of the test source.
    pub key: &'static str,
    log: PathBuf,
}

/// The write key every test folder's source uses, passed through the environment as a deployment would.
pub const WRITE_KEY: &str = "test-write-key";

/// A config folder with one source `src_test` connected to `destinations`, whose files are given.
pub fn folder(name: &str, destinations: &[(&str, &str)]) -> PathBuf {
    folder_with(name, destinations, "")
}

/// As [`folder`], with `extra` lines in the source's file (`strict = true`).
pub fn folder_with(name: &str, destinations: &[(&str, &str)], extra: &str) -> PathBuf {
    let dir = crate::scratch(name);
    let names: Vec<String> = destinations.iter().map(|(n, _)| format!("{n:?}")).collect();
    let source = format!(
        "id = \"src_test\"\nname = \"Test\"\nwrite_key = {{ env = \"TEST_WRITE_KEY\" }}\ndestinations = [{}]\n{extra}\n",
        names.join(", ")
    );
    crate::write_files(&dir, &[("sources/test.toml", &source)]);
    for (name, body) in destinations {
        crate::write_files(&dir, &[(&format!("destinations/{name}.toml"), body)]);
    }
    dir
}

/// A `file` destination writing to `path`.
pub fn file_destination(name: &str, path: &Path) -> String {
    format!("name = {name:?}\ntype = \"file\"\n[file]\npath = {:?}\n", path.display().to_string())
}

/// A `kinesis` destination on `endpoint` with extra `[kinesis.delivery]` lines.
pub fn kinesis_destination(name: &str, stream: &str, endpoint: &str, delivery: &str) -> String {
    format!(
        "name = {name:?}\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\nendpoint = {endpoint:?}\n[kinesis.delivery]\nlinger_ms = 5\nbackoff_base_ms = 50\nbackoff_max_ms = 500\nmax_attempts = 3\n{delivery}\n"
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts `tributary serve` on `config` with its spool in `spool`, and waits until it answers.
    pub async fn start(config: &Path, spool: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(config, spool, extra, &[]).await
    }

    /// As [`Server::start`], with more environment variables.
    pub async fn start_with_env(config: &Path, spool: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_on(free_port(), config, spool, extra, env).await
    }

    /// As [`Server::start_with_env`], listening on `port` (a node started again where it was).
    pub async fn start_on(port: u16, config: &Path, spool: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let log = spool.with_extension(format!("{port}.log"));
        // Suites stop servers often; a drain delay is asked for by the suites that test it.
        let no_delay: &[&str] = if extra.contains(&"--drain-delay") { &[] } else { &["--drain-delay", "0"] };
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["--config", config.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--spool-dir")
            .arg(spool)
            .args(no_delay)
            .args(extra)
            .env("TEST_WRITE_KEY", WRITE_KEY)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tributary serve");
        let server = Server { child, url: format!("http://127.0.0.1:{port}"), key: WRITE_KEY, log };
        let client = reqwest::Client::new();
        // With --admin-listen, the status pages are on that port only.
        let status = match extra.iter().position(|a| *a == "--admin-listen") {
            Some(at) => format!("http://{}", extra[at + 1]),
            None => server.url.clone(),
        };
        for _ in 0..200 {
            if let Ok(response) = client.get(format!("{status}/health")).send().await
                && response.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tributary serve did not answer /health; its log:\n{}", server.log());
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to standard error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the server to exit; returns its exit code, or `None` if it is still running.
    pub async fn wait(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code());
            }
            if tokio::time::Instant::now() > give_up {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs `body` to `path` with the write key as Basic username; returns (status, JSON body).
    pub async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = client
            .post(format!("{}{path}", self.url))
            .basic_auth(self.key, Some(""))
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The value of the series `series` (a metric's name with its labels, as `/metrics` writes it), read by name;
    /// fails, showing the page, when the series is not there, so a renamed or dropped metric cannot pass.
    pub async fn metric(&self, client: &reqwest::Client, series: &str) -> f64 {
        let page = client.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap();
        metric_value(&page, series).unwrap_or_else(|| panic!("no series {series} in /metrics:\n{page}"))
    }
}

/// The value of `series` on a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A system tool by name, or from `/usr/sbin` where Debian puts it when that is not on the `PATH`.
pub fn sbin(tool: &'static str) -> String {
    let on_path =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if on_path { tool.to_owned() } else { format!("/usr/sbin/{tool}") }
}

/// HAProxy from Debian, or a failure that says how to get it.
fn haproxy() -> String {
    let haproxy = sbin("haproxy");
    let found = Command::new(&haproxy).arg("-v").output().is_ok_and(|o| o.status.success());
    assert!(found, "this suite needs HAProxy: `apt-get install haproxy` (`.ci/run` installs it)");
    haproxy
}

/// HAProxy in front of `nodes` (ingest and admin addresses), checking each node's `/readyz` every second and taking
/// it out after two failures. It does not redispatch a request whose connection was refused, nor retry one that got
/// no answer: a node that stopped listening before HAProxy took it out would cost clients 503s, so the drain delay
/// is what the drain suite tests. Each answer names the node that gave it in `X-Node` (`node0`, `node1`).
pub fn start_haproxy(dir: &Path, port: u16, nodes: &[(String, String)]) -> Child {
    let mut servers = String::new();
    for (i, (ingest, admin)) in nodes.iter().enumerate() {
        let (_, admin_port) = admin.rsplit_once(':').unwrap();
        servers.push_str(&format!("    server node{i} {ingest} check port {admin_port} inter 1s fall 2 rise 2\n"));
    }
    let config = format!(
        "global\n    maxconn 1000\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         \n    retries 3\n\
         frontend ingest\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
         backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n    http-check expect status 200\n\
         \n    http-response set-header X-Node %[srv_name]\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(haproxy()).args(["-c", "-f"]).arg(&path).output().unwrap();
    assert!(check.status.success(), "haproxy refused its config: {}", String::from_utf8_lossy(&check.stderr));
    Command::new(haproxy())
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .expect("start haproxy")
}
