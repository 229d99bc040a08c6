//! `tributary rejected list`: the messages `serve` accepted the request of but did not deliver, because they broke
//! one of Segment's rules, with the reason, newest first.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use spool::RejectionFilter;

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only this source's.
    pub source: Option<String>,
    /// Only those rejected within this long before now.
    pub since: Option<Duration>,
    /// At most this many.
    pub limit: usize,
}

/// Prints the rejections in the spool in `spool_dir` that match `options` as JSON lines, newest first; returns how
/// many. The spool is opened read-only, so a server running on it is not disturbed.
pub fn list(spool_dir: &Path, options: &ListOptions, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let since =
        options.since.map(|ago| spool::now_millis().saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)));
    let filter = RejectionFilter { source_id: options.source.clone(), since, limit: options.limit };
    let rejections = spool::read_rejections(spool_dir, &filter)
        .with_context(|| format!("reading the rejected messages in {}", spool_dir.display()))?;
    for r in &rejections {
        let message = r.message.as_deref().map(|bytes| {
            serde_json::from_slice::<Value>(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        });
        let line = json!({
            "id": r.id,
            "rejected_at": crate::commands::format_millis(r.at),
            "source_id": r.source_id,
            "index": r.index,
            "field": r.field,
            "reason": r.reason,
            "message": message,
        });
        writeln!(out, "{line}")?;
    }
    Ok(rejections.len())
}

pub use crate::config::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, seconds: Option<u64>| {
            assert_eq!(parse_duration(text).ok().map(|d| d.as_secs()), seconds, "{text}");
        };
        check("90", Some(90));
        check("90s", Some(90));
        check("15m", Some(900));
        check("2h", Some(7_200));
        check("7d", Some(604_800));
        check("1w", Some(604_800));
        check("1y", None);
        check("h", None);
        check("-5m", None);
        check("99999999999999999999d", None);
    }
}
