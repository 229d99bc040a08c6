//! The fleet's shared keys: `serve --dedupe-store redis://HOST:PORT`, so that a resend landing on another node is
//! caught.
//!
//! Every node holds the window's keys in its own spool, as a node alone does, and looks a request's keys up there,
//! in memory. The fleet shares them through one Redis stream (`trd:s:SECONDS`, the window's length in its name):
//! after a request's commit and before its 200, one `XADD` of the request's keys packed 8 bytes each, with the
//! node's ID, trimmed to the window (`MINID ~`); and on a connection of its own, each node reads every entry as it
//! is added (`XREAD BLOCK`) and holds the other nodes' keys ([`spool::Spool::adopt`]). So Redis does no work per
//! key, and holds about 8 bytes a key: with a key per message (`SET key 1 PX window`) and then a set per half
//! window (`SMISMEMBER` before the commit, `SADD` after it), Redis's hash tables took a third of a core at the
//! benchmark's rate, and ingest fell to 0.53, then 0.69, of dedupe off (docs/benchmarks.md).
//!
//! A node reads the entries of the last window when it starts, and the stream from where it left off after Redis
//! comes back; the keys it committed while Redis was away are shared then. A Redis restarted without its data only
//! lets duplicates through to a node started since, since every node still holds the keys it read. Redis is best effort, as Segment's dedupe is: while it does not answer (a record not done within
//! `--dedupe-timeout`, or the read failing), requests are taken with the keys the node holds, counted, or refused
//! with `--dedupe-required`; for a second after a record failed, requests do not wait on Redis at all, so that a
//! Redis that stopped answering costs one timeout a second rather than one a request.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The most keys kept, while Redis does not take them, to share once it does (8 MiB).
const MAX_UNSHARED: usize = 1 << 20;

/// The most keys kept while Redis was away that one entry shares.
const UNSHARED_PER_ENTRY: usize = 1 << 16;

/// How long sharing one entry of kept keys may take.
const UNSHARED_TIMEOUT: Duration = Duration::from_secs(5);

/// How long requests skip Redis after a record failed.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long one read waits for new entries: a Redis that stopped answering is noticed within this and the
/// timeout.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// The most entries one read takes: a node catching up on a window reads it in steps of this.
const READ_COUNT: usize = 1_000;

/// How long the reader waits before it asks again after a failed read.
const READ_RETRY: Duration = Duration::from_millis(200);

/// Why Redis did not count for a request.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// It did not answer within `--dedupe-timeout`.
    #[error("the dedupe store did not answer within {0:?}")]
    Timeout(Duration),
    /// It answered with an error, or the connection failed.
    #[error("the dedupe store failed: {0}")]
    Failed(String),
    /// A record failed less than a second ago, and Redis is not asked again yet.
    #[error("the dedupe store failed a moment ago")]
    Skipped,
    /// The node cannot read the other nodes' keys now.
    #[error("the other nodes' keys cannot be read: {0}")]
    Unread(String),
}

/// A Redis (or a server speaking its protocol) through which the nodes that share it share their keys.
pub struct Store {
    /// Where records go: shared by every request, pipelined.
    connection: ConnectionManager,
    /// For the reader's connection: a connection of its own, since a blocked read holds it, made again after any
    /// failure, so that a read never waits behind reads that timed out.
    client: redis::Client,
    /// Where it is, without any password, for logs and `/health`.
    pub address: String,
    timeout: Duration,
    window_millis: i64,
    /// The stream's name.
    stream: String,
    /// This process's ID in the entries it adds: made at random at each start, so that a node reads back what it
    /// added before a restart as anyone else's (and holds it already).
    node: [u8; 8],
    /// Until when, in Unix milliseconds, requests do not record.
    skip_until: AtomicI64,
    /// Whether the last record failed.
    failing: AtomicBool,
    /// Why the last read failed, while the reader cannot read.
    unread: Mutex<Option<String>>,
    /// The other nodes' keys read and held.
    adopted: AtomicU64,
    /// Keys committed while Redis did not take them, oldest first, to share once it does.
    unshared: Mutex<std::collections::VecDeque<i64>>,
    /// Whether [`MAX_UNSHARED`] was passed since the kept keys were last shared.
    unshared_overflowed: AtomicBool,
    /// Whether a task is sharing the kept keys.
    sharing: AtomicBool,
    /// Whether the reader has read up to the stream's end once since the start.
    caught_up: AtomicBool,
    last_error: Mutex<Option<(i64, String)>>,
    /// Where the connections, every record and the reader run: a thread of its own, at the process's priority. On
    /// the ingest runtime, whose threads are busy parsing (and yield to delivery's), an answer waited a
    /// millisecond and more to be read.
    runtime: tokio::runtime::Handle,
}

/// How the store looks to `/health`.
pub struct StoreHealth {
    /// Whether its last record failed or the reader cannot read.
    pub failing: bool,
    /// When it last failed, in Unix milliseconds, and why.
    pub last_error: Option<(i64, String)>,
    /// The other nodes' keys read and held since the start.
    pub adopted: u64,
    /// Whether the reader has read the window up to the stream's end since the start.
    pub caught_up: bool,
    /// Keys committed while Redis did not take them, waiting to be shared.
    pub unshared: u64,
}

impl Store {
    /// A store at `url` (`redis://` or `rediss://`), connected lazily: a Redis that is down at start only means
    /// requests are taken with this node's keys until it answers.
    pub fn open(url: &str, timeout: Duration, window: Duration) -> anyhow::Result<Store> {
        let address = redacted(url);
        // rustls picks its crypto by feature, and a build that unifies features with a crate asking for `ring`
        // (as the test harness does) has two: name the one the AWS SDK uses. Another call already did is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = redis::Client::open(url).with_context(|| format!("--dedupe-store {address}"))?;
        let runtime = own_thread().context("starting the dedupe store's thread")?;
        // The connections' tasks, and their reconnections, are spawned where they are made.
        let _entered = runtime.enter();
        let config = |answer_within: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(answer_within.max(Duration::from_millis(1))))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(200))
        };
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config(timeout))
            .with_context(|| format!("--dedupe-store {address}"))?;
        let mut node = [0u8; 8];
        rustix::rand::getrandom(&mut node, rustix::rand::GetRandomFlags::empty())
            .context("reading the kernel's random source for the node's ID")?;
        let window_millis = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Ok(Store {
            connection,
            client,
            address,
            timeout,
            window_millis,
            stream: format!("trd:s:{}", window.as_millis().div_ceil(1_000)),
            node,
            skip_until: AtomicI64::new(0),
            failing: AtomicBool::new(false),
            unread: Mutex::new(None),
            adopted: AtomicU64::new(0),
            unshared: Mutex::default(),
            unshared_overflowed: AtomicBool::new(false),
            sharing: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
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

    /// Starts reading the other nodes' keys into `spool`, from the last window on, until the spool closes.
    pub fn start_reading(self: &Arc<Self>, spool: spool::Spool) {
        let store = self.clone();
        self.runtime.spawn(async move { store.read(spool).await });
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
            pipeline.cmd("CONFIG").arg("GET").arg("maxmemory");
            pipeline.cmd("CONFIG").arg("GET").arg("maxmemory-policy");
            pipeline.query_async::<Vec<Vec<String>>>(&mut connection).await
        };
        let Ok(Ok(answers)) = tokio::time::timeout(Duration::from_secs(2), asked).await else { return Vec::new() };
        let value = |at: usize| answers.get(at).and_then(|pair| pair.get(1)).map(String::as_str);
        let bounded = value(0).is_some_and(|max| max != "0");
        match value(1) {
            Some("noeviction") if bounded => vec![
                "its maxmemory-policy is noeviction: once Redis is full every record fails and resends to other nodes are stored again; set volatile-ttl, which drops the key stream (every node keeps the keys it read) and lets it start again".to_owned(),
            ],
            _ => Vec::new(),
        }
    }

    /// Whether a request can count on the fleet's keys now: not while a record failed less than a second ago or
    /// the reader cannot read.
    pub fn checkable(&self) -> Result<(), Unavailable> {
        if spool::now_millis() < self.skip_until.load(Ordering::Relaxed) {
            return Err(Unavailable::Skipped);
        }
        match self.unread.lock().expect("dedupe store lock poisoned").as_ref() {
            Some(why) => Err(Unavailable::Unread(why.clone())),
            None => Ok(()),
        }
    }

    /// Shares `keys`, just committed, with the fleet: one `XADD` of them packed, trimming entries older than the
    /// window, and the stream's expiry renewed to the window (a fleet idle that long leaves nothing behind), in
    /// one round trip. Keys Redis did not take are kept (at most [`MAX_UNSHARED`]) and shared, on the store's
    /// thread, once a record succeeds again, so that a resend to another node of a message committed while Redis
    /// was away is dropped from then on.
    pub async fn record(self: &Arc<Self>, keys: &[i64]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let result = self.add(keys, self.timeout).await;
        match result {
            Err(_) => self.keep_unshared(keys.iter().copied()),
            Ok(()) => {
                let waiting = !self.unshared.lock().expect("dedupe store lock poisoned").is_empty();
                if waiting && !self.sharing.swap(true, Ordering::Relaxed) {
                    let store = self.clone();
                    self.runtime.spawn(async move { store.share_unshared().await });
                }
            }
        }
        result
    }

    /// One `XADD` of `keys`, within `wait`.
    async fn add(&self, keys: &[i64], wait: Duration) -> Result<(), Unavailable> {
        let packed: Vec<u8> = keys.iter().flat_map(|key| key.to_le_bytes()).collect();
        let oldest = (spool::now_millis() - self.window_millis).max(0);
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("XADD")
            .arg(&self.stream)
            .arg("MINID")
            .arg("~")
            .arg(oldest)
            .arg("*")
            .arg("n")
            .arg(&self.node[..])
            .arg("k")
            .arg(packed)
            .ignore();
        pipeline.cmd("PEXPIRE").arg(&self.stream).arg(self.window_millis.max(1)).ignore();
        let mut connection = self.connection.clone();
        self.settle(wait, async move { pipeline.query_async::<()>(&mut connection).await }).await
    }

    /// Keeps `keys` to share later; past [`MAX_UNSHARED`] the oldest go (logged once each time).
    fn keep_unshared(&self, keys: impl Iterator<Item = i64>) {
        let mut unshared = self.unshared.lock().expect("dedupe store lock poisoned");
        unshared.extend(keys);
        if unshared.len() > MAX_UNSHARED {
            let over = unshared.len() - MAX_UNSHARED;
            unshared.drain(..over);
            if !self.unshared_overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(store = %self.address, kept = MAX_UNSHARED, "the dedupe store has been away long: keys committed meanwhile beyond the newest {MAX_UNSHARED} will not be shared, and resends of them to other nodes are stored again");
            }
        }
    }

    /// Shares the keys kept while Redis was away, in entries of [`UNSHARED_PER_ENTRY`] keys; stops, keeping the
    /// rest, at the first failure.
    async fn share_unshared(&self) {
        loop {
            let keys: Vec<i64> = {
                let mut unshared = self.unshared.lock().expect("dedupe store lock poisoned");
                let take = unshared.len().min(UNSHARED_PER_ENTRY);
                unshared.drain(..take).collect()
            };
            if keys.is_empty() {
                self.unshared_overflowed.store(false, Ordering::Relaxed);
                break;
            }
            if self.add(&keys, UNSHARED_TIMEOUT).await.is_err() {
                let mut unshared = self.unshared.lock().expect("dedupe store lock poisoned");
                for key in keys.into_iter().rev() {
                    unshared.push_front(key);
                }
                break;
            }
        }
        self.sharing.store(false, Ordering::Relaxed);
    }

    /// Reads every entry added to the stream, from the last window on, and holds the other nodes' keys in `spool`.
    /// A failed read is retried after a moment, from where the last one ended.
    async fn read(&self, spool: spool::Spool) {
        let mut cursor = format!("{}-0", (spool::now_millis() - self.window_millis).max(0));
        let mut connection = None;
        while !spool.is_closed() {
            let entries = match self.read_after(&mut connection, &cursor).await {
                Ok(entries) => entries,
                Err(why) => {
                    connection = None;
                    self.unreadable(why);
                    tokio::time::sleep(READ_RETRY).await;
                    continue;
                }
            };
            if self.unread.lock().expect("dedupe store lock poisoned").take().is_some() {
                tracing::warn!(store = %self.address, "the dedupe store is read again: the other nodes' keys count again");
            }
            if entries.len() < READ_COUNT {
                self.caught_up.store(true, Ordering::Relaxed);
            }
            let Some(last) = entries.last() else { continue };
            cursor = last.id.clone();
            let mut keys = Vec::new();
            let mut at = 0;
            for entry in &entries {
                match &entry.added {
                    Some((node, _)) if *node == self.node => {}
                    Some((_, packed)) => {
                        keys.extend(packed.chunks_exact(8).map(|k| i64::from_le_bytes(k.try_into().expect("8 bytes"))));
                        at = at.max(entry.at);
                    }
                    None => {
                        tracing::warn!(store = %self.address, stream = %self.stream, id = %entry.id, "passed over an entry of the dedupe stream that tributary did not write")
                    }
                }
            }
            if keys.is_empty() {
                // Only this node's own entries (a node alone reads back every one): nothing to hold.
                continue;
            }
            self.adopted.fetch_add(keys.len() as u64, Ordering::Relaxed);
            // The keys count from here; their commit is not awaited, so that the next read is not held up behind
            // it: a resend to this node a few milliseconds after another node's 200 must find them.
            let written = spool.adopt(keys, at);
            tokio::spawn(async move {
                match written.await {
                    Ok(()) | Err(spool::SpoolError::Stopped) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "writing other nodes' dedupe keys failed: they are let go, and resends of them to this node are stored again")
                    }
                }
            });
        }
    }

    /// One read of the entries after `cursor`, on `connection`, made first if there is none.
    async fn read_after(
        &self,
        connection: &mut Option<redis::aio::MultiplexedConnection>,
        cursor: &str,
    ) -> Result<Vec<Entry>, String> {
        let wait = READ_BLOCK + self.timeout;
        let connection = match connection {
            Some(connection) => connection,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(wait));
                let made = self.client.get_multiplexed_async_connection_with_config(&config);
                connection.insert(made.await.map_err(|e| e.to_string())?)
            }
        };
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
        read.arg("STREAMS").arg(&self.stream).arg(cursor);
        match tokio::time::timeout(wait, read.query_async::<Value>(connection)).await {
            Ok(Ok(value)) => entries(&value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer to a read within {wait:?}")),
        }
    }

    /// Notes that the reader cannot read, and why: logged once each time it starts.
    fn unreadable(&self, why: String) {
        *self.last_error.lock().expect("dedupe store error lock poisoned") = Some((spool::now_millis(), why.clone()));
        if self.unread.lock().expect("dedupe store lock poisoned").replace(why.clone()).is_none() {
            tracing::warn!(store = %self.address, error = %why, "the dedupe store cannot be read: requests are checked against this node's keys only until it can");
        }
    }

    /// How the store looks now.
    pub fn health(&self) -> StoreHealth {
        StoreHealth {
            failing: self.failing.load(Ordering::Relaxed)
                || self.unread.lock().expect("dedupe store lock poisoned").is_some(),
            last_error: self.last_error.lock().expect("dedupe store error lock poisoned").clone(),
            adopted: self.adopted.load(Ordering::Relaxed),
            caught_up: self.caught_up.load(Ordering::Relaxed),
            unshared: self.unshared.lock().expect("dedupe store lock poisoned").len() as u64,
        }
    }

    /// Runs one round trip within `wait`, unless a record failed less than a second ago, and keeps its outcome.
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
            tracing::warn!(store = %self.address, error = %why, "the dedupe store is not answering: requests are taken with this node's keys only until it does");
        }
        *self.last_error.lock().expect("dedupe store error lock poisoned") = Some((now, why.to_string()));
        why
    }
}

/// One entry of the stream: its ID, when it was added (Redis's clock, from its ID), and who added it with its keys
/// packed; `None` for an entry not shaped as this server adds them (another program's, in a stream of the same
/// name), which is passed over, not guessed at.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    at: i64,
    added: Option<([u8; 8], Vec<u8>)>,
}

/// The entries of an `XREAD` answer on one stream (none when it timed out).
fn entries(answer: &Value) -> Result<Vec<Entry>, String> {
    let streams: Vec<&Value> = match answer {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams.iter().collect(),
        // RESP3 answers with a map of stream to entries.
        Value::Map(pairs) => pairs.iter().map(|(_, entries)| entries).collect(),
        other => return Err(format!("XREAD answered {other:?}")),
    };
    let mut read = Vec::new();
    for stream in streams {
        let list = match stream {
            Value::Array(pair) if pair.len() == 2 => &pair[1],
            list @ Value::Array(_) => list,
            other => return Err(format!("XREAD answered a stream as {other:?}")),
        };
        let Value::Array(list) = list else { return Err("XREAD answered entries that are not a list".to_owned()) };
        for entry in list {
            read.push(entry_of(entry).ok_or_else(|| format!("XREAD answered an entry without an ID: {entry:?}"))?);
        }
    }
    Ok(read)
}

/// One entry, `[ID, [n, NODE, k, KEYS]]`; `None` without an ID.
fn entry_of(entry: &Value) -> Option<Entry> {
    let Value::Array(parts) = entry else { return None };
    let (Some(Value::BulkString(id)), fields) = (parts.first(), parts.get(1)) else { return None };
    let id = String::from_utf8(id.clone()).ok()?;
    let at = id.split_once('-')?.0.parse().ok()?;
    let added = match fields {
        Some(Value::Array(fields)) => match fields.as_slice() {
            [Value::BulkString(n), Value::BulkString(node), Value::BulkString(k), Value::BulkString(keys)]
                if n == b"n" && k == b"k" && keys.len() % 8 == 0 =>
            {
                node.as_slice().try_into().ok().map(|node| (node, keys.clone()))
            }
            _ => None,
        },
        _ => None,
    };
    Some(Entry { id, at, added })
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

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn entries_are_read_as_added_and_nothing_else_is_guessed() {
        let entry = |id: &str, keys: &[u8]| {
            Value::Array(vec![
                bulk(id.as_bytes()),
                Value::Array(vec![bulk(b"n"), bulk(b"node-id!"), bulk(b"k"), bulk(keys)]),
            ])
        };
        let answer = Value::Array(vec![Value::Array(vec![
            bulk(b"trd:s:86400"),
            Value::Array(vec![entry("1700000000000-0", &[1; 16]), entry("1700000000001-3", &[])]),
        ])]);
        let read = entries(&answer).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].at, 1_700_000_000_000);
        assert_eq!(read[0].added, Some((*b"node-id!", vec![1; 16])));
        assert_eq!(read[1].id, "1700000000001-3");
        assert!(entries(&Value::Nil).unwrap().is_empty(), "a read that timed out has no entries");
        // RESP3's map of streams.
        let map = Value::Map(vec![(bulk(b"trd:s:86400"), Value::Array(vec![entry("5-0", &[2; 8])]))]);
        assert_eq!(entries(&map).unwrap()[0].added, Some((*b"node-id!", vec![2; 8])));
        // Keys not a multiple of 8 bytes, a node ID of another length, other fields: passed over, by ID.
        let stream = |entry: Value| Value::Array(vec![Value::Array(vec![bulk(b"s"), Value::Array(vec![entry])])]);
        for bad in [
            entry("5-0", &[1; 7]),
            Value::Array(vec![bulk(b"5-0"), Value::Array(vec![bulk(b"n"), bulk(b"short"), bulk(b"k"), bulk(&[])])]),
            Value::Array(vec![bulk(b"5-0"), Value::Array(vec![bulk(b"field"), bulk(b"value")])]),
        ] {
            assert_eq!(entries(&stream(bad)).unwrap(), vec![Entry { id: "5-0".to_owned(), at: 5, added: None }]);
        }
        // Without an ID there is no reading on.
        assert!(entries(&stream(Value::Array(vec![bulk(b"not-an-id"), Value::Array(vec![])]))).is_err());
    }

    #[tokio::test]
    async fn the_stream_is_named_by_the_window_in_whole_seconds() {
        let store = Store::open("redis://127.0.0.1:1", Duration::from_millis(50), Duration::from_secs(86_400)).unwrap();
        assert_eq!(store.stream, "trd:s:86400");
        let short =
            Store::open("redis://127.0.0.1:1", Duration::from_millis(50), Duration::from_millis(2_500)).unwrap();
        assert_eq!(short.stream, "trd:s:3");
        assert_ne!(store.node, short.node, "each start has an ID of its own");
    }
}
