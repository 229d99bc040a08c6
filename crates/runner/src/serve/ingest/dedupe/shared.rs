//! The fleet's shared key store: `serve --dedupe-store redis://HOST:PORT`, so that a resend landing on another node
//! is caught.
//!
//! Keys are members of Redis sets, one set per generation of half a window (`trd:g:SECONDS:N`, generation `N` of
//! `SECONDS` each), not one Redis key each: a request then costs Redis three commands whatever its number of
//! messages, where a key each (`SET key 1 PX window`) cost it a command a message and held the ingest rate to half
//! of dedupe off (docs/benchmarks.md). A request makes two round trips: before its commit, `SMISMEMBER` of its keys
//! on the three generations a window can reach back into; after the commit and before its 200, `SADD` to the
//! current generation, with the generation's expiry set to when no lookup can reach it any more. So a key counts
//! once its message is in a spool, for at least the window and at most one and a half, and Redis's own expiry
//! drops it.
//!
//! Redis is best effort, as Segment's dedupe is: when it does not answer within `--dedupe-timeout`, the request is
//! taken without dedupe (or refused with `--dedupe-required`), and for a second after such a failure requests do
//! not wait on it at all, so that a Redis that stopped answering costs one timeout a second rather than one a
//! request.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How many generations a window spans: a key counts for at least the window and at most `1 + 1/GENERATIONS` of
/// it, and a lookup asks `GENERATIONS + 1` sets.
const GENERATIONS: u64 = 2;

/// How long requests skip Redis after it failed one.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Why a round trip to Redis did not count.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// It did not answer within `--dedupe-timeout`.
    #[error("the dedupe store did not answer within {0:?}")]
    Timeout(Duration),
    /// It answered with an error, or the connection failed.
    #[error("the dedupe store failed: {0}")]
    Failed(String),
    /// It failed less than a second ago, and is not asked again yet.
    #[error("the dedupe store failed a moment ago")]
    Skipped,
}

/// A Redis (or a server speaking its protocol) holding the keys of every node that shares it.
pub struct Store {
    connection: ConnectionManager,
    /// Where it is, without any password, for logs and `/health`.
    pub address: String,
    timeout: Duration,
    /// How long a generation is, in milliseconds.
    generation_millis: u64,
    /// Until when, in Unix milliseconds, requests do not ask it.
    skip_until: AtomicI64,
    /// Whether the last round trip failed.
    failing: AtomicBool,
    last_error: Mutex<Option<(i64, String)>>,
    /// Where the connection and every round trip run: a thread of its own, at the process's priority. On the
    /// ingest runtime, whose threads are busy parsing (and yield to delivery's), an answer waited a millisecond
    /// and more to be read, twice a request, and ingest with Redis fell to two thirds of ingest without dedupe.
    runtime: tokio::runtime::Handle,
}

/// How the store looks to `/health`.
pub struct StoreHealth {
    /// Whether its last round trip failed.
    pub failing: bool,
    /// When it last failed, in Unix milliseconds, and why.
    pub last_error: Option<(i64, String)>,
}

impl Store {
    /// A store at `url` (`redis://` or `rediss://`), connected lazily: a Redis that is down at start only means
    /// requests are taken without dedupe until it answers.
    pub fn open(url: &str, timeout: Duration, window: Duration) -> anyhow::Result<Store> {
        let address = redacted(url);
        // rustls picks its crypto by feature, and a build that unifies features with a crate asking for `ring`
        // (as the test harness does) has two: name the one the AWS SDK uses. Another call already did is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = redis::Client::open(url).with_context(|| format!("--dedupe-store {address}"))?;
        let runtime = own_thread().context("starting the dedupe store's thread")?;
        // The connection's task, and its reconnections, are spawned where it is made.
        let _entered = runtime.enter();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(timeout.max(Duration::from_millis(1))))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .with_context(|| format!("--dedupe-store {address}"))?;
        Ok(Store {
            connection,
            address,
            timeout,
            generation_millis: generation_millis(window),
            skip_until: AtomicI64::new(0),
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            runtime,
        })
    }

    /// Asks the store whether it answers (waiting `wait` to connect) and what in its settings works against
    /// dedupe, for the notes `serve` prints at start.
    pub async fn greet(self: &Arc<Self>, wait: Duration) -> (Result<(), Unavailable>, Vec<String>) {
        let store = self.clone();
        let greeting = self.runtime.spawn(async move { (store.ping(wait).await, store.advice().await) });
        greeting.await.unwrap_or_else(|e| (Err(Unavailable::Failed(e.to_string())), Vec::new()))
    }

    /// Sends the lookup of `keys` at once, from the store's thread; the answer waits in the handle.
    pub fn send_lookup(self: &Arc<Self>, keys: Vec<i64>) -> tokio::task::JoinHandle<Result<Vec<bool>, Unavailable>> {
        let store = self.clone();
        self.runtime.spawn(async move { store.lookup(&keys).await })
    }

    /// Runs `task` on the store's thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.runtime.spawn(task)
    }

    /// Asks the store once, with `wait` to connect: whether it answers, for the note `serve` prints at start.
    pub async fn ping(&self, wait: Duration) -> Result<(), Unavailable> {
        let mut connection = self.connection.clone();
        self.settle(wait, async move { redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop) })
            .await
    }

    /// What in the store's settings works against dedupe, as advice for the operator; nothing when its `CONFIG`
    /// is not open to us (a managed Redis).
    pub async fn advice(&self) -> Vec<String> {
        let mut connection = self.connection.clone();
        let asked = async move {
            let mut pipeline = redis::pipe();
            pipeline.cmd("CONFIG").arg("GET").arg("lazyfree-lazy-expire");
            pipeline.cmd("CONFIG").arg("GET").arg("maxmemory-policy");
            pipeline.query_async::<Vec<Vec<String>>>(&mut connection).await
        };
        let Ok(Ok(answers)) = tokio::time::timeout(Duration::from_secs(2), asked).await else { return Vec::new() };
        let value = |at: usize| answers.get(at).and_then(|pair| pair.get(1)).map(String::as_str);
        let mut advice = Vec::new();
        if value(0) == Some("no") {
            advice.push(
                "its lazyfree-lazy-expire is no: an expiring generation of keys (millions at a high rate) is freed in one go, and Redis answers nobody meanwhile; set lazyfree-lazy-expire yes".to_owned(),
            );
        }
        if let Some(policy) = value(1).filter(|p| *p != "volatile-ttl") {
            advice.push(format!(
                "its maxmemory-policy is {policy}: volatile-ttl lets the oldest generation of keys go first when Redis is full, as the spool's own key store does"
            ));
        }
        advice
    }

    /// Which of `keys` the store holds: one `SMISMEMBER` on each generation a window reaches back into, in one
    /// round trip.
    pub async fn lookup(&self, keys: &[i64]) -> Result<Vec<bool>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.generation(spool::now_millis());
        let mut pipeline = redis::pipe();
        for generation in now.saturating_sub(GENERATIONS)..=now {
            let command = pipeline.cmd("SMISMEMBER").arg(self.set(generation));
            for key in keys {
                command.arg(&key.to_le_bytes()[..]);
            }
        }
        let mut connection = self.connection.clone();
        let answers = self
            .settle(self.timeout, async move { pipeline.query_async::<Vec<Vec<i64>>>(&mut connection).await })
            .await?;
        let mut found = vec![false; keys.len()];
        for answer in &answers {
            if answer.len() != keys.len() {
                return Err(self.failed(Unavailable::Failed(format!(
                    "SMISMEMBER of {} keys answered {} values",
                    keys.len(),
                    answer.len()
                ))));
            }
            for (found, member) in found.iter_mut().zip(answer) {
                *found |= *member != 0;
            }
        }
        Ok(found)
    }

    /// Records `keys` in the current generation, which expires when no lookup can reach it: one round trip.
    pub async fn record(&self, keys: &[i64]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let generation = self.generation(spool::now_millis());
        let set = self.set(generation);
        let mut pipeline = redis::pipe();
        let add = pipeline.cmd("SADD").arg(&set);
        for key in keys {
            add.arg(&key.to_le_bytes()[..]);
        }
        add.ignore();
        let expires = (generation + GENERATIONS + 1).saturating_mul(self.generation_millis);
        pipeline.cmd("PEXPIREAT").arg(&set).arg(expires).ignore();
        let mut connection = self.connection.clone();
        self.settle(self.timeout, async move { pipeline.query_async::<()>(&mut connection).await }).await
    }

    /// The generation `millis` (Unix milliseconds) falls in.
    fn generation(&self, millis: i64) -> u64 {
        u64::try_from(millis).unwrap_or(0) / self.generation_millis
    }

    /// The name of a generation's set: its length in seconds is in it, so that nodes given different windows do
    /// not read each other's generations as their own.
    fn set(&self, generation: u64) -> String {
        format!("trd:g:{}:{generation}", self.generation_millis / 1_000)
    }

    /// How the store looks now.
    pub fn health(&self) -> StoreHealth {
        StoreHealth {
            failing: self.failing.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("dedupe store error lock poisoned").clone(),
        }
    }

    /// Runs one round trip within `wait`, unless the store failed less than a second ago, and keeps its outcome.
    async fn settle<T>(
        &self,
        wait: Duration,
        round_trip: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        if spool::now_millis() < self.skip_until.load(Ordering::Relaxed) {
            return Err(Unavailable::Skipped);
        }
        match tokio::time::timeout(wait, round_trip).await {
            Ok(Ok(answer)) => {
                self.failing.store(false, Ordering::Relaxed);
                Ok(answer)
            }
            Ok(Err(error)) => Err(self.failed(Unavailable::Failed(error.to_string()))),
            Err(_) => Err(self.failed(Unavailable::Timeout(wait))),
        }
    }

    fn failed(&self, why: Unavailable) -> Unavailable {
        let now = spool::now_millis();
        self.skip_until.store(now + SKIP_AFTER_FAILURE.as_millis() as i64, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(store = %self.address, error = %why, "the dedupe store is not answering: requests are taken without dedupe until it does");
        }
        *self.last_error.lock().expect("dedupe store error lock poisoned") = Some((now, why.to_string()));
        why
    }
}

/// How long a generation of `window` is: whole seconds, so that the sets' names are short and every node cuts
/// generations alike, rounded up, so that the generations a lookup reaches back into cover the whole window.
fn generation_millis(window: Duration) -> u64 {
    let seconds = u64::try_from(window.as_millis().div_ceil(1_000)).unwrap_or(u64::MAX / 1_000);
    seconds.div_ceil(GENERATIONS).max(1).saturating_mul(1_000)
}

/// A runtime on a thread of its own, which runs as long as the process.
fn own_thread() -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("tributary-dedupe".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// `url` without its user and password: what logs and `/health` may show.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "(not a redis:// URL)".to_owned() };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(redacted("redis://:hunter2@cache:6379/0"), "redis://cache:6379/0");
        assert_eq!(redacted("rediss://user:p@ss@cache:6380"), "rediss://cache:6380");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("hunter2"), "(not a redis:// URL)");
        assert_eq!(redacted("redis://cache:6379/0?password=hunter2"), "redis://cache:6379/0");
    }

    #[tokio::test]
    async fn generations_are_half_a_window_named_by_their_length() {
        let store = Store::open("redis://127.0.0.1:1", Duration::from_millis(50), Duration::from_secs(86_400)).unwrap();
        assert_eq!(store.generation_millis, 43_200_000);
        assert_eq!(store.generation(43_199_999), 0);
        assert_eq!(store.generation(43_200_000), 1);
        assert_eq!(store.set(7), "trd:g:43200:7");
        // A window under two seconds still has generations of a second.
        let short = Store::open("redis://127.0.0.1:1", Duration::from_millis(50), Duration::from_millis(500)).unwrap();
        assert_eq!(short.generation_millis, 1_000);
        // A lookup reaches back two whole generations: they must cover the window, whatever its length, or a
        // resend within it would be stored again.
        for window in [3_000, 2_500, 61_000, 86_400_000, 86_399_999] {
            let store =
                Store::open("redis://127.0.0.1:1", Duration::from_millis(50), Duration::from_millis(window)).unwrap();
            assert!(store.generation_millis * GENERATIONS >= window, "{window} ms: {}", store.generation_millis);
        }
    }
}
