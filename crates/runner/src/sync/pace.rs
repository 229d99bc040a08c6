//! Pacing a sync to its destinations' rates.

use std::time::Duration;

use personas::diff::Change;
use tokio::time::Instant;

/// The most changes delivered (and recorded) together; a paced sync sends smaller chunks (a tenth of a second's).
pub const CHANGES_PER_CHUNK: usize = 1_000;

/// How long one paced slot lasts: a chunk is a tenth of a second's changes, so that no second (of the calls'
/// timestamps, or of the destination's clock) takes more than the rate.
const SLOT: Duration = Duration::from_millis(100);

/// Spaces chunks of changes so that each destination gets at most its rate. With several destinations, the
/// slowest sets the pace: every chunk goes to all of them.
#[derive(Debug)]
pub struct Pacer {
    /// Changes per second, if paced.
    rate: Option<f64>,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for destinations that each take `rates` changes per second (a destination's records per second
    /// over the calls each change makes there).
    pub fn new(rates: impl Iterator<Item = f64>) -> Pacer {
        Pacer { rate: rates.reduce(f64::min), next: None }
    }

    /// How many changes one slot sends: at least one, at most the unpaced chunk.
    pub fn per_slot(&self) -> usize {
        match self.rate {
            None => CHANGES_PER_CHUNK,
            Some(rate) => ((rate * SLOT.as_secs_f64()).floor() as usize).clamp(1, CHANGES_PER_CHUNK),
        }
    }

    /// Splits a chunk into slots.
    pub fn split(&self, mut chunk: Vec<Change>) -> Vec<Vec<Change>> {
        let size = self.per_slot();
        if chunk.len() <= size {
            return vec![chunk];
        }
        let mut parts = Vec::with_capacity(chunk.len().div_ceil(size));
        while chunk.len() > size {
            let rest = chunk.split_off(size);
            parts.push(std::mem::replace(&mut chunk, rest));
        }
        parts.push(chunk);
        parts
    }

    /// Waits until `changes` may go, and books their time from the moment they go: slots start at least their
    /// time apart, whatever the wake-up latency, so no second holds more than the rate; a sync that falls behind
    /// does not catch up in a burst.
    pub async fn wait(&mut self, changes: usize) {
        if let Some(next) = self.next {
            tokio::time::sleep_until(next).await;
        }
        self.book(Instant::now(), changes);
    }

    /// Books a slot of `changes` starting at `now`.
    fn book(&mut self, now: Instant, changes: usize) {
        if let Some(rate) = self.rate {
            self.next = Some(now + Duration::from_secs_f64(changes as f64 / rate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_their_size_over_the_rate() {
        let mut pacer = Pacer::new([2_000.0, 4_000.0].into_iter());
        assert_eq!(pacer.per_slot(), 200);
        let start = Instant::now();
        pacer.book(start, 200);
        assert_eq!(pacer.next, Some(start + Duration::from_millis(100)));
        let late = start + Duration::from_secs(60);
        pacer.book(late, 100);
        assert_eq!(pacer.next, Some(late + Duration::from_millis(50)), "booked from when the slot went");
        let mut unpaced = Pacer::new(std::iter::empty());
        unpaced.book(start, 1_000);
        assert_eq!(unpaced.next, None);
        assert_eq!(Pacer::new(std::iter::empty()).per_slot(), 1_000);
        assert_eq!(Pacer::new([3.0].into_iter()).per_slot(), 1);
    }
}
