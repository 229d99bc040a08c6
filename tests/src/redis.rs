//! Debian's `redis-server`, started by a suite (or a benchmark) as the emulators are: on loopback, on a port of its
//! own, keeping nothing on disk, so that a restart is a Redis without its data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, stopped when dropped.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// `redis-server`, or a failure that says how to get it.
fn binary() -> &'static str {
    let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "this suite needs Redis: `apt-get install redis-server` (`.ci/run` installs it)");
    "redis-server"
}

impl Redis {
    /// Starts Redis on a free port, with its log in `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Redis {
        Redis::start_with(dir, &[])
    }

    /// As [`Redis::start`], with more `redis-server` arguments (`--maxmemory 1mb`, TLS).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn(dir, port, &extra);
        let redis = Redis { child, port, dir: dir.to_owned(), extra };
        redis.wait_ready();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` with `args` against it; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let password = self.extra.iter().position(|a| a == "--requirepass").map(|at| self.extra[at + 1].as_str());
        let auth = password.map(|password| ["--no-auth-warning", "-a", password]);
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(auth.iter().flatten())
            .args(args)
            .output()
            .expect("redis-cli (Debian's redis-tools, which redis-server brings)");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A field of `INFO`, as a number.
    pub fn info(&self, field: &str) -> f64 {
        let info = self.cli(&["INFO"]);
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in Redis's INFO:\n{info}"))
    }

    /// Sends `signal` (`STOP`, `CONT`) to it.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Kills it; it comes back, empty, with [`Redis::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, without the keys it had.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.dir, self.port, &self.extra);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < give_up, "redis-server did not answer; its log is in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(dir: &Path, port: u16, extra: &[String]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    Command::new(binary())
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("redis-{port}.log"))).unwrap())
        .spawn()
        .expect("start redis-server")
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
