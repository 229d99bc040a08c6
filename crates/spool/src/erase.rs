//! What an erasure is made of, as the writer thread applies it: the caller's [`Eraser`], the erasures in force, and
//! the steps of one (begin, rewrite a page of entries, end). `erasure.rs` runs them in order.
//!
//! A delivery may hold an entry while it is rewritten; from the moment an erasure begins, whatever such a delivery
//! writes back (the messages left for a retry, dead letters) passes through the eraser, and the user's messages it
//! held are named in the report ([`Erased::handed`]) as handed to a sink: they may be delivered.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use rusqlite::{OptionalExtension as _, Transaction, params};

/// Which messages an erasure removes; the caller's, since the spool does not read messages.
pub trait Eraser: Send + Sync {
    /// The entry `items` without the messages to erase, or `None` when it holds none (or cannot be read).
    fn entry(&self, items: &[u8]) -> Option<Rewrite>;
    /// Whether `message` (a dead letter, or a rejected message as it was sent) is to be erased.
    fn message(&self, message: &[u8]) -> bool;
}

/// An entry without the messages an [`Eraser`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The messages kept, encoded as the entry was.
    pub items: Vec<u8>,
    /// How many messages `items` holds; zero removes the entry.
    pub count: u32,
    /// The messageIds of the messages removed.
    pub removed: Vec<String>,
}

/// What an erasure removed, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// Messages removed from waiting entries, by destination.
    pub waiting: BTreeMap<String, u64>,
    /// Entries rewritten without them (or removed, when nothing was left).
    pub entries: u64,
    /// Dead letters removed.
    pub dead_letters: u64,
    /// Rejections removed.
    pub rejected: u64,
    /// The user's messages a delivery had taken before the erasure reached them, as (destination, messageId):
    /// handed to a sink, they may be delivered. They are no longer on disk either way.
    pub handed: Vec<(String, String)>,
    /// Free pages overwritten with zeros.
    pub free_pages: u64,
    /// Whether the WAL was checkpointed and truncated (a long-lived reader elsewhere can stop it short).
    pub checkpointed: bool,
}

/// An erasure in progress (or whose deliveries in flight have not all settled): settlements and replays of
/// entries up to `up_to` pass through its eraser.
pub(crate) struct Active {
    pub(crate) eraser: Arc<dyn Eraser>,
    pub(crate) up_to: i64,
    pub(crate) ended: bool,
}

/// The erasures a writer applies to what deliveries write back, and the entries deliveries hold.
#[derive(Default)]
pub(crate) struct Erasures {
    pub(crate) active: Mutex<Vec<Active>>,
    /// Entries taken by a delivery and not yet settled.
    pub(crate) in_flight: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for Erasures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let active = self.active.lock().map(|a| a.len()).unwrap_or(0);
        f.debug_struct("Erasures").field("active", &active).finish_non_exhaustive()
    }
}

impl Erasures {
    /// The erasers that apply to entry `id`, if any (usually none: a clone of nothing).
    pub(crate) fn for_entry(&self, id: i64) -> Vec<Arc<dyn Eraser>> {
        let active = self.active.lock().expect("erasures lock poisoned");
        active.iter().filter(|a| id <= a.up_to).map(|a| a.eraser.clone()).collect()
    }

    /// Every eraser in force (a replay's entries are new, whatever letters they came from).
    pub(crate) fn all(&self) -> Vec<Arc<dyn Eraser>> {
        self.active.lock().expect("erasures lock poisoned").iter().map(|a| a.eraser.clone()).collect()
    }

    /// Forgets the ended erasures no delivery in flight can write back to any more.
    pub(crate) fn prune(&self) {
        let in_flight = self.in_flight.lock().expect("in-flight lock poisoned");
        let lowest = in_flight.iter().min().copied().unwrap_or(i64::MAX);
        self.active.lock().expect("erasures lock poisoned").retain(|a| !a.ended || lowest <= a.up_to);
    }

    fn is_idle(&self) -> bool {
        self.active.lock().expect("erasures lock poisoned").is_empty()
    }
}

/// An entry read by an erasure, and what it becomes.
pub(crate) struct Scanned {
    pub(crate) id: i64,
    pub(crate) destination: String,
    pub(crate) attempts: i64,
    pub(crate) rewrite: Rewrite,
}

/// Begins an erasure in the writer's transaction: `secure_delete` on (from `FAST`: whole free pages are zeroed too),
/// the eraser in force for everything stored up
/// to now, the entries kept in memory for their first read dropped (a reader reads them from disk, as they are
/// rewritten). Returns the highest entry ID it covers.
pub(crate) fn begin(
    transaction: &Transaction,
    erasures: &Erasures,
    eraser: Arc<dyn Eraser>,
) -> Result<i64, rusqlite::Error> {
    transaction.pragma_update(None, "secure_delete", true)?;
    let up_to: i64 = transaction.query_row("SELECT COALESCE(MAX(id), 0) FROM spool", [], |row| row.get(0))?;
    erasures.active.lock().expect("erasures lock poisoned").push(Active { eraser, up_to, ended: false });
    Ok(up_to)
}

/// Rewrites scanned entries in the writer's transaction, checking each against what the disk holds now: an entry
/// a delivery settled since it was read is erased again as it now is, one that is gone was delivered.
pub(crate) fn rewrite(
    transaction: &Transaction,
    erasures: &Erasures,
    eraser: &dyn Eraser,
    scanned: &[Scanned],
) -> Result<Erased, rusqlite::Error> {
    let mut erased = Erased::default();
    let mut read = transaction.prepare_cached("SELECT attempts, items FROM spool WHERE id = ?1")?;
    let mut update = transaction.prepare_cached("UPDATE spool SET items = ?2, count = ?3, bytes = ?4 WHERE id = ?1")?;
    let mut delete = transaction.prepare_cached("DELETE FROM spool WHERE id = ?1")?;
    for entry in scanned {
        let now: Option<(i64, Vec<u8>)> =
            read.query_row(params![entry.id], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        let Some((attempts, items)) = now else {
            // Delivered (or moved to the dead letters, through the eraser) since it was read.
            erased.handed.extend(entry.rewrite.removed.iter().map(|id| (entry.destination.clone(), id.clone())));
            continue;
        };
        let again;
        let rewrite = match attempts == entry.attempts {
            true => &entry.rewrite,
            false => match eraser.entry(&items) {
                Some(rewrite) => {
                    again = rewrite;
                    &again
                }
                None => continue,
            },
        };
        if erasures.in_flight.lock().expect("in-flight lock poisoned").contains(&entry.id) {
            erased.handed.extend(rewrite.removed.iter().map(|id| (entry.destination.clone(), id.clone())));
        }
        *erased.waiting.entry(entry.destination.clone()).or_default() += rewrite.removed.len() as u64;
        erased.entries += 1;
        match rewrite.count {
            0 => delete.execute(params![entry.id])?,
            count => update.execute(params![entry.id, &rewrite.items, count, rewrite.items.len() as i64])?,
        };
    }
    Ok(erased)
}

/// Ends an erasure in the writer's transaction: the dead letters and rejections found removed, the request's IDs
/// forgotten, the free pages scrubbed. The checkpoint follows the commit ([`after_commit`]).
pub(crate) fn end(
    transaction: &Transaction,
    dead_letters: &[i64],
    rejected: &[i64],
    request: Option<i64>,
) -> Result<u64, rusqlite::Error> {
    let mut delete = transaction.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
    for id in dead_letters {
        delete.execute(params![id])?;
    }
    let mut delete = transaction.prepare_cached("DELETE FROM rejected WHERE id = ?1")?;
    for id in rejected {
        delete.execute(params![id])?;
    }
    if let Some(request) = request {
        transaction.execute("DELETE FROM erasure_ids WHERE request = ?1", params![request])?;
    }
    sqlite_durable::scrub_free_pages(transaction)
}

/// After an erasure's last commit: the WAL checkpointed and truncated, the eraser ended (it stays in force until the
/// deliveries in flight settle), `secure_delete` back to `FAST` once no erasure is in force. Returns whether the
/// checkpoint completed.
pub(crate) fn after_commit(connection: &rusqlite::Connection, erasures: &Erasures, eraser: &Arc<dyn Eraser>) -> bool {
    let checkpointed = sqlite_durable::checkpoint_truncate(connection).unwrap_or(false);
    stop(connection, erasures, eraser);
    checkpointed
}

/// Ends `eraser`, whether its erasure finished or failed half way (the request stays, to be carried out again): it
/// stays in force only until the deliveries in flight settle, and `secure_delete` goes back to `FAST` once no
/// erasure is in force, so that a failed erasure does not cost every later delete.
pub(crate) fn stop(connection: &rusqlite::Connection, erasures: &Erasures, eraser: &Arc<dyn Eraser>) {
    for active in erasures.active.lock().expect("erasures lock poisoned").iter_mut() {
        if Arc::ptr_eq(&active.eraser, eraser) {
            active.ended = true;
        }
    }
    erasures.prune();
    if erasures.is_idle() {
        let _ = connection.pragma_update(None, "secure_delete", "FAST");
    }
}
