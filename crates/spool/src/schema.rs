//! The spool's tables, the migration from earlier layouts, and how its connections are opened.

use std::path::Path;

use rusqlite::Connection;

/// How many pages the WAL may hold before a commit copies them into the database (SQLite's default is 1,000).
///
/// An entry lives for milliseconds: its pages are written, delivered, freed and taken by the next entries. A
/// checkpoint writes each page once, whatever its versions in the WAL, so a longer window writes most pages to the
/// database once per many entries instead of once per entry: about a tenth less of the server's CPU per message,
/// and a p99 acknowledgement of about 7.5 ms instead of 11, in the ingest benchmark. The price is a WAL file of up
/// to about 256 MiB beside the spool, and as much to replay after a crash.
const WAL_CHECKPOINT_PAGES: i64 = 65_536;

/// A connection to the spool: [`sqlite_durable::open_database`] with the spool's checkpoint window.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = sqlite_durable::open_database(path)?;
    connection.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    Ok(connection)
}

/// The schema. An entry's small columns come before its blob: SQLite reads a column after a large blob by walking
/// the blob's overflow pages, so `count`, the schedule and the accounting stay cheap to read and update. `totals`
/// is kept by triggers, so that every process writing the spool (a server, `dlq replay`) keeps it exact. IDs never
/// go back (`AUTOINCREMENT`), so a reader may resume after the highest fresh ID it took. `dedupe_blocks`
/// holds the keys of accepted messages (see `dedupe.rs`); `suppressed` the users whose messages are not stored, with
/// a counter of its changes that a server polls (see `suppress.rs`); `erasure_requests` and `erasure_ids` the
/// erasures a command asked of the spool's owner (see `erasure.rs`), the IDs only until the erasure is done.
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
CREATE TABLE IF NOT EXISTS dedupe_blocks (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    keys BLOB NOT NULL
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
CREATE TABLE IF NOT EXISTS suppressed (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppressed_changes (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    changes INTEGER NOT NULL
);
INSERT OR IGNORE INTO suppressed_changes (one, changes) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS suppressed_in AFTER INSERT ON suppressed BEGIN
    UPDATE suppressed_changes SET changes = changes + 1;
END;
CREATE TRIGGER IF NOT EXISTS suppressed_out AFTER DELETE ON suppressed BEGIN
    UPDATE suppressed_changes SET changes = changes + 1;
END;
CREATE TABLE IF NOT EXISTS erasure_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    requested_at INTEGER NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS erasure_ids (
    request INTEGER NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (request, kind, id)
) WITHOUT ROWID;
";

/// Brings a spool written by an earlier version (the blob before the small columns, no totals) to [`SCHEMA`], in
/// one transaction, keeping every entry and its schedule. A spool of a newer layout ([`version`] above
/// [`SCHEMA_VERSION`]) is refused before this is called.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), rusqlite::Error> {
    let version = version(connection)?;
    if version >= SCHEMA_VERSION {
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
/// the layout before the dedupe keys, 3 for the layout before the suppression list, 4 for the layout before the
/// erasure requests, 5 for [`SCHEMA`].
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// The layout version of the spool `connection` opened.
pub(crate) fn version(connection: &Connection) -> Result<i64, rusqlite::Error> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}
