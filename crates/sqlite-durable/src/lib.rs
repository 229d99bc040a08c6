//! How every Tributary store opens SQLite: the spool and the personas state share these settings, and this crate,
//! not each other.

use std::path::Path;

use rusqlite::Connection;

/// How long a connection waits for another process's write (a server and `dlq replay` on one spool, two syncs on
/// one personas state) before it reports the database busy.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens (creating if needed) a SQLite database the way every Tributary store is opened: WAL, so readers never
/// block the writer, `synchronous = FULL`, so a commit survives power loss and not only a crash, and
/// [`BUSY_TIMEOUT`]. The spool and the personas state both open theirs here, so neither depends on the other.
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
