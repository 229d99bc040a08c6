//! What the writer thread and the handles share: the depth and bytes waiting, each destination's backlog, the
//! limits, and the committed entries kept in memory for their first read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rusqlite::Connection;

use crate::entry::Backlog;

/// How many bytes of committed entries [`Fresh`] keeps for their first read; past it, readers read from disk.
const FRESH_BYTES: usize = 64 << 20;

/// Committed entries not yet read, by ID.
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    items: std::collections::HashMap<i64, Vec<u8>>,
    bytes: usize,
}

impl Fresh {
    pub(crate) fn put(&mut self, id: i64, items: Vec<u8>) {
        if self.bytes + items.len() <= FRESH_BYTES {
            self.bytes += items.len();
            self.items.insert(id, items);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }

    pub(crate) fn take(&mut self, id: i64) -> Option<Vec<u8>> {
        let items = self.items.remove(&id)?;
        self.bytes -= items.len();
        Some(items)
    }
}

/// What the writer thread and the handle share.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Messages waiting, across destinations, as of the last commit.
    pub(crate) depth: AtomicI64,
    /// Messages of appends on their way to a commit, counted against the limit before they land.
    pub(crate) reserved: AtomicI64,
    /// Bytes of stored entries waiting, across destinations, as of the last commit.
    pub(crate) bytes: AtomicI64,
    /// Bytes of appends on their way to a commit.
    pub(crate) reserved_bytes: AtomicI64,
    /// The most bytes the spool may hold waiting.
    pub(crate) max_bytes: AtomicU64,
    /// What each destination has waiting, as of the last commit.
    pub(crate) backlogs: Mutex<std::collections::HashMap<String, Backlog>>,
    /// Entries committed by this process and not yet read, by ID: a reader takes them from here instead of from
    /// disk, which it would otherwise read back milliseconds after they were written.
    pub(crate) fresh: Mutex<Fresh>,
    /// How many rejections the table keeps; older ones are dropped.
    pub(crate) max_rejections: AtomicU64,
    /// Rejections dropped to keep the table within its bound.
    pub(crate) rejections_dropped: AtomicU64,
    /// Transactions the writer thread committed; fewer than the jobs it took when commits are shared.
    pub(crate) commits: AtomicU64,
    /// The dedupe settings and what the key store holds.
    pub(crate) dedupe: crate::dedupe::DedupeState,
    /// The erasures in force and the entries deliveries hold.
    pub(crate) erasures: crate::erase::Erasures,
}

/// Reads every destination's backlog and the total depth from `totals` into `counts`.
pub(crate) fn recount(connection: &Connection, counts: &Counts) -> Result<(), rusqlite::Error> {
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
