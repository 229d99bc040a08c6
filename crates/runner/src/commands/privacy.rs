//! `tributary privacy suppress|unsuppress|list`: the users whose messages are dropped at ingest, kept in the spool
//! beside a running server, which has a change in force within a second; `privacy delete`: their messages erased
//! from the spool (by the server that owns it, when one runs) and from the personas state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use spool::{IdKind, Spool, SpoolError};

use crate::config::Config;
use crate::erasure::SpoolReport;

/// `tributary privacy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spool folder of the server (the list lives in it).
    #[arg(long, global = true, default_value = ".tributary")]
    pub spool_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `tributary privacy` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Drop every later message of these users at ingest, counted and never stored (Segment's SUPPRESS). A server
    /// running on the spool has it in force within a second, without a reload.
    Suppress(Ids),
    /// Take these users off the spool's list (Segment's UNSUPPRESS); one also listed in the config folder's
    /// `suppressions/*.toml` stays suppressed until it is taken off there.
    Unsuppress(Ids),
    /// Print every suppressed user as a JSON line: from the spool and from the config folder, with since when.
    List,
    /// Erase these users' messages from the spool's waiting entries, dead letters and rejections, and their rows
    /// from the personas state and sync log (Segment's DELETE_ONLY; SUPPRESS_WITH_DELETE is `privacy suppress`
    /// first). Beside a running server, the server carries it out; says what it removed where, and names the
    /// messages a delivery had already taken, which may still be delivered.
    Delete(Delete),
}

/// `tributary privacy delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct Delete {
    /// Whose messages.
    #[command(flatten)]
    pub ids: Ids,
    /// The personas state folder (`personas sync --state-dir`); left alone when it holds no state.
    #[arg(long, default_value = ".tributary")]
    pub personas_state_dir: PathBuf,
    /// How long to wait for a running server to carry out the erasure (30s, 2m).
    #[arg(long, default_value = "2m", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

/// The users a command names.
#[derive(Debug, Clone, clap::Args)]
pub struct Ids {
    /// userIds (several after one flag, or the flag repeated).
    #[arg(long = "user-id", value_name = "ID", num_args = 1..)]
    pub user_ids: Vec<String>,
    /// anonymousIds.
    #[arg(long = "anonymous-id", value_name = "ID", num_args = 1..)]
    pub anonymous_ids: Vec<String>,
}

impl Ids {
    fn by_kind(&self) -> anyhow::Result<[(IdKind, &[String]); 2]> {
        if self.user_ids.is_empty() && self.anonymous_ids.is_empty() {
            bail!("name the users: --user-id ID... and/or --anonymous-id ID...");
        }
        if self.user_ids.iter().chain(&self.anonymous_ids).any(|id| id.is_empty()) {
            bail!("an ID is empty");
        }
        Ok([(IdKind::UserId, &self.user_ids), (IdKind::AnonymousId, &self.anonymous_ids)])
    }
}

fn spool_error(dir: &Path) -> impl Fn(spool::SpoolError) -> anyhow::Error + '_ {
    move |e| crate::delivery::spool_error(dir, e)
}

/// Adds the users to the spool's list; returns how many were new.
pub fn suppress(spool_dir: &Path, ids: &Ids) -> anyhow::Result<usize> {
    let at = spool::now_millis();
    let mut added = 0;
    for (kind, list) in ids.by_kind()? {
        if !list.is_empty() {
            added += spool::suppress(spool_dir, kind, list, at).map_err(spool_error(spool_dir))?;
        }
    }
    Ok(added)
}

/// Takes the users off the spool's list; returns how many were on it.
pub fn unsuppress(spool_dir: &Path, ids: &Ids) -> anyhow::Result<usize> {
    let mut removed = 0;
    for (kind, list) in ids.by_kind()? {
        if !list.is_empty() {
            removed += spool::unsuppress(spool_dir, kind, list).map_err(spool_error(spool_dir))?;
        }
    }
    Ok(removed)
}

/// Prints both lists as JSON lines (`{"user_id": …, "since": …, "in": "spool" | FILE}`); returns how many.
pub fn list(config: Option<&Config>, spool_dir: &Path, out: super::Out<'_>) -> anyhow::Result<usize> {
    let mut count = 0;
    for row in spool::suppressions(spool_dir).map_err(spool_error(spool_dir))? {
        let line = json!({
            row.kind.as_str(): row.id,
            "since": crate::format::format_millis(row.since),
            "in": "spool",
        });
        writeln!(out, "{line}")?;
        count += 1;
    }
    for file in config.map(|c| c.suppressions.as_slice()).unwrap_or_default() {
        // A file is in force from when it was written (and, on a running server, reloaded).
        let since = std::fs::metadata(&file.file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| crate::format::format_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let name =
            config.map_or(file.file.clone(), |c| file.file.strip_prefix(&c.dir).unwrap_or(&file.file).to_owned());
        for (kind, ids) in [(IdKind::UserId, &file.config.user_ids), (IdKind::AnonymousId, &file.config.anonymous_ids)]
        {
            for id in ids {
                writeln!(out, "{}", json!({kind.as_str(): id, "since": since, "in": name.display().to_string()}))?;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Asks for the erasure in the spool and sees it carried out: by the server that owns the spool, or here when none
/// does. `None` when there is no spool.
pub async fn erase_from_spool(
    spool_dir: &Path,
    ids: &[(IdKind, String)],
    wait: Duration,
    err: super::Out<'_>,
) -> anyhow::Result<Option<SpoolReport>> {
    if !spool_dir.join(spool::FILE_NAME).exists() {
        return Ok(None);
    }
    let request = spool::request_erasure(spool_dir, ids, spool::now_millis()).map_err(spool_error(spool_dir))?;
    let owner = spool::owner(spool_dir).map_err(spool_error(spool_dir))?;
    let carried_here = match owner {
        Some(_) => false,
        None => match Spool::open_to_maintain(spool_dir) {
            Ok(spool) => {
                let carried = crate::erasure::carry_out(&spool).await;
                spool.close();
                carried.map_err(spool_error(spool_dir))?;
                true
            }
            // A server started meanwhile: it carries the request out.
            Err(SpoolError::Locked { .. }) => false,
            Err(e) => return Err(spool_error(spool_dir)(e)),
        },
    };
    if !carried_here {
        let pid = spool::owner(spool_dir).ok().flatten().map_or_else(String::new, |pid| format!(" (process {pid})"));
        writeln!(err, "tributary: the server{pid} that owns {} carries out the erasure", spool_dir.display())?;
    }
    let give_up = tokio::time::Instant::now() + wait;
    let report = loop {
        if let Some(report) = spool::erasure_report(spool_dir, request).map_err(spool_error(spool_dir))? {
            break report;
        }
        if tokio::time::Instant::now() >= give_up {
            bail!(
                "the server that owns {} did not carry out the erasure within {}: the request stays in the spool, \
                 and the server (or the next `serve` on it) carries it out; its log says when",
                spool_dir.display(),
                crate::format::format_duration(wait)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    spool::forget_erasure(spool_dir, request).map_err(spool_error(spool_dir))?;
    Ok(Some(serde_json::from_str(&report).context("reading the erasure's report")?))
}

/// Erases the users' rows from the personas state in `dir`, if there is one there.
fn erase_from_personas(dir: &Path, ids: &[(IdKind, String)]) -> anyhow::Result<Option<personas::state::Erased>> {
    if !dir.join(personas::state::FILE_NAME).exists() {
        return Ok(None);
    }
    let identities: Vec<personas::Identity> = ids
        .iter()
        .map(|(kind, id)| match kind {
            IdKind::UserId => personas::Identity::User(id.clone()),
            IdKind::AnonymousId => personas::Identity::Anonymous(id.clone()),
        })
        .collect();
    let mut state = personas::state::StateStore::open(dir)?;
    Ok(Some(state.erase(&identities)?))
}

/// `privacy delete`: the spool, then the personas state, each said as it is done.
async fn delete(spool_dir: &Path, args: &Delete, out: super::Out<'_>, err: super::Out<'_>) -> anyhow::Result<()> {
    let ids: Vec<(IdKind, String)> = args
        .ids
        .by_kind()?
        .into_iter()
        .flat_map(|(kind, list)| list.iter().map(move |id| (kind, id.clone())))
        .collect();
    match erase_from_spool(spool_dir, &ids, args.wait, err).await? {
        None => writeln!(out, "spool {}: there is none, so nothing of theirs is stored there", spool_dir.display())?,
        Some(report) => {
            let waiting: u64 = report.waiting.values().sum();
            let per: Vec<String> = report.waiting.iter().map(|(d, n)| format!("{n} for {d}")).collect();
            writeln!(
                out,
                "spool {}: removed {waiting} waiting messages{} from {} entries, {} dead letters and {} rejected messages; {} free pages zeroed{}",
                spool_dir.display(),
                if per.is_empty() { String::new() } else { format!(" ({})", per.join(", ")) },
                report.entries,
                report.dead_letters,
                report.rejected,
                report.free_pages,
                if report.checkpointed { ", the WAL checkpointed and truncated" } else { "" }
            )?;
            for handed in &report.handed {
                writeln!(
                    out,
                    "already handed to {}: messageId {} (a delivery had taken it; it may still be delivered)",
                    handed.destination, handed.message_id
                )?;
            }
            if !report.checkpointed {
                writeln!(err, "the WAL could not be checkpointed (a reader held it): run the command again later")?;
            }
        }
    }
    let dir = &args.personas_state_dir;
    match erase_from_personas(dir, &ids)? {
        None => writeln!(out, "personas state {}: there is none", dir.display())?,
        Some(erased) => writeln!(
            out,
            "personas state {}: removed {} memberships and {} sync-log lines; {} free pages zeroed{}",
            dir.display(),
            erased.members,
            erased.log_lines,
            erased.free_pages,
            if erased.checkpointed { ", the WAL checkpointed and truncated" } else { "" }
        )?,
    }
    Ok(())
}

/// Runs `tributary privacy`.
pub async fn run(
    dir: &Path,
    args: Args,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let spool_dir = &args.spool_dir;
    match args.action {
        Action::Delete(delete_args) => delete(spool_dir, &delete_args, out, err).await?,
        Action::Suppress(ids) => {
            let added = suppress(spool_dir, &ids)?;
            let named = ids.user_ids.len() + ids.anonymous_ids.len();
            writeln!(
                err,
                "suppressed {added} users ({} already were) in {}: a server on this spool drops their messages within a second",
                named - added.min(named),
                spool_dir.display()
            )?;
        }
        Action::Unsuppress(ids) => {
            let removed = unsuppress(spool_dir, &ids)?;
            writeln!(err, "unsuppressed {removed} users in {}", spool_dir.display())?;
            // The config folder's list stays in force: say which of these it still names.
            if let Ok(config) = Config::load(dir) {
                for file in &config.suppressions {
                    let listed = ids
                        .user_ids
                        .iter()
                        .filter(|id| file.config.user_ids.contains(id))
                        .chain(ids.anonymous_ids.iter().filter(|id| file.config.anonymous_ids.contains(id)));
                    for id in listed {
                        writeln!(err, "{id:?} is still suppressed by {}: take it off there too", file.file.display())?;
                    }
                }
            }
        }
        Action::List => {
            let config = Config::load(dir).ok();
            if config.is_none() {
                writeln!(err, "the config folder {} did not load: its suppressions are not listed", dir.display())?;
            }
            let count = list(config.as_ref(), spool_dir, out)?;
            writeln!(err, "{count} suppressed")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
