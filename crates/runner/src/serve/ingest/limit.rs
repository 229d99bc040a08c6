//! Per-source rate limits: a token bucket of messages per second, so that one noisy or abused source (a browser
//! write key is public) cannot take the server from the others.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket refilled at `rate` messages per second, holding at most one second of them.
///
/// A request is admitted while the bucket is not in debt and takes all of its messages, even into debt: a batch
/// larger than one second's worth still passes (it would never fit otherwise), and the debt makes the following
/// requests wait, so the rate over time holds.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A limit of `per_second` messages per second.
    pub fn new(per_second: u32) -> RateLimit {
        let rate = f64::from(per_second.max(1));
        RateLimit { rate, state: Mutex::new((rate, Instant::now())) }
    }

    /// The messages per second it allows.
    pub fn per_second(&self) -> f64 {
        self.rate
    }

    /// The tokens now, after refilling since the last look.
    fn refill(&self, state: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.rate).min(self.rate);
        state.1 = now;
    }

    /// How long a request must wait before it can be admitted; `None` when it can be now. Takes nothing.
    pub fn wait(&self) -> Option<Duration> {
        let mut state = self.state.lock().expect("rate limit lock poisoned");
        self.refill(&mut state, Instant::now());
        (state.0 < 0.0).then(|| Duration::from_secs_f64(-state.0 / self.rate))
    }

    /// Admits `messages`, or says how long to wait.
    pub fn admit(&self, messages: u64) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("rate limit lock poisoned");
        self.refill(&mut state, Instant::now());
        if state.0 < 0.0 {
            return Err(Duration::from_secs_f64(-state.0 / self.rate));
        }
        state.0 -= messages as f64;
        Ok(())
    }
}

/// Whole seconds to tell a client to wait: at least one.
pub fn seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_holds_the_rate() {
        let limit = RateLimit::new(100);
        assert!(limit.admit(100).is_ok());
        // The bucket is empty, not in debt: one more request passes and takes it into debt.
        assert!(limit.admit(250).is_ok());
        let wait = limit.admit(1).unwrap_err();
        assert!(wait > Duration::from_millis(2_400) && wait <= Duration::from_millis(2_500), "{wait:?}");
        assert!(limit.wait().is_some());
        assert_eq!(seconds(wait), 3);
        assert_eq!(seconds(Duration::from_millis(10)), 1);
    }
}
