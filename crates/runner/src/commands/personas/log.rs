//! `tributary personas log` and `tributary personas runs`: the sync log as JSON lines.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use personas::Identity;
use personas::state::{LogFilter, StateStore};
use serde_json::{Map, Value, json};

use crate::Out;
use crate::config::Config;
use crate::format::format_millis;

/// The computation ID of the audience named `name`.
fn computation_of(config: &Config, name: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    match config.audience(&name) {
        Some(audience) => Ok(Some(audience.config.computation_id.clone())),
        None => {
            let known: Vec<&str> = config.audiences.iter().map(|a| a.config.name.as_str()).collect();
            bail!("no audience or trait is named {name:?} (known: {})", known.join(", "))
        }
    }
}

/// The audience name of a computation ID, for readers of the log.
fn name_of<'a>(config: &'a Config, computation: &'a str) -> &'a str {
    config.audiences.iter().find(|a| a.config.computation_id == computation).map_or(computation, |a| &a.config.name)
}

fn open(state_dir: &Path) -> anyhow::Result<StateStore> {
    if !state_dir.join(personas::state::FILE_NAME).exists() {
        bail!("{} holds no sync state (pass the sync's --state-dir)", state_dir.display());
    }
    Ok(StateStore::open(state_dir)?)
}

/// Prints the log entries that match, one JSON object per line.
pub fn print_log(
    config: &Config,
    state_dir: &Path,
    audience: Option<String>,
    run_id: Option<String>,
    user: Option<String>,
    limit: usize,
    out: Out<'_>,
) -> anyhow::Result<ExitCode> {
    let filter = LogFilter { computation: computation_of(config, audience)?, run_id, user, limit };
    for entry in open(state_dir)?.log(&filter)? {
        let mut line = Map::new();
        line.insert("time".into(), json!(format_millis(entry.at_ms)));
        line.insert("run_id".into(), json!(entry.run_id));
        line.insert("audience".into(), json!(name_of(config, &entry.computation)));
        line.insert("computation_id".into(), json!(entry.computation));
        identity_fields(&entry.identity, &mut line);
        line.insert("change".into(), json!(personas::state::change_name(entry.change)));
        let value = serde_json::from_str(&entry.value).unwrap_or(Value::String(entry.value));
        line.insert("value".into(), value);
        line.insert("version".into(), json!(entry.version));
        line.insert("destination".into(), json!(entry.destination));
        line.insert("call".into(), json!(entry.call));
        line.insert("messageId".into(), json!(entry.message_id));
        line.insert("outcome".into(), json!(if entry.error.is_some() { "failed" } else { "delivered" }));
        if let Some(error) = entry.error {
            line.insert("error".into(), json!(error));
        }
        writeln!(out, "{}", Value::Object(line))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `userId` or `anonymousId`, and `groupId` for an account's user.
fn identity_fields(key: &str, line: &mut Map<String, Value>) {
    match Identity::from_storage_key(key) {
        Some(Identity::User(id)) => {
            line.insert("userId".into(), json!(id));
        }
        Some(Identity::Anonymous(id)) => {
            line.insert("anonymousId".into(), json!(id));
        }
        Some(Identity::Account { group, user }) => {
            line.insert("groupId".into(), json!(group));
            identity_fields(&user.storage_key(), line);
        }
        None => {
            line.insert("identity".into(), json!(key));
        }
    }
}

/// Prints the runs, one JSON object per line.
pub fn print_runs(
    config: &Config,
    state_dir: &Path,
    audience: Option<String>,
    out: Out<'_>,
) -> anyhow::Result<ExitCode> {
    let computation = computation_of(config, audience)?;
    for run in open(state_dir)?.runs(computation.as_deref())? {
        let seconds = run.finished_ms.map(|end| (end - run.started_ms) as f64 / 1000.0);
        let destinations: Map<String, Value> = run
            .plan
            .iter()
            .map(|(d, calls)| (d.clone(), json!(calls.iter().map(|c| c.name()).collect::<Vec<_>>())))
            .collect();
        let line = json!({
            "run_id": run.run_id,
            "audience": run.audience,
            "computation_id": run.computation,
            "destinations": destinations,
            "started_at": format_millis(run.started_ms),
            "finished_at": run.finished_ms.map(format_millis),
            "seconds": seconds,
            "added": run.added,
            "removed": run.removed,
            "changed": run.changed,
            "unchanged": run.unchanged,
            "sent": run.sent,
            "failed": run.failed,
            "malformed": run.malformed,
            "error": run.error,
        });
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
