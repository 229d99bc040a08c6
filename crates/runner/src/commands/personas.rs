//! `tributary personas`: `sync` runs the sync engine ([`crate::sync`]) over the audiences and prints a summary per
//! audience; `log` and `runs` read what runs sent.

use std::path::{Path, PathBuf};

use crate::route::Routes;
use crate::sync::{SyncOptions, SyncSummary, sync};

mod log;

pub use crate::sync::DEFAULT_LOG_RETENTION;

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
