//! One request's way through the fleet's shared keys, run on the store's own thread as one task, so that the
//! request, on the ingest runtime, is woken once, when all of it is done: its keys looked up again once the reader
//! (on the same thread) has read what Redis has already sent it, any duplicate that finds taken out, the commit,
//! and the keys shared.
//!
//! The second look-up closes a race. Another node's `XADD` and its answer leave Redis together with this node's
//! read of that entry, and a resend reaches this node only after that answer went back to the client; so the
//! entry is in this node's socket before the resend is, but the reader may not have had its turn yet. Letting the
//! thread's I/O driver run first (a yield is deferred until it has) and then reading the keys the spool holds
//! costs no round trip. Without it a resend sent within a few milliseconds of the first copy's 200, under load,
//! was stored again about once in twenty.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use spool::{NewEntry, NewRejection, Spool, SpoolError};

use super::shared::{Store, Unavailable};
use crate::delivery::stored::StoredError;

/// The keys of a request's new messages, with their messageIds (in one buffer) to find a duplicate again in the
/// encoded entries.
#[derive(Default)]
pub struct Asked {
    /// The keys.
    pub keys: Vec<i64>,
    /// Every messageId, one after the other.
    pub ids: String,
    /// Where each key's messageId is in `ids`.
    pub spans: Vec<Range<usize>>,
}

/// What is to be stored for one request, its duplicates of the keys this node held already dropped.
pub struct Encoded {
    /// One entry per destination.
    pub entries: Vec<NewEntry>,
    /// The invalid messages, for the rejected table.
    pub rejections: Vec<NewRejection>,
    /// How many valid messages the entries hold.
    pub count: u64,
}

/// How a request ended on the store's thread.
pub enum Settled {
    /// The fleet's keys could not be counted on, and `--dedupe-required` refuses such a request: nothing was
    /// stored.
    Refused(Unavailable),
    /// An entry encoded a moment before did not read back to take a duplicate out: nothing was stored.
    Broken(StoredError),
    /// The commit ended in `committed`.
    Done {
        /// The spool's answer.
        committed: Result<(), SpoolError>,
        /// How many messages were stored (duplicates taken out).
        count: u64,
        /// The messageIds taken out as duplicates of keys another node shared a moment ago.
        dropped: Vec<String>,
        /// Why the fleet's keys could not be counted on, when they could not: the request was checked against
        /// the keys this node held.
        unchecked: Option<Unavailable>,
        /// Why its keys could not be shared, when they could not: a resend to another node will be stored again.
        unrecorded: Option<Unavailable>,
    },
}

/// Looks `asked` up again once the reader had its turn, takes any duplicate out of `encoded`, commits the rest to
/// `spool` with their keys, and once that succeeded shares the keys through `store`: after the commit, so that a
/// resend after a failed commit is stored; before the request's 200, so that a resend of an acknowledged message
/// to another node is dropped.
pub async fn settle(store: Arc<Store>, spool: Spool, asked: Asked, mut encoded: Encoded, required: bool) -> Settled {
    let unchecked = match store.checkable() {
        Ok(()) => None,
        Err(why) if required => return Settled::Refused(why),
        Err(why) => Some(why),
    };
    // Twice: the driver's poll wakes the reader, and the second turn lets it run before this goes on.
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let found: Vec<bool> = asked.keys.iter().map(|key| spool.holds(*key)).collect();
    let dropped: HashSet<&str> = (asked.spans.iter().zip(&found))
        .filter(|(_, found)| **found)
        .map(|(span, _)| &asked.ids[span.clone()])
        .collect();
    if !dropped.is_empty()
        && let Err(e) = take_out(&mut encoded, &dropped)
    {
        return Settled::Broken(e);
    }
    let keys: Vec<i64> = asked.keys.iter().zip(&found).filter(|(_, found)| !**found).map(|(key, _)| *key).collect();
    let dropped = dropped.into_iter().map(str::to_owned).collect();
    let Encoded { entries, rejections, count } = encoded;
    let committed = spool.append_keyed(entries, rejections, keys.clone()).await;
    let unrecorded = match committed {
        Ok(()) => store.record(&keys).await.err(),
        Err(_) => None,
    };
    Settled::Done { committed, count, dropped, unchecked, unrecorded }
}

/// Takes the messages whose messageId is in `dropped` out of every entry of `encoded`.
fn take_out(encoded: &mut Encoded, dropped: &HashSet<&str>) -> Result<(), StoredError> {
    for entry in &mut encoded.entries {
        (entry.items, entry.count) = crate::delivery::stored::without(&entry.items, dropped)?;
    }
    encoded.entries.retain(|entry| entry.count > 0);
    encoded.count = encoded.count.saturating_sub(dropped.len() as u64);
    Ok(())
}
