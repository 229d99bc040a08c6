//! The per-stream registry of one destination: each stream's shard map (read with ListShards when first needed,
//! refreshed, and re-read after a sign of a reshard), its pacing windows, its per-shard counts and hot keys, and
//! the entries Kinesis throttled. At most [`MAX_TRACKED_STREAMS`] streams are kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_common::SignAs;
use sink::Sample;
use tokio::time::Instant;

use crate::api::{EntryResult, KinesisApi};
use crate::entry::RequestEntry;
use crate::metrics::StreamSamples;
use crate::pace::{Limits, StreamPace};
use crate::shards::ShardMap;

/// What one destination knows of the streams it sends to.
#[derive(Default)]
pub struct StreamRegistry {
    /// Each shard's share of its limits, when pacing is on.
    pacing: Option<Limits>,
    /// Whether shard maps are read: for pacing, or for aggregation by shard.
    needs_maps: bool,
    /// What is known of each stream sent to: its shards, their windows and counts, its hot keys.
    streams: Mutex<HashMap<Arc<str>, StreamPace>>,
    /// Entries Kinesis throttled, over every stream.
    throttled: AtomicU64,
}

impl StreamRegistry {
    /// A registry pacing each shard to `pacing` (or not at all), reading shard maps for pacing or, if `aggregate`,
    /// for aggregation.
    pub fn new(pacing: Option<Limits>, aggregate: bool) -> StreamRegistry {
        StreamRegistry { pacing, needs_maps: pacing.is_some() || aggregate, ..StreamRegistry::default() }
    }

    /// Entries Kinesis throttled so far, over every stream.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<Arc<str>, StreamPace>> {
        self.streams.lock().expect("stream state lock poisoned")
    }

    /// The shard map of `stream`, read with ListShards when first needed, every [`crate::pace::REFRESH_EVERY`],
    /// and after a sign of a reshard. `None` when it cannot be read: delivery goes on unpaced, with a warning.
    pub async fn shard_map(
        &self,
        api: &impl KinesisApi,
        identity: &SignAs,
        stream: &Arc<str>,
    ) -> Option<Arc<ShardMap>> {
        if !self.needs_maps {
            return None;
        }
        let now = Instant::now();
        let refresh = match self.streams().get(stream) {
            Some(pace) if !pace.needs_refresh(now) => return pace.map.clone(),
            Some(_) => true,
            None => false,
        };
        let map = match api.list_shards(identity, stream).await {
            Ok(shards) => Some(ShardMap::new(shards)),
            Err(e) => {
                tracing::warn!(
                    stream = &**stream,
                    "cannot read the stream's shards, so it is sent to unpaced and aggregated by key only until the \
                     next try in {}s (grant kinesis:ListShards): {e}",
                    crate::pace::REFRESH_EVERY.as_secs()
                );
                None
            }
        };
        let mut streams = self.streams();
        let pace = tracked(&mut streams, stream, now);
        if refresh || pace.map.is_none() {
            pace.refreshed(map, now);
        }
        pace.map.clone()
    }

    /// Marks the map of `stream` out of date (the stream was not found: maybe deleted and made again).
    pub fn mark_stale(&self, stream: &str) {
        self.streams().get_mut(stream).map(StreamPace::mark_stale);
    }

    /// Whether an answer showed that the map of `stream` is out of date.
    pub fn is_stale(&self, stream: &str) -> bool {
        self.streams().get(stream).is_some_and(StreamPace::is_stale)
    }

    /// The per-shard counts and hot keys of every stream, for `/metrics`.
    pub(crate) fn samples(&self) -> StreamSamples {
        let now = Instant::now();
        let mut samples = StreamSamples::default();
        for (stream, pace) in self.streams().iter_mut() {
            for (shard, c) in &pace.counts {
                let labels = vec![("stream", stream.to_string()), ("shard", shard.clone())];
                for (into, value) in [
                    (&mut samples.records, c.records),
                    (&mut samples.bytes, c.bytes),
                    (&mut samples.throttled, c.throttled),
                ] {
                    into.push(Sample { labels: labels.clone(), value });
                }
            }
            for (key, records, _) in pace.hot_keys(now, HOT_KEYS_SHOWN) {
                let labels = vec![("stream", stream.to_string()), ("key", key)];
                samples.hot_keys.push(Sample { labels, value: records });
            }
        }
        samples
    }

    /// The IDs of the shards of `stream` the pacer knows, in hash-key order.
    pub fn known_shards(&self, stream: &str) -> Vec<String> {
        let map = self.streams().get(stream).and_then(|p| p.map.clone());
        map.map(|m| m.shards().iter().map(|s| s.id.clone()).collect()).unwrap_or_default()
    }

    /// Waits until some of `pending` fit their shards' windows; returns those, and leaves the rest in `pending`.
    pub async fn admit(&self, stream: &str, entries: &[RequestEntry], pending: &mut Vec<usize>) -> Vec<usize> {
        let Some(limits) = self.pacing else { return std::mem::take(pending) };
        loop {
            let decision = match self.streams().get_mut(stream) {
                Some(pace) => pace.admit(Instant::now(), limits, entries, pending),
                None => return std::mem::take(pending),
            };
            match decision {
                Ok(admitted) => {
                    let taken: std::collections::HashSet<usize> = admitted.iter().copied().collect();
                    pending.retain(|i| !taken.contains(i));
                    return admitted;
                }
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Counts what a PutRecords call did per shard: delivered records and bytes, throttled entries, hot keys.
    pub fn note(&self, stream: &str, entries: &[RequestEntry], sent: &[usize], results: &[EntryResult]) {
        let now = Instant::now();
        let mut streams = self.streams();
        let pace = tracked(&mut streams, stream, now);
        for (&i, result) in sent.iter().zip(results) {
            match result {
                Ok(delivery) => pace.delivered(now, delivery.shard_id.as_deref(), &entries[i]),
                Err(error) if error.code == "ProvisionedThroughputExceededException" => {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    pace.throttled(&entries[i]);
                }
                Err(_) => {}
            }
        }
    }
}

/// The most streams a destination keeps shard maps, windows and counts for. A template over a field clients set
/// can name many streams; past this, the stream used longest ago is forgotten (its map is read again if it comes
/// back).
pub const MAX_TRACKED_STREAMS: usize = 1024;

/// The state of `stream`, made if it is new (forgetting the stream used longest ago when there are
/// [`MAX_TRACKED_STREAMS`]), marked used at `now`.
fn tracked<'m>(streams: &'m mut HashMap<Arc<str>, StreamPace>, stream: &str, now: Instant) -> &'m mut StreamPace {
    if !streams.contains_key(stream) {
        if streams.len() >= MAX_TRACKED_STREAMS
            && let Some(oldest) = streams.iter().min_by_key(|(_, p)| p.last_used).map(|(name, _)| name.clone())
        {
            streams.remove(&oldest);
        }
        streams.insert(Arc::from(stream), StreamPace::new(None, now));
    }
    let pace = streams.get_mut(stream).expect("inserted above");
    pace.last_used = now;
    pace
}

/// How many hot keys per stream `/metrics` shows.
pub const HOT_KEYS_SHOWN: usize = 10;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn streams_past_the_cap_forget_the_one_used_longest_ago() {
        let mut streams = HashMap::new();
        let start = Instant::now();
        for n in 0..MAX_TRACKED_STREAMS {
            tracked(&mut streams, &format!("s{n}"), start + Duration::from_millis(n as u64));
        }
        tracked(&mut streams, "s0", start + Duration::from_secs(10));
        tracked(&mut streams, "new", start + Duration::from_secs(11));
        assert_eq!(streams.len(), MAX_TRACKED_STREAMS);
        assert!(streams.contains_key("s0") && streams.contains_key("new"));
        assert!(!streams.contains_key("s1"), "s1 was used longest ago");
    }
}
