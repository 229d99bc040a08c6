//! `tributary personas`: `sync` turns the change in each audience's membership since the last run into the calls
//! Segment Engage sends an event destination (identify, track, group); `log` and `runs` read what runs sent.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use personas::definition::{Call, ComputationConfig, DEFAULT_MAX_REMOVAL_SHARE};
use personas::diff::{Change, Counts, Step, diff};
use personas::message::Computation;
use personas::snapshot::{self, ReadOptions};
use personas::state::{Logged, Run, StateStore};
use sink::{Outcome, Record};

use crate::config::{Config, DestinationKind, Loaded};
use crate::route::{Routes, Target, fan_out};

mod log;
mod pace;

use pace::CHANGES_PER_CHUNK;
pub use pace::Pacer;

/// The default of an audience's `log_retention`.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The share of a Kinesis stream's write limit (1,000 records/s per open shard) a sync takes when its rate is not
/// set: room is left for the events `serve` delivers to the same stream.
const KINESIS_SHARE: f64 = 0.8;

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
    /// The most memory an export's members may take before they are sorted on disk.
    pub memory_budget: usize,
    /// Records per second per destination, over every audience's and destination's own setting.
    pub max_rate: Option<u32>,
}

/// What a sync did for one audience or trait.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSummary {
    /// Its name.
    pub name: String,
    /// The run's ID in the sync log (none for a dry run).
    pub run_id: Option<String>,
    /// Changes found.
    pub counts: Counts,
    /// Changes delivered (or, in a dry run, printed).
    pub sent: u64,
    /// Changes that failed; the next run sends them again.
    pub failed: u64,
    /// Rows of the export that could not be used.
    pub malformed: u64,
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

/// One destination of an audience: where, which calls, how fast.
struct Delivery<'a> {
    target: &'a Target,
    calls: Vec<Call>,
    /// Records per second, if paced.
    rate: Option<f64>,
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
    let state = match options.dry_run {
        true => None,
        false => Some(Arc::new(Mutex::new(StateStore::open(&options.state_dir)?))),
    };
    let mut summaries = Vec::new();
    for audience in selected {
        let started = Instant::now();
        let mut summary = SyncSummary { name: audience.config.name.clone(), ..SyncSummary::default() };
        let plan: Vec<(String, Vec<Call>)> = match router {
            None => Vec::new(),
            Some(router) => {
                let enabled = audience.config.destinations.iter().filter(|d| router.get(d).is_some());
                enabled.map(|d| (d.clone(), audience.config.calls_for(d))).collect()
            }
        };
        let run = state.as_ref().map(|state| begin_run(state, &audience.config, plan)).transpose()?;
        summary.run_id = run.as_ref().map(|(r, _)| r.run_id.clone());
        let run_number = run.as_ref().map(|(_, number)| *number);
        let context = RunContext { config, router, options, audience, state: state.clone(), run: run_number };
        if let Err(e) = sync_one(&context, &mut summary, out, err).await {
            summary.error = Some(format!("{e:#}"));
        }
        summary.seconds = started.elapsed().as_secs_f64();
        if let (Some(state), Some((run, _))) = (&state, run) {
            finish_run(state, run, &summary)?;
        }
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Opens a run in the sync log, after forgetting runs older than the audience's `log_retention`; returns it and
/// its number.
fn begin_run(
    state: &Mutex<StateStore>,
    definition: &ComputationConfig,
    plan: Vec<(String, Vec<Call>)>,
) -> anyhow::Result<(Run, i64)> {
    let retention = match &definition.log_retention {
        Some(text) => crate::config::parse_duration(text)?,
        None => DEFAULT_LOG_RETENTION,
    };
    let now = spool::now_millis();
    let mut state = state.lock().expect("state lock poisoned");
    state.prune_log(&definition.computation_id, now - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))?;
    let run = Run {
        run_id: crate::format::new_message_id(),
        computation: definition.computation_id.clone(),
        audience: definition.name.clone(),
        plan,
        started_ms: now,
        ..Run::default()
    };
    let number = state.begin_run(&run)?;
    Ok((run, number))
}

fn finish_run(state: &Mutex<StateStore>, mut run: Run, summary: &SyncSummary) -> anyhow::Result<()> {
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    run.finished_ms = Some(spool::now_millis());
    run.added = signed(summary.counts.added);
    run.removed = signed(summary.counts.removed);
    run.changed = signed(summary.counts.changed);
    run.unchanged = signed(summary.counts.unchanged);
    run.sent = signed(summary.sent);
    run.failed = signed(summary.failed);
    run.malformed = signed(summary.malformed);
    run.error = summary.error.clone();
    state.lock().expect("state lock poisoned").finish_run(&run)?;
    Ok(())
}

/// What one audience's run works with.
struct RunContext<'a> {
    config: &'a Config,
    router: Option<&'a Routes>,
    options: &'a SyncOptions,
    audience: &'a Loaded<ComputationConfig>,
    state: Option<Arc<Mutex<StateStore>>>,
    /// The run's number in the sync log (none for a dry run).
    run: Option<i64>,
}

async fn sync_one(
    context: &RunContext<'_>,
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let definition = &context.audience.config;
    let computation = Computation::from(definition);
    let mut deliveries = Vec::new();
    if let Some(router) = context.router {
        for name in &definition.destinations {
            let Some(target) = router.get(name) else { continue };
            let rate = rate_for(context.config, definition, name, context.options.max_rate, err).await;
            deliveries.push(Delivery { target, calls: definition.calls_for(name), rate });
        }
        if deliveries.is_empty() {
            bail!("none of its destinations ({}) is enabled", definition.destinations.join(", "));
        }
    }
    let plan = plan(context.config, context.options, definition, &computation, summary, err).await?;
    apply(plan, context, &computation, &deliveries, summary, out, err).await
}

/// The rate `destination` is sent at: `--max-rate`, else the audience's setting for it, else, for a Kinesis
/// destination, [`KINESIS_SHARE`] of its stream's open shards' 1,000 records/s (unpaced, with a warning, when the
/// stream cannot be described).
async fn rate_for(
    config: &Config,
    definition: &ComputationConfig,
    destination: &str,
    max_rate: Option<u32>,
    err: &mut (dyn std::io::Write + Send),
) -> Option<f64> {
    if let Some(rate) = max_rate.or(definition.max_rate_for(destination)) {
        return Some(f64::from(rate));
    }
    let kinesis = match config.destination(destination).map(|d| &d.config.kind) {
        Some(DestinationKind::Kinesis(kinesis)) => kinesis,
        _ => return None,
    };
    let described = async {
        let identity = config.identity_rule(destination)?.sign_as(definition.source_id());
        let client = kinesis_sink::setup::admin::client(kinesis, identity, &crate::route::base_credentials()).await?;
        // A templated stream is described by its default stream: the one calls without the fields land on.
        anyhow::Ok(kinesis_sink::setup::admin::describe(&client, kinesis.route().fixed()).await?)
    };
    match described.await {
        Ok(summary) if summary.open_shards > 0 => {
            let rate = f64::from(summary.open_shards) * 1_000.0 * KINESIS_SHARE;
            let _ = writeln!(
                err,
                "{}: sending {destination} at most {rate:.0} records/s ({:.0}% of {} open shards at 1,000 each; set \
                 max_rate to choose)",
                definition.name,
                KINESIS_SHARE * 100.0,
                summary.open_shards
            );
            Some(rate)
        }
        Ok(_) => None,
        Err(e) => {
            let _ = writeln!(
                err,
                "{}: could not read the open shards of {destination}'s stream to pace the sync; sending unpaced \
                 (set max_rate to choose): {e:#}",
                definition.name
            );
            None
        }
    }
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
/// passes, to stream changes to [`apply`] in chunks. Neither pass holds the state or (beyond the memory budget)
/// the snapshot in memory.
async fn plan(
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
struct Fetched(PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The local path of the audience's export: its path in the config folder, or, for an `s3://` location, a folder
/// in the state folder its objects are fetched into (removed when the returned guard is dropped).
async fn locate_export(
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
        let started = Instant::now();
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
fn stream_changes(steps: impl Iterator<Item = Step>, chunks: &tokio::sync::mpsc::Sender<Vec<Change>>) {
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

/// Sends the plan's changes to every destination (or, in a dry run, prints them to `out`), paced to the slowest
/// destination's rate, and records in the state store what every destination took, with the sync log of every
/// call sent.
#[allow(clippy::too_many_arguments)] // The run's parts, each borrowed for the run.
async fn apply(
    plan: Plan,
    context: &RunContext<'_>,
    computation: &Computation,
    deliveries: &[Delivery<'_>],
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let (definition, options) = (&context.audience.config, context.options);
    let Plan { counts, mut incoming, differ } = plan;
    let total = counts.added + counts.removed + counts.changed + if options.full_resync { counts.unchanged } else { 0 };
    let progress = Progress::new(&definition.name, total);
    let source: Arc<str> = Arc::from(definition.source_id());
    let mut pacer = Pacer::new(deliveries.iter().filter_map(|d| d.rate.map(|rate| rate / d.calls.len() as f64)));
    let mut last_failure = None;
    let mut dry_run_calls: Vec<Call> = definition.destinations.iter().flat_map(|d| definition.calls_for(d)).collect();
    dry_run_calls.sort();
    dry_run_calls.dedup();
    while let Some(chunk) = incoming.recv().await {
        if options.dry_run {
            for change in &chunk {
                for &call in &dry_run_calls {
                    let mut message = computation.call(change, call);
                    message.enrich_with(time::OffsetDateTime::now_utc(), crate::format::new_message_id);
                    writeln!(out, "{}", String::from_utf8_lossy(&message.to_json_vec()))?;
                }
            }
            summary.sent += chunk.len() as u64;
            progress.advance(chunk.len() as u64, err);
            continue;
        }
        for part in pacer.split(chunk) {
            pacer.wait(part.len()).await;
            let size = part.len() as u64;
            let sent = send_chunk(part, computation, deliveries, &source).await;
            if let Some(failure) = sent.last_failure {
                last_failure = Some(failure);
            }
            summary.failed += sent.failed;
            summary.sent += sent.delivered.len() as u64;
            let store = context.state.clone().expect("not a dry run");
            let id = computation.computation_id.clone();
            let (delivered, log, run) = (sent.delivered, sent.log, context.run);
            tokio::task::spawn_blocking(move || {
                store.lock().expect("state lock poisoned").record_with_log(&id, &delivered, run, &log)
            })
            .await??;
            progress.advance(size, err);
        }
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

/// What one chunk's delivery gave.
struct Sent {
    /// The changes every destination took.
    delivered: Vec<Change>,
    /// How many changes some destination did not take.
    failed: u64,
    /// Every change, with what failed where.
    log: Vec<Logged>,
    last_failure: Option<String>,
}

/// Delivers one chunk: each destination gets its calls for every change, all destinations at once.
async fn send_chunk(
    chunk: Vec<Change>,
    computation: &Computation,
    deliveries: &[Delivery<'_>],
    source: &Arc<str>,
) -> Sent {
    // One time for the chunk: the pacer spaced chunks, so their calls' times are spaced as they were sent.
    let now = time::OffsetDateTime::now_utc();
    let at_ms = spool::now_millis();
    let mut batches = Vec::with_capacity(deliveries.len());
    let mut sent_calls = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let mut records = Vec::with_capacity(chunk.len() * delivery.calls.len());
        let mut calls = Vec::with_capacity(records.capacity());
        for (index, change) in chunk.iter().enumerate() {
            for call in &delivery.calls {
                let mut message = computation.call(change, *call);
                message.enrich_with(now, crate::format::new_message_id);
                calls.push((index, *call));
                records.push(Record::new(source.clone(), message));
            }
        }
        batches.push((delivery.target, records));
        sent_calls.push(calls);
    }
    let mut failures: Vec<Vec<(String, Call, String)>> = vec![Vec::new(); chunk.len()];
    let mut last_failure = None;
    for ((destination, outcomes), calls) in fan_out(batches).await.into_iter().zip(sent_calls) {
        for (outcome, (index, call)) in outcomes.into_iter().zip(calls) {
            if let Outcome::Retryable(reason) | Outcome::Failed(reason) = outcome {
                last_failure = Some(format!("{}: {reason}", destination.name));
                failures[index].push((destination.name.clone(), call, reason.to_string()));
            }
        }
    }
    let failed = failures.iter().filter(|f| !f.is_empty()).count() as u64;
    let delivered = chunk.iter().zip(&failures).filter(|(_, f)| f.is_empty()).map(|(c, _)| c.clone()).collect();
    let log = chunk.into_iter().zip(failures).map(|(change, failures)| Logged { change, failures, at_ms }).collect();
    Sent { delivered, failed, log, last_failure }
}

/// `tributary personas`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Diff each audience's export against the last run and send the changes.
    Sync {
        /// Only this audience or trait (by name).
        #[arg(long)]
        audience: Option<String>,
        /// Print the calls that would be sent; send nothing and change no state.
        #[arg(long)]
        dry_run: bool,
        /// Send every current member again.
        #[arg(long)]
        full_resync: bool,
        /// Allow a run to remove more than the audience's max_removal_share (default 50%).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Where the sync state and the sync log live.
        #[arg(long, default_value = ".tributary")]
        state_dir: PathBuf,
        /// The most memory an export's members may take (512MiB, 2GB); a larger export is sorted on disk, in the
        /// state folder.
        #[arg(long, default_value = "512MiB", value_parser = parse_memory_budget)]
        memory_budget: u64,
        /// Records per second sent to each destination, over every audience's max_rate.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_rate: Option<u32>,
    },
    /// Print the sync log (what runs sent, per destination and call) as JSON lines, oldest first.
    Log {
        /// Only this audience or trait (by name).
        #[arg(long)]
        audience: Option<String>,
        /// Only this run.
        #[arg(long)]
        run: Option<String>,
        /// Only this user (a userId or an anonymousId).
        #[arg(long)]
        user: Option<String>,
        /// The newest this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Where the sync state lives.
        #[arg(long, default_value = ".tributary")]
        state_dir: PathBuf,
    },
    /// List sync runs with their counts and durations, as JSON lines, oldest first.
    Runs {
        /// Only this audience or trait (by name).
        #[arg(long)]
        audience: Option<String>,
        /// Where the sync state lives.
        #[arg(long, default_value = ".tributary")]
        state_dir: PathBuf,
    },
}

/// Parses `--memory-budget`: a size no smaller than [`personas::snapshot::MIN_MEMORY_BUDGET`].
fn parse_memory_budget(text: &str) -> Result<u64, String> {
    let budget = crate::config::parse_size(text)?;
    let floor = personas::snapshot::MIN_MEMORY_BUDGET as u64;
    if budget < floor {
        return Err(format!(
            "{text:?} is {budget} bytes, below the floor of 4MiB ({floor} bytes): a smaller budget would sort an export \
             into hundreds of thousands of files"
        ));
    }
    Ok(budget)
}

/// Runs a `personas` action. `sync` writes a dry run's calls to `out` and each audience's summary line to `err`, and
/// fails (exit code 1) if any audience stopped, or had failed changes or malformed rows.
pub async fn run(
    dir: &Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let (audience, dry_run, full_resync, allow_mass_removal, state_dir, memory_budget, max_rate) = match action {
        Action::Sync { audience, dry_run, full_resync, allow_mass_removal, state_dir, memory_budget, max_rate } => {
            (audience, dry_run, full_resync, allow_mass_removal, state_dir, memory_budget, max_rate)
        }
        Action::Log { audience, run, user, limit, state_dir } => {
            let config = crate::config::load(dir, err)?;
            return log::print_log(&config, &state_dir, audience, run, user, limit, out);
        }
        Action::Runs { audience, state_dir } => {
            let config = crate::config::load(dir, err)?;
            return log::print_runs(&config, &state_dir, audience, out);
        }
    };
    let config = crate::config::load(dir, err)?;
    let names: Vec<&str> = config
        .audiences
        .iter()
        .filter(|a| audience.as_ref().is_none_or(|only| *only == a.config.name))
        .flat_map(|a| a.config.destinations.iter().map(String::as_str))
        .collect();
    let routes = match dry_run {
        true => None,
        false => Some(Routes::build_only(&config, &crate::route::base_credentials(), Some(&names)).await?),
    };
    let memory_budget = usize::try_from(memory_budget).unwrap_or(usize::MAX);
    let options =
        SyncOptions { audience, dry_run, full_resync, allow_mass_removal, state_dir, memory_budget, max_rate };
    let summaries = sync(&config, routes.as_ref(), &options, out, err).await?;
    let verb = if dry_run { "would send" } else { "sent" };
    for s in &summaries {
        writeln!(
            err,
            "{}: {} added, {} removed, {} changed, {} unchanged, {} failed, {} malformed rows; {verb} {} in {:.2}s{}",
            s.name,
            s.counts.added,
            s.counts.removed,
            s.counts.changed,
            s.counts.unchanged,
            s.failed,
            s.malformed,
            s.sent,
            s.seconds,
            s.run_id.as_ref().map(|id| format!(" (run {id})")).unwrap_or_default()
        )?;
        if let Some(error) = &s.error {
            writeln!(err, "{}: stopped: {error}", s.name)?;
        }
    }
    if let Some(bytes) = peak_memory() {
        // What an operator sizes the machine by, and what the memory budget bounds.
        writeln!(err, "peak memory: {:.1} MiB", bytes as f64 / f64::from(1 << 20))?;
    }
    let clean = summaries.iter().all(SyncSummary::is_clean);
    Ok(if clean { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

/// The process's resident high-water mark (Linux's `VmHWM`), if the system reports it.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
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
