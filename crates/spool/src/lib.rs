//! The spool: every accepted message, per destination, on disk until it is delivered.
//!
//! The store is SQLite in WAL mode with `synchronous = FULL`, so a committed append survives `kill -9` and power
//! loss. One writer thread owns the write connection and commits whatever work has queued up since its last
//! commit in one transaction: concurrent requests share one sync (group commit), and an append resolves only
//! after its commit, which is when the server may acknowledge.
//!
//! An entry is one request's messages for one destination: an opaque blob and the number of messages in it, so a
//! request of a hundred messages costs one row, not a hundred. Depth and limits count messages. The crate knows
//! nothing of Segment, HTTP or AWS.

mod counts;
mod dedupe;
mod entry;
mod erase;
mod erasure;
mod error;
mod lock;
mod read;
mod schema;
mod suppress;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::counts::{Counts, recount};
pub use crate::dedupe::{DISK_BYTES_PER_KEY, DedupeStats, MEMORY_BYTES_PER_KEY};
pub use crate::entry::{
    Backlog, DeadLetter, Durability, Entry, NewEntry, NewRejection, Rejection, RejectionFilter, Retry, Settlement,
};
pub use crate::erase::{Erased, Eraser, Rewrite};
pub use crate::erasure::{ErasureRequest, erasure_report, forget_erasure, request_erasure};
pub use crate::error::SpoolError;
pub use crate::lock::{LOCK_FILE, owner};
use crate::lock::{create_folder, lock};
pub use crate::read::read_rejections;
use crate::schema::{SCHEMA_VERSION, migrate, open_connection};
pub use crate::suppress::{IdKind, Suppressed, SuppressionWatch, suppress, suppressions, unsuppress};
use crate::writer::{Job, Op, write_loop};

/// The spool file's name inside the spool folder.
pub const FILE_NAME: &str = "spool.sqlite3";

/// What every clone of a [`Spool`] shares.
struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    reader: Mutex<Connection>,
    counts: Arc<Counts>,
    max_depth: u64,
    /// The owner's lock on the folder, held while the spool is open; `None` for a shared handle.
    lock: Option<std::fs::File>,
}

/// How many rejections the table keeps unless told otherwise.
pub const DEFAULT_MAX_REJECTIONS: u64 = 100_000;

/// The spool. Cloning shares it.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

/// The current time in Unix milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` as its owner, holding at most `max_depth` waiting messages.
    /// The owner takes an exclusive lock on the folder (a second owner gets [`SpoolError::Locked`]), and makes
    /// every message waiting for a retry due now: a restart is usually an operator's fix.
    pub fn open(dir: &Path, max_depth: u64) -> Result<Spool, SpoolError> {
        create_folder(dir)?;
        let lock = lock(dir)?;
        Spool::start(dir, max_depth, Some(lock), true)
    }

    /// Opens the spool in `dir` as its owner for a command that works on it with no server running (`privacy
    /// delete`): the folder is locked as [`Spool::open`] locks it, but no retry is made due.
    pub fn open_to_maintain(dir: &Path) -> Result<Spool, SpoolError> {
        if !dir.join(FILE_NAME).exists() {
            return Err(SpoolError::Missing { path: dir.join(FILE_NAME) });
        }
        let lock = lock(dir)?;
        Spool::start(dir, u64::MAX, Some(lock), false)
    }

    /// Opens the spool in `dir` beside whichever process owns it, for commands that read it or hand work to its
    /// owner (`dlq list`, `dlq replay`): no lock is taken and no retry is rescheduled.
    pub fn open_shared(dir: &Path) -> Result<Spool, SpoolError> {
        if !dir.join(FILE_NAME).exists() {
            return Err(SpoolError::Missing { path: dir.join(FILE_NAME) });
        }
        Spool::start(dir, u64::MAX, None, false)
    }

    fn start(dir: &Path, max_depth: u64, lock: Option<std::fs::File>, due_now: bool) -> Result<Spool, SpoolError> {
        let path = dir.join(FILE_NAME);
        let database = |source| SpoolError::Database { path: path.clone(), source };
        let mut writer = open_connection(&path).map_err(database)?;
        let version = schema::version(&writer).map_err(database)?;
        if version > SCHEMA_VERSION {
            return Err(SpoolError::Newer { path, version, supported: SCHEMA_VERSION });
        }
        migrate(&mut writer).map_err(database)?;
        if due_now {
            writer.execute("UPDATE spool SET next_attempt_at = 0 WHERE next_attempt_at > 0", []).map_err(database)?;
        }
        let reader = open_connection(&path).map_err(database)?;
        let (sender, receiver) = mpsc::channel();
        let thread_path = path.clone();
        let counts = Arc::new(Counts {
            depth: AtomicI64::new(0),
            reserved: AtomicI64::new(0),
            bytes: AtomicI64::new(0),
            reserved_bytes: AtomicI64::new(0),
            max_bytes: AtomicU64::new(u64::MAX),
            backlogs: Mutex::default(),
            fresh: Mutex::default(),
            max_rejections: AtomicU64::new(DEFAULT_MAX_REJECTIONS),
            rejections_dropped: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            dedupe: Default::default(),
            erasures: Default::default(),
        });
        recount(&writer, &counts).map_err(database)?;
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(writer, receiver, &thread_path, &thread_counts))
            .map_err(|source| SpoolError::Folder { path: dir.to_owned(), source })?;
        Ok(Spool {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(sender)),
                reader: Mutex::new(reader),
                counts,
                max_depth,
                lock,
            }),
        })
    }

    /// What `destination` has waiting, as of the last commit.
    pub fn backlog(&self, destination: &str) -> Backlog {
        self.inner.counts.backlogs.lock().expect("backlog lock poisoned").get(destination).copied().unwrap_or_default()
    }

    /// What each destination has waiting, as of the last commit.
    pub fn backlogs(&self) -> std::collections::HashMap<String, Backlog> {
        self.inner.counts.backlogs.lock().expect("backlog lock poisoned").clone()
    }

    /// Holds at most `max` bytes of waiting entries; appends beyond it get [`SpoolError::FullBytes`].
    pub fn set_max_bytes(&self, max: u64) {
        self.inner.counts.max_bytes.store(max, Ordering::Relaxed);
    }

    /// Keeps at most `max` rejections; each commit that adds some drops the oldest beyond it.
    pub fn set_max_rejections(&self, max: u64) {
        self.inner.counts.max_rejections.store(max, Ordering::Relaxed);
    }

    /// How many rejections were dropped since the spool was opened, to keep the table within its bound.
    pub fn rejections_dropped(&self) -> u64 {
        self.inner.counts.rejections_dropped.load(Ordering::Relaxed)
    }

    /// How many transactions the writer thread has committed since the spool was opened. Appends that arrive
    /// together share one commit (and one sync), so under concurrent load this grows slower than the appends.
    pub fn commits(&self) -> u64 {
        self.inner.counts.commits.load(Ordering::Relaxed)
    }

    /// Reads `journal_mode` and `synchronous` back from the writer connection, inside one of its commits: what
    /// the spool's durability promise (an acknowledged append survives power loss) rests on.
    pub async fn durability(&self) -> Result<Durability, SpoolError> {
        let (answer, answered) = mpsc::channel();
        self.submit(Op::Durability(answer)).await?;
        answered.try_recv().map_err(|_| SpoolError::Stopped)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Messages waiting for delivery, across destinations.
    pub fn depth(&self) -> u64 {
        self.inner.counts.depth.load(Ordering::Relaxed).max(0) as u64
    }

    /// Bytes of stored entries waiting for delivery, across destinations, as of the last commit.
    pub fn bytes(&self) -> u64 {
        self.inner.counts.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// The most bytes the spool holds waiting ([`Spool::set_max_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        self.inner.counts.max_bytes.load(Ordering::Relaxed)
    }

    /// The most messages the spool holds waiting (`max_depth` of [`Spool::open`]).
    pub fn max_depth(&self) -> u64 {
        self.inner.max_depth
    }

    pub(crate) async fn submit(&self, op: Op) -> Result<(), SpoolError> {
        let (done, result) = oneshot::channel();
        let sender = self.inner.writer.lock().expect("writer lock poisoned").clone().ok_or(SpoolError::Stopped)?;
        sender.send(Job { op, done }).map_err(|_| SpoolError::Stopped)?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(SpoolError::Commit { path: self.inner.path.clone(), source }),
            Err(_) => Err(SpoolError::Stopped),
        }
    }

    /// Stores `entries` durably; returns once they are committed. Refuses with [`SpoolError::Full`] when they
    /// would take the spool past its limit.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<(), SpoolError> {
        self.append_with(entries, Vec::new()).await
    }

    /// Stores `entries` and `rejections` in one commit; returns once it is done. Refuses both with
    /// [`SpoolError::Full`] when the entries would take the spool past its limit.
    pub async fn append_with(&self, entries: Vec<NewEntry>, rejections: Vec<NewRejection>) -> Result<(), SpoolError> {
        self.append_keyed(entries, rejections, Vec::new()).await
    }

    /// As [`Spool::append_with`], recording the dedupe `keys` of the messages stored in the same commit: a key
    /// counts ([`Spool::held`]) exactly when its messages are committed. Keys are kept while dedupe is on
    /// ([`Spool::set_dedupe`]).
    pub async fn append_keyed(
        &self,
        entries: Vec<NewEntry>,
        rejections: Vec<NewRejection>,
        keys: Vec<i64>,
    ) -> Result<(), SpoolError> {
        if entries.is_empty() && rejections.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let counts = &self.inner.counts;
        let count: i64 = entries.iter().map(|e| i64::from(e.count)).sum();
        let bytes: i64 = entries.iter().map(|e| e.items.len() as i64).sum();
        let before = counts.reserved.fetch_add(count, Ordering::Relaxed) + counts.depth.load(Ordering::Relaxed);
        let bytes_before =
            counts.reserved_bytes.fetch_add(bytes, Ordering::Relaxed) + counts.bytes.load(Ordering::Relaxed);
        let max_bytes = counts.max_bytes.load(Ordering::Relaxed);
        let refused = if count > 0 && (before + count) as u64 > self.inner.max_depth {
            Some(SpoolError::Full { depth: before.max(0) as u64, max: self.inner.max_depth })
        } else if bytes > 0 && (bytes_before + bytes) as u64 > max_bytes {
            Some(SpoolError::FullBytes { bytes: bytes_before.max(0) as u64, max: max_bytes })
        } else {
            None
        };
        let result = match refused {
            Some(error) => Err(error),
            None => self.submit(Op::Append(entries, rejections, keys, now_millis())).await,
        };
        counts.reserved.fetch_sub(count, Ordering::Relaxed);
        counts.reserved_bytes.fetch_sub(bytes, Ordering::Relaxed);
        result
    }

    /// Holds `keys` that other nodes committed at `at` (Unix milliseconds), as a fleet shares them: they count at
    /// once (before this returns), since their messages are already stored elsewhere, and the future it returns
    /// writes them as a block of their own, so that they are kept, removed and budgeted as this spool's own keys
    /// are. Keys held already are left out. If the commit fails they are let go again, so that memory never holds
    /// a key the disk does not.
    pub fn adopt(&self, mut keys: Vec<i64>, at: i64) -> impl Future<Output = Result<(), SpoolError>> + use<> {
        let spool = self.clone();
        let state = &self.inner.counts.dedupe;
        let holding = state.managed.load(Ordering::Relaxed) && state.window_millis.load(Ordering::Relaxed) > 0;
        keys.retain(|key| holding && !state.held.contains(*key));
        state.held.insert(keys.iter().copied());
        async move {
            if keys.is_empty() {
                return Ok(());
            }
            let result = spool.submit(Op::Append(Vec::new(), Vec::new(), keys.clone(), at)).await;
            if result.is_err() {
                spool.inner.counts.dedupe.held.remove(keys);
            }
            result
        }
    }

    /// Records the outcome of delivery attempts: delivered messages leave, the rest wait for their retry, and
    /// permanent failures move to the dead-letter table, all in one commit.
    pub async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), SpoolError> {
        // The writer lowers the depth by what each entry held less what it still holds, after the commit.
        self.submit(Op::Settle(settlements, now_millis())).await
    }

    /// Moves dead letters back to the queue in one commit: `entries` (the letters' messages, encoded by the
    /// caller) are stored as new waiting entries, and the letters `ids` are removed. Whoever delivers the spool
    /// (its owner) delivers them; an interruption leaves each letter either still a letter or queued, never both.
    /// Returns `false`, having changed nothing, when one of the letters is gone since the caller read it (erased, or
    /// replayed by another process): its message must not come back; read the letters again.
    pub async fn requeue(&self, entries: Vec<NewEntry>, ids: Vec<i64>) -> Result<bool, SpoolError> {
        let (answer, done) = mpsc::channel();
        self.submit(Op::Requeue(entries, ids, now_millis(), answer)).await?;
        done.try_recv().map_err(|_| SpoolError::Stopped)
    }

    /// Keeps the keys of appended messages for `window` (zero keeps none, and removes those held), in at most
    /// `max_bytes` on disk ([`DISK_BYTES_PER_KEY`] a key, and a little a commit): beyond, the oldest go first, and
    /// the window actually held shrinks ([`DedupeStats::window_held_millis`]). The owner loads the keys on disk into
    /// memory here (at most [`MEMORY_BYTES_PER_KEY`] a key), so call it before appending; keys are removed by the
    /// writer, within a second. A shared handle neither loads nor removes keys.
    pub fn set_dedupe(&self, window: std::time::Duration, max_bytes: u64) -> Result<(), SpoolError> {
        let state = &self.inner.counts.dedupe;
        state.window_millis.store(i64::try_from(window.as_millis()).unwrap_or(i64::MAX), Ordering::Relaxed);
        state.max_bytes.store(max_bytes, Ordering::Relaxed);
        if self.inner.lock.is_none() {
            return Ok(());
        }
        let reader = self.inner.reader.lock().expect("reader lock poisoned");
        dedupe::load(&reader, state, !window.is_zero())
            .map_err(|source| SpoolError::Database { path: self.inner.path.clone(), source })?;
        state.managed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// What the key store holds, as of the last commit.
    pub fn dedupe_stats(&self) -> DedupeStats {
        self.inner.counts.dedupe.stats(now_millis())
    }

    /// Which of `keys` are held: recorded with messages that are committed, and not yet removed. Read from memory.
    pub fn held(&self, keys: &[i64]) -> Vec<bool> {
        keys.iter().map(|key| self.holds(*key)).collect()
    }

    /// Whether `key` is held ([`Spool::held`]).
    pub fn holds(&self, key: i64) -> bool {
        self.inner.counts.dedupe.held.contains(key)
    }

    /// Whether [`Spool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.writer.lock().expect("writer lock poisoned").is_none()
    }

    /// Stops the writer after the work already queued; later calls fail with [`SpoolError::Stopped`].
    pub fn close(&self) {
        self.inner.writer.lock().expect("writer lock poisoned").take();
    }
}
