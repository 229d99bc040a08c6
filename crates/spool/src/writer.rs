//! The writer thread: the one write connection, committing whatever work has queued up in one transaction.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use rusqlite::{Connection, Transaction, params};
use tokio::sync::oneshot;

use crate::counts::{Counts, recount};
use crate::dedupe;
use crate::entry::{Durability, NewEntry, NewRejection, Retry, Settlement};
use crate::erase::{self, Erased, Eraser, Scanned};

/// How many queued jobs one commit takes at most; bounds the latency a large backlog adds to one commit.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// Work for the writer thread.
pub(crate) enum Op {
    /// Entries, rejections, the dedupe keys of the entries' messages, and when.
    Append(Vec<NewEntry>, Vec<NewRejection>, Vec<i64>, i64),
    Settle(Vec<Settlement>, i64),
    /// Entries replayed from dead letters, the letters, when, and whom to tell whether they were all still there.
    Requeue(Vec<NewEntry>, Vec<i64>, i64, mpsc::Sender<bool>),
    /// Reads the writer connection's durability settings inside a commit, so the answer is about the connection
    /// that commits acknowledged entries and not about one opened to ask.
    Durability(mpsc::Sender<Durability>),
    /// Begins an erasure; answers the highest entry ID it covers.
    EraseBegin(Arc<dyn Eraser>, mpsc::Sender<i64>),
    /// Rewrites entries an erasure read; answers what it removed.
    EraseRewrite(Arc<dyn Eraser>, Vec<Scanned>, mpsc::Sender<Erased>),
    /// Ends an erasure: the dead letters and rejections to remove, the request whose IDs to forget; answers the
    /// free pages scrubbed and whether the checkpoint after the commit completed.
    EraseEnd(Arc<dyn Eraser>, Vec<i64>, Vec<i64>, Option<i64>, mpsc::Sender<(u64, bool)>),
    /// Records an erasure request's report.
    EraseReport(i64, String),
    /// Ends an erasure that failed half way.
    EraseStop(Arc<dyn Eraser>),
}

/// A piece of work and whom to tell when its commit is done.
pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) done: oneshot::Sender<Result<(), Arc<rusqlite::Error>>>,
}

/// The writer thread: takes every job that has queued up, applies them in one transaction, commits, answers.
pub(crate) fn write_loop(mut connection: Connection, jobs: mpsc::Receiver<Job>, path: &Path, counts: &Counts) {
    let mut evicted_at = 0i64;
    loop {
        // Idle, the writer still wakes to remove the keys that leave the window.
        let first = match jobs.recv_timeout(std::time::Duration::from_millis(dedupe::EVICT_EVERY_MILLIS as u64)) {
            Ok(first) => Some(first),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let now = crate::now_millis();
        if first.is_none() {
            if now - evicted_at >= dedupe::EVICT_EVERY_MILLIS && counts.dedupe.keys.load(Ordering::Relaxed) > 0 {
                evicted_at = now;
                match evict_alone(&mut connection, counts) {
                    Ok(removed) => counts.dedupe.removed(removed),
                    Err(e) => {
                        tracing::warn!(spool = %path.display(), error = %e, "removing expired dedupe keys failed");
                    }
                }
            }
            continue;
        }
        let first = first.expect("checked above");
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let max_rejections = counts.max_rejections.load(Ordering::Relaxed);
        let evict = now - evicted_at >= dedupe::EVICT_EVERY_MILLIS;
        if evict {
            evicted_at = now;
        }
        let result = match apply(&mut connection, &batch, max_rejections, counts, evict) {
            Ok(Applied { rejections_dropped, appended, block, evicted, ended }) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                // Committed: the new keys count from now, and the removed ones no longer do.
                if let Some(block) = block {
                    counts.dedupe.committed(block, batch.iter().flat_map(|job| keys_of(&job.op).iter().copied()));
                }
                counts.dedupe.removed(evicted);
                counts.rejections_dropped.fetch_add(rejections_dropped, Ordering::Relaxed);
                let mut fresh = counts.fresh.lock().expect("fresh lock poisoned");
                let mut ids = appended.into_iter();
                for job in &mut batch {
                    if let Op::Append(entries, _, _, _) = &mut job.op {
                        for (entry, id) in entries.iter_mut().zip(ids.by_ref()) {
                            fresh.put(id, std::mem::take(&mut entry.items));
                        }
                    }
                }
                drop(fresh);
                settled(&batch, counts);
                for (eraser, free_pages, answer) in ended {
                    let _ = answer.send((free_pages, erase::after_commit(&connection, &counts.erasures, &eraser)));
                }
                // The totals are exact whichever process wrote the spool; reading them back is one small query.
                if let Err(e) = recount(&connection, counts) {
                    tracing::warn!(spool = %path.display(), error = %e, "reading the spool's totals failed");
                }
                Ok(())
            }
            Err(e) => Err(Arc::new(e)),
        };
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Forgets, once their settlements are committed, the entries deliveries held, and the erasures that were
/// waiting for them.
fn settled(batch: &[Job], counts: &Counts) {
    let mut settled = batch
        .iter()
        .filter_map(|job| match &job.op {
            Op::Settle(settlements, _) => Some(settlements.iter().map(|s| s.id)),
            _ => None,
        })
        .flatten()
        .peekable();
    if settled.peek().is_none() {
        return;
    }
    let mut in_flight = counts.erasures.in_flight.lock().expect("in-flight lock poisoned");
    for id in settled {
        in_flight.remove(&id);
    }
    drop(in_flight);
    counts.erasures.prune();
}

/// The dedupe keys of an append.
fn keys_of(op: &Op) -> &[i64] {
    match op {
        Op::Append(_, _, keys, _) => keys,
        _ => &[],
    }
}

/// An erasure ended in a commit: its eraser, the free pages it scrubbed, and whom to answer after the checkpoint.
type Ended = (Arc<dyn Eraser>, u64, mpsc::Sender<(u64, bool)>);

/// What one commit changed in the counts.
struct Applied {
    /// The block of dedupe keys it recorded.
    block: Option<dedupe::Block>,
    /// The dedupe blocks it removed.
    evicted: dedupe::Evicted,
    /// The IDs of the appended entries, in the order of the jobs and their entries.
    appended: Vec<i64>,
    /// Rejections dropped to keep the table within its bound.
    rejections_dropped: u64,
    /// Erasures ended in it, with the free pages they scrubbed, to checkpoint and answer after the commit.
    ended: Vec<Ended>,
}

/// The durability settings of `connection`, for [`Op::Durability`] (whose asker may have gone: its answer is then
/// dropped).
fn durability(connection: &Connection) -> Result<Durability, rusqlite::Error> {
    Ok(Durability {
        journal_mode: connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?,
        synchronous: connection.pragma_query_value(None, "synchronous", |row| row.get(0))?,
    })
}

/// Removes the dedupe keys that left the window or the budget, in a transaction of its own; returns what it removed.
fn evict_alone(connection: &mut Connection, counts: &Counts) -> Result<dedupe::Evicted, rusqlite::Error> {
    let transaction = connection.transaction()?;
    let removed = dedupe::evict(&transaction, &counts.dedupe, crate::now_millis())?;
    transaction.commit()?;
    Ok(removed)
}

/// Applies a batch of jobs in one transaction, recording the dedupe keys of its appends, and with `evict`,
/// removes the keys that left the window or the budget in it too.
fn apply(
    connection: &mut Connection,
    batch: &[Job],
    max_rejections: u64,
    counts: &Counts,
    evict: bool,
) -> Result<Applied, rusqlite::Error> {
    let dedupe = &counts.dedupe;
    let transaction = connection.transaction()?;
    let mut rejected = false;
    let mut appended = Vec::new();
    let mut keyed_at = None;
    let mut ended = Vec::new();
    for job in batch {
        match &job.op {
            Op::Append(entries, rejections, keys, at) => {
                appended.extend(append(&transaction, entries, *at)?);
                rejected |= reject(&transaction, rejections, *at)?;
                // A block is dated by its newest keys (another node's, adopted, may be older than this node's).
                if !keys.is_empty() {
                    keyed_at = keyed_at.max(Some(*at));
                }
            }
            Op::Settle(settlements, at) => settle(&transaction, settlements, *at, counts)?,
            Op::Requeue(entries, ids, at, answer) => {
                let _ = answer.send(requeue(&transaction, entries, ids, *at, counts)?);
            }
            Op::Durability(answer) => drop(answer.send(durability(&transaction)?)),
            Op::EraseBegin(eraser, answer) => {
                let up_to = erase::begin(&transaction, &counts.erasures, eraser.clone())?;
                counts.fresh.lock().expect("fresh lock poisoned").clear();
                let _ = answer.send(up_to);
            }
            Op::EraseRewrite(eraser, scanned, answer) => {
                drop(answer.send(erase::rewrite(&transaction, &counts.erasures, &**eraser, scanned)?));
            }
            Op::EraseEnd(eraser, dead_letters, rejections, request, answer) => {
                let free_pages = erase::end(&transaction, dead_letters, rejections, *request)?;
                ended.push((eraser.clone(), free_pages, answer.clone()));
            }
            Op::EraseStop(eraser) => erase::stop(&transaction, &counts.erasures, eraser),
            Op::EraseReport(request, report) => drop(
                transaction
                    .execute("UPDATE erasure_requests SET report = ?2 WHERE id = ?1", params![request, report])?,
            ),
        }
    }
    let block = match keyed_at {
        Some(at) => dedupe::record(&transaction, batch.iter().flat_map(|job| keys_of(&job.op).iter().copied()), at)?,
        None => None,
    };
    let evicted = if evict { dedupe::evict(&transaction, dedupe, crate::now_millis())? } else { Default::default() };
    // Rowids grow by one per insert, so everything more than `max_rejections` below the newest is older than the
    // newest `max_rejections`.
    let rejections_dropped = match rejected {
        true => transaction.execute(
            "DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?1",
            params![i64::try_from(max_rejections).unwrap_or(i64::MAX)],
        )? as u64,
        false => 0,
    };
    transaction.commit()?;
    Ok(Applied { rejections_dropped, appended, block, evicted, ended })
}

/// Inserts new entries; their IDs, in order.
fn append(transaction: &Transaction, entries: &[NewEntry], at: i64) -> Result<Vec<i64>, rusqlite::Error> {
    let mut insert = transaction.prepare_cached(
        "INSERT INTO spool (destination, source_id, count, bytes, enqueued_at, items)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut ids = Vec::with_capacity(entries.len());
    for entry in entries {
        let bytes = entry.items.len() as i64;
        insert.execute(params![entry.destination, entry.source_id, entry.count, bytes, at, entry.items])?;
        ids.push(transaction.last_insert_rowid());
    }
    Ok(ids)
}

/// Keeps what a request carried but its sender's protocol refused; whether there was any.
fn reject(transaction: &Transaction, rejections: &[NewRejection], at: i64) -> Result<bool, rusqlite::Error> {
    let mut insert = transaction.prepare_cached(
        "INSERT INTO rejected (at, source_id, position, field, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in rejections {
        insert.execute(params![at, r.source_id, r.index, r.field, r.reason, r.message])?;
    }
    Ok(!rejections.is_empty())
}

/// Records deliveries: dead letters moved out, delivered entries deleted, the rest rescheduled with what is left.
/// What a delivery writes back of an entry an erasure covers passes through its eraser first.
fn settle(
    transaction: &Transaction,
    settlements: &[Settlement],
    at: i64,
    counts: &Counts,
) -> Result<(), rusqlite::Error> {
    let mut bury = transaction.prepare_cached(
        "INSERT INTO dead_letters (destination, source_id, message, enqueued_at, failed_at, reason)
         SELECT destination, source_id, ?2, enqueued_at, ?3, ?4 FROM spool WHERE id = ?1",
    )?;
    let mut delete = transaction.prepare_cached("DELETE FROM spool WHERE id = ?1")?;
    let mut reschedule = transaction.prepare_cached(
        "UPDATE spool SET items = ?2, count = ?3, bytes = ?6, attempts = attempts + 1,
         next_attempt_at = ?4, last_error = ?5 WHERE id = ?1",
    )?;
    for settlement in settlements {
        let erasers = counts.erasures.for_entry(settlement.id);
        for (message, reason) in &settlement.dead {
            if !erasers.iter().any(|eraser| eraser.message(message)) {
                bury.execute(params![settlement.id, message, at, reason])?;
            }
        }
        let erased = settlement.retry.as_ref().and_then(|retry| erased_retry(retry, &erasers));
        match erased.as_ref().or(settlement.retry.as_ref()) {
            Some(retry) if retry.count == 0 => drop(delete.execute(params![settlement.id])?),
            None => drop(delete.execute(params![settlement.id])?),
            Some(retry) => drop(reschedule.execute(params![
                settlement.id,
                retry.items,
                retry.count,
                retry.at,
                retry.reason,
                retry.items.len() as i64
            ])?),
        }
    }
    Ok(())
}

/// What is left of `retry` once `erasers` have taken their messages out, if they took any.
fn erased_retry(retry: &Retry, erasers: &[Arc<dyn Eraser>]) -> Option<Retry> {
    let mut left: Option<Retry> = None;
    for eraser in erasers {
        let items = left.as_ref().map_or(&retry.items, |l| &l.items);
        if let Some(rewrite) = eraser.entry(items) {
            left = Some(Retry { items: rewrite.items, count: rewrite.count, ..retry.clone() });
        }
    }
    left
}

/// Moves dead letters back to the queue as replayed entries (through the erasures in force: a replay may have read
/// its letters before one began). When a letter is gone since the replay read it (an erasure removed it, another
/// replay moved it), nothing of the job is kept (a savepoint of its own, so the other jobs of the commit stand) and
/// it answers `false`: a message erased or already queued again must not come back.
fn requeue(
    transaction: &Transaction,
    entries: &[NewEntry],
    ids: &[i64],
    at: i64,
    counts: &Counts,
) -> Result<bool, rusqlite::Error> {
    transaction.execute_batch("SAVEPOINT requeue")?;
    let mut delete = transaction.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
    let mut removed = 0;
    for id in ids {
        removed += delete.execute(params![id])?;
    }
    if removed < ids.len() {
        transaction.execute_batch("ROLLBACK TO requeue; RELEASE requeue")?;
        return Ok(false);
    }
    let erasers = counts.erasures.all();
    let mut insert = transaction.prepare_cached(
        "INSERT INTO spool (destination, source_id, count, bytes, enqueued_at, replayed, items)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
    )?;
    for entry in entries {
        let mut items = std::borrow::Cow::Borrowed(&entry.items);
        let mut count = entry.count;
        for eraser in &erasers {
            if let Some(rewrite) = eraser.entry(&items) {
                (items, count) = (std::borrow::Cow::Owned(rewrite.items), rewrite.count);
            }
        }
        if count > 0 {
            let bytes = items.len() as i64;
            insert.execute(params![entry.destination, entry.source_id, count, bytes, at, &*items])?;
        }
    }
    transaction.execute_batch("RELEASE requeue")?;
    Ok(true)
}
