//! `tributary reload`: asks the server that owns a spool to reload its config folder, and says how it went.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::Out;
use crate::reloads::{self, Outcome};

/// `tributary reload`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spool folder of the server to reload (its --spool-dir): the server is found through the lock file it
    /// holds there.
    #[arg(long, default_value = ".tributary")]
    pub spool_dir: PathBuf,
    /// How long to wait for the server to say whether it applied the config (30s, 2m).
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

/// Sends SIGHUP to the owner of the spool, then waits for the outcome it writes beside the spool: prints what
/// changed (and succeeds) or every problem (and fails).
pub async fn run(args: Args, out: Out<'_>, err: Out<'_>) -> anyhow::Result<ExitCode> {
    let dir = &args.spool_dir;
    let owner = spool::owner(dir).with_context(|| format!("looking for the server that owns {}", dir.display()))?;
    let Some(pid) = owner else {
        bail!(
            "no server owns the spool in {} (its lock is free): is `tributary serve --spool-dir {}` running?",
            dir.display(),
            dir.display()
        );
    };
    let before = reloads::read(dir).filter(|o| o.pid == pid).map_or(0, |o| o.sequence);
    let process = rustix::process::Pid::from_raw(i32::try_from(pid).context("the lock file's process ID")?)
        .context("the lock file names process 0")?;
    rustix::process::kill_process(process, rustix::process::Signal::HUP)
        .with_context(|| format!("signalling the server (process {pid})"))?;
    writeln!(err, "tributary: asked the server (process {pid}) to reload its config")?;
    let give_up = tokio::time::Instant::now() + args.wait;
    let outcome = loop {
        if let Some(outcome) = reloads::read(dir).filter(|o| o.pid == pid && o.sequence > before) {
            break outcome;
        }
        if tokio::time::Instant::now() >= give_up {
            bail!(
                "the server (process {pid}) did not say how the reload went within {}; its log says",
                crate::format::format_duration(args.wait)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    report(&outcome, out, err)
}

fn report(outcome: &Outcome, out: Out<'_>, err: Out<'_>) -> anyhow::Result<ExitCode> {
    if outcome.outcome == "applied" {
        writeln!(out, "reloaded: {}", outcome.summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &outcome.problems {
        writeln!(err, "{problem}")?;
    }
    writeln!(err, "the config was refused; the server runs the config it had")?;
    Ok(ExitCode::FAILURE)
}
