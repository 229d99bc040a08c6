//! The suppression list: the users whose messages must not be stored, kept in the spool so that a command changes
//! it beside a running server, which reads it again within a moment of each change (a counter the list's
//! triggers keep tells it when).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior, params};

use crate::error::SpoolError;
use crate::schema::{SCHEMA_VERSION, migrate, open_connection, version};
use crate::{FILE_NAME, lock::create_folder};

/// Which identifier a suppression names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// A `userId`.
    UserId,
    /// An `anonymousId`.
    AnonymousId,
}

impl IdKind {
    /// As the list stores it and `privacy list` prints it: `user_id`, `anonymous_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::UserId => "user_id",
            IdKind::AnonymousId => "anonymous_id",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<IdKind> {
        match text {
            "user_id" => Some(IdKind::UserId),
            "anonymous_id" => Some(IdKind::AnonymousId),
            _ => None,
        }
    }
}

/// One suppressed identifier, and since when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// What it names.
    pub kind: IdKind,
    /// The identifier.
    pub id: String,
    /// When it was suppressed.
    pub since: i64,
}

fn database(path: &Path) -> impl Fn(rusqlite::Error) -> SpoolError + '_ {
    move |source| SpoolError::Database { path: path.to_owned(), source }
}

/// Opens the spool in `dir` for a change to the list, creating it (a list made before the first `serve` is in force
/// when it starts) and bringing its layout up to date.
pub(crate) fn open_writable(dir: &Path) -> Result<(Connection, PathBuf), SpoolError> {
    create_folder(dir)?;
    let path = dir.join(FILE_NAME);
    let mut connection = open_connection(&path).map_err(database(&path))?;
    let found = version(&connection).map_err(database(&path))?;
    if found > SCHEMA_VERSION {
        return Err(SpoolError::Newer { path, version: found, supported: SCHEMA_VERSION });
    }
    migrate(&mut connection).map_err(database(&path))?;
    Ok((connection, path))
}

/// Adds `ids` of `kind` to the list of the spool in `dir`, in one durable commit, as of `at`; an identifier
/// already listed keeps its date. Returns how many were added.
pub fn suppress(dir: &Path, kind: IdKind, ids: &[String], at: i64) -> Result<usize, SpoolError> {
    change(dir, "INSERT OR IGNORE INTO suppressed (kind, id, since) VALUES (?1, ?2, ?3)", kind, ids, Some(at))
}

/// Removes `ids` of `kind` from the list of the spool in `dir`, in one durable commit. Returns how many were
/// listed.
pub fn unsuppress(dir: &Path, kind: IdKind, ids: &[String]) -> Result<usize, SpoolError> {
    change(dir, "DELETE FROM suppressed WHERE kind = ?1 AND id = ?2", kind, ids, None)
}

fn change(dir: &Path, sql: &str, kind: IdKind, ids: &[String], at: Option<i64>) -> Result<usize, SpoolError> {
    let (mut connection, path) = open_writable(dir)?;
    let failed = database(&path);
    // Immediate: the write lock first, waiting (busy timeout) for a server's commit to end.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&failed)?;
    let mut changed = 0;
    {
        let mut statement = transaction.prepare(sql).map_err(&failed)?;
        for id in ids {
            changed += match at {
                Some(at) => statement.execute(params![kind.as_str(), id, at]),
                None => statement.execute(params![kind.as_str(), id]),
            }
            .map_err(&failed)?;
        }
    }
    transaction.commit().map_err(&failed)?;
    Ok(changed)
}

/// The list of the spool in `dir`, oldest first; empty when there is no spool yet. Read without opening the
/// spool for writing.
pub fn suppressions(dir: &Path) -> Result<Vec<Suppressed>, SpoolError> {
    let path = dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let connection = sqlite_durable::open_database_read_only(&path).map_err(database(&path))?;
    match has_list(&connection).map_err(database(&path))? {
        true => read_list(&connection).map_err(database(&path)),
        false => Ok(Vec::new()),
    }
}

fn has_list(connection: &Connection) -> Result<bool, rusqlite::Error> {
    connection.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'suppressed')", [], |row| row.get(0))
}

fn read_list(connection: &Connection) -> Result<Vec<Suppressed>, rusqlite::Error> {
    let mut statement = connection.prepare_cached("SELECT kind, id, since FROM suppressed ORDER BY since, kind, id")?;
    let rows = statement.query_map([], |row| {
        let kind: String = row.get(0)?;
        Ok((kind, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    let mut list = Vec::new();
    for row in rows {
        let (kind, id, since) = row?;
        // Only this module writes the table; a kind it does not know would be a newer layout's.
        if let Some(kind) = IdKind::parse(&kind) {
            list.push(Suppressed { kind, id, since });
        }
    }
    Ok(list)
}

/// A server's view of the list: [`SuppressionWatch::poll`] reads it again only when it changed.
pub struct SuppressionWatch {
    path: PathBuf,
    connection: Connection,
    seen: Option<i64>,
}

impl SuppressionWatch {
    /// Watches the list of the spool in `dir`, which its owner has opened (and so brought up to date).
    pub fn open(dir: &Path) -> Result<SuppressionWatch, SpoolError> {
        let path = dir.join(FILE_NAME);
        let connection = sqlite_durable::open_database_read_only(&path).map_err(database(&path))?;
        Ok(SuppressionWatch { path, connection, seen: None })
    }

    /// The whole list if it changed since the last poll (always, the first time), else `None`.
    pub fn poll(&mut self) -> Result<Option<Vec<Suppressed>>, SpoolError> {
        let failed = database(&self.path);
        let changes: i64 = self
            .connection
            .query_row("SELECT changes FROM suppressed_changes", [], |row| row.get(0))
            .map_err(&failed)?;
        if self.seen == Some(changes) {
            return Ok(None);
        }
        // The list and the counter in one read transaction, so a change between them is seen next time.
        let transaction = self.connection.unchecked_transaction().map_err(&failed)?;
        let changes: i64 =
            transaction.query_row("SELECT changes FROM suppressed_changes", [], |row| row.get(0)).map_err(&failed)?;
        let list = read_list(&transaction).map_err(&failed)?;
        transaction.finish().map_err(&failed)?;
        self.seen = Some(changes);
        Ok(Some(list))
    }
}
