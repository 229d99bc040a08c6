//! How far behind delivery is, so that ingest pushes back (`serve --max-lag`) instead of acknowledging messages
//! into a queue that cannot drain.
//!
//! A destination's lag is the age of the oldest message ingest stored for it that no delivery has failed yet. A
//! destination that is failing (degraded or stopped, its messages waiting on retries) has no lag: its backlog is
//! bounded by its byte budget instead, so one broken destination never makes ingest refuse traffic for the healthy
//! ones. Ingest refuses a request only when a destination its source feeds is further behind than the bound.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use spool::Spool;
use tokio::sync::watch;

use crate::delivery::health::{Health, State};

/// How often the lag is read from the spool: often enough that a refusal follows the backlog within a fraction of
/// a second, rarely enough that the reads cost nothing beside delivery's.
const EVERY: Duration = Duration::from_millis(250);

/// Each destination's lag, as last read, and the bound.
#[derive(Debug)]
pub struct Lag {
    /// The most a destination may lag before ingest answers 429; `None` turns the bound off.
    max: Option<Duration>,
    /// Destination names with their lag in milliseconds (0 when nothing waits or the destination is failing).
    destinations: Vec<(String, AtomicI64)>,
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
        Lag {
            max: (!max.is_zero()).then_some(max),
            destinations: destinations.into_iter().map(|name| (name, AtomicI64::new(0))).collect(),
        }
    }

    /// The position of `destination`, which ingest keeps for each source's destinations.
    pub fn position(&self, destination: &str) -> Option<usize> {
        self.destinations.iter().position(|(name, _)| name == destination)
    }

    /// How far behind `destination` is, as last read.
    pub fn of(&self, destination: &str) -> Duration {
        self.position(destination).map_or(Duration::ZERO, |at| self.at(at))
    }

    fn at(&self, position: usize) -> Duration {
        Duration::from_millis(self.destinations[position].1.load(Ordering::Relaxed).max(0) as u64)
    }

    /// The first of the destinations at `positions` that is further behind than the bound.
    pub fn over(&self, positions: &[usize]) -> Option<Behind<'_>> {
        let max = self.max?;
        positions.iter().find_map(|&at| {
            let lag = self.at(at);
            (lag > max).then(|| Behind { destination: &self.destinations[at].0, lag, max })
        })
    }

    /// Records that `destination` is `lag` behind.
    pub fn set(&self, position: usize, lag: Duration) {
        self.destinations[position].1.store(lag.as_millis() as i64, Ordering::Relaxed);
    }

    /// Reads every destination's lag from `spool` until `stop` turns true, logging when one passes the bound and
    /// when it is back within it, both as warnings: at the default level an operator sees the episode end too.
    pub async fn watch(&self, spool: Spool, health: &Health, mut stop: watch::Receiver<bool>) {
        let mut over = vec![false; self.destinations.len()];
        // A read that keeps failing (four times a second) is logged once, until a read succeeds again.
        let mut unreadable = vec![false; self.destinations.len()];
        while !*stop.borrow() {
            for (at, (name, _)) in self.destinations.iter().enumerate() {
                let lag = match health.report(name).state {
                    State::Ok => match spool.oldest_fresh_at(name).await {
                        Ok(oldest) => {
                            unreadable[at] = false;
                            oldest.map_or(0, |stored| (spool::now_millis() - stored).max(0) as u64)
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut unreadable[at], true) {
                                tracing::warn!(destination = %name, error = %e, "reading how far behind delivery is failed; the last lag read stands until a read succeeds");
                            }
                            continue;
                        }
                    },
                    State::Degraded | State::Stopped => 0,
                };
                let lag = Duration::from_millis(lag);
                self.set(at, lag);
                let now_over = self.max.is_some_and(|max| lag > max);
                if now_over != over[at] {
                    over[at] = now_over;
                    let max = self.max.unwrap_or_default();
                    if now_over {
                        tracing::warn!(destination = %name, lag = ?lag, max_lag = ?max, "delivery is further behind than --max-lag: its sources' requests are answered 429 until it catches up");
                    } else {
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

    fn lag(max_ms: u64, lags_ms: &[u64]) -> Lag {
        let lag = Lag::new((0..lags_ms.len()).map(|i| format!("d{i}")), Duration::from_millis(max_ms));
        for (at, &ms) in lags_ms.iter().enumerate() {
            lag.set(at, Duration::from_millis(ms));
        }
        lag
    }

    #[track_caller]
    fn check(max_ms: u64, lags_ms: &[u64], positions: &[usize], expected: Option<&str>) {
        let lag = lag(max_ms, lags_ms);
        assert_eq!(lag.over(positions).map(|b| b.destination.to_owned()).as_deref(), expected);
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
        let lag = lag(1_000, &[2_500]);
        assert_eq!(
            lag.over(&[0]),
            Some(Behind { destination: "d0", lag: Duration::from_millis(2_500), max: Duration::from_secs(1) })
        );
        assert_eq!(lag.of("d0"), Duration::from_millis(2_500));
        assert_eq!(lag.of("missing"), Duration::ZERO);
    }
}
