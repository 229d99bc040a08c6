//! The keys of messages already accepted, for dropping resends: kept in the spool's own database, so that a key is
//! recorded in the same transaction as the messages it admits (an attached database would not commit atomically
//! with it in WAL mode), and bounded by a window and a number of keys.
//!
//! A key is an opaque 64-bit number (the caller's keyed hash of a messageId). `dedupe` holds one row per key in
//! the order they were committed (`seq`), with an index on the key for look-ups; `dedupe_marks` holds a mark
//! a second, the first `seq` written since and when, so a key's age costs no bytes of its own. Keys are only ever
//! removed oldest first, so the number held is `max(seq) - min(seq) + 1`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use tokio::sync::oneshot;

/// The most keys one commit removes: a large removal (a budget lowered, a long stop) is spread over commits, so
/// that no commit waits long behind it.
const MAX_REMOVED_PER_COMMIT: i64 = 50_000;

/// The page cache of the look-up connection, in KiB: all the memory dedupe look-ups take, whatever the keys held.
pub(crate) const LOOKUP_CACHE_KIB: i64 = 8_192;

/// How often the writer looks for keys to remove: the window is kept to within this.
pub(crate) const EVICT_EVERY_MILLIS: i64 = 1_000;

/// The dedupe settings and what the writer reports of the key store, shared by the handles and the threads.
#[derive(Debug, Default)]
pub(crate) struct DedupeState {
    /// Whether this handle's writer keeps the key store within the window and budget: only the owner's, once
    /// they are set (a command opening the spool beside a server must never remove the server's keys).
    pub(crate) managed: std::sync::atomic::AtomicBool,
    /// How long a key counts, in milliseconds; 0 keeps none.
    pub(crate) window_millis: AtomicI64,
    /// The most keys kept; the oldest go first beyond it.
    pub(crate) max_keys: AtomicU64,
    /// Keys held, as of the last commit.
    pub(crate) keys: AtomicU64,
    /// When the newest key removed to stay within `max_keys` was committed, in Unix milliseconds (0: none was):
    /// keys after it are all held, so the window held reaches back to it.
    pub(crate) evicted_through_at: AtomicI64,
    /// When the oldest key held was committed, in Unix milliseconds (0: none is held).
    pub(crate) oldest_at: AtomicI64,
    /// When the writer last wrote a mark dating keys (the writer's alone; 0 at start, so the first keys get one).
    pub(crate) last_mark_at: AtomicI64,
}

/// What the key store holds, as of the last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DedupeStats {
    /// Keys held.
    pub keys: u64,
    /// When the oldest key held was committed, in Unix milliseconds.
    pub oldest_at: Option<i64>,
    /// The window keys are kept for, in milliseconds (0: none are).
    pub window_millis: i64,
    /// How far back the keys held reach without a gap, in milliseconds: the configured window, or less once keys
    /// within it were removed to stay within the key budget.
    pub window_held_millis: i64,
}

impl DedupeState {
    pub(crate) fn stats(&self, now: i64) -> DedupeStats {
        let window = self.window_millis.load(Ordering::Relaxed);
        let evicted = self.evicted_through_at.load(Ordering::Relaxed);
        let held = match evicted {
            0 => window,
            at => window.min((now - at).max(0)),
        };
        let oldest = self.oldest_at.load(Ordering::Relaxed);
        DedupeStats {
            keys: self.keys.load(Ordering::Relaxed),
            oldest_at: (oldest != 0).then_some(oldest),
            window_millis: window,
            window_held_millis: held,
        }
    }
}

/// How far apart the marks that date keys are: a key's age is known to within this.
const MARK_EVERY_MILLIS: i64 = 1_000;

/// Records `keys` (every append's of one commit), committed at `at`, in `transaction`. A mark dates them when the
/// last one is a second old or more, so the marks grow by one a second, not one a commit.
pub(crate) fn record(
    transaction: &Transaction,
    keys: impl IntoIterator<Item = i64>,
    at: i64,
    state: &DedupeState,
) -> Result<(), rusqlite::Error> {
    let mut insert = transaction.prepare_cached("INSERT INTO dedupe (key) VALUES (?1)")?;
    let mut first = None;
    for key in keys {
        insert.execute(params![key])?;
        first.get_or_insert(transaction.last_insert_rowid());
    }
    let Some(first) = first else { return Ok(()) };
    if at - state.last_mark_at.load(Ordering::Relaxed) >= MARK_EVERY_MILLIS {
        transaction
            .prepare_cached("INSERT OR IGNORE INTO dedupe_marks (first_seq, at) VALUES (?1, ?2)")?
            .execute(params![first, at])?;
        state.last_mark_at.store(at, Ordering::Relaxed);
    }
    Ok(())
}

/// Removes the keys older than the window and those beyond the key budget, oldest first and at most
/// [`MAX_REMOVED_PER_COMMIT`], then reads the counts back into `state`.
pub(crate) fn evict(transaction: &Transaction, state: &DedupeState, now: i64) -> Result<(), rusqlite::Error> {
    if !state.managed.load(Ordering::Relaxed) {
        return read_counts(transaction, state);
    }
    let window = state.window_millis.load(Ordering::Relaxed);
    let max_keys = i64::try_from(state.max_keys.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let (low, high) = bounds(transaction)?;
    if let Some((low, high)) = low.zip(high) {
        let held = high - low + 1;
        // Expired: every key of the commits older than the window, which end where the first younger one starts.
        let young = transaction
            .prepare_cached("SELECT first_seq FROM dedupe_marks WHERE at >= ?1 ORDER BY first_seq LIMIT 1")?
            .query_row(params![now - window], |row| row.get::<_, i64>(0))
            .optional()?;
        let expired_through = young.map_or(high, |first| first - 1);
        let over_budget_through = low + (held - max_keys).max(0) - 1;
        let through = expired_through.max(over_budget_through).min(low + MAX_REMOVED_PER_COMMIT - 1);
        if through >= low {
            if through > expired_through {
                // Keys within the window go: the window held now starts after the newest of them.
                let at: i64 = transaction
                    .prepare_cached(
                        "SELECT at FROM dedupe_marks WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1",
                    )?
                    .query_row(params![through], |row| row.get(0))
                    .optional()?
                    .unwrap_or(now);
                state.evicted_through_at.store(at, Ordering::Relaxed);
            }
            transaction.prepare_cached("DELETE FROM dedupe WHERE seq <= ?1")?.execute(params![through])?;
            // A commit's row stays while any of its keys does: the row of the commit `through` falls in.
            transaction
                .prepare_cached(
                    "DELETE FROM dedupe_marks WHERE first_seq < (SELECT MAX(first_seq) FROM dedupe_marks
                     WHERE first_seq <= ?1 + 1)",
                )?
                .execute(params![through])?;
        }
    }
    read_counts(transaction, state)
}

/// The lowest and highest `seq` held.
fn bounds(connection: &Connection) -> Result<(Option<i64>, Option<i64>), rusqlite::Error> {
    connection
        .prepare_cached("SELECT MIN(seq), MAX(seq) FROM dedupe")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
}

/// Reads the number of keys held and the oldest one's time into `state`.
pub(crate) fn read_counts(connection: &Connection, state: &DedupeState) -> Result<(), rusqlite::Error> {
    let (low, high) = bounds(connection)?;
    let held = low.zip(high).map_or(0, |(low, high)| high - low + 1);
    state.keys.store(held.max(0) as u64, Ordering::Relaxed);
    let oldest: Option<i64> = connection
        .prepare_cached("SELECT at FROM dedupe_marks ORDER BY first_seq LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    state.oldest_at.store(if held > 0 { oldest.unwrap_or(0) } else { 0 }, Ordering::Relaxed);
    Ok(())
}

/// A look-up: keys, and whom to tell which of them are held.
pub(crate) struct Lookup {
    pub(crate) keys: Vec<i64>,
    pub(crate) answer: oneshot::Sender<Result<Vec<bool>, std::sync::Arc<rusqlite::Error>>>,
}

/// The look-up thread: answers whether keys are held, on a connection of its own, taking every look-up that has
/// queued up in one read transaction. It reads what is committed: a key counts once its messages are.
pub(crate) fn lookup_loop(connection: Connection, lookups: mpsc::Receiver<Lookup>) {
    while let Ok(first) = lookups.recv() {
        let mut batch = vec![first];
        while let Ok(more) = lookups.try_recv() {
            batch.push(more);
        }
        match look_up(&connection, &batch) {
            Ok(answers) => {
                for (lookup, held) in batch.into_iter().zip(answers) {
                    let _ = lookup.answer.send(Ok(held));
                }
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for lookup in batch {
                    let _ = lookup.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Whether each key of each look-up is held, read in one transaction.
fn look_up(connection: &Connection, batch: &[Lookup]) -> Result<Vec<Vec<bool>>, rusqlite::Error> {
    let transaction = connection.unchecked_transaction()?;
    let mut find = transaction.prepare_cached("SELECT 1 FROM dedupe WHERE key = ?1 LIMIT 1")?;
    let mut all = Vec::with_capacity(batch.len());
    for lookup in batch {
        let mut held = Vec::with_capacity(lookup.keys.len());
        for key in &lookup.keys {
            held.push(find.exists(params![key])?);
        }
        all.push(held);
    }
    drop(find);
    transaction.commit()?;
    Ok(all)
}
