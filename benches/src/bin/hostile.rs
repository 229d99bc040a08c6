//! The hostile-input benchmark: the server CPU time of each adversarial body (many keys, deep nesting, long
//! escapes, tiny messages, huge numbers, batch-context expansion; plain and gzipped; with a right key, a wrong
//! Basic key and a wrong key in the body) against an ordinary 480 KB batch, on a release `tributary serve`.
//!
//! `cargo xtask bench` runs it as `hostile --tributary PATH` and prints the worst ratio (limit 5).

use std::path::PathBuf;

use anyhow::Context as _;
use benches::{Served, WRITE_KEY, arg};

/// Requests per series: enough that the kernel's 10 ms CPU accounting is a few percent of the total (an ordinary
/// batch costs about 3 ms since spool entries are compressed).
const REPS: usize = 100;

/// The limit the issue sets on the worst ratio.
const LIMIT: f64 = 5.0;

fn main() -> anyhow::Result<()> {
    let tributary = PathBuf::from(arg("--tributary").context("usage: hostile --tributary PATH_TO_RELEASE_BINARY")?);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let served = Served::start(&tributary, "hostile").await?;
        tests::hostile::measure(served.pid(), &served.url, WRITE_KEY, REPS).await
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("hostile input ({cores} cores, server CPU time per request from /proc, {REPS} requests per series):");
    print!("{}", report.table());
    let (worst, label) = report.worst();
    println!("  worst: {worst:.2}x the CPU of an ordinary batch ({label})");
    let mut verdicts = benches::verdict::Verdicts::default();
    verdicts.at_most("hostile worst CPU over an ordinary batch", worst, LIMIT, "x");
    let wrong: Vec<&str> = report.series.iter().filter(|m| m.status != m.expected).map(|m| m.label.as_str()).collect();
    verdicts.holds(format!("hostile: every series answered as expected (wrong: {wrong:?})"), wrong.is_empty());
    verdicts.finish()
}
