//! The personas benchmark: `tributary personas sync` on large audiences, delivering to the file sink.
//!
//! 1. An audience of 1,000,000 members is synced once (every member sent), then again after 1% churn (5,000 left,
//!    5,000 joined): the second sync, diff and state update included, is what issue 4 bounds (10 seconds).
//! 2. An audience of 10,000,000 members is synced once: its peak memory is what issue 4 bounds (1 GiB).
//! 3. The same 10,000,000 members exported in scrambled order: larger than the default memory budget (512 MiB),
//!    so the export is sorted in runs on disk and merged.
//! 4. An audience of 100,000,000 members (`--huge N`), exported in identity order as a warehouse's
//!    `ORDER BY user_id` writes it, synced once and again after 1% churn (500,000 left, 500,000 joined): peak
//!    memory under 1 GiB for both and the churn sync within 3 minutes is what issue 12 bounds. Its calls go to a
//!    file destination at `/dev/null`: the first sync writes about 38 GB of calls, more than this machine's disk
//!    holds beside the state; the serialization and the writes are the same.
//!
//! Peak memory is the child's `VmHWM` (resident high-water mark) from `/proc`, read until it exits.
//! `cargo xtask bench personas` runs it as `personas --tributary PATH [--members N]`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use benches::arg;

/// Writes a CSV of members `user_{from}` to `user_{to - 1}`, in order.
fn members(path: &Path, from: u64, to: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "user_id,anonymous_id")?;
    for i in from..to {
        writeln!(out, "user_{i:010},")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes a CSV of members `user_0` to `user_{count - 1}` in a scrambled order (a permutation: 7,919 is prime and
/// does not divide a power of ten).
fn scrambled_members(path: &Path, count: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "user_id,anonymous_id")?;
    for i in 0..count {
        writeln!(out, "user_{:010},", (i * 7_919) % count)?;
    }
    out.flush()?;
    Ok(())
}

/// The resident high-water mark of a running process, in bytes.
fn high_water(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs one sync; returns its duration and peak memory.
fn sync(tributary: &Path, config: &Path, state: &Path) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = Command::new(tributary)
        .arg("--config")
        .arg(config)
        .args(["personas", "sync", "--allow-mass-removal", "--state-dir"])
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tributary personas sync")?;
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(bytes) = high_water(pid) {
            peak = peak.max(bytes);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut log)?;
    if !status.success() {
        bail!("the sync failed:\n{log}");
    }
    eprint!(
        "{}",
        log.lines().filter(|l| !l.contains("changes sent")).map(|l| format!("    {l}\n")).collect::<String>()
    );
    Ok((elapsed, peak))
}

/// A config folder with a file destination and one audience reading `members.csv`.
fn folder(dir: &Path) -> anyhow::Result<PathBuf> {
    folder_to(dir, &dir.join("out.ndjson"))
}

/// A config folder with a file destination writing to `out` and one audience reading `members.csv`.
fn folder_to(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("configs");
    std::fs::create_dir_all(config.join("destinations"))?;
    std::fs::create_dir_all(config.join("audiences"))?;
    std::fs::write(
        config.join("destinations/out.toml"),
        format!("name = \"out\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string()),
    )?;
    std::fs::write(
        config.join("audiences/big.toml"),
        "name = \"Big Audience\"\nkind = \"audience\"\ncomputation_id = \"aud_big\"\nspace_id = \"spa\"\nnamespace = \"spa\"\ndestinations = [\"out\"]\n[source]\npath = \"members.csv\"\n",
    )?;
    Ok(config)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Stage 4: `huge` members in identity order, synced once and after 1% churn, calls to `/dev/null`.
fn huge_syncs(tributary: &Path, root: &Path, huge: u64) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let dir = root.join("huge");
    let config = folder_to(&dir, Path::new("/dev/null"))?;
    let state = dir.join("state");
    members(&config.join("members.csv"), 0, huge)?;
    eprintln!("{huge} members, first sync:");
    let (first, first_peak) = sync(tributary, &config, &state)?;
    let state_bytes = std::fs::metadata(state.join("personas.sqlite3")).map(|m| m.len()).unwrap_or(0);
    members(&config.join("members.csv"), huge / 200, huge + huge / 200)?;
    eprintln!("after 1% churn:");
    let (churn, churn_peak) = sync(tributary, &config, &state)?;
    std::fs::remove_dir_all(&dir)?;
    lines.push(format!(
        "  {huge} members in identity order, first sync (calls to /dev/null): {:.1} s, peak memory {:.0} MiB \
         (limit: 1024 MiB); state and sync log {:.1} GiB",
        first.as_secs_f64(),
        mib(first_peak),
        state_bytes as f64 / f64::from(1 << 30)
    ));
    lines.push(format!(
        "  {huge} members, 1% churn ({} changes): {:.1} s, peak memory {:.0} MiB (limits: 180 s, 1024 MiB)",
        huge / 100,
        churn.as_secs_f64(),
        mib(churn_peak)
    ));
    Ok(lines)
}

fn main() -> anyhow::Result<()> {
    let tributary =
        PathBuf::from(arg("--tributary").context("usage: personas --tributary PATH [--large N] [--huge N]")?);
    let large: u64 = arg("--large").map(|n| n.parse()).transpose()?.unwrap_or(10_000_000);
    let huge: u64 = arg("--huge").map(|n| n.parse()).transpose()?.unwrap_or(100_000_000);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let root = std::env::temp_dir().join(format!("tributary-personas-bench-{}", std::process::id()));
    let mut report = vec![format!("personas sync ({cores} cores, file sink, release build):")];

    let dir = root.join("churn");
    let config = folder(&dir)?;
    let state = dir.join("state");
    let million = 1_000_000;
    members(&config.join("members.csv"), 0, million)?;
    eprintln!("1,000,000 members, first sync:");
    let (first, first_peak) = sync(&tributary, &config, &state)?;
    // 1% churn: the first 5,000 leave, 5,000 new members join.
    members(&config.join("members.csv"), 5_000, million + 5_000)?;
    eprintln!("after 1% churn:");
    let (churn, churn_peak) = sync(&tributary, &config, &state)?;
    std::fs::remove_dir_all(&dir)?;
    report.push(format!(
        "  1,000,000 members, first sync (every member sent): {:.1} s, peak memory {:.0} MiB",
        first.as_secs_f64(),
        mib(first_peak)
    ));
    report.push(format!(
        "  1,000,000 members, 1% churn (10,000 changes): {:.2} s, peak memory {:.0} MiB (limit: 10 s)",
        churn.as_secs_f64(),
        mib(churn_peak)
    ));

    let dir = root.join("large");
    let config = folder(&dir)?;
    members(&config.join("members.csv"), 0, large)?;
    eprintln!("{large} members, first sync:");
    let (big, big_peak) = sync(&tributary, &config, &dir.join("state"))?;
    std::fs::remove_dir_all(&dir)?;
    report.push(format!(
        "  {large} members, first sync: {:.1} s, peak memory {:.0} MiB (limit: 1024 MiB)",
        big.as_secs_f64(),
        mib(big_peak)
    ));

    let dir = root.join("scrambled");
    let config = folder_to(&dir, Path::new("/dev/null"))?;
    scrambled_members(&config.join("members.csv"), large)?;
    eprintln!("{large} members in scrambled order, first sync (sorted on disk):");
    let (sorted, sorted_peak) = sync(&tributary, &config, &dir.join("state"))?;
    std::fs::remove_dir_all(&dir)?;
    report.push(format!(
        "  {large} members in scrambled order, first sync (external sort, calls to /dev/null): {:.1} s, peak memory \
         {:.0} MiB (budget 512 MiB)",
        sorted.as_secs_f64(),
        mib(sorted_peak)
    ));

    if huge > 0 {
        report.extend(huge_syncs(&tributary, &root, huge)?);
    }
    let _ = std::fs::remove_dir_all(&root);
    for line in report {
        println!("{line}");
    }
    Ok(())
}
