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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

/// The spool file's name inside the spool folder.
pub const FILE_NAME: &str = "spool.sqlite3";

/// How many queued jobs one commit takes at most; bounds the latency a large backlog adds to one commit.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds as many messages as it may; the caller should push back (HTTP 429).
    #[error("the spool is full ({depth} messages waiting, the limit is {max})")]
    Full {
        /// Messages waiting.
        depth: u64,
        /// The limit.
        max: u64,
    },
    /// The spool holds as many bytes as it may; the caller should push back (HTTP 429).
    #[error("the spool is full ({bytes} bytes waiting, the limit is {max})")]
    FullBytes {
        /// Bytes waiting.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// SQLite failed.
    #[error("spool database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A commit of the writer thread failed; nothing of it was stored.
    #[error("spool commit failed: {}: {source}", path.display())]
    Commit {
        /// The database file.
        path: PathBuf,
        /// What SQLite said, shared by every caller whose work was in the commit.
        source: Arc<rusqlite::Error>,
    },
    /// The spool folder could not be created.
    #[error("creating the spool folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The writer thread has stopped.
    #[error("the spool writer has stopped")]
    Stopped,
    /// Another process owns the spool folder.
    #[error(
        "the spool folder {} is in use by another tributary process{}: a `serve`, or a `dlq replay` delivering with no \
         server running; stop it, or give this server its own --spool-dir",
        path.display(),
        owner.map(|pid| format!(" (PID {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The folder.
        path: PathBuf,
        /// The owner's process ID, as it wrote it in the lock file.
        owner: Option<u32>,
    },
}

/// Messages to store for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The destination's name.
    pub destination: String,
    /// The source the messages came from.
    pub source_id: String,
    /// The messages, encoded by the caller.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
}

/// A message the server accepted the request of but refused to deliver (it broke a rule of the sender's protocol),
/// kept for the operator to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRejection {
    /// The source the message came from.
    pub source_id: String,
    /// Its position in the request, when the request held several.
    pub index: Option<u32>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The message as sent, when it is kept.
    pub message: Option<Vec<u8>>,
}

/// A stored rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its ID; increasing in order of arrival.
    pub id: i64,
    /// When it was stored, in Unix milliseconds.
    pub at: i64,
    /// The source the message came from.
    pub source_id: String,
    /// Its position in the request, when the request held several.
    pub index: Option<u32>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The message as sent, when it was kept.
    pub message: Option<Vec<u8>>,
}

/// Which rejections to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    /// Only those of this source.
    pub source_id: Option<String>,
    /// Only those stored at or after this time, in Unix milliseconds.
    pub since: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its spool ID; increasing in order of arrival.
    pub id: i64,
    /// The destination's name.
    pub destination: String,
    /// The source the messages came from.
    pub source_id: String,
    /// The messages, as the caller encoded them.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
    /// When it was stored, in Unix milliseconds.
    pub enqueued_at: i64,
    /// How many delivery attempts have failed so far.
    pub attempts: i64,
    /// Whether it has never been tried since the spool was opened by its owner (not waiting for a retry).
    pub fresh: bool,
}

/// What became of an entry after a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The entry.
    pub id: i64,
    /// The messages still to deliver, if any, and when to try again.
    pub retry: Option<Retry>,
    /// Messages that failed permanently, each with its bytes and reason; they move to the dead-letter table.
    pub dead: Vec<(Vec<u8>, String)>,
}

/// The rest of an entry, to try again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The messages left, encoded by the caller.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
    /// When to try again, in Unix milliseconds.
    pub at: i64,
    /// Why the last attempt failed.
    pub reason: String,
}

/// A message whose delivery failed permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its dead-letter ID.
    pub id: i64,
    /// The destination's name.
    pub destination: String,
    /// The source the message came from.
    pub source_id: String,
    /// The message bytes.
    pub message: Vec<u8>,
    /// When it was first stored, in Unix milliseconds.
    pub enqueued_at: i64,
    /// When it failed for good, in Unix milliseconds.
    pub failed_at: i64,
    /// Why.
    pub reason: String,
}

/// Work for the writer thread.
enum Op {
    Append(Vec<NewEntry>, Vec<NewRejection>, i64),
    Settle(Vec<Settlement>, i64),
    Requeue(Vec<NewEntry>, Vec<i64>, i64),
    /// Reads the writer connection's durability settings inside a commit, so the answer is about the connection
    /// that commits acknowledged entries and not about one opened to ask.
    Durability(mpsc::Sender<Durability>),
}

/// The durability settings of the connection that commits the spool's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `PRAGMA journal_mode`, lowercase as SQLite reports it (`wal`).
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    pub synchronous: i64,
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<(), Arc<rusqlite::Error>>>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    reader: Mutex<Connection>,
    counts: Arc<Counts>,
    max_depth: u64,
    /// The owner's lock on the folder, held while the spool is open; `None` for a shared handle.
    _lock: Option<std::fs::File>,
}

/// How many bytes of committed entries [`Fresh`] keeps for their first read; past it, readers read from disk.
const FRESH_BYTES: usize = 64 << 20;

/// Committed entries not yet read, by ID.
#[derive(Debug, Default)]
struct Fresh {
    items: std::collections::HashMap<i64, Vec<u8>>,
    bytes: usize,
}

impl Fresh {
    fn put(&mut self, id: i64, items: Vec<u8>) {
        if self.bytes + items.len() <= FRESH_BYTES {
            self.bytes += items.len();
            self.items.insert(id, items);
        }
    }

    fn take(&mut self, id: i64) -> Option<Vec<u8>> {
        let items = self.items.remove(&id)?;
        self.bytes -= items.len();
        Some(items)
    }
}

/// What one destination has waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Messages.
    pub messages: u64,
    /// Bytes of their stored entries.
    pub bytes: u64,
    /// Of those bytes, the ones of dead letters moved back by a replay: they were stored already, so a backlog
    /// budget, which bounds what ingest adds, does not count them.
    pub replayed_bytes: u64,
}

/// What the writer thread and the handle share.
#[derive(Debug, Default)]
struct Counts {
    /// Messages waiting, across destinations, as of the last commit.
    depth: AtomicI64,
    /// Messages of appends on their way to a commit, counted against the limit before they land.
    reserved: AtomicI64,
    /// Bytes of stored entries waiting, across destinations, as of the last commit.
    bytes: AtomicI64,
    /// Bytes of appends on their way to a commit.
    reserved_bytes: AtomicI64,
    /// The most bytes the spool may hold waiting.
    max_bytes: AtomicU64,
    /// What each destination has waiting, as of the last commit.
    backlogs: Mutex<std::collections::HashMap<String, Backlog>>,
    /// Entries committed by this process and not yet read, by ID: a reader takes them from here instead of from
    /// disk, which it would otherwise read back milliseconds after they were written.
    fresh: Mutex<Fresh>,
    /// How many rejections the table keeps; older ones are dropped.
    max_rejections: AtomicU64,
    /// Rejections dropped to keep the table within its bound.
    rejections_dropped: AtomicU64,
    /// Transactions the writer thread committed; fewer than the jobs it took when commits are shared.
    commits: AtomicU64,
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

/// How many pages the WAL may hold before a commit copies them into the database (SQLite's default is 1,000).
///
/// An entry lives for milliseconds: its pages are written, delivered, freed and taken by the next entries. A
/// checkpoint writes each page once, whatever its versions in the WAL, so a longer window writes most pages to the
/// database once per many entries instead of once per entry: about a tenth less of the server's CPU per message,
/// and a p99 acknowledgement of about 7.5 ms instead of 11, in the ingest benchmark. The price is a WAL file of up
/// to about 256 MiB beside the spool, and as much to replay after a crash.
const WAL_CHECKPOINT_PAGES: i64 = 65_536;

/// How long a connection waits for another process's write (a server and `dlq replay` on one spool, two syncs on
/// one personas state) before it reports the database busy.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens (creating if needed) a SQLite database the way every Tributary store is opened: WAL, so readers never
/// block the writer, `synchronous = FULL`, so a commit survives power loss and not only a crash, and
/// [`BUSY_TIMEOUT`]. The spool and the personas state both open theirs here.
pub fn open_database(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// Opens an existing database for reading only, with [`BUSY_TIMEOUT`].
pub fn open_database_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = open_database(path)?;
    connection.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    Ok(connection)
}

/// The schema. An entry's small columns come before its blob: SQLite reads a column after a large blob by walking
/// the blob's overflow pages, so `count`, the schedule and the accounting stay cheap to read and update. `totals`
/// is kept by triggers, so that every process writing the spool (a server, `dlq replay`) keeps it exact. IDs never
/// go back (`AUTOINCREMENT`), so a reader may resume after the highest fresh ID it took.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    source_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    replayed INTEGER NOT NULL DEFAULT 0,
    items BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_due ON spool (destination, next_attempt_at, id);
CREATE INDEX IF NOT EXISTS spool_by_destination ON spool (destination, id);
CREATE TABLE IF NOT EXISTS totals (
    destination TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    replayed_bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS spool_counted_in AFTER INSERT ON spool BEGIN
    INSERT INTO totals (destination, count, bytes, replayed_bytes)
    VALUES (new.destination, new.count, new.bytes, new.bytes * new.replayed)
    ON CONFLICT (destination) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes,
        replayed_bytes = replayed_bytes + excluded.replayed_bytes;
END;
CREATE TRIGGER IF NOT EXISTS spool_counted_out AFTER DELETE ON spool BEGIN
    UPDATE totals SET count = count - old.count, bytes = bytes - old.bytes,
        replayed_bytes = replayed_bytes - old.bytes * old.replayed
    WHERE destination = old.destination;
END;
CREATE TRIGGER IF NOT EXISTS spool_recounted AFTER UPDATE OF count, bytes ON spool BEGIN
    UPDATE totals SET count = count - old.count + new.count, bytes = bytes - old.bytes + new.bytes,
        replayed_bytes = replayed_bytes - old.bytes * old.replayed + new.bytes * new.replayed
    WHERE destination = old.destination;
END;
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    position INTEGER,
    field TEXT,
    reason TEXT NOT NULL,
    message BLOB
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    source_id TEXT NOT NULL,
    message BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    reason TEXT NOT NULL
);
";

/// Brings a spool written by an earlier version (the blob before the small columns, no totals) to [`SCHEMA`], in
/// one transaction, keeping every entry and its schedule.
fn migrate(connection: &mut Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "this spool was written by a newer Tributary (spool version {version}; this one reads up to \
                 {SCHEMA_VERSION}): run that version on it, or give this one another --spool-dir"
            )),
        ));
    }
    if version == SCHEMA_VERSION {
        // Up to date: no write at all, so a command opening the spool beside a busy server never contends for its
        // write lock (a deferred transaction that must upgrade under a concurrent writer fails at once).
        return Ok(());
    }
    let columns: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('spool') ORDER BY cid")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    // Immediate: the write lock is taken first, waiting (busy timeout) for any other writer.
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if columns.iter().any(|c| c == "items") && !columns.iter().any(|c| c == "bytes") {
        transaction.execute_batch(
            "ALTER TABLE spool RENAME TO spool_v1;
             DROP INDEX IF EXISTS spool_by_destination;",
        )?;
        transaction.execute_batch(SCHEMA)?;
        transaction.execute_batch(
            "INSERT INTO spool (id, destination, source_id, count, bytes, enqueued_at, attempts, next_attempt_at,
                                last_error, items)
             SELECT id, destination, source_id, count, length(items), enqueued_at, attempts, next_attempt_at,
                    last_error, items FROM spool_v1;
             DROP TABLE spool_v1;",
        )?;
    } else {
        transaction.execute_batch(SCHEMA)?;
    }
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    transaction.commit()
}

/// The spool's layout version, kept in `PRAGMA user_version`: 0 for the first layout (migrated on open), 2 for
/// [`SCHEMA`].
const SCHEMA_VERSION: i64 = 2;

impl Spool {
    /// Opens (creating if needed) the spool in `dir` as its owner, holding at most `max_depth` waiting messages.
    /// The owner takes an exclusive lock on the folder (a second owner gets [`SpoolError::Locked`]), and makes
    /// every message waiting for a retry due now: a restart is usually an operator's fix.
    pub fn open(dir: &Path, max_depth: u64) -> Result<Spool, SpoolError> {
        create_folder(dir)?;
        let lock = lock(dir)?;
        Spool::start(dir, max_depth, Some(lock))
    }

    /// Opens the spool in `dir` beside whichever process owns it, for commands that read it or hand work to its
    /// owner (`dlq list`, `dlq replay`): no lock is taken and no retry is rescheduled.
    pub fn open_shared(dir: &Path) -> Result<Spool, SpoolError> {
        if !dir.join(FILE_NAME).exists() {
            return Err(SpoolError::Folder {
                path: dir.join(FILE_NAME),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no spool here (pass the server's --spool-dir)",
                ),
            });
        }
        Spool::start(dir, u64::MAX, None)
    }

    /// Whether another process holds the owner's lock on the spool in `dir` (a server is running on it).
    pub fn is_owned(dir: &Path) -> bool {
        let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else { return false };
        match file.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(_)) => false,
        }
    }

    fn start(dir: &Path, max_depth: u64, lock: Option<std::fs::File>) -> Result<Spool, SpoolError> {
        let path = dir.join(FILE_NAME);
        let database = |source| SpoolError::Database { path: path.clone(), source };
        let mut writer = open_connection(&path).map_err(database)?;
        migrate(&mut writer).map_err(database)?;
        if lock.is_some() {
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
                _lock: lock,
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

    /// When the oldest message waiting for `destination` was stored, in Unix milliseconds.
    pub async fn oldest_at(&self, destination: &str) -> Result<Option<i64>, SpoolError> {
        let destination = destination.to_owned();
        self.read(move |reader| {
            reader
                .query_row(
                    "SELECT enqueued_at FROM spool WHERE destination = ?1 ORDER BY id LIMIT 1",
                    params![destination],
                    |row| row.get(0),
                )
                .optional()
        })
        .await
    }

    /// When the oldest message that ingest stored for `destination` and that no delivery has failed yet was stored,
    /// in Unix milliseconds: how far behind a destination that is not failing is. Entries waiting for a retry and
    /// dead letters a replay moved back are left out.
    pub async fn oldest_fresh_at(&self, destination: &str) -> Result<Option<i64>, SpoolError> {
        let destination = destination.to_owned();
        self.read(move |reader| {
            reader
                .prepare_cached(
                    "SELECT enqueued_at FROM spool WHERE destination = ?1 AND next_attempt_at = 0 AND replayed = 0
                     ORDER BY id LIMIT 1",
                )?
                .query_row(params![destination], |row| row.get(0))
                .optional()
        })
        .await
    }

    /// Holds at most `max` bytes of waiting entries; appends beyond it get [`SpoolError::FullBytes`].
    pub fn set_max_bytes(&self, max: u64) {
        self.inner.counts.max_bytes.store(max, Ordering::Relaxed);
    }

    /// Bytes of stored entries waiting, across destinations.
    pub fn bytes(&self) -> u64 {
        self.inner.counts.bytes.load(Ordering::Relaxed).max(0) as u64
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

    async fn submit(&self, op: Op) -> Result<(), SpoolError> {
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
        if entries.is_empty() && rejections.is_empty() {
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
            None => self.submit(Op::Append(entries, rejections, now_millis())).await,
        };
        counts.reserved.fetch_sub(count, Ordering::Relaxed);
        counts.reserved_bytes.fetch_sub(bytes, Ordering::Relaxed);
        result
    }

    /// Up to `limit` of the oldest entries of `destination`, in order of arrival, due or not, skipping `busy` and
    /// the entries a replay moved back.
    pub async fn oldest(&self, destination: &str, limit: usize, busy: Vec<i64>) -> Result<Vec<Entry>, SpoolError> {
        let destination = destination.to_owned();
        let counts = self.inner.counts.clone();
        self.read(move |reader| {
            let mut statement = reader.prepare_cached(
                "SELECT id, source_id, items, count, enqueued_at, attempts, next_attempt_at FROM spool
                 WHERE destination = ?1 AND replayed = 0 ORDER BY id LIMIT ?2",
            )?;
            let rows = statement
                .query_map(params![destination, (limit + busy.len()) as i64], |row| entry(row, &destination))?;
            let mut entries = Vec::new();
            for row in rows {
                let row = row?;
                if !busy.contains(&row.id) && entries.len() < limit {
                    counts.fresh.lock().expect("fresh lock poisoned").take(row.id);
                    entries.push(row);
                }
            }
            Ok(entries)
        })
        .await
    }

    /// Up to `limit` entries for `destination` that are due for an attempt: retries first, then the rest in
    /// order of arrival.
    pub async fn due(&self, destination: &str, limit: usize) -> Result<Vec<Entry>, SpoolError> {
        self.take(destination, limit, now_millis(), 0, Vec::new()).await
    }

    /// Up to `limit` entries for `destination`, due or not: a shutdown flushes these.
    pub async fn all_waiting(&self, destination: &str, limit: usize) -> Result<Vec<Entry>, SpoolError> {
        self.take(destination, limit, i64::MAX, 0, Vec::new()).await
    }

    /// Runs `query` on the read connection on a blocking thread; a SQLite error names the database.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let reader = inner.reader.lock().expect("reader lock poisoned");
            query(&reader).map_err(|source| SpoolError::Database { path: inner.path.clone(), source })
        })
        .await
        .map_err(|_| SpoolError::Stopped)?
    }

    /// The entries of `destination` to deliver next, at most `limit`: those waiting for a retry that is due by
    /// `due_by`, earliest first, then fresh ones (never tried) with an ID above `after`, in order of arrival.
    /// Entries in `busy` (in flight) are skipped. A worker that keeps several deliveries in flight passes the
    /// highest fresh ID it has taken as `after`, so each read starts where the last one ended.
    pub async fn take(
        &self,
        destination: &str,
        limit: usize,
        due_by: i64,
        after: i64,
        busy: Vec<i64>,
    ) -> Result<Vec<Entry>, SpoolError> {
        let destination = destination.to_owned();
        let counts = self.inner.counts.clone();
        self.read(move |reader| {
            let mut entries = Vec::new();
            let mut retries = reader.prepare_cached(
                "SELECT id FROM spool WHERE destination = ?1 AND next_attempt_at BETWEEN 1 AND ?2
                 ORDER BY next_attempt_at, id LIMIT ?3",
            )?;
            let ids: Vec<i64> = retries
                .query_map(params![destination, due_by, (limit + busy.len()) as i64], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut by_id = reader.prepare_cached(
                "SELECT id, source_id, items, count, enqueued_at, attempts, next_attempt_at FROM spool WHERE id = ?1",
            )?;
            for id in ids.into_iter().filter(|id| !busy.contains(id)).take(limit) {
                // A retried entry was rewritten on disk; a copy kept from its append is stale.
                counts.fresh.lock().expect("fresh lock poisoned").take(id);
                if let Some(entry) = by_id.query_row(params![id], |row| entry(row, &destination)).optional()? {
                    entries.push(entry);
                }
            }
            if entries.len() < limit {
                // Fresh entries usually come from memory (see `Fresh`); only the others are read from disk.
                let mut fresh = reader.prepare_cached(
                    "SELECT id, source_id, X'', count, enqueued_at, attempts, next_attempt_at FROM spool
                     WHERE destination = ?1 AND next_attempt_at = 0 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let rows = fresh
                    .query_map(params![destination, after, (limit - entries.len() + busy.len()) as i64], |row| {
                        entry(row, &destination)
                    })?;
                let mut items = reader.prepare_cached("SELECT items FROM spool WHERE id = ?1")?;
                for row in rows {
                    let mut row = row?;
                    if busy.contains(&row.id) || entries.len() >= limit {
                        continue;
                    }
                    let cached = counts.fresh.lock().expect("fresh lock poisoned").take(row.id);
                    row.items = match cached {
                        Some(cached) => cached,
                        None => match items.query_row(params![row.id], |r| r.get(0)).optional()? {
                            Some(read) => read,
                            None => continue,
                        },
                    };
                    entries.push(row);
                }
            }
            Ok(entries)
        })
        .await
    }

    /// When the next message of `destination` that is waiting for a retry becomes due, in Unix milliseconds.
    pub async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, SpoolError> {
        let destination = destination.to_owned();
        self.read(move |reader| {
            reader
                .query_row(
                    "SELECT MIN(next_attempt_at) FROM spool WHERE destination = ?1",
                    params![destination],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .optional()
                .map(Option::flatten)
        })
        .await
    }

    /// Records the outcome of delivery attempts: delivered messages leave, the rest wait for their retry, and
    /// permanent failures move to the dead-letter table, all in one commit.
    pub async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), SpoolError> {
        // The writer lowers the depth by what each entry held less what it still holds, after the commit.
        self.submit(Op::Settle(settlements, now_millis())).await
    }

    /// Every dead letter, or those of one destination, oldest first.
    pub async fn dead_letters(&self, destination: Option<&str>) -> Result<Vec<DeadLetter>, SpoolError> {
        self.dead_letter_page(destination, 0, usize::MAX).await
    }

    /// Up to `limit` dead letters (of one destination, if given) with IDs above `after`, in ID order: a caller
    /// pages through a dead-letter table of any size without holding it.
    pub async fn dead_letter_page(
        &self,
        destination: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, SpoolError> {
        let destination = destination.map(str::to_owned);
        self.read(move |reader| {
            let mut statement = reader.prepare_cached(
                "SELECT id, destination, source_id, message, enqueued_at, failed_at, reason FROM dead_letters
                 WHERE (?1 IS NULL OR destination = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![destination, after, limit], |row| {
                Ok(DeadLetter {
                    id: row.get(0)?,
                    destination: row.get(1)?,
                    source_id: row.get(2)?,
                    message: row.get(3)?,
                    enqueued_at: row.get(4)?,
                    failed_at: row.get(5)?,
                    reason: row.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Moves dead letters back to the queue in one commit: `entries` (the letters' messages, encoded by the
    /// caller) are stored as new waiting entries, and the letters `ids` are removed. Whoever delivers the spool
    /// (its owner) delivers them; an interruption leaves each letter either still a letter or queued, never both.
    pub async fn requeue(&self, entries: Vec<NewEntry>, ids: Vec<i64>) -> Result<(), SpoolError> {
        self.submit(Op::Requeue(entries, ids, now_millis())).await
    }

    /// The rejections that match `filter`, newest first.
    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, SpoolError> {
        self.read(move |reader| query_rejections(reader, &filter)).await
    }

    /// Stops the writer after the work already queued; later calls fail with [`SpoolError::Stopped`].
    pub fn close(&self) {
        self.inner.writer.lock().expect("writer lock poisoned").take();
    }
}

/// The name of the lock file in the spool folder; it holds the owner's process ID.
pub const LOCK_FILE: &str = "spool.lock";

fn create_folder(dir: &Path) -> Result<(), SpoolError> {
    std::fs::create_dir_all(dir).map_err(|source| SpoolError::Folder { path: dir.to_owned(), source })
}

/// Takes the owner's lock on the spool folder `dir` and writes this process's ID into it. The lock is the
/// kernel's (`flock`), so it goes when the process does, however it ends.
fn lock(dir: &Path) -> Result<std::fs::File, SpoolError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| SpoolError::Folder { path: path.clone(), source };
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(SpoolError::Locked { path: dir.to_owned(), owner: text.trim().parse().ok() })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

fn entry(row: &rusqlite::Row<'_>, destination: &str) -> Result<Entry, rusqlite::Error> {
    Ok(Entry {
        id: row.get(0)?,
        destination: destination.to_owned(),
        source_id: row.get(1)?,
        items: row.get(2)?,
        count: row.get(3)?,
        enqueued_at: row.get(4)?,
        attempts: row.get(5)?,
        fresh: row.get::<_, i64>(6)? == 0,
    })
}

/// Reads every destination's backlog and the total depth from `totals` into `counts`.
fn recount(connection: &Connection, counts: &Counts) -> Result<(), rusqlite::Error> {
    let mut statement =
        connection.prepare_cached("SELECT destination, count, bytes, replayed_bytes FROM totals WHERE count > 0")?;
    let rows = statement.query_map([], |row| {
        let backlog = Backlog {
            messages: row.get::<_, i64>(1)?.max(0) as u64,
            bytes: row.get::<_, i64>(2)?.max(0) as u64,
            replayed_bytes: row.get::<_, i64>(3)?.max(0) as u64,
        };
        Ok((row.get::<_, String>(0)?, backlog))
    })?;
    let backlogs: std::collections::HashMap<String, Backlog> = rows.collect::<Result<_, _>>()?;
    counts.depth.store(backlogs.values().map(|b| b.messages as i64).sum(), Ordering::Relaxed);
    counts.bytes.store(backlogs.values().map(|b| b.bytes as i64).sum(), Ordering::Relaxed);
    *counts.backlogs.lock().expect("backlog lock poisoned") = backlogs;
    Ok(())
}

/// Reads the rejections that match `filter` from the spool in `dir` without opening it for writing, so that a
/// server running on the same spool is not disturbed.
pub fn read_rejections(dir: &Path, filter: &RejectionFilter) -> Result<Vec<Rejection>, SpoolError> {
    let path = dir.join(FILE_NAME);
    let database = |source| SpoolError::Database { path: path.clone(), source };
    if !path.exists() {
        return Err(SpoolError::Folder {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no spool here (pass the server's --spool-dir)"),
        });
    }
    let connection = open_database_read_only(&path).map_err(database)?;
    let has_table: bool = connection
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'rejected')", [], |row| row.get(0))
        .map_err(database)?;
    if !has_table {
        return Ok(Vec::new());
    }
    query_rejections(&connection, filter).map_err(database)
}

fn query_rejections(reader: &Connection, filter: &RejectionFilter) -> Result<Vec<Rejection>, rusqlite::Error> {
    let mut statement = reader.prepare_cached(
        "SELECT id, at, source_id, position, field, reason, message FROM rejected
         WHERE (?1 IS NULL OR source_id = ?1) AND (?2 IS NULL OR at >= ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![filter.source_id, filter.since, limit], |row| {
        Ok(Rejection {
            id: row.get(0)?,
            at: row.get(1)?,
            source_id: row.get(2)?,
            index: row.get(3)?,
            field: row.get(4)?,
            reason: row.get(5)?,
            message: row.get(6)?,
        })
    })?;
    rows.collect()
}

/// The writer thread: takes every job that has queued up, applies them in one transaction, commits, answers.
fn write_loop(mut connection: Connection, jobs: mpsc::Receiver<Job>, path: &Path, counts: &Counts) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let max_rejections = counts.max_rejections.load(Ordering::Relaxed);
        let result = match apply(&mut connection, &batch, max_rejections) {
            Ok(Applied { rejections_dropped, appended }) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts.rejections_dropped.fetch_add(rejections_dropped, Ordering::Relaxed);
                let mut fresh = counts.fresh.lock().expect("fresh lock poisoned");
                let mut ids = appended.into_iter();
                for job in &mut batch {
                    if let Op::Append(entries, _, _) = &mut job.op {
                        for (entry, id) in entries.iter_mut().zip(ids.by_ref()) {
                            fresh.put(id, std::mem::take(&mut entry.items));
                        }
                    }
                }
                drop(fresh);
                // The totals are exact whichever process wrote the spool; reading them back is one small query.
                if let Err(e) = recount(&connection, counts) {
                    tracing::warn!(spool = %path.display(), error = %e, "reading the spool's totals failed");
                }
                Ok(())
            }
            Err(e) => Err(Arc::new(e)),
        };
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
}

/// What one commit changed in the counts.
struct Applied {
    /// The IDs of the appended entries, in the order of the jobs and their entries.
    appended: Vec<i64>,
    /// Rejections dropped to keep the table within its bound.
    rejections_dropped: u64,
}

/// The durability settings of `connection`, for [`Op::Durability`] (whose asker may have gone: its answer is then
/// dropped).
fn durability(connection: &Connection) -> Result<Durability, rusqlite::Error> {
    Ok(Durability {
        journal_mode: connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?,
        synchronous: connection.pragma_query_value(None, "synchronous", |row| row.get(0))?,
    })
}

/// Applies a batch of jobs in one transaction.
fn apply(connection: &mut Connection, batch: &[Job], max_rejections: u64) -> Result<Applied, rusqlite::Error> {
    let transaction = connection.transaction()?;
    let mut rejected = false;
    let mut appended = Vec::new();
    for job in batch {
        match &job.op {
            Op::Append(entries, rejections, at) => {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO spool (destination, source_id, count, bytes, enqueued_at, items)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for entry in entries {
                    let bytes = entry.items.len() as i64;
                    insert.execute(params![entry.destination, entry.source_id, entry.count, bytes, at, entry.items])?;
                    appended.push(transaction.last_insert_rowid());
                }
                let mut reject = transaction.prepare_cached(
                    "INSERT INTO rejected (at, source_id, position, field, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in rejections {
                    reject.execute(params![at, r.source_id, r.index, r.field, r.reason, r.message])?;
                    rejected = true;
                }
            }
            Op::Settle(settlements, at) => {
                let mut bury = transaction.prepare_cached(
                    "INSERT INTO dead_letters (destination, source_id, message, enqueued_at, failed_at, reason)
                     SELECT destination, source_id, ?2, enqueued_at, ?3, ?4 FROM spool WHERE id = ?1",
                )?;
                let mut delete = transaction.prepare_cached("DELETE FROM spool WHERE id = ?1")?;
                let mut reschedule = transaction.prepare_cached(
                    "UPDATE spool SET items = ?2, count = ?3, bytes = ?6, attempts = attempts + 1,
                     next_attempt_at = ?4, last_error = ?5 WHERE id = ?1",
                )?;
                for settlement in settlements {
                    for (message, reason) in &settlement.dead {
                        bury.execute(params![settlement.id, message, at, reason])?;
                    }
                    match &settlement.retry {
                        None => drop(delete.execute(params![settlement.id])?),
                        Some(retry) => drop(reschedule.execute(params![
                            settlement.id,
                            retry.items,
                            retry.count,
                            retry.at,
                            retry.reason,
                            retry.items.len() as i64
                        ])?),
                    }
                }
            }
            Op::Requeue(entries, ids, at) => {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO spool (destination, source_id, count, bytes, enqueued_at, replayed, items)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                )?;
                for entry in entries {
                    let bytes = entry.items.len() as i64;
                    insert.execute(params![entry.destination, entry.source_id, entry.count, bytes, at, entry.items])?;
                }
                let mut delete = transaction.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                for id in ids {
                    delete.execute(params![id])?;
                }
            }
            Op::Durability(answer) => drop(answer.send(durability(&transaction)?)),
        }
    }
    // Rowids grow by one per insert, so everything more than `max_rejections` below the newest is older than the
    // newest `max_rejections`.
    let rejections_dropped = match rejected {
        true => transaction.execute(
            "DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?1",
            params![i64::try_from(max_rejections).unwrap_or(i64::MAX)],
        )? as u64,
        false => 0,
    };
    transaction.commit()?;
    Ok(Applied { rejections_dropped, appended })
}
