//! The personas sync engine: each audience's export diffed against what its destinations were last told, and the
//! changes sent as Segment Engage sends them (identify, track, group). `plan` reads the export (fetching an `s3://`
//! one), counts the diff and applies the mass-removal guard; `apply` streams the changes to delivery, paced
//! (`pace`, at the rate `rate` finds), and records what every destination took; this file keeps the runs'
//! bookkeeping. `tributary personas` (`commands/personas.rs`) only wires it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use personas::definition::{Call, ComputationConfig};
use personas::message::Computation;
use personas::state::{Run, StateStore};

use crate::config::{Config, Loaded};
use crate::route::Routes;

mod apply;
mod options;
pub mod pace;
mod plan;
mod progress;
mod rate;

use self::apply::{Destination, apply};
use self::options::RunContext;
pub use self::options::{SyncOptions, SyncSummary};
pub use self::pace::Pacer;
use self::plan::plan;
use self::rate::rate_for;

/// The default of an audience's `log_retention`.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

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

async fn sync_one(
    context: &RunContext<'_>,
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let definition = &context.audience.config;
    let computation = Computation::from(definition);
    let mut destinations = Vec::new();
    if let Some(router) = context.router {
        for name in &definition.destinations {
            let Some(target) = router.get(name) else { continue };
            let rate = rate_for(context.config, definition, name, context.options.max_rate, err).await;
            destinations.push(Destination { target, calls: definition.calls_for(name), rate });
        }
        if destinations.is_empty() {
            bail!("none of its destinations ({}) is enabled", definition.destinations.join(", "));
        }
    }
    let plan = plan(context.config, context.options, definition, &computation, summary, err).await?;
    apply(plan, context, &computation, &destinations, summary, out, err).await
}
