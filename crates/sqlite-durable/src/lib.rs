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
///
/// `secure_delete = FAST` zeroes what a delete leaves in a page that stays in use, at no extra IO (the page is
/// written anyway): an erasure then has only the free pages to scrub ([`scrub_free_pages`]), and not every page.
pub fn open_database(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "secure_delete", "FAST")?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// Opens an existing database for reading only, with [`BUSY_TIMEOUT`].
pub fn open_database_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// Overwrites every free page of the database with zeros, inside `connection`'s open transaction; returns how
/// many pages were free.
///
/// `secure_delete` zeroes what is deleted from then on, but pages freed before it was turned on keep their old
/// bytes until they are used again. A blob as long as the whole freelist takes every free page (the freelist's
/// trunk pages too), filled with zeros, and deleting it gives them back as they now are. The pages reach the WAL
/// first; a checkpoint ([`checkpoint_truncate`]) writes them over the old bytes in the database file.
pub fn scrub_free_pages(connection: &Connection) -> Result<u64, rusqlite::Error> {
    let free: i64 = connection.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    if free == 0 {
        return Ok(0);
    }
    let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    connection.execute_batch("CREATE TABLE IF NOT EXISTS scrubbed_pages (zeros BLOB NOT NULL)")?;
    // An overflow page holds its page less a 4-byte link.
    connection.execute("INSERT INTO scrubbed_pages (zeros) VALUES (zeroblob(?1))", [free * (page_size - 4)])?;
    connection.execute("DELETE FROM scrubbed_pages", [])?;
    Ok(free as u64)
}

/// Copies every page in the WAL into the database file and truncates the WAL to nothing, so that no earlier
/// version of a page lingers there; returns whether it completed (a reader holding an older snapshot for longer
/// than [`BUSY_TIMEOUT`] stops it short). Call it outside a transaction.
pub fn checkpoint_truncate(connection: &Connection) -> Result<bool, rusqlite::Error> {
    let busy: i64 = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok(busy == 0)
}
