//! `tributary send --source ID FILE`: deliver NDJSON messages to a source's destinations.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use segment_model::Message;
use sink::{Outcome, Record};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::config::Config;
use crate::route::{Filtered, Routes, Target, fan_out};

/// How many messages are delivered together.
const MESSAGES_PER_CHUNK: usize = 1_000;

/// Delivery counts of one destination.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Records the destination has.
    pub delivered: usize,
    /// Records that failed (permanently, or still retryable after the sink's retries).
    pub failed: usize,
    /// Messages the destination's filters kept from it.
    pub filtered: usize,
}

/// What `send` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Valid messages read.
    pub messages: usize,
    /// Lines that were not valid messages.
    pub malformed: usize,
    /// Valid messages not sent because the config folder's `suppressions/*.toml` name their user.
    pub suppressed: usize,
    /// Violations of the source's tracking plan.
    pub violations: usize,
    /// Messages the source's tracking plan kept out (each reported with its line).
    pub blocked: usize,
    /// Counts per destination name.
    pub destinations: BTreeMap<String, Tally>,
}

impl Summary {
    /// Whether everything read was delivered everywhere it was meant to go.
    pub fn is_clean(&self) -> bool {
        self.malformed == 0 && self.destinations.values().all(|t| t.failed == 0)
    }
}

/// Reads NDJSON from `input` (named `input_name` in errors) and delivers each message as from `source_id`.
///
/// Each malformed line is reported on `errors` with its line number, and the rest are still sent.
pub async fn send(
    config: &Config,
    router: &Routes,
    source_id: &str,
    input: impl AsyncRead + Unpin,
    input_name: &str,
    errors: &mut dyn std::io::Write,
) -> anyhow::Result<Summary> {
    let Some(loaded) = config.source(source_id) else {
        let known: Vec<&str> = config.sources.iter().map(|s| s.config.id.as_str()).collect();
        bail!("no source has the ID {source_id:?} (known: {})", known.join(", "));
    };
    let privacy = config.source_privacy(loaded)?;
    let plan = config.source_plan(&loaded.config);
    let suppressed = crate::suppression::Suppressions::from_config(config);
    let mut summary = Summary::default();
    for destination in router.connected(source_id) {
        summary.destinations.insert(destination.name.clone(), Tally::default());
    }
    let source: Arc<str> = Arc::from(source_id);
    let mut lines = BufReader::new(input).lines();
    let mut line_number = 0;
    let mut chunk = Vec::with_capacity(MESSAGES_PER_CHUNK);
    while let Some(line) = lines.next_line().await.with_context(|| format!("reading {input_name}"))? {
        line_number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match Message::from_slice(line.as_bytes()) {
            Ok(message) if suppressed.suppresses(&message) => summary.suppressed += 1,
            Ok(mut message) => {
                if let Some(plan) = &plan {
                    let applied = plan.apply(&mut message);
                    summary.violations += applied.violations.len();
                    if let Some((field, reason)) = applied.blocked {
                        summary.blocked += 1;
                        writeln!(errors, "{input_name}:{line_number}: not sent ({field}): {reason}")?;
                        continue;
                    }
                }
                privacy.apply(&mut message);
                message.enrich_with(time::OffsetDateTime::now_utc(), crate::format::new_message_id);
                summary.messages += 1;
                chunk.push(message);
                if chunk.len() == MESSAGES_PER_CHUNK {
                    deliver(router, &source, std::mem::take(&mut chunk), &mut summary, errors).await?;
                }
            }
            Err(e) => {
                summary.malformed += 1;
                writeln!(errors, "{input_name}:{line_number}: {e}")?;
            }
        }
    }
    deliver(router, &source, chunk, &mut summary, errors).await?;
    Ok(summary)
}

/// Delivers one chunk to every destination it is meant for, all destinations at once.
async fn deliver(
    router: &Routes,
    source: &Arc<str>,
    messages: Vec<Message>,
    summary: &mut Summary,
    errors: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut per_destination: Vec<(&Target, Vec<Record>)> = Vec::new();
    for (target, indices) in router.group(source, &messages) {
        let mut records = Vec::with_capacity(indices.len());
        for i in indices {
            match target.filter(source, &messages[i]) {
                Filtered::Same(message) => records.push(Record::new(source.clone(), message.clone())),
                Filtered::Changed(message, ..) => records.push(Record::new(source.clone(), *message)),
                Filtered::Dropped(_) => summary.destinations.entry(target.name.clone()).or_default().filtered += 1,
            }
        }
        per_destination.push((target, records));
    }
    let ids: Vec<Vec<String>> = per_destination
        .iter()
        .map(|(_, records)| records.iter().map(|r| r.message_id().to_owned()).collect())
        .collect();
    for ((target, outcomes), ids) in fan_out(per_destination).await.into_iter().zip(ids) {
        let name = &target.name;
        let tally = summary.destinations.entry(name.to_owned()).or_default();
        for (id, outcome) in ids.iter().zip(outcomes) {
            match outcome {
                Outcome::Delivered(_) => tally.delivered += 1,
                Outcome::Retryable(reason) | Outcome::Failed(reason) => {
                    tally.failed += 1;
                    writeln!(errors, "{name}: message {id}: {reason}")?;
                }
            }
        }
    }
    Ok(())
}

/// `tributary send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ID of the source the messages come from.
    #[arg(long)]
    pub source: String,
    /// The NDJSON file, or - for standard input.
    pub file: std::path::PathBuf,
}

/// Sends the file (or standard input) as the source's messages; malformed lines and the summary go to `err`.
/// Fails (exit code 1) if any line was malformed or any delivery failed.
pub async fn run(dir: &std::path::Path, args: Args, err: super::Out<'_>) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let names: Vec<&str> = config
        .source(&args.source)
        .map(|s| s.config.destinations.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let routes = Routes::build_only(&config, &crate::route::base_credentials(), Some(&names)).await?;
    let summary = if args.file.as_os_str() == "-" {
        send(&config, &routes, &args.source, tokio::io::stdin(), "<stdin>", err).await?
    } else {
        let input =
            tokio::fs::File::open(&args.file).await.with_context(|| format!("opening {}", args.file.display()))?;
        send(&config, &routes, &args.source, input, &args.file.display().to_string(), err).await?
    };
    writeln!(err, "read {} messages, {} malformed lines", summary.messages, summary.malformed)?;
    if summary.suppressed > 0 {
        writeln!(err, "{} messages not sent: their users are suppressed", summary.suppressed)?;
    }
    if summary.violations > 0 {
        writeln!(
            err,
            "{} violations of the source's tracking plan; {} messages kept out (`tributary plan check` lists them)",
            summary.violations, summary.blocked
        )?;
    }
    for (name, tally) in &summary.destinations {
        let filtered = match tally.filtered {
            0 => String::new(),
            n => format!(", {n} filtered out"),
        };
        writeln!(err, "{name}: {} delivered, {} failed{filtered}", tally.delivered, tally.failed)?;
    }
    Ok(if summary.is_clean() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}
