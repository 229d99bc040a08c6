//! What a run will do: the export read (an `s3://` one fetched first), the diff against the state counted, and the
//! mass-removal guard applied before anything is sent.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use personas::definition::{ComputationConfig, DEFAULT_MAX_REMOVAL_SHARE};
use personas::diff::{Change, Counts, Step, diff};
use personas::message::Computation;
use personas::snapshot::{self, ReadOptions};
use personas::state::StateStore;

use super::options::{SyncOptions, SyncSummary};
use super::pace::CHANGES_PER_CHUNK;
use crate::config::Config;

/// What a run will do for one audience: the changes counted (and past the removal guard), and the diff ready to
/// stream them.
pub(super) struct Plan {
    pub(super) counts: Counts,
    /// Chunks of changes, as the diff produces them.
    pub(super) incoming: tokio::sync::mpsc::Receiver<Vec<Change>>,
    /// The blocking task that diffs, told to go on.
    pub(super) differ: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Reads the snapshot, counts the diff against the state and applies the mass-removal guard. The diff runs twice
/// on a blocking thread: once to count (the guard needs the total before anything is sent), then, once the guard
/// passes, to stream changes to [`apply`] in chunks. Neither pass holds the state or (beyond the memory budget)
/// the snapshot in memory.
pub(super) async fn plan(
    config: &Config,
    options: &SyncOptions,
    definition: &ComputationConfig,
    computation: &Computation,
    summary: &mut SyncSummary,
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<Plan> {
    let (path, fetched) = locate_export(config, options, definition, err).await?;
    let (source, kind) = (definition.source.clone(), definition.kind);
    let read_options = ReadOptions {
        memory_budget: options.memory_budget,
        spill_dir: options.state_dir.clone(),
        name: definition.computation_id.clone(),
    };
    let snapshot = tokio::task::spawn_blocking(move || snapshot::read(&path, &source, kind, &read_options)).await??;
    for error in &snapshot.errors {
        writeln!(err, "{error}")?;
    }
    if snapshot.malformed > snapshot.errors.len() as u64 {
        writeln!(
            err,
            "{}: {} more malformed rows not shown",
            definition.name,
            snapshot.malformed - snapshot.errors.len() as u64
        )?;
    }
    summary.malformed = snapshot.malformed;
    writeln!(err, "{}: {} members read ({})", definition.name, snapshot.count, snapshot.strategy())?;

    let state_dir = options.state_dir.clone();
    let id = computation.computation_id.clone();
    let removed = computation.removed_value().to_owned();
    let full_resync = options.full_resync;
    let (chunks, incoming) = tokio::sync::mpsc::channel::<Vec<Change>>(4);
    let (counted, counts) = tokio::sync::oneshot::channel::<Counts>();
    let (go, proceed) = std::sync::mpsc::channel::<bool>();
    let differ = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // A fetched export stays until the diff is done: a sorted export is read again by each pass.
        let _fetched = fetched;
        let store = StateStore::open(&state_dir)?;
        let counts = store.with_stored(&id, |rows| {
            snapshot.with_members(|members| Counts::of(diff(rows, members, &removed, full_resync)))
        })??;
        let _ = counted.send(counts);
        if !proceed.recv().unwrap_or(false) {
            return Ok(());
        }
        store.with_stored(&id, |rows| {
            snapshot.with_members(|members| stream_changes(diff(rows, members, &removed, full_resync), &chunks))
        })??;
        Ok(())
    });

    let counts = counts.await.context("counting the changes")?;
    summary.counts = counts;
    let share = definition.max_removal_share.unwrap_or(DEFAULT_MAX_REMOVAL_SHARE);
    if counts.removal_share() > share && !options.allow_mass_removal {
        let _ = go.send(false);
        differ.await??;
        bail!(
            "this run would remove {} of {} members ({:.0}%), more than the {:.0}% allowed: check the export, or pass \
             --allow-mass-removal",
            counts.removed,
            counts.previous_members,
            counts.removal_share() * 100.0,
            share * 100.0
        );
    }
    let _ = go.send(true);
    Ok(Plan { counts, incoming, differ })
}

/// A local folder removed when dropped.
pub(super) struct Fetched(PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The local path of the audience's export: its path in the config folder, or, for an `s3://` location, a folder
/// in the state folder its objects are fetched into (removed when the returned guard is dropped).
pub(super) async fn locate_export(
    config: &Config,
    options: &SyncOptions,
    definition: &ComputationConfig,
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<(PathBuf, Option<Fetched>)> {
    let source = &definition.source;
    let Some(url) = source.path.to_str().filter(|p| s3_export::is_s3(p)) else {
        return Ok((config.dir.join(&source.path), None));
    };
    let location = s3_export::Location::parse(url).map_err(anyhow::Error::msg)?;
    #[cfg(not(feature = "s3"))]
    {
        let _ = (location, options, err);
        anyhow::bail!(
            "{}: source.path {url} is on S3, and this tributary was built without S3 support (the `s3` feature, on \
             by default)",
            definition.name
        )
    }
    #[cfg(feature = "s3")]
    {
        let connection = s3_export::Connection { region: source.region.clone(), endpoint: source.endpoint.clone() };
        let client = s3_export::client(&connection).await;
        snapshot::remove_abandoned(&options.state_dir, "fetch-");
        let dir = options.state_dir.join(format!("fetch-{}-{}-0", definition.computation_id, std::process::id()));
        let guard = Fetched(dir.clone());
        let started = std::time::Instant::now();
        let files = s3_export::fetch(&client, &location, &dir, snapshot::glob_matches).await?;
        let bytes: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
        writeln!(
            err,
            "{}: fetched {} objects ({:.1} MiB) from {url} in {:.1}s",
            definition.name,
            files.len(),
            bytes as f64 / f64::from(1 << 20),
            started.elapsed().as_secs_f64()
        )?;
        Ok((dir, Some(guard)))
    }
}

/// Sends the changes of a diff to `chunks`, [`CHANGES_PER_CHUNK`] at a time, until the diff ends or the receiver
/// goes.
pub(super) fn stream_changes(steps: impl Iterator<Item = Step>, chunks: &tokio::sync::mpsc::Sender<Vec<Change>>) {
    let mut chunk = Vec::with_capacity(CHANGES_PER_CHUNK);
    for step in steps {
        if let Step::Change(change) = step {
            chunk.push(change);
            if chunk.len() == CHANGES_PER_CHUNK
                && chunks.blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHANGES_PER_CHUNK))).is_err()
            {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(chunk);
    }
}
