//! `tributary privacy suppress|unsuppress|list`: the users whose messages are dropped at ingest, kept in the spool
//! beside a running server, which has a change in force within a second.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::json;
use spool::IdKind;

use crate::config::Config;

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

/// Runs `tributary privacy`.
pub fn run(dir: &Path, args: Args, out: super::Out<'_>, err: super::Out<'_>) -> anyhow::Result<std::process::ExitCode> {
    let spool_dir = &args.spool_dir;
    match args.action {
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
