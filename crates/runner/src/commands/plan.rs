//! `tributary plan check --source ID FILE`: each message's violations of a source's tracking plan, for CI.

use anyhow::bail;
use serde_json::{Value, json};

/// `tributary plan`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print, for each NDJSON message in FILE, its violations of the source's tracking plan and what the source
    /// would do with it (deliver it, deliver it without the properties that violate, or keep it out). Nothing is
    /// sent. Fails when any message violates the plan or any line is not a message.
    Check {
        /// The source whose plan (`[tracking_plan]`) to check against.
        #[arg(long)]
        source: String,
        /// The NDJSON file.
        file: std::path::PathBuf,
    },
}

/// Checks the file's messages and prints one JSON line per message to `out`, a summary to `err`.
pub fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let Action::Check { source, file } = action;
    let Some(loaded) = config.source(&source) else {
        bail!("no source has the ID {source:?}");
    };
    let Some(plan) = config.source_plan(&loaded.config) else {
        bail!("source {source:?} has no tracking plan ([tracking_plan] in {})", loaded.file.display());
    };
    let (messages, malformed) = super::file_messages(&file, err)?;
    let (mut clean, mut violating) = (0, 0);
    for (line, mut message) in messages {
        let applied = plan.apply(&mut message);
        let violations: Vec<Value> = applied
            .violations
            .iter()
            .map(|v| {
                json!({"kind": v.kind, "type": v.segment_type(), "field": v.field, "description": v.description,
                       "schema_path": v.schema_path})
            })
            .collect();
        let outcome = match (&applied.blocked, applied.omitted) {
            (Some(_), _) => "kept out",
            (None, 0) => "delivered",
            (None, _) => "delivered without the properties that violate",
        };
        match violations.is_empty() {
            true => clean += 1,
            false => violating += 1,
        }
        let mut report = json!({
            "line": line,
            "messageId": message.message_id(),
            "type": message.kind().as_str(),
            "violations": violations,
            "outcome": outcome,
        });
        if let Some((_, reason)) = applied.blocked {
            report["reason"] = json!(reason);
        }
        writeln!(out, "{report}")?;
    }
    writeln!(
        err,
        "{source} ({}): {clean} keep to the plan, {violating} violate it, {malformed} malformed lines",
        plan.plan.name
    )?;
    Ok(match violating + malformed {
        0 => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    })
}
