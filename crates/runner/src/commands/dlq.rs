//! `tributary dlq list|replay`: inspect and resend messages that failed permanently.

use std::sync::Arc;

use segment_model::Message;
use serde_json::{Value, json};
use sink::{Outcome, Record};
use spool::Spool;

use crate::route::Router;

/// Prints every dead letter (of one destination, if given) as a JSON line; returns how many.
pub async fn list(spool: &Spool, destination: Option<&str>, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let letters = spool.dead_letters(destination).await?;
    for letter in &letters {
        let message = serde_json::from_slice::<Value>(&letter.message)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&letter.message).into_owned()));
        let line = json!({
            "id": letter.id,
            "destination": letter.destination,
            "source_id": letter.source_id,
            "failed_at": crate::commands::format_millis(letter.failed_at),
            "reason": letter.reason,
            "message": message,
        });
        writeln!(out, "{line}")?;
    }
    Ok(letters.len())
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Dead letters delivered and removed.
    pub delivered: usize,
    /// Dead letters that failed again and stay, with the new reason.
    pub failed: usize,
    /// Dead letters of destinations that are unknown or disabled now, left alone.
    pub skipped: usize,
}

/// Resends dead letters (of one destination, or only `ids`, if given) to their destinations now.
pub async fn replay(
    spool: &Spool,
    routes: &Router,
    destination: Option<&str>,
    ids: &[i64],
) -> anyhow::Result<Replayed> {
    let letters = spool.dead_letters(destination).await?;
    let mut result = Replayed::default();
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for letter in letters.into_iter().filter(|l| ids.is_empty() || ids.contains(&l.id)) {
        let (Some(target), Ok(message)) = (routes.get(&letter.destination), Message::from_slice(&letter.message))
        else {
            result.skipped += 1;
            continue;
        };
        let record = Record::new(Arc::from(letter.source_id.as_str()), message);
        match target.sink.deliver(vec![record]).await.pop() {
            Some(Outcome::Delivered(_)) => delivered.push(letter.id),
            Some(Outcome::Retryable(reason) | Outcome::Failed(reason)) => failed.push((letter.id, reason)),
            None => failed.push((letter.id, "the sink returned no outcome".to_owned())),
        }
    }
    result.delivered = delivered.len();
    result.failed = failed.len();
    spool.forget_dead_letters(delivered).await?;
    spool.update_dead_letters(failed).await?;
    Ok(result)
}
