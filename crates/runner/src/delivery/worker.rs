//! Delivery workers: one per destination, draining its spool entries into its sink.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use sink::{Outcome, Sink};
use spool::{Entry, Retry, Settlement, Spool, now_millis};
use tokio::sync::{Notify, watch};

use crate::delivery::health::Health;
use crate::delivery::stored;
use crate::metrics::Metrics;

/// How many spool entries one delivery takes at most; an entry is one request's messages, up to 2,500.
pub const ENTRIES_PER_READ: usize = 20;

/// How many deliveries of one destination are in flight at once.
pub const PIPELINE: usize = 4;

/// How many messages must be waiting, beyond those in flight, for another delivery to start beside them.
const FULL: u64 = 1_000;

/// The wait before retry `attempt` (from 1): doubling from 1 s, capped at 5 minutes. Retries go on until the
/// destination's `max_retry_duration`: a message that was acknowledged stays in the spool until it is delivered,
/// fails permanently, or outlasts that and becomes a dead letter.
pub fn retry_delay(attempt: i64) -> Duration {
    let failures = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
    sink::backoff::doubling(Duration::from_secs(1), Duration::from_secs(300), failures)
}

/// What a worker is asked to do, through its control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Deliver as messages fall due.
    Run,
    /// Deliver every waiting message now, whatever its retry schedule, until none is left; then return. The
    /// caller bounds it with a timeout (the drain).
    Flush,
    /// Take nothing more, settle the deliveries in flight, and return: a reload that removes or changes the
    /// destination. What waits stays in the spool for the next worker of that name.
    Retire,
}

/// One destination's worker.
#[derive(Clone)]
pub struct Worker {
    /// The destination's name.
    pub name: String,
    /// Its sink.
    pub sink: Arc<dyn Sink>,
    /// The spool.
    pub spool: Spool,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Signalled when new entries are stored.
    pub stored: Arc<Notify>,
    /// Where it reports its state.
    pub health: Arc<Health>,
    /// How long a message is retried before it moves to the dead-letter table.
    pub max_retry: Duration,
    /// The most bytes it may have waiting; beyond, its oldest waiting messages become dead letters. A reload that
    /// changes the number of destinations changes each one's share.
    pub max_backlog_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// The reason a message that overflowed its destination's backlog budget has in the dead-letter table.
pub const OVER_BUDGET: &str = "backlog budget exceeded";

impl Worker {
    /// The worker of `destination`, sharing the spool, counters, store signal and health reports of its process.
    /// Its sink is wrapped as `TRIBUTARY_TEST_FAULTS` asks (see [`crate::faults::with_test_faults`]).
    pub fn new(
        destination: &crate::route::Target,
        spool: &Spool,
        metrics: &Arc<Metrics>,
        stored: &Arc<Notify>,
        health: &Arc<Health>,
        max_backlog_bytes: u64,
    ) -> Worker {
        Worker {
            name: destination.name.clone(),
            sink: crate::faults::with_test_faults(destination.sink.clone()),
            spool: spool.clone(),
            metrics: metrics.clone(),
            stored: stored.clone(),
            health: health.clone(),
            max_retry: destination.max_retry,
            max_backlog_bytes: Arc::new(max_backlog_bytes.into()),
        }
    }

    /// Delivers until `control` says otherwise: [`Control::Flush`] delivers every waiting message, whatever its
    /// retry schedule, until none is left (the caller bounds it with a timeout); [`Control::Retire`] settles what
    /// is in flight and returns.
    ///
    /// Up to [`PIPELINE`] deliveries are in flight at once, each reading its entries, sending them and settling
    /// them; the next read starts while earlier ones are on the wire, so neither the spool's commits nor the
    /// stream's round trips leave the sink idle.
    pub async fn run(self, mut control: watch::Receiver<Control>) {
        let label = Metrics::destination(&self.name);
        self.health.running(&self.name);
        let mut in_flight = FuturesUnordered::new();
        // Entries being delivered, which reads skip, and the highest fresh entry taken, after which they resume.
        let mut busy: Vec<i64> = Vec::new();
        let mut cursor = 0i64;
        let mut messages_in_flight = 0u64;
        let mut budget = Budget::default();
        loop {
            let asked = *control.borrow();
            let flushing = asked == Control::Flush;
            if asked == Control::Retire && in_flight.is_empty() {
                return;
            }
            if let Err(e) = self.keep_within_budget(&busy, &mut budget, &label).await {
                tracing::error!(destination = %self.name, error = %e, "moving messages over the backlog budget failed");
            }
            // Another delivery beside those in flight only for a full one: while delivery keeps up, one delivery
            // at a time takes whatever arrived meanwhile, which costs less per message than many small ones.
            let waiting = self.spool.backlog(&self.name).messages;
            let worth_it = in_flight.is_empty() || waiting.saturating_sub(messages_in_flight) >= FULL;
            if in_flight.len() < PIPELINE && worth_it && asked != Control::Retire {
                let due_by = if flushing { i64::MAX } else { now_millis() };
                match self.spool.take(&self.name, ENTRIES_PER_READ, due_by, cursor, busy.clone()).await {
                    Ok(entries) if !entries.is_empty() => {
                        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
                        let count: u64 = entries.iter().map(|e| u64::from(e.count)).sum();
                        messages_in_flight += count;
                        cursor = entries.iter().filter(|e| e.fresh).map(|e| e.id).fold(cursor, i64::max);
                        busy.extend(&ids);
                        let (worker, label) = (&self, &label);
                        in_flight.push(async move { (ids, count, worker.deliver(entries, label).await) });
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(destination = %self.name, error = %e, "reading the spool failed");
                        if flushing && in_flight.is_empty() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if in_flight.is_empty() {
                if flushing {
                    return;
                }
                // Nothing in flight and nothing to take: the next read starts from the beginning again.
                cursor = 0;
                self.idle(&mut control).await;
                continue;
            }
            let stored = self.stored.notified();
            let room = in_flight.len() < PIPELINE;
            tokio::select! {
                // A delivery can take as long as a call's timeout; the budget is checked meanwhile.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                Some((ids, count, settled)) = in_flight.next() => {
                    busy.retain(|id| !ids.contains(id));
                    messages_in_flight -= count;
                    if let Err(e) = settled {
                        tracing::error!(destination = %self.name, error = %e, "recording delivery outcomes failed");
                        // The entries stay as they were: read them again.
                        cursor = 0;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                () = stored, if room => {}
                _ = control.changed(), if asked == Control::Run => {}
            }
        }
    }

    /// Waits, with nothing in flight and nothing due, until an entry is stored, the next retry falls due (at most a
    /// second), or `control` changes.
    async fn idle(&self, control: &mut watch::Receiver<Control>) {
        let next = self.spool.next_due_at(&self.name).await.ok().flatten();
        let wait = next.map_or(1_000, |at| (at - now_millis()).clamp(10, 1_000)) as u64;
        // Registering interest before sleeping means a store that lands now still wakes us.
        let stored = self.stored.notified();
        tokio::select! {
            () = stored => {}
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = control.changed() => {}
        }
    }

    /// Moves the oldest waiting messages of this destination to the dead-letter table while it holds more than its
    /// budget, so that a destination that is down for long never fills the spool for the others. Checked when
    /// entries are stored (at most every 20 ms) and at least every second; logged at most once a minute.
    async fn keep_within_budget(
        &self,
        busy: &[i64],
        budget: &mut Budget,
        label: &crate::metrics::Destination,
    ) -> Result<(), spool::SpoolError> {
        let now = std::time::Instant::now();
        if budget.checked.is_some_and(|at| now - at < Duration::from_millis(20)) {
            return Ok(());
        }
        budget.checked = Some(now);
        let backlog = self.spool.backlog(&self.name);
        // Replayed letters were stored already: the budget bounds what ingest adds.
        let waiting = backlog.bytes.saturating_sub(backlog.replayed_bytes);
        let max_backlog_bytes = self.max_backlog_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let mut excess = waiting.saturating_sub(max_backlog_bytes);
        while excess > 0 {
            let oldest = self.spool.oldest(&self.name, ENTRIES_PER_READ, busy.to_vec()).await?;
            if oldest.is_empty() {
                break;
            }
            let mut settlements = Vec::new();
            let mut moved = 0u64;
            for entry in oldest {
                if excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(entry.items.len() as u64);
                let items = bytes::Bytes::from(entry.items);
                let messages = stored::plain(&items)
                    .and_then(|plain| Ok(stored::triples(&plain)?.iter().map(|t| t.2.to_vec()).collect::<Vec<_>>()));
                let dead = match messages {
                    Ok(messages) => messages.into_iter().map(|m| (m, OVER_BUDGET.to_owned())).collect(),
                    Err(e) => vec![(items.to_vec(), format!("{OVER_BUDGET}; the stored entry cannot be read: {e}"))],
                };
                moved += u64::from(entry.count);
                settlements.push(Settlement { id: entry.id, retry: None, dead });
            }
            self.spool.settle(settlements).await?;
            self.metrics.overflowed.get_or_create(label).inc_by(moved);
            budget.moved += moved;
        }
        if budget.moved > 0 && budget.logged.is_none_or(|at| now - at >= Duration::from_secs(60)) {
            tracing::warn!(
                destination = %self.name,
                moved = budget.moved,
                budget = max_backlog_bytes,
                "over its backlog budget: the oldest waiting messages moved to the dead-letter table (replay them with `tributary dlq replay`)"
            );
            budget.logged = Some(now);
            budget.moved = 0;
        }
        Ok(())
    }

    /// Sends `due` and settles what became of each message.
    async fn deliver(&self, due: Vec<Entry>, label: &crate::metrics::Destination) -> Result<(), spool::SpoolError> {
        let (records, spans, mut settlements) = decode_due(due);
        let outcomes = self.sink.deliver(records).await;
        let now = now_millis();
        let (mut delivered, mut retried, mut failed) = (0u64, 0u64, 0u64);
        let mut last_failure = None;
        for (id, count, enqueued_at, attempts, plain, span) in spans {
            let start = span.start;
            let mut left = Vec::new();
            let mut reason = None;
            let mut dead_at = Vec::new();
            for i in span {
                match &outcomes[i] {
                    Outcome::Delivered(_) => delivered += 1,
                    Outcome::Retryable(why) => {
                        left.push(i - start);
                        reason.get_or_insert_with(|| why.clone());
                    }
                    Outcome::Failed(why) => dead_at.push((i - start, why.clone())),
                }
            }
            if let Some(why) = &reason
                && now.saturating_sub(enqueued_at) >= self.max_retry.as_millis() as i64
            {
                // Retried for as long as the destination allows: what is left becomes dead letters.
                let why = format!("gave up after {} of retries: {why}", crate::format::format_duration(self.max_retry));
                dead_at.extend(left.drain(..).map(|i| (i, why.clone())));
                reason = None;
            }
            let (mut retry, mut dead) = (None, Vec::new());
            if reason.is_some() || !dead_at.is_empty() {
                // The uncommon path reads the entry again for the messages that did not go through.
                let triples = stored::triples(&plain).expect("decoded above");
                for (i, why) in dead_at {
                    tracing::error!(destination = %self.name, message_id = %triples[i].0, reason = %why, "delivery failed permanently; moved to the dead-letter table");
                    dead.push((triples[i].2.to_vec(), why));
                }
                retry = reason.map(|reason| Retry {
                    items: stored::encode(left.iter().map(|&i| (triples[i].0, triples[i].1, triples[i].2))),
                    count: left.len() as u32,
                    at: now + retry_delay(attempts + 1).as_millis() as i64,
                    reason,
                });
            }
            failed += dead.len() as u64;
            retried += left.len() as u64;
            if let Some(retry) = &retry {
                tracing::warn!(destination = %self.name, count = retry.count, reason = %retry.reason, "delivery failed; will retry");
                last_failure = Some(retry.reason.clone());
            }
            let latency = (now - enqueued_at).max(0) as f64 / 1000.0;
            let histogram = self.metrics.delivery_latency.get_or_create(label);
            for _ in 0..(count as usize).saturating_sub(left.len() + dead.len()) {
                histogram.observe(latency);
            }
            settlements.push(Settlement { id, retry, dead });
        }
        self.metrics.delivered.get_or_create(label).inc_by(delivered);
        self.metrics.retried.get_or_create(label).inc_by(retried);
        self.metrics.failed.get_or_create(label).inc_by(failed);
        // Health follows the spool: a destination shows as failing once its retry is scheduled, not before.
        let settled = self.spool.settle(settlements).await;
        match &last_failure {
            Some(reason) => self.health.failing(&self.name, reason, now),
            None => self.health.delivered(&self.name),
        }
        settled
    }
}

/// One due entry in a delivery: its ID, message count, enqueue time, attempts, postcard bytes ([`stored::plain`]),
/// and where its records sit in the delivery's batch.
type Span = (i64, u32, i64, i64, bytes::Bytes, std::ops::Range<usize>);

/// Decodes due entries into one batch of records. An entry that cannot be read (only a spool written by another
/// version could hold one) is settled as a dead letter at once, kept whole for an operator.
fn decode_due(due: Vec<Entry>) -> (Vec<sink::Record>, Vec<Span>, Vec<Settlement>) {
    let mut records = Vec::new();
    let mut spans = Vec::with_capacity(due.len());
    let mut settlements = Vec::new();
    for entry in due {
        let items = bytes::Bytes::from(entry.items);
        match stored::decode(&entry.source_id, &items) {
            Ok((plain, decoded)) => {
                let span = records.len()..records.len() + decoded.len();
                records.extend(decoded);
                spans.push((entry.id, entry.count, entry.enqueued_at, entry.attempts, plain, span));
            }
            Err(e) => settlements.push(Settlement {
                id: entry.id,
                retry: None,
                dead: vec![(items.to_vec(), format!("the stored entry cannot be read: {e}"))],
            }),
        }
    }
    (records, spans, settlements)
}

/// When the backlog budget was last checked and logged, and what was moved since the last log line.
#[derive(Default)]
struct Budget {
    checked: Option<std::time::Instant>,
    logged: Option<std::time::Instant>,
    moved: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_to_five_minutes() {
        let delays: Vec<u64> = (1..=11).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(1_000).as_secs(), 300);
    }
}
