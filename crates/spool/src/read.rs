//! Reading the spool: what to deliver next, the oldest entries, dead letters, rejections. Reads run on the read
//! connection on a blocking thread and never wait for the writer.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::entry::{DeadLetter, Entry, Rejection, RejectionFilter};
use crate::{FILE_NAME, Spool, SpoolError};

impl Spool {
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

    /// Runs `query` on the read connection on a blocking thread; a SQLite error names the database.
    pub(crate) async fn read<T: Send + 'static>(
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
            // Held until settled: an erasure names what a delivery holds as handed to a sink.
            counts.erasures.in_flight.lock().expect("in-flight lock poisoned").extend(entries.iter().map(|e| e.id));
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

/// Reads the rejections that match `filter` from the spool in `dir` without opening it for writing, so that a
/// server running on the same spool is not disturbed.
pub fn read_rejections(dir: &Path, filter: &RejectionFilter) -> Result<Vec<Rejection>, SpoolError> {
    let path = dir.join(FILE_NAME);
    let database = |source| SpoolError::Database { path: path.clone(), source };
    if !path.exists() {
        return Err(SpoolError::Missing { path });
    }
    let connection = sqlite_durable::open_database_read_only(&path).map_err(database)?;
    let has_table: bool = connection
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'rejected')", [], |row| row.get(0))
        .map_err(database)?;
    if !has_table {
        return Ok(Vec::new());
    }
    query_rejections(&connection, filter).map_err(database)
}

pub(crate) fn query_rejections(
    reader: &Connection,
    filter: &RejectionFilter,
) -> Result<Vec<Rejection>, rusqlite::Error> {
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
