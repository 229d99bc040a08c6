//! Reading the current members from a warehouse export, in bounded memory.
//!
//! An export is one file, a folder of parts or a glob of them, each CSV or NDJSON (optionally gzip-compressed) or
//! Parquet
//! ([`parts`]). Its members come out sorted by storage key, each identity once (the last row of an identity wins),
//! in one of three ways, decided while reading:
//! - within the memory budget: held and sorted in memory;
//! - larger, and already in key order (an export written with `ORDER BY`): nothing is held, and each pass over
//!   the members reads the export again;
//! - larger and unsorted: sorted runs of at most the budget are spilled to the state folder and merged
//!   ([`sort`]).

mod config;
mod error;
pub mod parts;
mod sort;

use std::path::{Path, PathBuf};

pub use parts::{Format, Part, glob_matches};
pub use sort::remove_abandoned;

pub use self::config::SnapshotConfig;
pub use self::error::SnapshotError;
use crate::diff::Member;
use crate::kind::Kind;

/// The memory budget when none is given: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 << 20;

/// The smallest memory budget worth working with: 4 MiB. Below it a sorted run holds so few members that an export
/// of millions spills hundreds of thousands of run files, and the merge's buffers alone outgrow the budget.
pub const MIN_MEMORY_BUDGET: usize = 4 << 20;

/// How many unusable rows are kept to report; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

/// A row that could not be used; the rest of the file still is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file.
    pub file: PathBuf,
    /// The row's line number (1 is the first line, the CSV header).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Why `config`'s `path` names no export: a format this reads by its extension, and for `s3://` a bucket name and
/// a glob only in the last part of the key. The one check of `[source] path`.
pub fn check_path(config: &SnapshotConfig) -> Result<(), String> {
    Format::of(&config.path)?;
    match config.path.to_str().filter(|p| s3_export::is_s3(p)) {
        Some(location) => s3_export::Location::parse(location).map(drop),
        None => Ok(()),
    }
}

/// How to read an export.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The most memory the members may take before they are sorted on disk.
    pub memory_budget: usize,
    /// Where sorted runs go (the state folder); they are removed when the [`Snapshot`] is dropped.
    pub spill_dir: PathBuf,
    /// Names the runs' folder.
    pub name: String,
}

impl ReadOptions {
    /// The default budget, spilling to `spill_dir`.
    pub fn new(spill_dir: &Path, name: &str) -> ReadOptions {
        ReadOptions { memory_budget: DEFAULT_MEMORY_BUDGET, spill_dir: spill_dir.to_owned(), name: name.to_owned() }
    }
}

/// Where the sorted members are.
#[derive(Debug)]
enum Members {
    Memory(Vec<Member>),
    /// The export is in key order: read it again.
    Sorted {
        parts: Vec<Part>,
        config: SnapshotConfig,
        kind: Kind,
    },
    Spilled(sort::Runs),
}

/// The members of an export, sorted by storage key with each identity once.
#[derive(Debug)]
pub struct Snapshot {
    members: Members,
    /// The first [`MAX_REPORTED_ERRORS`] rows that could not be used.
    pub errors: Vec<RowError>,
    /// How many rows could not be used.
    pub malformed: u64,
    /// Rows that repeated an identity already seen; the last one's value counts.
    pub duplicates: u64,
    /// Members, each identity once.
    pub count: u64,
}

impl Snapshot {
    /// How the members are held: `"in memory"`, `"sorted export, streamed"` or `"N sorted runs on disk"`.
    pub fn strategy(&self) -> String {
        match &self.members {
            Members::Memory(_) => "in memory".to_owned(),
            Members::Sorted { .. } => "sorted export, streamed".to_owned(),
            Members::Spilled(runs) => format!("{} sorted runs on disk", runs.len()),
        }
    }

    /// Calls `with` on the members in key order, each identity once. Any number of passes may be made; an error
    /// while reading ends the stream and is returned after `with` returns.
    pub fn with_members<T>(
        &self,
        with: impl FnOnce(&mut dyn Iterator<Item = Member>) -> T,
    ) -> Result<T, SnapshotError> {
        match &self.members {
            Members::Memory(members) => Ok(with(&mut members.iter().cloned())),
            Members::Spilled(runs) => {
                let spill = |source| SnapshotError::Spill { dir: runs.dir_path().to_owned(), source };
                let mut error = None;
                let result = {
                    let mut merge = runs.merge(&mut error).map_err(spill)?;
                    with(&mut merge)
                };
                match error {
                    Some(e) => Err(spill(e)),
                    None => Ok(result),
                }
            }
            Members::Sorted { parts, config, kind } => {
                // The export is read on a thread of its own, in chunks, so that `with` pulls an iterator.
                let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Member>>(4);
                std::thread::scope(|scope| {
                    let reader = scope.spawn(move || -> Result<(), SnapshotError> {
                        let mut chunk = Vec::with_capacity(4096);
                        let mut stopped = false;
                        for part in parts {
                            let mut member = |m: Member| {
                                if stopped {
                                    return;
                                }
                                chunk.push(m);
                                if chunk.len() == 4096 {
                                    stopped =
                                        send.send(std::mem::replace(&mut chunk, Vec::with_capacity(4096))).is_err();
                                }
                            };
                            // Rows were reported by the first pass.
                            parts::read(
                                part,
                                config,
                                *kind,
                                &mut parts::Rows { member: &mut member, fail: &mut |_, _, _| {} },
                            )?;
                            if stopped {
                                return Ok(());
                            }
                        }
                        let _ = send.send(chunk);
                        Ok(())
                    });
                    let result = with(&mut sort::LastOfEachKey::new(receive.iter().flatten()));
                    drop(receive);
                    reader.join().expect("the export reader does not panic").map(|()| result)
                })
            }
        }
    }
}

/// What the first pass over an export found so far.
struct FirstPass<'o> {
    options: &'o ReadOptions,
    may_stream: bool,
    buffer: Vec<Member>,
    buffered_bytes: usize,
    runs: Option<sort::Runs>,
    /// Whether every key so far was at least the one before it; `last_key` is the one before.
    in_order: bool,
    last_key: Box<str>,
    /// The buffer was dropped because the export is in key order and larger than the budget.
    streaming: bool,
    rows: u64,
    duplicates_in_order: u64,
    /// Why the pass must stop: a spill failed, or (`None` inside) an export streamed in order turned out not to be.
    stop: Option<Option<SnapshotError>>,
}

fn spill_error(dir: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let dir = dir.to_owned();
    move |source| SnapshotError::Spill { dir, source }
}

impl FirstPass<'_> {
    /// Takes the next member in file order.
    fn take(&mut self, member: Member) {
        if self.stop.is_some() {
            return;
        }
        self.rows += 1;
        match (*member.key).cmp(&*self.last_key) {
            std::cmp::Ordering::Less => self.in_order = false,
            std::cmp::Ordering::Equal => self.duplicates_in_order += 1,
            std::cmp::Ordering::Greater => {}
        }
        if self.streaming {
            match self.in_order {
                true => self.last_key = member.key,
                false => self.stop = Some(None),
            }
            return;
        }
        if self.in_order {
            self.last_key = member.key.clone();
        }
        self.buffered_bytes += sort::text_cost(&member);
        self.buffer.push(member);
        if self.buffered_bytes + sort::slot_cost(self.buffer.capacity()) <= self.options.memory_budget {
            return;
        }
        if self.may_stream && self.in_order && self.runs.is_none() {
            self.streaming = true;
            self.buffer = Vec::new();
            return;
        }
        if let Err(e) = self.spill() {
            self.stop = Some(Some(e));
        }
    }

    /// Sorts the buffer and writes it as the next run.
    fn spill(&mut self) -> Result<(), SnapshotError> {
        let runs = match &mut self.runs {
            Some(runs) => runs,
            None => self.runs.insert(
                sort::Runs::create(&self.options.spill_dir, &self.options.name)
                    .map_err(spill_error(&self.options.spill_dir))?,
            ),
        };
        sort::sort_dedup(&mut self.buffer);
        runs.spill(&self.buffer).map_err(spill_error(runs.dir_path()))?;
        self.buffer = Vec::new();
        self.buffered_bytes = 0;
        Ok(())
    }

    /// Where the members ended up, with the duplicates dropped and the members counted.
    fn finish(
        mut self,
        parts: &[Part],
        config: &SnapshotConfig,
        kind: Kind,
    ) -> Result<(Members, u64, u64), SnapshotError> {
        if self.streaming {
            let members = Members::Sorted { parts: parts.to_vec(), config: config.clone(), kind };
            return Ok((members, self.duplicates_in_order, self.rows - self.duplicates_in_order));
        }
        if self.runs.is_none() {
            let duplicates = sort::sort_dedup(&mut self.buffer);
            let count = self.buffer.len() as u64;
            return Ok((Members::Memory(self.buffer), duplicates, count));
        }
        self.spill()?;
        let runs = self.runs.expect("spilled");
        // Counting members across runs needs one merge; it also proves the runs read back.
        let mut error = None;
        let count = runs.merge(&mut error).map_err(spill_error(runs.dir_path()))?.count() as u64;
        if let Some(e) = error {
            return Err(spill_error(runs.dir_path())(e));
        }
        Ok((Members::Spilled(runs), self.rows - count, count))
    }
}

/// Reads the export at `path` (resolved by the caller) for a computation of `kind`, in at most about
/// `options.memory_budget` of memory whatever the export's size. Rows that cannot be used are reported with file
/// and line and skipped.
pub fn read(
    path: &Path,
    config: &SnapshotConfig,
    kind: Kind,
    options: &ReadOptions,
) -> Result<Snapshot, SnapshotError> {
    let parts = parts::locate(path)?;
    match first_pass(&parts, config, kind, options, true)? {
        Some(snapshot) => Ok(snapshot),
        // Larger than the budget, in key order at first and out of order later: read again, sorting on disk.
        None => Ok(first_pass(&parts, config, kind, options, false)?.expect("a pass that may not stream finishes")),
    }
}

/// One pass over the export. With `may_stream`, an export found in key order once it outgrows the budget is
/// left on disk; if it then turns out not to be in order, the pass gives up (`None`).
fn first_pass(
    parts: &[Part],
    config: &SnapshotConfig,
    kind: Kind,
    options: &ReadOptions,
    may_stream: bool,
) -> Result<Option<Snapshot>, SnapshotError> {
    let mut pass = FirstPass {
        options,
        may_stream,
        buffer: Vec::new(),
        buffered_bytes: 0,
        runs: None,
        in_order: true,
        last_key: "".into(),
        streaming: false,
        rows: 0,
        duplicates_in_order: 0,
        stop: None,
    };
    let mut errors = Vec::new();
    let mut malformed = 0u64;
    for part in parts {
        let mut fail = |file: &Path, line: u64, message: String| {
            malformed += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(RowError { file: file.to_owned(), line, message });
            }
        };
        parts::read(part, config, kind, &mut parts::Rows { member: &mut |m| pass.take(m), fail: &mut fail })?;
        match pass.stop.take() {
            Some(Some(e)) => return Err(e),
            Some(None) => return Ok(None),
            None => {}
        }
    }
    let (members, duplicates, count) = pass.finish(parts, config, kind)?;
    Ok(Some(Snapshot { members, errors, malformed, duplicates, count }))
}
