//! The sync state: per computation and identity, what the destinations were last told.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::definition::Call;
use crate::diff::{Change, ChangeKind, Stored};

/// The state file's name inside the state folder.
pub const FILE_NAME: &str = "personas.sqlite3";

/// What [`StateStore::erase`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// Membership rows (one per computation the identity was in).
    pub members: u64,
    /// Lines of the sync log.
    pub log_lines: u64,
    /// Free pages overwritten with zeros.
    pub free_pages: u64,
    /// Whether the WAL was checkpointed and truncated.
    pub checkpointed: bool,
}

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
        let connection = sqlite_durable::open_database(&path).map_err(fail)?;
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
                    run_id TEXT NOT NULL UNIQUE,
                    computation TEXT NOT NULL,
                    audience TEXT NOT NULL,
                    plan TEXT NOT NULL,
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
                -- One row per change a run sent, clustered by run; the calls and messageIds follow from the run's
                -- plan and the change, so a 100-million-member first sync logs about 40 bytes a member.
                CREATE TABLE IF NOT EXISTS sync_log (
                    run INTEGER NOT NULL,
                    identity TEXT NOT NULL,
                    change INTEGER NOT NULL,
                    value TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    failures TEXT,
                    at INTEGER NOT NULL,
                    PRIMARY KEY (run, identity)
                ) WITHOUT ROWID;",
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
        self.record_with_log(computation, delivered, None, &[])
    }

    /// Records delivered changes and, for `run` (from [`StateStore::begin_run`]), the log of every change sent
    /// (delivered or not), in one transaction: the log never claims a delivery the state does not hold, nor the
    /// other way round.
    pub fn record_with_log(
        &mut self,
        computation: &str,
        delivered: &[Change],
        run: Option<i64>,
        log: &[Logged],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |source| StateError { path: path.clone(), source };
        let transaction = self.connection.transaction().map_err(fail)?;
        if let Some(run) = run {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO sync_log (run, identity, change, value, version, failures, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(fail)?;
            for logged in log {
                let change = &logged.change;
                let failures = (!logged.failures.is_empty()).then(|| encode_failures(&logged.failures));
                insert
                    .execute(params![
                        run,
                        change.key,
                        change_code(change.kind),
                        change.value,
                        change.version,
                        failures,
                        logged.at_ms
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

    /// Starts the record of a run; returns its number for [`StateStore::record_with_log`].
    pub fn begin_run(&self, run: &Run) -> Result<i64, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        self.connection
            .execute(
                "INSERT INTO runs (run_id, computation, audience, plan, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.run_id, run.computation, run.audience, encode_plan(&run.plan), run.started_ms],
            )
            .map_err(fail)?;
        Ok(self.connection.last_insert_rowid())
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

    /// Forgets what the state holds of `identities` (user and anonymous identities, and the accounts' rows of
    /// those users): their memberships and their lines of the sync log, with `secure_delete` on, the free pages
    /// scrubbed and the WAL truncated after, so their bytes do not linger. The next sync treats them as new.
    pub fn erase(&mut self, identities: &[crate::Identity]) -> Result<Erased, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let keys: Vec<String> = identities.iter().map(crate::Identity::storage_key).collect();
        self.connection.pragma_update(None, "secure_delete", true).map_err(fail)?;
        let transaction =
            self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        let mut erased = Erased::default();
        for (table, count) in [("members", &mut erased.members), ("sync_log", &mut erased.log_lines)] {
            // An account's key ends in its user's: found by the suffix, confirmed by reading the key.
            let mut found = transaction
                .prepare(&format!("SELECT DISTINCT identity FROM {table} WHERE substr(identity, -length(?1)) = ?1"))
                .map_err(fail)?;
            let mut delete = transaction.prepare(&format!("DELETE FROM {table} WHERE identity = ?1")).map_err(fail)?;
            for key in &keys {
                let candidates: Vec<String> = found
                    .query_map(params![key], |row| row.get(0))
                    .map_err(fail)?
                    .collect::<Result<_, _>>()
                    .map_err(fail)?;
                for candidate in candidates {
                    let theirs = match crate::Identity::from_storage_key(&candidate) {
                        Some(crate::Identity::Account { user, .. }) => user.storage_key() == *key,
                        Some(_) => candidate == *key,
                        None => false,
                    };
                    if theirs {
                        *count += delete.execute(params![candidate]).map_err(fail)? as u64;
                    }
                }
            }
        }
        erased.free_pages = sqlite_durable::scrub_free_pages(&transaction).map_err(fail)?;
        transaction.commit().map_err(fail)?;
        erased.checkpointed = sqlite_durable::checkpoint_truncate(&self.connection).map_err(fail)?;
        self.connection.pragma_update(None, "secure_delete", "FAST").map_err(fail)?;
        Ok(erased)
    }

    /// Forgets the runs of `computation` that started before `before_ms`, with their log; returns how many
    /// changes' entries went.
    pub fn prune_log(&mut self, computation: &str, before_ms: i64) -> Result<u64, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let transaction = self.connection.transaction().map_err(fail)?;
        let old = "SELECT rowid FROM runs WHERE computation = ?1 AND started_at < ?2";
        let removed = transaction
            .execute(&format!("DELETE FROM sync_log WHERE run IN ({old})"), params![computation, before_ms])
            .map_err(fail)?;
        transaction
            .execute(&format!("DELETE FROM runs WHERE rowid IN ({old})"), params![computation, before_ms])
            .map_err(fail)?;
        transaction.commit().map_err(fail)?;
        Ok(removed as u64)
    }

    /// The log entries that match `filter`, one per call per destination, the newest `filter.limit` of them,
    /// oldest first. Filtering by user reads the whole log of the runs chosen: the log is kept in run order.
    pub fn log(&self, filter: &LogFilter) -> Result<Vec<LogEntry>, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let mut statement = self
            .connection
            .prepare(
                "SELECT runs.run_id, runs.computation, runs.plan, l.identity, l.change, l.value, l.version, l.failures,
                 l.at FROM sync_log l JOIN runs ON runs.rowid = l.run
                 WHERE (?1 IS NULL OR runs.computation = ?1) AND (?2 IS NULL OR runs.run_id = ?2)
                 AND (?3 IS NULL OR substr(l.identity, -length(?3) - 2) IN ('u:' || ?3, 'a:' || ?3))
                 ORDER BY l.run DESC, l.identity DESC",
            )
            .map_err(fail)?;
        let mut rows = statement.query(params![filter.computation, filter.run_id, filter.user]).map_err(fail)?;
        let mut entries = Vec::new();
        while entries.len() < filter.limit {
            let Some(row) = rows.next().map_err(fail)? else { break };
            let identity: String = row.get(3).map_err(fail)?;
            if let Some(user) = &filter.user {
                // The suffix matched; an account key must also end in exactly that user.
                match crate::Identity::from_storage_key(&identity) {
                    Some(id) if id.user_or_anonymous_id() == user => {}
                    _ => continue,
                }
            }
            let change = Change {
                kind: change_of(row.get(4).map_err(fail)?),
                key: identity,
                value: row.get(5).map_err(fail)?,
                version: row.get(6).map_err(fail)?,
            };
            let (run_id, computation, plan): (String, String, String) =
                (row.get(0).map_err(fail)?, row.get(1).map_err(fail)?, row.get(2).map_err(fail)?);
            let failures =
                row.get::<_, Option<String>>(7).map_err(fail)?.map(|f| decode_failures(&f)).unwrap_or_default();
            let at_ms: i64 = row.get(8).map_err(fail)?;
            // Newest first here; each change's calls are pushed in reverse so that the final reversal keeps them in
            // plan order.
            for (destination, calls) in decode_plan(&plan).into_iter().rev() {
                for call in calls.into_iter().rev() {
                    let error = failures.iter().find(|f| f.0 == destination && f.1 == call.name()).map(|f| f.2.clone());
                    entries.push(LogEntry {
                        run_id: run_id.clone(),
                        computation: computation.clone(),
                        identity: change.key.clone(),
                        change: change.kind,
                        value: change.value.clone(),
                        version: change.version,
                        destination: destination.clone(),
                        call: call.name().to_owned(),
                        message_id: crate::message::message_id(&computation, &change, call),
                        error,
                        at_ms,
                    });
                }
            }
        }
        entries.truncate(filter.limit);
        entries.reverse();
        Ok(entries)
    }

    /// The runs of `computation` (or of all), oldest first.
    pub fn runs(&self, computation: Option<&str>) -> Result<Vec<Run>, StateError> {
        let fail = |source| StateError { path: self.path.clone(), source };
        let mut statement = self
            .connection
            .prepare(
                "SELECT run_id, computation, audience, plan, started_at, finished_at, added, removed, changed,
                 unchanged, sent, failed, malformed, error FROM runs WHERE (?1 IS NULL OR computation = ?1)
                 ORDER BY rowid",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map(params![computation], |row| {
                Ok(Run {
                    run_id: row.get(0)?,
                    computation: row.get(1)?,
                    audience: row.get(2)?,
                    plan: decode_plan(&row.get::<_, String>(3)?),
                    started_ms: row.get(4)?,
                    finished_ms: row.get(5)?,
                    added: row.get(6)?,
                    removed: row.get(7)?,
                    changed: row.get(8)?,
                    unchanged: row.get(9)?,
                    sent: row.get(10)?,
                    failed: row.get(11)?,
                    malformed: row.get(12)?,
                    error: row.get(13)?,
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(fail)
    }
}

/// One change as a run sent it: what failed where (empty when every destination took every call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The change.
    pub change: Change,
    /// (destination, call, error) of each call a destination did not take.
    pub failures: Vec<(String, Call, String)>,
    /// When it was sent, in Unix milliseconds.
    pub at_ms: i64,
}

/// A run's plan as stored: `destination=call,call` joined by newlines (names cannot hold either).
fn encode_plan(plan: &[(String, Vec<Call>)]) -> String {
    plan.iter()
        .map(|(destination, calls)| {
            format!("{destination}={}", calls.iter().map(|c| c.name()).collect::<Vec<_>>().join(","))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_plan(text: &str) -> Vec<(String, Vec<Call>)> {
    text.lines()
        .filter_map(|line| line.rsplit_once('='))
        .map(|(destination, calls)| (destination.to_owned(), calls.split(',').filter_map(Call::from_name).collect()))
        .collect()
}

fn encode_failures(failures: &[(String, Call, String)]) -> String {
    let list: Vec<serde_json::Value> = failures.iter().map(|(d, c, e)| serde_json::json!([d, c.name(), e])).collect();
    serde_json::Value::Array(list).to_string()
}

fn decode_failures(text: &str) -> Vec<(String, String, String)> {
    let list: Vec<(String, String, String)> = serde_json::from_str(text).unwrap_or_default();
    list
}

fn change_code(kind: ChangeKind) -> i64 {
    match kind {
        ChangeKind::Added => 0,
        ChangeKind::Removed => 1,
        ChangeKind::Changed => 2,
        ChangeKind::Resent => 3,
    }
}

fn change_of(code: i64) -> ChangeKind {
    match code {
        0 => ChangeKind::Added,
        1 => ChangeKind::Removed,
        2 => ChangeKind::Changed,
        _ => ChangeKind::Resent,
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
    /// The calls each destination was sent, in order.
    pub plan: Vec<(String, Vec<Call>)>,
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

/// The name of a change kind, as the log prints it.
pub fn change_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
        ChangeKind::Resent => "resent",
    }
}
