//! Sorting members larger than memory: sorted runs spilled to disk, then merged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::diff::Member;

/// What one buffered member's strings cost in memory, with their allocator headers.
pub fn text_cost(member: &Member) -> usize {
    member.key.len() + member.value.len() + 32
}

/// What a buffer of `capacity` members costs besides their strings: the slots, and half again for the stable
/// sort's scratch space.
pub fn slot_cost(capacity: usize) -> usize {
    capacity * std::mem::size_of::<Member>() * 3 / 2
}

/// Sorts by key, keeping file order among equal keys, then keeps the last member of each key. Returns how many
/// were dropped.
pub fn sort_dedup(members: &mut Vec<Member>) -> u64 {
    // Stable, so the last row of an identity stays last among its equals.
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let before = members.len();
    members.dedup_by(|later, earlier| {
        if later.key == earlier.key {
            std::mem::swap(&mut earlier.value, &mut later.value);
            true
        } else {
            false
        }
    });
    (before - members.len()) as u64
}

/// A folder of sorted runs, removed when dropped.
#[derive(Debug)]
pub struct Runs {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Runs {
    /// A new folder for runs inside `parent` (the state folder), its own even among snapshots of one process.
    pub fn create(parent: &Path, name: &str) -> std::io::Result<Runs> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("sort-{name}-{}-{n}", std::process::id()));
        remove_abandoned(parent, "sort-");
        std::fs::create_dir_all(&dir)?;
        Ok(Runs { dir, files: Vec::new() })
    }

    /// The folder of the runs.
    pub fn dir_path(&self) -> &Path {
        &self.dir
    }

    /// How many runs were written.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Writes `members` (sorted, each key once) as the next run.
    pub fn spill(&mut self, members: &[Member]) -> std::io::Result<()> {
        let path = self.dir.join(format!("run-{:05}", self.files.len()));
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        for member in members {
            for text in [&member.key, &member.value] {
                out.write_all(&(text.len() as u32).to_le_bytes())?;
                out.write_all(text.as_bytes())?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        self.files.push(path);
        Ok(())
    }

    /// The members of every run merged in key order, the last run's member winning among equal keys (runs are
    /// written in file order). A read error ends the stream and is left in `error`.
    pub fn merge<'a>(&self, error: &'a mut Option<std::io::Error>) -> std::io::Result<LastOfEachKey<Merge<'a>>> {
        let mut readers = Vec::with_capacity(self.files.len());
        let mut heap = BinaryHeap::with_capacity(self.files.len());
        for (index, path) in self.files.iter().enumerate() {
            let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
            if let Some(member) = read_member(&mut reader)? {
                heap.push(Reverse(Head { key: member.key, run: index, value: member.value }));
            }
            readers.push(reader);
        }
        Ok(LastOfEachKey::new(Merge { readers, heap, error }))
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the folders named `PREFIX-NAME-PID-N` in `parent` whose process is gone (Linux's `/proc` says so):
/// what syncs that were killed left.
pub fn remove_abandoned(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let mut fields = rest.rsplitn(3, '-');
        let (Some(_n), Some(pid)) = (fields.next(), fields.next()) else { continue };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone && Path::new("/proc/self").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn read_member(reader: &mut impl Read) -> std::io::Result<Option<Member>> {
    let mut text = || -> std::io::Result<Option<Box<str>>> {
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0; u32::from_le_bytes(length) as usize];
        reader.read_exact(&mut bytes)?;
        String::from_utf8(bytes)
            .map(|s| Some(s.into_boxed_str()))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    let Some(key) = text()? else { return Ok(None) };
    let value =
        text()?.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a run ends mid-member"))?;
    Ok(Some(Member { key, value }))
}

/// The smallest unread member of one run.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    key: Box<str>,
    run: usize,
    value: Box<str>,
}

/// The iterator [`Runs::merge`] returns.
pub struct Merge<'a> {
    readers: Vec<BufReader<std::fs::File>>,
    heap: BinaryHeap<Reverse<Head>>,
    error: &'a mut Option<std::io::Error>,
}

impl Merge<'_> {
    fn pop(&mut self) -> Option<Head> {
        let Reverse(head) = self.heap.pop()?;
        match read_member(&mut self.readers[head.run]) {
            Ok(Some(next)) => self.heap.push(Reverse(Head { key: next.key, run: head.run, value: next.value })),
            Ok(None) => {}
            Err(e) => {
                *self.error = Some(e);
                self.heap.clear();
            }
        }
        Some(head)
    }
}

/// Every member of every run in key order; among equal keys, in run order, so the last is the latest row.
impl Iterator for Merge<'_> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        let head = self.pop()?;
        Some(Member { key: head.key, value: head.value })
    }
}

/// Keeps the last of each run of equal keys in a sorted stream.
pub struct LastOfEachKey<I: Iterator<Item = Member>> {
    inner: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = Member>> LastOfEachKey<I> {
    /// Over `members`, sorted by key.
    pub fn new(members: I) -> Self {
        LastOfEachKey { inner: members.peekable() }
    }
}

impl<I: Iterator<Item = Member>> Iterator for LastOfEachKey<I> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        let mut member = self.inner.next()?;
        while self.inner.peek().is_some_and(|next| next.key == member.key) {
            member = self.inner.next().expect("peeked");
        }
        Some(member)
    }
}
