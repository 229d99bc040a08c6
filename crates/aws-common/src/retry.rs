//! The retry rules every AWS sink shares: which failures are retried within a delivery and which go back to the
//! runner, the backoff between rounds, and the fallback from a batch call a role may not make to the one-record
//! call it may. Kinesis (PutRecords, PutRecord) and Firehose (PutRecordBatch, PutRecord) send through these, so
//! that a destination of either kind retries, gives back and dead-letters alike.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use sink::Outcome;

use crate::error::{ApiError, ErrorKind};

/// Exponential backoff with full jitter: before attempt `n` (from 1), sleep a random time in
/// `[0, min(max, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times an entry is sent before it is reported as still retryable.
    pub max_attempts: u32,
    /// The first backoff ceiling.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub max: Duration,
}

impl RetryPolicy {
    /// The ceiling of the backoff after `failures` failed attempts.
    pub fn ceiling(&self, failures: u32) -> Duration {
        sink::backoff::doubling(self.base, self.max, failures)
    }

    /// A random wait under the ceiling after `failures` failed attempts.
    pub fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }
}

/// Where each entry of one delivery stands, round after round.
pub struct Settling {
    /// The outcome of each entry, once settled.
    pub outcomes: Vec<Option<Outcome>>,
    /// Entries of this round to send again.
    pub retry: Vec<usize>,
    /// Why each entry last failed.
    last_reason: Vec<String>,
}

impl Settling {
    /// `entries` entries, none settled.
    pub fn new(entries: usize) -> Settling {
        Settling { outcomes: vec![None; entries], retry: Vec::new(), last_reason: vec![String::new(); entries] }
    }

    /// Records a failed entry: what passes by itself is queued for the next round; what needs a fix is handed back
    /// as retryable at once, for the runner to schedule again; only an invalid record fails.
    pub fn settle_error(&mut self, i: usize, error: ApiError) {
        match error.kind {
            ErrorKind::Retryable | ErrorKind::ExpiredToken => {
                self.last_reason[i] = error.message;
                self.retry.push(i);
            }
            ErrorKind::AccessDenied | ErrorKind::AssumeRoleRefused | ErrorKind::Fixable => {
                self.outcomes[i] = Some(Outcome::Retryable(error.message));
            }
            ErrorKind::Invalid => self.outcomes[i] = Some(Outcome::Failed(error.message)),
        }
    }

    /// A whole call failed with `error`: each of `pending` settles by its kind. Returns whether credentials expired.
    pub fn settle_call(&mut self, pending: &[usize], error: &ApiError) -> bool {
        for &i in pending {
            self.settle_error(i, error.clone());
        }
        error.kind == ErrorKind::ExpiredToken
    }

    /// The batch call was denied and the one-record call, tried with the first of `pending`, failed with
    /// `single`: no call can deliver them now. They go back as retryable, with `denied_both` (naming both actions)
    /// when the one-record call was denied too; only the first fails, if the service refused it as invalid, since
    /// one record's validation error says nothing of the others.
    pub fn fallback_refused(&mut self, pending: &[usize], single: ApiError, denied_both: String) {
        let invalid = single.kind == ErrorKind::Invalid;
        let reason = if single.kind == ErrorKind::AccessDenied { denied_both } else { single.message };
        for (n, &i) in pending.iter().enumerate() {
            self.outcomes[i] = Some(match n == 0 && invalid {
                true => Outcome::Failed(reason.clone()),
                false => Outcome::Retryable(reason.clone()),
            });
        }
    }

    /// Hands back the entries `retry` holds as retryable, after `failures` rounds, with their last reasons.
    pub fn give_up(&mut self, retry: &[usize], failures: u32) {
        for &i in retry {
            let reason = format!("gave up after {failures} attempts: {}", self.last_reason[i]);
            self.outcomes[i] = Some(Outcome::Retryable(reason));
        }
    }

    /// One outcome per entry; an entry never settled is retryable.
    pub fn finish(self) -> Vec<Outcome> {
        self.outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Retryable("not sent".to_owned()))).collect()
    }
}

/// Two ascending position lists as one.
pub fn merge(mut a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    a.extend(b);
    a.sort_unstable();
    a
}

/// How long a destination sends one record per call before it tries its batch call again.
pub const RECHECK_BATCH: Duration = Duration::from_secs(10);

/// Whether a destination sends one record per call because its batch call was refused while the one-record call
/// was allowed (a role with Segment's own policy, which grants only PutRecord). After [`RECHECK_BATCH`] the batch
/// call is tried again, since a policy that was being changed (a revoked role being restored) may allow it now.
#[derive(Debug, Default)]
pub struct BatchFallback {
    since: Mutex<Option<Instant>>,
}

impl BatchFallback {
    /// Whether to send one record per call now.
    pub fn is_single(&self) -> bool {
        let mut since = self.since.lock().expect("fallback lock poisoned");
        match *since {
            Some(at) if at.elapsed() < RECHECK_BATCH => true,
            Some(_) => {
                *since = None;
                false
            }
            None => false,
        }
    }

    /// Switches to one record per call from now; returns whether it was not already, so the caller warns once.
    pub fn switch(&self) -> bool {
        self.since.lock().expect("fallback lock poisoned").replace(Instant::now()).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_to_the_cap() {
        let policy = RetryPolicy { max_attempts: 10, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        let ceilings: Vec<u128> = (1..=6).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(100), Duration::from_secs(1));
        for failures in 1..=6 {
            assert!(policy.backoff(failures) <= policy.ceiling(failures));
        }
    }

    #[test]
    fn failures_settle_by_kind() {
        let mut state = Settling::new(4);
        let error = |kind| ApiError { kind, code: None, message: format!("{kind:?}") };
        state.settle_error(0, error(ErrorKind::Retryable));
        state.settle_error(1, error(ErrorKind::AccessDenied));
        state.settle_error(2, error(ErrorKind::Invalid));
        state.settle_error(3, error(ErrorKind::ExpiredToken));
        assert_eq!(state.retry, [0, 3]);
        let retry = std::mem::take(&mut state.retry);
        state.give_up(&retry, 8);
        let outcomes = state.finish();
        assert_eq!(outcomes[0], Outcome::Retryable("gave up after 8 attempts: Retryable".into()));
        assert_eq!(outcomes[1], Outcome::Retryable("AccessDenied".into()));
        assert_eq!(outcomes[2], Outcome::Failed("Invalid".into()));
    }

    #[test]
    fn the_fallback_lasts_until_the_recheck() {
        let fallback = BatchFallback::default();
        assert!(!fallback.is_single());
        assert!(fallback.switch());
        assert!(!fallback.switch(), "a second switch is not news");
        assert!(fallback.is_single());
        *fallback.since.lock().unwrap() = Instant::now().checked_sub(RECHECK_BATCH);
        assert!(!fallback.is_single(), "the batch call is tried again after the recheck");
    }
}
