//! `tributary personas sync`: turn the change in each audience's membership since the last run into identify
//! calls, as Segment Personas does for a user-property destination.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, bail};
use personas::definition::{ComputationConfig, DEFAULT_MAX_REMOVAL_SHARE};
use personas::diff::{Change, Counts, Step, diff};
use personas::message::Computation;
use personas::snapshot;
use personas::state::StateStore;
use sink::{Outcome, Record};

use crate::config::{Config, Loaded};
use crate::route::{Routes, Target, fan_out};

/// How many changes are delivered (and recorded) together.
const CHANGES_PER_CHUNK: usize = 1_000;

/// Options of a sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Only this audience or trait (by name).
    pub audience: Option<String>,
    /// Print what would be sent; send nothing, change no state.
    pub dry_run: bool,
    /// Send every current member again.
    pub full_resync: bool,
    /// Let a run remove more than the audience's `max_removal_share`.
    pub allow_mass_removal: bool,
    /// Where the state lives.
    pub state_dir: PathBuf,
}

/// What a sync did for one audience or trait.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSummary {
    /// Its name.
    pub name: String,
    /// Changes found.
    pub counts: Counts,
    /// Changes delivered (or, in a dry run, printed).
    pub sent: u64,
    /// Changes that failed; the next run sends them again.
    pub failed: u64,
    /// Rows of the export that could not be used.
    pub malformed: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// Why the sync of this audience stopped, if it did.
    pub error: Option<String>,
}

impl SyncSummary {
    /// Whether everything went through.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.failed == 0 && self.malformed == 0
    }
}

/// Syncs every audience (or one). Problems with one audience are reported in its summary and do not stop others.
/// A dry run's calls go to `out`; malformed rows, progress and failures to `err`.
pub async fn sync(
    config: &Config,
    router: Option<&Routes>,
    options: &SyncOptions,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<Vec<SyncSummary>> {
    let selected: Vec<&Loaded<ComputationConfig>> = match &options.audience {
        Some(name) => match config.audience(name) {
            Some(audience) => vec![audience],
            None => {
                let known: Vec<&str> = config.audiences.iter().map(|a| a.config.name.as_str()).collect();
                bail!("no audience or trait is named {name:?} (known: {})", known.join(", "));
            }
        },
        None => config.audiences.iter().collect(),
    };
    if selected.is_empty() {
        bail!("{} defines no audiences or traits (audiences/*.toml)", config.dir.display());
    }
    let mut summaries = Vec::new();
    for audience in selected {
        let started = Instant::now();
        let mut summary = SyncSummary { name: audience.config.name.clone(), ..SyncSummary::default() };
        if let Err(e) = sync_one(config, router, options, audience, &mut summary, out, err).await {
            summary.error = Some(format!("{e:#}"));
        }
        summary.seconds = started.elapsed().as_secs_f64();
        summaries.push(summary);
    }
    Ok(summaries)
}

async fn sync_one(
    config: &Config,
    router: Option<&Routes>,
    options: &SyncOptions,
    audience: &Loaded<ComputationConfig>,
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let definition = audience.config.clone();
    let computation = Computation::from(&definition);
    let destinations: Vec<&Target> = match router {
        None => Vec::new(),
        Some(router) => definition.destinations.iter().filter_map(|name| router.get(name)).collect(),
    };
    if router.is_some() && destinations.is_empty() {
        bail!("none of its destinations ({}) is enabled", definition.destinations.join(", "));
    }

    let plan = plan(config, options, &definition, &computation, summary, err).await?;
    apply(plan, &definition, &computation, &destinations, options, summary, out, err).await
}

/// What a run will do for one audience: the changes counted (and past the removal guard), and the diff ready to
/// stream them.
struct Plan {
    counts: Counts,
    /// Chunks of changes, as the diff produces them.
    incoming: tokio::sync::mpsc::Receiver<Vec<Change>>,
    /// The blocking task that diffs, told to go on.
    differ: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Reads the snapshot, counts the diff against the state and applies the mass-removal guard. The diff runs twice
/// on a blocking thread: once to count (the guard needs the total before anything is sent), then, once the guard
/// passes, to stream changes to [`apply`] in chunks.
async fn plan(
    config: &Config,
    options: &SyncOptions,
    definition: &ComputationConfig,
    computation: &Computation,
    summary: &mut SyncSummary,
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<Plan> {
    let path = config.dir.join(&definition.source.path);
    let (source, kind) = (definition.source.clone(), definition.kind);
    let snapshot = tokio::task::spawn_blocking(move || snapshot::read(&path, &source, kind)).await??;
    for error in &snapshot.errors {
        writeln!(err, "{error}")?;
    }
    summary.malformed = snapshot.errors.len();

    let state_dir = options.state_dir.clone();
    let id = computation.computation_id.clone();
    let removed = computation.removed_value().to_owned();
    let full_resync = options.full_resync;
    let (chunks, incoming) = tokio::sync::mpsc::channel::<Vec<Change>>(4);
    let (counted, counts) = tokio::sync::oneshot::channel::<Counts>();
    let (go, proceed) = std::sync::mpsc::channel::<bool>();
    let differ = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let store = StateStore::open(&state_dir)?;
        let members = snapshot.members;
        let counts =
            store.with_stored(&id, |rows| Counts::of(diff(rows, members.iter().cloned(), &removed, full_resync)))?;
        let _ = counted.send(counts);
        if !proceed.recv().unwrap_or(false) {
            return Ok(());
        }
        store.with_stored(&id, |rows| {
            let mut chunk = Vec::with_capacity(CHANGES_PER_CHUNK);
            for step in diff(rows, members, &removed, full_resync) {
                if let Step::Change(change) = step {
                    chunk.push(change);
                    if chunk.len() == CHANGES_PER_CHUNK
                        && chunks
                            .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHANGES_PER_CHUNK)))
                            .is_err()
                    {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = chunks.blocking_send(chunk);
            }
        })?;
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

/// Sends the plan's changes to every destination (or, in a dry run, prints them to `out`) and records in the
/// state store what every destination took.
#[allow(clippy::too_many_arguments)] // The run's parts, each borrowed for the run.
async fn apply(
    plan: Plan,
    definition: &ComputationConfig,
    computation: &Computation,
    destinations: &[&Target],
    options: &SyncOptions,
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let Plan { counts, mut incoming, differ } = plan;
    let total = counts.added + counts.removed + counts.changed + if options.full_resync { counts.unchanged } else { 0 };
    let progress = Progress::new(&definition.name, total);
    let writer = if options.dry_run { None } else { Some(Arc::new(Mutex::new(StateStore::open(&options.state_dir)?))) };
    let source: Arc<str> = Arc::from(definition.source_id());
    let mut last_failure = None;
    while let Some(chunk) = incoming.recv().await {
        let messages: Vec<_> = chunk
            .iter()
            .map(|change| {
                let mut message = computation.identify(change);
                message.enrich_with(time::OffsetDateTime::now_utc(), crate::commands::new_message_id);
                message
            })
            .collect();
        if options.dry_run {
            for message in &messages {
                writeln!(out, "{}", String::from_utf8_lossy(&message.to_json_vec()))?;
            }
            summary.sent += messages.len() as u64;
            progress.advance(messages.len() as u64, err);
            continue;
        }
        let mut delivered_everywhere = vec![true; chunk.len()];
        let batches = destinations
            .iter()
            .map(|d| (*d, messages.iter().map(|m| Record::new(source.clone(), m.clone())).collect()))
            .collect();
        for (destination, outcomes) in fan_out(batches).await {
            for (i, outcome) in outcomes.into_iter().enumerate() {
                if let Outcome::Retryable(reason) | Outcome::Failed(reason) = outcome {
                    delivered_everywhere[i] = false;
                    last_failure = Some(format!("{}: {reason}", destination.name));
                }
            }
        }
        let delivered: Vec<Change> =
            chunk.into_iter().zip(&delivered_everywhere).filter(|(_, ok)| **ok).map(|(c, _)| c).collect();
        summary.failed += delivered_everywhere.iter().filter(|ok| !**ok).count() as u64;
        summary.sent += delivered.len() as u64;
        let store = writer.clone().expect("not a dry run");
        let id = computation.computation_id.clone();
        tokio::task::spawn_blocking(move || store.lock().expect("state lock poisoned").record(&id, &delivered))
            .await??;
        progress.advance(delivered_everywhere.len() as u64, err);
    }
    differ.await??;
    progress.finish();
    if let Some(reason) = last_failure {
        writeln!(
            err,
            "{}: {} changes failed and will be sent again by the next run; last failure: {reason}",
            definition.name, summary.failed
        )?;
    }
    Ok(())
}

/// `tributary personas`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Diff each audience's export against the last run and send the changes.
    Sync {
        /// Only this audience or trait (by name).
        #[arg(long)]
        audience: Option<String>,
        /// Print the identify calls that would be sent; send nothing and change no state.
        #[arg(long)]
        dry_run: bool,
        /// Send every current member again.
        #[arg(long)]
        full_resync: bool,
        /// Allow a run to remove more than the audience's max_removal_share (default 50%).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Where the sync state lives.
        #[arg(long, default_value = ".tributary")]
        state_dir: PathBuf,
    },
}

/// Syncs the audiences: a dry run's calls go to `out`; each audience's summary line to `err`. Fails (exit code 1)
/// if any audience stopped, or had failed changes or malformed rows.
pub async fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let Action::Sync { audience, dry_run, full_resync, allow_mass_removal, state_dir } = action;
    let config = super::load(dir, err)?;
    let names: Vec<&str> = config
        .audiences
        .iter()
        .filter(|a| audience.as_ref().is_none_or(|only| *only == a.config.name))
        .flat_map(|a| a.config.destinations.iter().map(String::as_str))
        .collect();
    let routes = match dry_run {
        true => None,
        false => Some(Routes::build_only(&config, &super::base_credentials(), Some(&names)).await?),
    };
    let options = SyncOptions { audience, dry_run, full_resync, allow_mass_removal, state_dir };
    let summaries = sync(&config, routes.as_ref(), &options, out, err).await?;
    let verb = if dry_run { "would send" } else { "sent" };
    for s in &summaries {
        writeln!(
            err,
            "{}: {} added, {} removed, {} changed, {} unchanged, {} failed, {} malformed rows; {verb} {} in {:.2}s",
            s.name,
            s.counts.added,
            s.counts.removed,
            s.counts.changed,
            s.counts.unchanged,
            s.failed,
            s.malformed,
            s.sent,
            s.seconds
        )?;
        if let Some(error) = &s.error {
            writeln!(err, "{}: stopped: {error}", s.name)?;
        }
    }
    let clean = summaries.iter().all(SyncSummary::is_clean);
    Ok(if clean { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

/// A progress bar on a terminal; plain lines at every tenth otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    total: u64,
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(name: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {human_pos}/{human_len} changes, {eta} left")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar
        });
        Progress { bar, name: name.to_owned(), total, done: Default::default() }
    }

    fn advance(&self, by: u64, err: &mut dyn std::io::Write) {
        let before = self.done.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.inc(by),
            None => {
                let tenth = (self.total / 10).max(1);
                if (before + by) / tenth > before / tenth {
                    // Progress is a courtesy: a line that cannot be written does not stop the sync.
                    let _ =
                        writeln!(err, "{}: {}/{} changes sent", self.name, (before + by).min(self.total), self.total);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
