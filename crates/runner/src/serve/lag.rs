//! How far behind delivery is, so that ingest pushes back (`serve --max-lag`) instead of acknowledging messages
//! into a queue that cannot drain.
//!
//! A destination's lag is the age of the oldest message ingest stored for it that no delivery has failed yet. A
//! destination that is failing (degraded or stopped, its messages waiting on retries) has no lag: its backlog is
//! bounded by its byte budget instead, so one broken destination never makes ingest refuse traffic for the healthy
//! ones. Ingest refuses a request only when a destination its source feeds is further behind than the bound.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use spool::Spool;
use tokio::sync::watch;

use crate::delivery::health::{Health, State};

/// How often the lag is read from the spool: often enough that a refusal follows the backlog within a fraction of
/// a second, rarely enough that the reads cost nothing beside delivery's.
const EVERY: Duration = Duration::from_millis(250);

/// Each delivered destination's lag, as last read, and the bound.
#[derive(Debug)]
pub struct Lag {
    /// The most a destination may lag before ingest answers 429; `None` turns the bound off.
    max: Option<Duration>,
    /// The destinations delivered now; a reload replaces the list, keeping the entries of those it keeps.
    tracked: RwLock<Vec<Arc<Lagging>>>,
}

/// One destination's lag, which each source that feeds it holds.
#[derive(Debug)]
pub struct Lagging {
    /// The destination's name.
    name: String,
    /// Its lag in milliseconds (0 when nothing waits or the destination is failing).
    millis: AtomicI64,
}

impl Lagging {
    fn get(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::Relaxed).max(0) as u64)
    }

    /// Records that the destination is `lag` behind.
    pub fn set(&self, lag: Duration) {
        self.millis.store(lag.as_millis() as i64, Ordering::Relaxed);
    }
}

/// A destination that is further behind than the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind<'a> {
    /// Its name.
    pub destination: &'a str,
    /// How far behind it is.
    pub lag: Duration,
    /// The bound it passed.
    pub max: Duration,
}

impl Lag {
    /// Lags of `destinations`, bounded by `max` (zero turns the bound off).
    pub fn new(destinations: impl IntoIterator<Item = String>, max: Duration) -> Lag {
        let lag = Lag { max: (!max.is_zero()).then_some(max), tracked: RwLock::default() };
        lag.track(destinations);
        lag
    }

    /// Makes `destinations` the ones whose lag is read: those already tracked keep their entry (and the sources
    /// holding it), new ones start at 0, and the others are no longer read.
    pub fn track(&self, destinations: impl IntoIterator<Item = String>) {
        let mut tracked = self.tracked.write().expect("lag lock poisoned");
        let next = destinations
            .into_iter()
            .map(|name| match tracked.iter().find(|t| t.name == name) {
                Some(known) => known.clone(),
                None => Arc::new(Lagging { name, millis: AtomicI64::new(0) }),
            })
            .collect();
        *tracked = next;
    }

    /// The lag of `destination`, which ingest keeps for each source's destinations.
    pub fn get(&self, destination: &str) -> Option<Arc<Lagging>> {
        self.tracked.read().expect("lag lock poisoned").iter().find(|t| t.name == destination).cloned()
    }

    /// How far behind `destination` is, as last read.
    pub fn of(&self, destination: &str) -> Duration {
        self.get(destination).map_or(Duration::ZERO, |t| t.get())
    }

    /// The first of `destinations` that is further behind than the bound.
    pub fn over<'a>(&self, destinations: &'a [Arc<Lagging>]) -> Option<Behind<'a>> {
        let max = self.max?;
        destinations.iter().find_map(|t| {
            let lag = t.get();
            (lag > max).then(|| Behind { destination: &t.name, lag, max })
        })
    }

    /// Reads every tracked destination's lag from `spool` until `stop` turns true, logging when one passes the
    /// bound and when it is back within it, both as warnings: at the default level an operator sees the episode
    /// end too.
    pub async fn watch(&self, spool: Spool, health: &Health, mut stop: watch::Receiver<bool>) {
        // Names past the bound, and names whose read keeps failing (four times a second), logged once until a
        // read succeeds again.
        let mut over = std::collections::HashSet::new();
        let mut unreadable = std::collections::HashSet::new();
        while !*stop.borrow() {
            let tracked = self.tracked.read().expect("lag lock poisoned").clone();
            for t in &tracked {
                let name = &t.name;
                let lag = match health.report(name).state {
                    State::Ok => match spool.oldest_fresh_at(name).await {
                        Ok(oldest) => {
                            unreadable.remove(name);
                            oldest.map_or(0, |stored| (spool::now_millis() - stored).max(0) as u64)
                        }
                        Err(e) => {
                            if unreadable.insert(name.clone()) {
                                tracing::warn!(destination = %name, error = %e, "reading how far behind delivery is failed; the last lag read stands until a read succeeds");
                            }
                            continue;
                        }
                    },
                    _ => 0,
                };
                let lag = Duration::from_millis(lag);
                t.set(lag);
                let now_over = self.max.is_some_and(|max| lag > max);
                if now_over != over.contains(name) {
                    let max = self.max.unwrap_or_default();
                    if now_over {
                        over.insert(name.clone());
                        tracing::warn!(destination = %name, lag = ?lag, max_lag = ?max, "delivery is further behind than --max-lag: its sources' requests are answered 429 until it catches up");
                    } else {
                        over.remove(name);
                        tracing::warn!(destination = %name, lag = ?lag, max_lag = ?max, "delivery is back within --max-lag: its sources' requests are taken again");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(max_ms: u64, lags_ms: &[u64]) -> (Lag, Vec<Arc<Lagging>>) {
        let lag = Lag::new((0..lags_ms.len()).map(|i| format!("d{i}")), Duration::from_millis(max_ms));
        let tracked: Vec<Arc<Lagging>> = (0..lags_ms.len()).map(|i| lag.get(&format!("d{i}")).unwrap()).collect();
        for (t, &ms) in tracked.iter().zip(lags_ms) {
            t.set(Duration::from_millis(ms));
        }
        (lag, tracked)
    }

    #[track_caller]
    fn check(max_ms: u64, lags_ms: &[u64], positions: &[usize], expected: Option<&str>) {
        let (lag, tracked) = lag(max_ms, lags_ms);
        let fed: Vec<Arc<Lagging>> = positions.iter().map(|&at| tracked[at].clone()).collect();
        assert_eq!(lag.over(&fed).map(|b| b.destination.to_owned()).as_deref(), expected);
    }

    #[test]
    fn only_a_fed_destination_past_the_bound_refuses() {
        check(30_000, &[0, 0], &[0, 1], None);
        check(30_000, &[30_000, 0], &[0, 1], None);
        check(30_000, &[30_001, 0], &[0, 1], Some("d0"));
        check(30_000, &[0, 45_000], &[0, 1], Some("d1"));
        // A source that does not feed the lagging destination is not refused.
        check(30_000, &[0, 45_000], &[0], None);
        check(30_000, &[0, 45_000], &[], None);
    }

    #[test]
    fn a_zero_bound_turns_it_off() {
        check(0, &[3_600_000], &[0], None);
    }

    #[test]
    fn behind_names_the_lag_and_the_bound() {
        let (lag, tracked) = lag(1_000, &[2_500]);
        assert_eq!(
            lag.over(&tracked),
            Some(Behind { destination: "d0", lag: Duration::from_millis(2_500), max: Duration::from_secs(1) })
        );
        assert_eq!(lag.of("d0"), Duration::from_millis(2_500));
        assert_eq!(lag.of("missing"), Duration::ZERO);
    }

    #[test]
    fn tracking_again_keeps_the_entries_of_destinations_kept() {
        let (lag, tracked) = lag(1_000, &[2_500, 10]);
        lag.track(["d1".to_owned(), "d2".to_owned()]);
        assert!(Arc::ptr_eq(&lag.get("d1").unwrap(), &tracked[1]), "a kept destination's sources still see its lag");
        assert!(lag.get("d0").is_none());
        assert_eq!(lag.of("d2"), Duration::ZERO);
    }
}
