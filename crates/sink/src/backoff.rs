//! The one backoff shape every retrier here uses: doubling from a first delay up to a cap.

use std::time::Duration;

/// The delay after `failures` consecutive failures (from 1): `first`, then twice as long each time, never more
/// than `cap`. Zero failures is treated as one.
pub fn doubling(first: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_without_overflow() {
        let (second, minute) = (Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|n| doubling(second, minute, n).as_secs()).collect();
        assert_eq!(delays, [1, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(doubling(second, minute, u32::MAX), minute);
        assert_eq!(doubling(Duration::MAX, Duration::MAX, 40), Duration::MAX);
    }
}
