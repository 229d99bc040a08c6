//! `tributary rejected list`: the messages `serve` accepted the request of but did not deliver, because they broke
//! one of Segment's rules, with the reason, newest first.

use std::path::Path;
use std::time::Duration;

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
    let rejections =
        spool::read_rejections(spool_dir, &filter).map_err(|e| crate::delivery::spool_error(spool_dir, e))?;
    for r in &rejections {
        let message = r.message.as_deref().map(|bytes| {
            serde_json::from_slice::<Value>(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        });
        let line = json!({
            "id": r.id,
            "rejected_at": crate::format::format_millis(r.at),
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

/// `tributary rejected`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spool folder of the server.
    #[arg(long, global = true, default_value = ".tributary")]
    pub spool_dir: std::path::PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `tributary rejected` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print each rejected message as a JSON line, newest first: source, time, field, batch index, reason and the
    /// message itself.
    List {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// Only those rejected within this long: 90s, 15m, 2h, 7d.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Lists the rejected messages to `out`, and their count to `err`.
pub fn run(args: Args, out: super::Out<'_>, err: super::Out<'_>) -> anyhow::Result<std::process::ExitCode> {
    let Action::List { source, since, limit } = args.action;
    let count = list(&args.spool_dir, &ListOptions { source, since, limit }, out)?;
    writeln!(err, "{count} rejected messages")?;
    Ok(std::process::ExitCode::SUCCESS)
}

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
