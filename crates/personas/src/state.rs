//! The sync state: per computation and identity, what the destinations were last told.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::diff::{Change, ChangeKind, Stored};

/// The state file's name inside the state folder.
pub const FILE_NAME: &str = "personas.sqlite3";

/// A state store error, naming the database.
#[derive(Debug, thiserror::Error)]
#[error("personas state {path}: {source}")]
pub struct StateError {
    /// The database file.
    pub path: PathBuf,
    /// What SQLite said.
    pub source: rusqlite::Error,
}

/// The state store.
pub struct StateStore {
    path: PathBuf,
    connection: Connection,
}

impl StateStore {
    /// Opens (creating if needed) the state in `dir`.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let path = dir.join(FILE_NAME);
        let fail = |source| StateError { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(|e| fail(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let connection = spool::open_database(&path).map_err(fail)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS members (
                    computation TEXT NOT NULL,
                    identity TEXT NOT NULL,
                    value TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    member INTEGER NOT NULL,
                    PRIMARY KEY (computation, identity)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS runs (
                    run_id TEXT PRIMARY KEY,
                    computation TEXT NOT NULL,
                    audience TEXT NOT NULL,
                    started_at INTEGER NOT NULL,
                    finished_at INTEGER,
                    added INTEGER NOT NULL DEFAULT 0,
                    removed INTEGER NOT NULL DEFAULT 0,
                    changed INTEGER NOT NULL DEFAULT 0,
                    unchanged INTEGER NOT NULL DEFAULT 0,
                    sent INTEGER NOT NULL DEFAULT 0,
                    failed INTEGER NOT NULL DEFAULT 0,
                    malformed INTEGER NOT NULL DEFAULT 0,
                    error TEXT
                );
                CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at);
                CREATE TABLE IF NOT EXISTS sync_log (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id TEXT NOT NULL,
                    computation TEXT NOT NULL,
                    identity TEXT NOT NULL,
                    user TEXT NOT NULL,
                    change TEXT NOT NULL,
                    value TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    destination TEXT NOT NULL,
                    call TEXT NOT NULL,
                    message_id TEXT NOT NULL,
                    error TEXT,
                    at INTEGER NOT NULL
                );
                CREATE INDEX IF NOT EXISTS sync_log_by_run ON sync_log (run_id);
                CREATE INDEX IF NOT EXISTS sync_log_by_user ON sync_log (user);
                CREATE INDEX IF NOT EXISTS sync_log_by_time ON sync_log (at);",
            )
            .map_err(fail)?;
        Ok(StateStore { path, connection })
    }

    /// Calls `with` on the stored rows of `computation`, streamed in key order. A read error stops the stream and
    /// is returned after `with` returns.
    pub fn with_stored<T>(
        &self,
        computation: &str,
        with: impl FnOnce(&mut dyn Iterator<Item = Stored>) -> T,
    ) -> Result<T, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let mut statement = self
            .connection
            .prepare("SELECT identity, value, version, member FROM members WHERE computation = ?1 ORDER BY identity")
            .map_err(fail)?;
        let mut error = None;
        let rows = statement
            .query_map(params![computation], |row| {
                Ok(Stored { key: row.get(0)?, value: row.get(1)?, version: row.get(2)?, member: row.get(3)? })
            })
            .map_err(fail)?;
        let mut stream = rows.map_while(|row| match row {
            Ok(stored) => Some(stored),
            Err(e) => {
                error = Some(e);
                None
            }
        });
        let result = with(&mut stream);
        drop(stream);
        match error {
            Some(e) => Err(fail(e)),
            None => Ok(result),
        }
    }

    /// Records delivered changes, in one transaction.
    pub fn record(&mut self, computation: &str, delivered: &[Change]) -> Result<(), StateError> {
        self.record_with_log(computation, delivered, &[])
    }

    /// Records delivered changes and the log of what was sent (delivered or not), in one transaction: the log
    /// never claims a delivery the state does not hold, nor the other way round.
    pub fn record_with_log(
        &mut self,
        computation: &str,
        delivered: &[Change],
        log: &[LogEntry],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |source| StateError { path: path.clone(), source };
        let transaction = self.connection.transaction().map_err(fail)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO sync_log (run_id, computation, identity, user, change, value, version, destination,
                     call, message_id, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(fail)?;
            for e in log {
                let user = match crate::Identity::from_storage_key(&e.identity) {
                    Some(identity) => identity.user_or_anonymous_id().to_owned(),
                    None => e.identity.clone(),
                };
                insert
                    .execute(params![
                        e.run_id,
                        e.computation,
                        e.identity,
                        user,
                        change_name(e.change),
                        e.value,
                        e.version,
                        e.destination,
                        e.call,
                        e.message_id,
                        e.error,
                        e.at_ms
                    ])
                    .map_err(fail)?;
            }
        }
        {
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT INTO members (computation, identity, value, version, member) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (computation, identity) DO UPDATE
                     SET value = excluded.value, version = excluded.version, member = excluded.member",
                )
                .map_err(fail)?;
            for change in delivered {
                let member = change.kind != ChangeKind::Removed;
                upsert.execute(params![computation, change.key, change.value, change.version, member]).map_err(fail)?;
            }
        }
        transaction.commit().map_err(fail)
    }

    /// How many identities of `computation` are members now.
    pub fn members(&self, computation: &str) -> Result<u64, StateError> {
        self.connection
            .query_row("SELECT COUNT(*) FROM members WHERE computation = ?1 AND member", params![computation], |row| {
                row.get(0)
            })
            .map_err(|source| StateError { path: self.path.clone(), source })
    }

    /// Starts the record of a run.
    pub fn begin_run(&self, run: &Run) -> Result<(), StateError> {
        self.connection
            .execute(
                "INSERT INTO runs (run_id, computation, audience, started_at) VALUES (?1, ?2, ?3, ?4)",
                params![run.run_id, run.computation, run.audience, run.started_ms],
            )
            .map(|_| ())
            .map_err(|source| StateError { path: self.path.clone(), source })
    }

    /// Completes the record of a run with its counts and outcome.
    pub fn finish_run(&self, run: &Run) -> Result<(), StateError> {
        self.connection
            .execute(
                "UPDATE runs SET finished_at = ?2, added = ?3, removed = ?4, changed = ?5, unchanged = ?6, sent = ?7,
                 failed = ?8, malformed = ?9, error = ?10 WHERE run_id = ?1",
                params![
                    run.run_id,
                    run.finished_ms,
                    run.added,
                    run.removed,
                    run.changed,
                    run.unchanged,
                    run.sent,
                    run.failed,
                    run.malformed,
                    run.error
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError { path: self.path.clone(), source })
    }

    /// Forgets the log entries and runs of `computation` from before `before_ms`; returns how many entries went.
    pub fn prune_log(&mut self, computation: &str, before_ms: i64) -> Result<u64, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let transaction = self.connection.transaction().map_err(fail)?;
        let removed = transaction
            .execute("DELETE FROM sync_log WHERE computation = ?1 AND at < ?2", params![computation, before_ms])
            .map_err(fail)?;
        transaction
            .execute(
                "DELETE FROM runs WHERE computation = ?1 AND started_at < ?2 AND finished_at IS NOT NULL",
                params![computation, before_ms],
            )
            .map_err(fail)?;
        transaction.commit().map_err(fail)?;
        Ok(removed as u64)
    }

    /// The log entries that match `filter`, the newest `filter.limit` of them, oldest first.
    pub fn log(&self, filter: &LogFilter) -> Result<Vec<LogEntry>, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let mut statement = self
            .connection
            .prepare(
                "SELECT run_id, computation, identity, change, value, version, destination, call, message_id, error, at
                 FROM sync_log
                 WHERE (?1 IS NULL OR computation = ?1) AND (?2 IS NULL OR run_id = ?2) AND (?3 IS NULL OR user = ?3)
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map(params![filter.computation, filter.run_id, filter.user, filter.limit as i64], |row| {
                Ok(LogEntry {
                    run_id: row.get(0)?,
                    computation: row.get(1)?,
                    identity: row.get(2)?,
                    change: change_of(&row.get::<_, String>(3)?),
                    value: row.get(4)?,
                    version: row.get(5)?,
                    destination: row.get(6)?,
                    call: row.get(7)?,
                    message_id: row.get(8)?,
                    error: row.get(9)?,
                    at_ms: row.get(10)?,
                })
            })
            .map_err(fail)?;
        let mut entries = rows.collect::<Result<Vec<_>, _>>().map_err(fail)?;
        entries.reverse();
        Ok(entries)
    }

    /// The runs of `computation` (or of all), oldest first.
    pub fn runs(&self, computation: Option<&str>) -> Result<Vec<Run>, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let mut statement = self
            .connection
            .prepare(
                "SELECT run_id, computation, audience, started_at, finished_at, added, removed, changed, unchanged,
                 sent, failed, malformed, error FROM runs WHERE (?1 IS NULL OR computation = ?1)
                 ORDER BY started_at, rowid",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map(params![computation], |row| {
                Ok(Run {
                    run_id: row.get(0)?,
                    computation: row.get(1)?,
                    audience: row.get(2)?,
                    started_ms: row.get(3)?,
                    finished_ms: row.get(4)?,
                    added: row.get(5)?,
                    removed: row.get(6)?,
                    changed: row.get(7)?,
                    unchanged: row.get(8)?,
                    sent: row.get(9)?,
                    failed: row.get(10)?,
                    malformed: row.get(11)?,
                    error: row.get(12)?,
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(fail)
    }
}

/// One call a run sent one destination for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The run.
    pub run_id: String,
    /// The computation's ID.
    pub computation: String,
    /// The identity's storage key ([`crate::Identity::storage_key`]).
    pub identity: String,
    /// What changed.
    pub change: ChangeKind,
    /// The value sent, as JSON text.
    pub value: String,
    /// The change's version.
    pub version: i64,
    /// The destination.
    pub destination: String,
    /// `identify`, `track` or `group`.
    pub call: String,
    /// The call's messageId.
    pub message_id: String,
    /// Why the destination did not take it; `None` when it did.
    pub error: Option<String>,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// Which log entries to read.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this computation's.
    pub computation: Option<String>,
    /// Only this run's.
    pub run_id: Option<String>,
    /// Only this user's (a userId or an anonymousId).
    pub user: Option<String>,
    /// The newest this many.
    pub limit: usize,
}

/// One sync run of one computation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// Its ID.
    pub run_id: String,
    /// The computation's ID.
    pub computation: String,
    /// The audience's (or trait's) name.
    pub audience: String,
    /// When it started, in Unix milliseconds.
    pub started_ms: i64,
    /// When it ended; `None` while it runs (or if it was killed).
    pub finished_ms: Option<i64>,
    /// Members who joined.
    pub added: i64,
    /// Members who left.
    pub removed: i64,
    /// Members with a new value.
    pub changed: i64,
    /// Members already known.
    pub unchanged: i64,
    /// Changes every destination took.
    pub sent: i64,
    /// Changes some destination did not take.
    pub failed: i64,
    /// Rows of the export that could not be used.
    pub malformed: i64,
    /// Why it stopped, if it did.
    pub error: Option<String>,
}

/// The name of a change kind, as the log stores and prints it.
pub fn change_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
        ChangeKind::Resent => "resent",
    }
}

fn change_of(name: &str) -> ChangeKind {
    match name {
        "added" => ChangeKind::Added,
        "removed" => ChangeKind::Removed,
        "changed" => ChangeKind::Changed,
        _ => ChangeKind::Resent,
    }
}
