//! Shard-aware pacing: each shard of a stream takes 1,000 records and 1 MiB a second, so entries are admitted per
//! shard against a sliding one-second window, and what does not fit waits here instead of being throttled by
//! Kinesis. Also the per-shard counts `/metrics` shows and the hot keys of the last minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::entry::RequestEntry;
use crate::shards::{ShardMap, hash_of};

/// What a shard takes in a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Records a second.
    pub records: f64,
    /// Bytes (data plus partition key) a second.
    pub bytes: f64,
}

/// Kinesis's write limits per shard.
pub const SHARD_RECORDS_PER_SECOND: f64 = 1000.0;
/// 1 MiB a second.
pub const SHARD_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
/// The window an admitted entry counts in: Kinesis's second, plus slack for what happens between admission and
/// arrival (signing, the network, other requests in flight), so that two batches admitted a second apart do not
/// arrive within one of Kinesis's seconds.
const WINDOW: Duration = Duration::from_millis(1100);

impl Limits {
    /// `percent` of a shard's limits.
    pub fn percent(percent: u32) -> Limits {
        let share = f64::from(percent) / 100.0;
        Limits { records: SHARD_RECORDS_PER_SECOND * share, bytes: SHARD_BYTES_PER_SECOND * share }
    }
}

/// What was sent to one shard in the last second.
#[derive(Debug, Default)]
struct Window {
    sent: VecDeque<(Instant, u32, u64)>,
    records: u64,
    bytes: u64,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, records, bytes)) = self.sent.front() {
            if now.duration_since(at) < WINDOW {
                break;
            }
            self.sent.pop_front();
            self.records -= u64::from(records);
            self.bytes -= bytes;
        }
    }

    fn fits(&self, limits: Limits, records: u64, bytes: u64) -> bool {
        (self.records + records) as f64 <= limits.records && (self.bytes + bytes) as f64 <= limits.bytes
    }

    /// How long until `records` and `bytes` more fit.
    fn wait(&self, now: Instant, limits: Limits, records: u64, bytes: u64) -> Duration {
        let (mut kept_records, mut kept_bytes) = (self.records, self.bytes);
        for &(at, r, b) in &self.sent {
            kept_records -= u64::from(r);
            kept_bytes -= b;
            let fits = kept_records == 0
                || ((kept_records + records) as f64 <= limits.records && (kept_bytes + bytes) as f64 <= limits.bytes);
            if fits {
                return (at + WINDOW).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    fn add(&mut self, now: Instant, records: u32, bytes: u64) {
        self.sent.push_back((now, records, bytes));
        self.records += u64::from(records);
        self.bytes += bytes;
    }
}

/// Counts of one shard for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardCounts {
    /// Records Kinesis took.
    pub records: u64,
    /// Their bytes (data plus partition key).
    pub bytes: u64,
    /// Entries Kinesis throttled.
    pub throttled: u64,
}

/// One stream's shards as the pacer knows them.
#[derive(Debug)]
pub struct StreamPace {
    /// The map, when ListShards could be read.
    pub map: Option<Arc<ShardMap>>,
    /// When the map was read, and whether something since said it is out of date.
    fetched: Instant,
    stale: bool,
    /// One per shard of `map`, in its order.
    windows: Vec<Window>,
    /// Per shard ID; kept across refreshes, so counters never go back.
    pub counts: HashMap<String, ShardCounts>,
    hot: HotKeys,
    /// When a batch for the stream was last sent or counted.
    pub last_used: Instant,
}

/// How often a stream's map is read again without a sign of a reshard: on-demand streams add shards on their own.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

impl StreamPace {
    /// The state for a map just read.
    pub fn new(map: Option<ShardMap>, now: Instant) -> StreamPace {
        let windows = map.as_ref().map_or(0, |m| m.shards().len());
        StreamPace {
            windows: (0..windows).map(|_| Window::default()).collect(),
            map: map.map(Arc::new),
            fetched: now,
            stale: false,
            counts: HashMap::new(),
            hot: HotKeys::default(),
            last_used: now,
        }
    }

    /// Whether the map should be read again.
    pub fn needs_refresh(&self, now: Instant) -> bool {
        self.stale || now.duration_since(self.fetched) >= REFRESH_EVERY
    }

    /// Whether something said the map is out of date.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Takes a freshly read map (or keeps the old one when the read failed).
    pub fn refreshed(&mut self, map: Option<ShardMap>, now: Instant) {
        if let Some(map) = map {
            // A shard both maps hold keeps its window; the others start empty.
            let mut old: HashMap<String, Window> = match &self.map {
                Some(before) => before.shards().iter().map(|s| s.id.clone()).zip(self.windows.drain(..)).collect(),
                None => HashMap::new(),
            };
            self.windows = map.shards().iter().map(|s| old.remove(&s.id).unwrap_or_default()).collect();
            self.map = Some(Arc::new(map));
        }
        self.fetched = now;
        self.stale = false;
    }

    /// Marks the map out of date: a record landed on a shard it does not know, or the stream answered that a
    /// shard or the stream is gone.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// The shard ID of `entry` under the current map.
    pub fn shard_of(&self, entry: &RequestEntry) -> Option<&str> {
        let map = self.map.as_ref()?;
        map.index_of(hash_of(entry)).map(|i| map.shards()[i].id.as_str())
    }

    /// Which of `pending` (positions in `entries`) fit their shards' windows now, in order, keeping each shard's
    /// entries in order (an entry waits if an earlier one of its shard does). When none fits, `Err` holds how long
    /// until the first one will. Admitted entries are counted in their windows.
    pub fn admit(
        &mut self,
        now: Instant,
        limits: Limits,
        entries: &[RequestEntry],
        pending: &[usize],
    ) -> Result<Vec<usize>, Duration> {
        let Some(map) = self.map.clone() else { return Ok(pending.to_vec()) };
        let mut load: HashMap<usize, (u64, u64, bool)> = HashMap::new();
        let mut admitted = Vec::with_capacity(pending.len());
        let mut wait = Duration::MAX;
        for &i in pending {
            let Some(shard) = map.index_of(hash_of(&entries[i])) else {
                // No open shard takes it under this map: send it and let Kinesis place it.
                admitted.push(i);
                continue;
            };
            let window = &mut self.windows[shard];
            window.expire(now);
            let (records, bytes, blocked) = load.entry(shard).or_default();
            let size = entries[i].size() as u64;
            if *blocked {
                continue;
            }
            // A shard with nothing in its window takes one entry whatever its size, so a record above the byte
            // limit still goes.
            if window.fits(limits, *records + 1, *bytes + size) || (*records == 0 && window.sent.is_empty()) {
                *records += 1;
                *bytes += size;
                admitted.push(i);
            } else {
                *blocked = true;
                if *records == 0 {
                    wait = wait.min(window.wait(now, limits, 1, size));
                }
            }
        }
        if admitted.is_empty() {
            return Err(if wait == Duration::MAX { Duration::ZERO } else { wait.max(Duration::from_millis(1)) });
        }
        for (shard, (records, bytes, _)) in load {
            if records > 0 {
                self.windows[shard].add(now, records as u32, bytes);
            }
        }
        Ok(admitted)
    }

    /// Counts a delivered entry on the shard Kinesis named; a shard the map does not know marks it stale.
    pub fn delivered(&mut self, now: Instant, shard_id: Option<&str>, entry: &RequestEntry) {
        let known = self.map.as_ref().is_none_or(|m| shard_id.is_none_or(|id| m.position(id).is_some()));
        if !known {
            self.stale = true;
        }
        let id = shard_id.unwrap_or("unknown");
        let counts = match self.counts.get_mut(id) {
            Some(counts) => counts,
            None => self.counts.entry(id.to_owned()).or_default(),
        };
        counts.records += 1;
        counts.bytes += entry.size() as u64;
        self.hot.add(now, &entry.partition_key, entry.size() as u64);
    }

    /// Counts a throttled entry on the shard the map places it on.
    pub fn throttled(&mut self, entry: &RequestEntry) {
        let id = self.shard_of(entry).unwrap_or("unknown").to_owned();
        self.counts.entry(id).or_default().throttled += 1;
    }

    /// The `n` partition keys with the most records over the last minute, with their records and bytes.
    pub fn hot_keys(&mut self, now: Instant, n: usize) -> Vec<(String, u64, u64)> {
        self.hot.top(now, n)
    }
}

/// Partition keys by volume over the last minute, in six ten-second buckets. Each bucket keeps at most
/// [`HOT_KEYS_TRACKED`] keys: past that, the smallest counts are dropped (keys that hot stay), so memory is bounded
/// whatever the key space.
#[derive(Debug, Default)]
struct HotKeys {
    buckets: VecDeque<Bucket>,
}

/// Ten seconds of records and bytes per key, and when they started.
type Bucket = (Instant, HashMap<String, (u64, u64)>);

/// Keys kept per ten-second bucket.
pub const HOT_KEYS_TRACKED: usize = 2048;
const BUCKET: Duration = Duration::from_secs(10);

impl HotKeys {
    fn expire(&mut self, now: Instant) {
        while self.buckets.front().is_some_and(|(at, _)| now.duration_since(*at) >= Duration::from_secs(60)) {
            self.buckets.pop_front();
        }
    }

    /// Counts one record of `bytes` under `key`.
    fn add(&mut self, now: Instant, key: &str, bytes: u64) {
        self.expire(now);
        if self.buckets.back().is_none_or(|(at, _)| now.duration_since(*at) >= BUCKET) {
            self.buckets.push_back((now, HashMap::new()));
        }
        let (_, keys) = self.buckets.back_mut().expect("a bucket was just made");
        if let Some(entry) = keys.get_mut(key) {
            entry.0 += 1;
            entry.1 += bytes;
            return;
        }
        if keys.len() >= HOT_KEYS_TRACKED {
            // Keep the heavier half: amortized, each insertion pays O(1) for this.
            let mut counts: Vec<u64> = keys.values().map(|v| v.0).collect();
            let middle = counts.len() / 2;
            let (_, &mut cut, _) = counts.select_nth_unstable(middle);
            keys.retain(|_, v| v.0 > cut);
        }
        keys.insert(key.to_owned(), (1, bytes));
    }

    fn top(&mut self, now: Instant, n: usize) -> Vec<(String, u64, u64)> {
        self.expire(now);
        let mut total: HashMap<&str, (u64, u64)> = HashMap::new();
        for (_, keys) in &self.buckets {
            for (key, (records, bytes)) in keys {
                let t = total.entry(key).or_default();
                t.0 += records;
                t.1 += bytes;
            }
        }
        let mut top: Vec<(String, u64, u64)> = total.into_iter().map(|(k, (r, b))| (k.to_owned(), r, b)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::shards::Shard;

    fn entries(n: usize, size: usize) -> Vec<RequestEntry> {
        (0..n)
            .map(|i| RequestEntry {
                partition_key: format!("k{i}"),
                explicit_hash_key: None,
                data: Bytes::from(vec![b'x'; size.saturating_sub(format!("k{i}").len())]),
            })
            .collect()
    }

    fn one_shard(now: Instant) -> StreamPace {
        StreamPace::new(Some(ShardMap::new(vec![Shard { id: "s0".into(), start: 0, end: u128::MAX }])), now)
    }

    #[test]
    fn a_shard_takes_its_limit_a_second() {
        let now = Instant::now();
        let mut pace = one_shard(now);
        let all = entries(2500, 10);
        let pending: Vec<usize> = (0..all.len()).collect();
        let first = pace.admit(now, Limits::percent(100), &all, &pending).unwrap();
        assert_eq!(first, (0..1000).collect::<Vec<_>>(), "in order, up to 1,000 records");
        let wait = pace.admit(now, Limits::percent(100), &all, &pending[1000..]).unwrap_err();
        assert_eq!(wait, WINDOW);
        let later = now + WINDOW - Duration::from_millis(1);
        assert!(pace.admit(later, Limits::percent(100), &all, &pending[1000..]).is_err());
        let second = pace.admit(now + WINDOW, Limits::percent(100), &all, &pending[1000..]).unwrap();
        assert_eq!(second.len(), 1000);
        // 150% lets half as many again through.
        let mut kpl = one_shard(now);
        assert_eq!(kpl.admit(now, Limits::percent(150), &all, &pending).unwrap().len(), 1500);
    }

    #[test]
    fn bytes_bound_too_and_a_big_record_still_goes_alone() {
        let now = Instant::now();
        let mut pace = one_shard(now);
        let big = entries(3, 600 * 1024);
        let admitted = pace.admit(now, Limits::percent(100), &big, &[0, 1, 2]).unwrap();
        assert_eq!(admitted, [0], "two 600 KiB records are more than 1 MiB");
        let mut small = one_shard(now);
        assert_eq!(small.admit(now, Limits::percent(50), &big, &[0]).unwrap(), [0], "alone, past the limit");
    }

    #[test]
    fn hot_keys_are_the_heaviest_of_the_last_minute() {
        let now = Instant::now();
        let mut hot = HotKeys::default();
        for i in 0..10_000u64 {
            hot.add(now, &format!("cold-{i}"), 10);
            if i % 10 == 0 {
                hot.add(now, "hot", 10);
            }
        }
        let top = hot.top(now, 1);
        assert_eq!(top, [("hot".to_owned(), 1000, 10_000)]);
        assert!(hot.buckets.iter().all(|(_, keys)| keys.len() <= HOT_KEYS_TRACKED));
        assert!(hot.top(now + Duration::from_secs(61), 5).is_empty(), "a minute later it has cooled");
    }
}
