//! Delivery workers: one per destination, draining its spool entries into its sink.

use std::sync::Arc;
use std::time::Duration;

use segment_model::Message;
use sink::{Outcome, Record, Sink};
use spool::{Entry, Spool, now_millis};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// How many spool entries one delivery takes at most.
pub const BATCH: usize = 2_000;

/// The wait before retry `attempt` (from 1): doubling from 1 s, capped at 5 minutes. Retries never stop: a
/// message that was acknowledged stays in the spool until it is delivered or fails permanently.
pub fn retry_delay(attempt: i64) -> Duration {
    let seconds = 1u64.checked_shl(attempt.clamp(1, 30) as u32 - 1).unwrap_or(u64::MAX).min(300);
    Duration::from_secs(seconds)
}

/// One destination's worker.
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
}

impl Worker {
    /// Delivers until `stop` turns true, then flushes: every waiting message gets attempts, whatever its retry
    /// schedule, until none is left. The caller bounds the flush with a timeout.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let label = Metrics::destination(&self.name);
        loop {
            let flushing = *stop.borrow();
            let due = if flushing { self.spool.all_waiting(&self.name, BATCH).await } else { self.spool.due(&self.name, BATCH).await };
            let due = match due {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "reading the spool failed");
                    if *stop.borrow() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if due.is_empty() {
                if flushing {
                    return;
                }
                let next = self.spool.next_due_at(&self.name).await.ok().flatten();
                let wait = next.map_or(1_000, |at| (at - now_millis()).clamp(10, 1_000)) as u64;
                // Registering interest before sleeping means a store that lands now still wakes us.
                let stored = self.stored.notified();
                tokio::select! {
                    () = stored => {}
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if let Err(e) = self.deliver(due, &label).await {
                tracing::error!(destination = %self.name, error = %e, "recording delivery outcomes failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn deliver(&self, due: Vec<Entry>, label: &crate::metrics::Destination) -> Result<(), spool::SpoolError> {
        let mut records = Vec::with_capacity(due.len());
        let mut entries = Vec::with_capacity(due.len());
        let mut unreadable = Vec::new();
        for entry in due {
            match Message::from_slice(&entry.message) {
                Ok(message) => {
                    records.push(Record::new(Arc::from(entry.source_id.as_str()), message));
                    entries.push(entry);
                }
                // Only a spool written by another version could hold this; keep it for an operator.
                Err(e) => unreadable.push((entry.id, format!("the stored message is not valid: {e}"))),
            }
        }
        let outcomes = self.sink.deliver(records).await;
        let now = now_millis();
        let (mut delivered, mut retries, mut failures) = (Vec::new(), Vec::new(), unreadable);
        for (entry, outcome) in entries.iter().zip(outcomes) {
            match outcome {
                Outcome::Delivered(_) => {
                    delivered.push(entry.id);
                    let seconds = (now - entry.enqueued_at).max(0) as f64 / 1000.0;
                    self.metrics.delivery_latency.get_or_create(label).observe(seconds);
                }
                Outcome::Retryable(reason) => {
                    let at = now + retry_delay(entry.attempts + 1).as_millis() as i64;
                    retries.push((entry.id, at, reason));
                }
                Outcome::Failed(reason) => failures.push((entry.id, reason)),
            }
        }
        self.metrics.delivered.get_or_create(label).inc_by(delivered.len() as u64);
        self.metrics.retried.get_or_create(label).inc_by(retries.len() as u64);
        self.metrics.failed.get_or_create(label).inc_by(failures.len() as u64);
        if let Some((_, _, reason)) = retries.first() {
            tracing::warn!(destination = %self.name, count = retries.len(), %reason, "delivery failed; will retry");
        }
        for (id, reason) in &failures {
            tracing::error!(destination = %self.name, spool_id = id, %reason, "delivery failed permanently; moved to the dead-letter table");
        }
        if !delivered.is_empty() {
            self.spool.complete(delivered).await?;
        }
        if !retries.is_empty() {
            self.spool.retry_at(retries).await?;
        }
        if !failures.is_empty() {
            self.spool.dead_letter(failures).await?;
        }
        Ok(())
    }
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
