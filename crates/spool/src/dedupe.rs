//! The keys of messages already accepted, for dropping resends.
//!
//! A key is an opaque 64-bit number (the caller's keyed hash of a messageId). On disk, each commit that stores
//! messages with keys adds one row to `dedupe_blocks`: when, and its keys packed 8 bytes each. So keys are written
//! in the spool's own transaction (an attached database would not commit atomically with it in WAL mode), in order,
//! at about 8 bytes a key, and a commit adds one row however many keys it holds. In memory, the owner holds every
//! key in hash sets, sharded so that no lock is held long and no set grows in one large step: a look-up costs no
//! read of the disk. The owner loads the keys from disk when dedupe is set, adds a commit's keys after that commit
//! succeeds (so a key counts exactly when its messages are committed), and removes, about once a second, the blocks
//! older than the window and the oldest beyond the byte budget, from disk and then from memory.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use rusqlite::{Connection, Transaction, params};

/// The most keys one commit removes: a large removal (a budget lowered, a long stop) is spread over commits, so
/// that no commit waits long behind it.
const MAX_REMOVED_PER_COMMIT: u64 = 200_000;

/// How often the writer looks for keys to remove: the window is kept to within this.
pub(crate) const EVICT_EVERY_MILLIS: i64 = 1_000;

/// What a block row costs on disk beside its keys (the row's header, its `seq` and `at`, the cell's pointer), as
/// counted against the budget.
const BYTES_PER_BLOCK: u64 = 24;

/// What a key costs on disk.
pub const DISK_BYTES_PER_KEY: u64 = 8;

/// The most a key held costs in memory: a hash set's slot (8 bytes and a control byte) for each key, with the set
/// between 7/8 and 7/16 full as it doubles.
pub const MEMORY_BYTES_PER_KEY: u64 = 21;

/// How many hash sets the keys are spread over.
const SHARDS: usize = 64;

/// A hasher for keys that are uniformly random already: one multiplication spreads them over every bit a set uses.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_i64(&mut self, key: i64) {
        self.0 = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = HashSet<i64, BuildHasherDefault<KeyHasher>>;

/// Every key held, in memory.
#[derive(Debug)]
pub(crate) struct KeySet {
    shards: Vec<Mutex<Shard>>,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet { shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

impl KeySet {
    fn shard(&self, key: i64) -> std::sync::MutexGuard<'_, Shard> {
        // The top bits pick the shard; the set's own hash multiplies, so its buckets still see every bit.
        self.shards[(key as u64 >> 58) as usize % SHARDS].lock().expect("dedupe shard lock poisoned")
    }

    pub(crate) fn contains(&self, key: i64) -> bool {
        self.shard(key).contains(&key)
    }

    pub(crate) fn insert(&self, keys: impl IntoIterator<Item = i64>) {
        for key in keys {
            self.shard(key).insert(key);
        }
    }

    pub(crate) fn remove(&self, keys: impl IntoIterator<Item = i64>) {
        for key in keys {
            self.shard(key).remove(&key);
        }
    }

    /// The bytes the sets take: each slot of their tables, and its control byte.
    fn memory_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().expect("dedupe shard lock poisoned").capacity() as u64 * 9).sum()
    }

    fn clear(&self) {
        for shard in &self.shards {
            *shard.lock().expect("dedupe shard lock poisoned") = Shard::default();
        }
    }
}

/// The dedupe settings and the key store, shared by the handles and the writer.
#[derive(Debug, Default)]
pub(crate) struct DedupeState {
    /// Whether this handle keeps the key store: only the owner's, once dedupe is set (a command opening the spool
    /// beside a server neither loads nor removes the server's keys).
    pub(crate) managed: AtomicBool,
    /// How long a key counts, in milliseconds; 0 keeps none.
    pub(crate) window_millis: AtomicI64,
    /// The most bytes the blocks may take on disk; the oldest go first beyond it.
    pub(crate) max_bytes: AtomicU64,
    /// Keys held.
    pub(crate) keys: AtomicU64,
    /// Bytes the blocks take on disk, as counted against the budget.
    pub(crate) bytes: AtomicU64,
    /// When the newest block removed to stay within the budget was committed, in Unix milliseconds (0: none was):
    /// the keys after it are all held, so the window held reaches back to it.
    pub(crate) evicted_through_at: AtomicI64,
    /// When the oldest block held was committed, in Unix milliseconds (0: none is held).
    pub(crate) oldest_at: AtomicI64,
    /// The keys, in memory.
    pub(crate) held: KeySet,
}

/// What the key store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DedupeStats {
    /// Keys held.
    pub keys: u64,
    /// Bytes they take on disk, as counted against the budget.
    pub bytes: u64,
    /// Bytes their hash sets take in memory.
    pub memory_bytes: u64,
    /// When the oldest key held was committed, in Unix milliseconds.
    pub oldest_at: Option<i64>,
    /// The window keys are kept for, in milliseconds (0: none are).
    pub window_millis: i64,
    /// How far back the keys held reach without a gap, in milliseconds: the configured window, or less once keys
    /// within it were removed to stay within the budget.
    pub window_held_millis: i64,
}

impl DedupeState {
    pub(crate) fn stats(&self, now: i64) -> DedupeStats {
        let window = self.window_millis.load(Ordering::Relaxed);
        let held = match self.evicted_through_at.load(Ordering::Relaxed) {
            0 => window,
            at => window.min((now - at).max(0)),
        };
        let oldest = self.oldest_at.load(Ordering::Relaxed);
        DedupeStats {
            keys: self.keys.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            memory_bytes: self.held.memory_bytes(),
            oldest_at: (oldest != 0).then_some(oldest),
            window_millis: window,
            window_held_millis: held,
        }
    }

    /// Counts the block a commit that succeeded recorded, and holds its keys.
    pub(crate) fn committed(&self, block: Block, keys: impl IntoIterator<Item = i64>) {
        self.keys.fetch_add(block.keys, Ordering::Relaxed);
        self.bytes.fetch_add(block.bytes, Ordering::Relaxed);
        if self.oldest_at.load(Ordering::Relaxed) == 0 {
            self.oldest_at.store(block.at, Ordering::Relaxed);
        }
        if self.managed.load(Ordering::Relaxed) {
            self.held.insert(keys);
        }
    }

    /// Counts the removal of blocks once it is committed, and lets their keys go.
    pub(crate) fn removed(&self, evicted: Evicted) {
        if evicted.keys.is_empty() {
            return;
        }
        self.keys.fetch_sub(evicted.keys.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_sub(evicted.bytes, Ordering::Relaxed);
        self.oldest_at.store(evicted.oldest_left, Ordering::Relaxed);
        if let Some(at) = evicted.over_budget_at {
            self.evicted_through_at.store(at, Ordering::Relaxed);
        }
        self.held.remove(evicted.keys);
    }
}

/// Blocks removed in a commit: counted, and their keys let go, once the commit succeeds.
#[derive(Debug, Default)]
pub(crate) struct Evicted {
    /// Their keys.
    keys: Vec<i64>,
    /// The bytes they took, as counted against the budget.
    bytes: u64,
    /// When the oldest block left was committed (0: none is left).
    oldest_left: i64,
    /// When the newest block removed to stay within the budget (not for age) was committed.
    over_budget_at: Option<i64>,
}

/// A block written in a commit: counted once the commit succeeds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    keys: u64,
    bytes: u64,
    at: i64,
}

/// Records `keys` (every append's of one commit), committed at `at`, as one block in `transaction`.
pub(crate) fn record(
    transaction: &Transaction,
    keys: impl IntoIterator<Item = i64>,
    at: i64,
) -> Result<Option<Block>, rusqlite::Error> {
    let packed: Vec<u8> = keys.into_iter().flat_map(i64::to_le_bytes).collect();
    if packed.is_empty() {
        return Ok(None);
    }
    transaction
        .prepare_cached("INSERT INTO dedupe_blocks (at, keys) VALUES (?1, ?2)")?
        .execute(params![at, &packed])?;
    let keys = packed.len() as u64 / DISK_BYTES_PER_KEY;
    Ok(Some(Block { keys, bytes: packed.len() as u64 + BYTES_PER_BLOCK, at }))
}

/// Unpacks a block's keys.
fn unpack(packed: &[u8]) -> impl Iterator<Item = i64> + '_ {
    packed.chunks_exact(8).map(|k| i64::from_le_bytes(k.try_into().expect("chunks of 8")))
}

/// Removes, in `transaction`, the blocks older than the window and the oldest beyond the budget, oldest first and
/// about [`MAX_REMOVED_PER_COMMIT`] keys at most; returns what it removed, to be counted and to leave memory once
/// the removal is committed.
pub(crate) fn evict(transaction: &Transaction, state: &DedupeState, now: i64) -> Result<Evicted, rusqlite::Error> {
    let mut evicted = Evicted::default();
    if !state.managed.load(Ordering::Relaxed) {
        return Ok(evicted);
    }
    let cutoff = now - state.window_millis.load(Ordering::Relaxed);
    let max_bytes = state.max_bytes.load(Ordering::Relaxed);
    let held_bytes = state.bytes.load(Ordering::Relaxed);
    let mut through = None;
    {
        let mut oldest = transaction.prepare_cached("SELECT seq, at, keys FROM dedupe_blocks ORDER BY seq")?;
        let mut rows = oldest.query([])?;
        // Blocks are in the order of their commits, so the first one young enough and within the budget ends it.
        while let Some(row) = rows.next()? {
            let (seq, at): (i64, i64) = (row.get(0)?, row.get(1)?);
            let expired = at < cutoff;
            let within_budget = held_bytes.saturating_sub(evicted.bytes) <= max_bytes;
            if !expired && within_budget || evicted.keys.len() as u64 >= MAX_REMOVED_PER_COMMIT {
                evicted.oldest_left = at;
                break;
            }
            let packed = row.get_ref(2)?.as_blob()?;
            if !expired {
                evicted.over_budget_at = Some(at);
            }
            evicted.bytes += packed.len() as u64 + BYTES_PER_BLOCK;
            evicted.keys.extend(unpack(packed));
            through = Some(seq);
        }
    }
    if let Some(through) = through {
        transaction.prepare_cached("DELETE FROM dedupe_blocks WHERE seq <= ?1")?.execute(params![through])?;
    }
    Ok(evicted)
}

/// Counts the keys on disk, their bytes and the oldest one's time, and with `into_memory` loads them into memory:
/// the owner's start. With dedupe off the keys are only counted, for the writer to remove them, not loaded.
pub(crate) fn load(connection: &Connection, state: &DedupeState, into_memory: bool) -> Result<(), rusqlite::Error> {
    state.held.clear();
    let (mut keys, mut bytes, mut oldest) = (0u64, 0u64, 0i64);
    // `length` of a blob is read from its row's header: counting reads no key.
    let query = match into_memory {
        true => "SELECT at, length(keys), keys FROM dedupe_blocks ORDER BY seq",
        false => "SELECT at, length(keys) FROM dedupe_blocks ORDER BY seq",
    };
    let mut statement = connection.prepare(query)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        if oldest == 0 {
            oldest = row.get(0)?;
        }
        let length = row.get::<_, i64>(1)?.max(0) as u64;
        keys += length / DISK_BYTES_PER_KEY;
        bytes += length + BYTES_PER_BLOCK;
        if into_memory {
            state.held.insert(unpack(row.get_ref(2)?.as_blob()?));
        }
    }
    state.keys.store(keys, Ordering::Relaxed);
    state.bytes.store(bytes, Ordering::Relaxed);
    state.oldest_at.store(oldest, Ordering::Relaxed);
    Ok(())
}
