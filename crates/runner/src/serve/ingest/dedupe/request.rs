//! One request's way through the fleet's shared key store, from the lookup's answer to the recorded keys, run on
//! the store's own thread as one task: the request, on the ingest runtime, is woken once, when all of it is done.
//! Awaiting the lookup, the commit and the record each on the ingest runtime woke it three times, each time behind
//! the requests being parsed there.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use spool::{NewEntry, NewRejection, Spool, SpoolError};
use tokio::task::JoinHandle;

use super::shared::{Store, Unavailable};
use crate::delivery::stored::StoredError;

/// The keys a request asked the store about, with their messageIds (in one buffer) to find a duplicate again in
/// the encoded entries.
pub struct Asked {
    /// The keys, in the order of the lookup's answer.
    pub keys: Vec<i64>,
    /// Every messageId asked about, one after the other.
    pub ids: String,
    /// Where each key's messageId is in `ids`.
    pub spans: Vec<Range<usize>>,
}

/// What is to be stored for one request.
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
    /// The store did not answer the lookup, and `--dedupe-required` refuses such a request: nothing was stored.
    Refused(Unavailable),
    /// An entry encoded a moment before did not read back to take a duplicate out: nothing was stored.
    Broken(StoredError),
    /// The commit ended in `committed`.
    Done {
        /// The spool's answer.
        committed: Result<(), SpoolError>,
        /// How many messages were stored (duplicates taken out).
        count: u64,
        /// The messageIds dropped as duplicates.
        dropped: Vec<String>,
        /// Why the store could not be asked, when it could not: the request was taken without dedupe.
        unchecked: Option<Unavailable>,
        /// Why its keys could not be recorded, when they could not: a resend will be stored again.
        unrecorded: Option<Unavailable>,
    },
}

/// Awaits `lookup`, takes the duplicates it found out of `encoded`, commits the rest to `spool`, and once that
/// succeeded records their keys: after the commit, so that a resend after a failed commit is stored; before the
/// request's 200, so that a resend of an acknowledged message is dropped.
pub async fn settle(
    store: Arc<Store>,
    spool: Spool,
    lookup: JoinHandle<Result<Vec<bool>, Unavailable>>,
    asked: Asked,
    mut encoded: Encoded,
    required: bool,
) -> Settled {
    let looked_up = lookup.await.unwrap_or_else(|e| Err(Unavailable::Failed(e.to_string())));
    let (record, dropped, unchecked) = match looked_up {
        Ok(found) => {
            let dropped: HashSet<&str> = (asked.spans.iter().zip(&found))
                .filter(|(_, found)| **found)
                .map(|(span, _)| &asked.ids[span.clone()])
                .collect();
            if !dropped.is_empty()
                && let Err(e) = take_out(&mut encoded, &dropped)
            {
                return Settled::Broken(e);
            }
            let record: Vec<i64> =
                asked.keys.iter().zip(&found).filter(|(_, found)| !**found).map(|(key, _)| *key).collect();
            (record, dropped.into_iter().map(str::to_owned).collect(), None)
        }
        Err(why) if required => return Settled::Refused(why),
        Err(why) => (asked.keys, Vec::new(), Some(why)),
    };
    let Encoded { entries, rejections, count } = encoded;
    let committed = spool.append_keyed(entries, rejections, Vec::new()).await;
    let unrecorded = match committed {
        Ok(()) => store.record(&record).await.err(),
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
