//! Sending a run's changes: streamed from the diff in chunks, paced, delivered to every destination at once, and
//! recorded with the sync log.

use std::sync::Arc;

use personas::definition::Call;
use personas::diff::Change;
use personas::message::Computation;
use personas::state::Logged;
use sink::{Outcome, Record};

use crate::route::{Filtered, Target, fan_out};

use super::options::{RunContext, SyncSummary};
use super::pace::Pacer;
use super::plan::Plan;
use super::progress::Progress;

/// One destination of an audience: where, which calls, how fast.
pub(super) struct Destination<'a> {
    pub(super) target: &'a Target,
    pub(super) calls: Vec<Call>,
    /// Records per second, if paced.
    pub(super) rate: Option<f64>,
}

/// Sends the plan's changes to every destination (or, in a dry run, prints them to `out`), paced to the slowest
/// destination's rate, and records in the state store what every destination took, with the sync log of every
/// call sent.
#[allow(clippy::too_many_arguments)] // The run's parts, each borrowed for the run.
pub(super) async fn apply(
    plan: Plan,
    context: &RunContext<'_>,
    computation: &Computation,
    destinations: &[Destination<'_>],
    summary: &mut SyncSummary,
    out: &mut (dyn std::io::Write + Send),
    err: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let (definition, options) = (&context.audience.config, context.options);
    let Plan { counts, mut incoming, differ } = plan;
    let total = counts.added + counts.removed + counts.changed + if options.full_resync { counts.unchanged } else { 0 };
    let progress = Progress::new(&definition.name, total);
    let source: Arc<str> = Arc::from(definition.source_id());
    let mut pacer = Pacer::new(destinations.iter().filter_map(|d| d.rate.map(|rate| rate / d.calls.len() as f64)));
    let mut last_failure = None;
    let suppressed = crate::suppression::Suppressions::from_config(context.config);
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
            let sent = send_chunk(part, computation, destinations, &source, &suppressed).await;
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
pub(super) struct Sent {
    /// The changes every destination took.
    delivered: Vec<Change>,
    /// How many changes some destination did not take.
    failed: u64,
    /// Every change, with what failed where.
    log: Vec<Logged>,
    last_failure: Option<String>,
}

/// Delivers one chunk: each destination gets its calls for every change, all destinations at once.
pub(super) async fn send_chunk(
    chunk: Vec<Change>,
    computation: &Computation,
    destinations: &[Destination<'_>],
    source: &Arc<str>,
    suppressed: &crate::suppression::Suppressions,
) -> Sent {
    // One time for the chunk: the pacer spaced chunks, so their calls' times are spaced as they were sent.
    let now = time::OffsetDateTime::now_utc();
    let at_ms = spool::now_millis();
    let mut batches = Vec::with_capacity(destinations.len());
    let mut sent_calls = Vec::with_capacity(destinations.len());
    for delivery in destinations {
        let mut records = Vec::with_capacity(chunk.len() * delivery.calls.len());
        let mut calls = Vec::with_capacity(records.capacity());
        for (index, change) in chunk.iter().enumerate() {
            for call in &delivery.calls {
                let mut message = computation.call(change, *call);
                message.enrich_with(now, crate::format::new_message_id);
                // A suppressed user's calls are not sent, as a source's messages are not stored: done.
                if suppressed.suppresses(&message) {
                    continue;
                }
                // The destination's filters and privacy controls apply to Engage's calls as to any source's; a call its
                // filters drop is done.
                let message = match delivery.target.filter(source, &message) {
                    Filtered::Same(_) => message,
                    Filtered::Changed(changed, ..) => *changed,
                    Filtered::Dropped(_) => continue,
                };
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
