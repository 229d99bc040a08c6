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
        let path = self.path.clone();
        let fail = |source| StateError { path: path.clone(), source };
        let transaction = self.connection.transaction().map_err(fail)?;
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
}
