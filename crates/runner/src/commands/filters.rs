//! `tributary filters test --destination NAME [--source ID] FILE`: what a destination's filters do to each message of
//! an NDJSON file, for review in a pull request.

use anyhow::bail;
use governance::filters::Step;
use segment_model::Message;
use serde_json::{Value, json};

/// `tributary filters`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print, for each NDJSON message in FILE, what each of the destination's filters did and what the destination
    /// would receive. Nothing is sent. Give messages a messageId for samples decided as in production.
    Test {
        /// The destination whose filters to run.
        #[arg(long)]
        destination: String,
        /// The source the messages come from (filters scoped to another source do not apply); default: only the
        /// filters for every source apply.
        #[arg(long)]
        source: Option<String>,
        /// The NDJSON file.
        file: std::path::PathBuf,
    },
}

/// What the filters did to one message, as one JSON line.
fn report(line: usize, filters: &governance::Filters, source: &str, mut message: Message) -> Value {
    let applied = filters.apply(source, &mut message);
    let steps: Vec<Value> = applied
        .steps
        .iter()
        .map(|(position, action, step)| {
            let (result, detail) = match step {
                Step::Skipped => ("skipped", Value::Null),
                Step::Sampled => ("sampled in", Value::Null),
                Step::Dropped => ("dropped", Value::Null),
                Step::Removed(fields) if fields.is_empty() => ("nothing to remove", Value::Null),
                Step::Removed(fields) => ("removed", json!(fields)),
                Step::Failed(why) => ("failed, so dropped", json!(why)),
            };
            let mut step =
                json!({"filter": format!("filters[{}]", position - 1), "action": action.name(), "result": result});
            if !detail.is_null() {
                let key = if matches!(detail, Value::Array(_)) { "fields" } else { "error" };
                step[key] = detail;
            }
            step
        })
        .collect();
    let received = match applied.kept {
        true => serde_json::from_slice::<Value>(&message.to_json_vec()).unwrap_or(Value::Null),
        false => Value::Null,
    };
    json!({
        "line": line,
        "messageId": message.message_id(),
        "filters": steps,
        "delivered": applied.kept,
        "receives": received,
    })
}

/// Runs the filters over the file and prints one JSON line per message to `out`; a malformed line goes to `err`
/// with its number and makes the command fail after the rest.
pub fn run(
    dir: &std::path::Path,
    action: Action,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let Action::Test { destination, source, file } = action;
    let Some(loaded) = config.destination(&destination) else {
        bail!("no destination is named {destination:?}");
    };
    let filters = &loaded.config.filters;
    if filters.is_empty() {
        writeln!(err, "destination {destination:?} has no filters: every message goes through as sent")?;
    }
    if let Some(id) = source.as_deref()
        && config.source(id).is_none()
        && !config.audiences.iter().any(|a| a.config.source_id() == id)
    {
        bail!("no source has the ID {id:?}");
    }
    let (messages, malformed) = super::file_messages(&file, err)?;
    let (mut delivered, mut dropped) = (0, 0);
    for (n, mut message) in messages {
        message.enrich_with(time::OffsetDateTime::now_utc(), crate::format::new_message_id);
        let line = report(n, filters, source.as_deref().unwrap_or_default(), message);
        match line["delivered"].as_bool() {
            Some(true) => delivered += 1,
            _ => dropped += 1,
        }
        writeln!(out, "{line}")?;
    }
    writeln!(err, "{destination}: {delivered} delivered, {dropped} dropped, {malformed} malformed lines")?;
    Ok(if malformed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}
