//! Project automation, run as `cargo xtask <command>`.
//!
//! - `test`: every unit test and every integration suite, with the AWS emulators started for the suites that
//!   need them and stopped at the end.
//! - `demo`: the end-to-end job on local defaults: an emulator, a stream, example events sent with
//!   `tributary send`, and the records shown with `tributary tail`.
//! - `bench [NAME]`: the criterion benchmarks (`model`, `records`, `governance`) and the drivers (`ingest`, `e2e`, `firehose`, `hostile`,
//!   `kinesis`, `personas`), or the one named; every figure an issue limits is printed as PASS or FAIL beside its
//!   limit, and any FAIL makes the command exit non-zero.
//! - `image`: the container image of the release binary, built with buildah from scratch, as an OCI archive and a
//!   docker-archive under the target folder.
//! - `fuzz [--cases N] [--seed S]`: the message model's property suite in a release build, 10 million cases by
//!   default, spread over every core; it prints the cases run and each failure with the seed and case that
//!   reproduce it.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};
use xshell::{Shell, cmd};

mod image;
#[cfg(test)]
mod tidy;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sh = Shell::new()?;
    sh.change_dir(root());
    match args.first().map(String::as_str) {
        Some("test") => test(&sh, &args[1..]),
        Some("demo") => demo(&sh),
        Some("bench") => bench(&sh, &args[1..]),
        Some("fuzz") => fuzz(&sh, &args[1..]),
        Some("image") => image::image(&sh).map(drop),
        _ => {
            eprintln!(
                "usage: cargo xtask <test [-- CARGO TEST ARGS] | demo | bench [ingest | e2e | firehose | hostile | kinesis | personas | model | governance \
                 | records | CRITERION FILTER] [ARGS] | fuzz [--cases N] [--seed S] | image>"
            );
            bail!("unknown or missing command")
        }
    }
}

/// The workspace root.
/// The workspace. `cargo run` (what `cargo xtask` is) sets `CARGO_MANIFEST_DIR` for the process, so the checkout
/// it ran from wins over the one the binary was built in: two checkouts sharing a target folder share one binary.
fn root() -> PathBuf {
    let xtask =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    xtask.parent().expect("xtask/ is in the workspace").to_owned()
}

/// The cargo that runs us, as rust-analyzer's xtask does.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The target folder, honouring `CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Variables every child gets: dummy AWS credentials for emulators that do not check them, and instance
/// metadata off, so that nothing ever looks for an AWS host off this machine.
fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// A free loopback port.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// kinesis-local for the demo, started from npm here: the emulator launcher of the `tests` package links
/// testcontainers and every AWS SDK the suites use, minutes of compiling the demo needs none of. Stopped when
/// dropped.
struct KinesisLocal {
    child: Child,
    url: String,
}

impl KinesisLocal {
    /// Installs kinesis-local where the suites' launcher does (unless it is there) and starts it on loopback.
    fn start() -> anyhow::Result<KinesisLocal> {
        let prefix = target_dir().join("emulators/node");
        let main = prefix.join("node_modules/kinesis-local/main.js");
        if !main.exists() {
            let package = include_str!("../../tests/src/kinesis-local.txt").trim();
            eprintln!("installing {package} into {}", prefix.display());
            std::fs::create_dir_all(&prefix)?;
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&prefix)
                .arg(package)
                .status()
                .context("running npm (the demo's emulator is kinesis-local, from npm)")?;
            anyhow::ensure!(status.success(), "npm install {package} failed ({status})");
        }
        // kinesis-local binds every address by default; the preload keeps it on loopback.
        let preload = prefix.join("loopback.js");
        std::fs::write(&preload, include_str!("../../tests/src/loopback.js"))?;
        let (plain, tls) = (free_port()?, free_port()?);
        let child = Command::new("node")
            .arg("--require")
            .arg(&preload)
            .arg(&main)
            .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
            .env("KINESIS_MOCK_CERT_PATH", main.with_file_name("server.json"))
            .env("LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kinesis-local with node")?;
        let emulator = KinesisLocal { child, url: format!("http://127.0.0.1:{plain}") };
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", plain)).is_err() {
            anyhow::ensure!(std::time::Instant::now() < give_up, "kinesis-local did not listen within a minute");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(emulator)
    }
}

impl Drop for KinesisLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emulator launcher, running until dropped.
struct Emulators {
    child: Child,
    env: Vec<(String, String)>,
}

impl Emulators {
    /// Starts `emulators` (from the `tests` package, which the caller has built) and waits for its endpoints.
    fn start() -> anyhow::Result<Emulators> {
        let mut child = Command::new(target_dir().join("debug/emulators"))
            .envs(aws_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the emulator launcher")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut env = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if line == "READY" {
                return Ok(Emulators { child, env });
            }
            if let Some((name, value)) = line.split_once('=') {
                env.push((name.to_owned(), value.to_owned()));
            }
        }
        let status = child.wait()?;
        bail!("the emulator launcher stopped before it was ready ({status})")
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        // Closing its standard input tells the launcher to stop every emulator it started.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn test(sh: &Shell, extra: &[String]) -> anyhow::Result<()> {
    let cargo = cargo();
    let mut phases = Phases::default();
    // Build first, so a compile error shows before any emulator starts.
    phases.time("build", || cmd!(sh, "{cargo} build --workspace --all-targets").run())?;
    // The workspace build made the launcher; building it alone would unify features differently and compile the
    // AWS crates a second time.
    // The image is built and checked here; a suite runs it (`TRIBUTARY_TEST_IMAGE`).
    let image = phases.time("image", || image::image(sh))?;
    let emulators = phases.time("emulators", Emulators::start)?;
    let env: Vec<(String, String)> = aws_env()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .chain(emulators.env.clone())
        .chain([("TRIBUTARY_TEST_IMAGE".to_owned(), image.oci.display().to_string())])
        .collect();
    fn with_env<'a>(command: xshell::Cmd<'a>, env: &[(String, String)]) -> xshell::Cmd<'a> {
        command.envs(env.iter().map(|(n, v)| (n, v)))
    }
    // The latency comparisons (`timing::`) and the fleet under load (`fleet::load_`, whose Redis must answer in
    // time) run after everything else and one at a time, so that no other test shares the machine with them;
    // arguments given to `cargo xtask test` run as they are.
    let result = if extra.is_empty() {
        phases
            .time("suites", || {
                with_env(cmd!(sh, "{cargo} test --workspace -- --skip timing:: --skip fleet::load_"), &env).run()
            })
            .and_then(|()| {
                phases.time("alone", || {
                    // The suites before write gigabytes (spools, personas states); flushing them to disk now keeps
                    // their writeback out of the latency comparisons.
                    cmd!(sh, "sync").run()?;
                    with_env(
                        cmd!(
                            sh,
                            "{cargo} test --package runner --test integration -- timing:: fleet::load_ --test-threads=1"
                        ),
                        &env,
                    )
                    .run()
                })
            })
    } else {
        phases.time("suites", || with_env(cmd!(sh, "{cargo} test --workspace {extra...}"), &env).run())
    };
    drop(emulators);
    phases.print();
    result.context("some tests failed")?;
    Ok(())
}

/// Wall times of the phases of a command, printed at its end.
#[derive(Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    /// Runs `phase`, noting its wall time whatever it returns.
    fn time<T, E>(&mut self, name: &'static str, phase: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = phase();
        self.0.push((name, started.elapsed()));
        result
    }

    fn print(&self) {
        let total: std::time::Duration = self.0.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self.0.iter().map(|(name, d)| format!("{name} {:.0}s", d.as_secs_f64())).collect();
        println!("wall time: {} (in all {:.0}s)", parts.join(", "), total.as_secs_f64());
    }
}

fn demo(sh: &Shell) -> anyhow::Result<()> {
    let cargo = cargo();
    // The demo's commands need none of IAM, S3 or Parquet: a build without them takes minutes fewer on two cores.
    cmd!(sh, "{cargo} build --quiet --package runner --bin tributary --no-default-features").run()?;
    let emulator = KinesisLocal::start()?;
    let url = emulator.url.clone();
    let tributary = target_dir().join("debug/tributary");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        println!("\n$ tributary --config configs {}", args.join(" "));
        let mut command = cmd!(sh, "{tributary} --config configs {args...}").quiet();
        for (name, value) in aws_env() {
            command = command.env(name, value);
        }
        // The example destination points at LocalStack's usual port; the environment override moves it to
        // the emulator started for this demo, as a deployment would override any key.
        command.env("TRIBUTARY__DESTINATIONS__KINESIS_DEMO__KINESIS__ENDPOINT", &url).run()?;
        Ok(())
    };
    println!("emulator: Kinesis at {url}");
    run(&["validate"])?;
    run(&["streams", "create", "--destination", "kinesis-demo", "--shards", "2"])?;
    run(&["streams", "describe", "--destination", "kinesis-demo"])?;
    run(&["send", "--source", "src_demo", "configs/demo-events.ndjson"])?;
    run(&["tail", "--destination", "kinesis-demo", "--from-start"])?;
    println!("\nThe records above are what a Kinesis consumer reads: each message's enriched JSON.");
    Ok(())
}

/// The benchmark drivers of the benches package, each a release binary run against a release `tributary`.
const DRIVERS: [&str; 6] = ["ingest", "e2e", "firehose", "hostile", "kinesis", "personas"];

/// The criterion benches of the benches package.
const CRITERION: [&str; 3] = ["model", "records", "governance"];

/// `bench`: every benchmark, or the one named (a driver's further arguments go to it, a criterion filter to
/// criterion). Each figure an issue limits is printed as PASS or FAIL; any FAIL, or a benchmark that fails to run,
/// makes the command fail after the rest have run.
fn bench(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let cargo = cargo();
    let mut failed = Vec::new();
    match args.first().map(String::as_str) {
        Some(name) if DRIVERS.contains(&name) => {
            if let Err(e) = release_driver(sh, name, &args[1..]) {
                failed.push(format!("{name}: {e:#}"));
            }
        }
        Some(name) if CRITERION.contains(&name) => {
            let rest = &args[1..];
            cmd!(sh, "{cargo} bench --package benches --bench {name} -- {rest...}").run()?;
            failed.extend(criterion_verdicts());
        }
        _ => {
            cmd!(sh, "{cargo} bench --package benches -- {args...}").run()?;
            failed.extend(criterion_verdicts());
            if args.is_empty() {
                for driver in DRIVERS {
                    if let Err(e) = release_driver(sh, driver, &[]) {
                        failed.push(format!("{driver}: {e:#}"));
                    }
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!("benchmarks missed their limits or failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// Prints the criterion figures the issues limit as PASS or FAIL, from the estimates of the last run; returns a
/// line for each FAIL. A figure whose bench did not run (filtered out) is left out.
fn criterion_verdicts() -> Vec<String> {
    let criterion = target_dir().join("criterion");
    let mean = |id: &str| -> Option<f64> {
        let path = criterion.join(id).join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        // The estimates file is JSON; the mean's point estimate is the first "point_estimate" in it.
        let at = text.find("\"point_estimate\":")? + "\"point_estimate\":".len();
        text[at..].split([',', '}']).next()?.trim().parse().ok()
    };
    let mut lines = Vec::new();
    let mut check = |name: String, figure: f64, limit: f64, at_least: bool| {
        let passed = if at_least { figure >= limit } else { figure <= limit };
        let bound = if at_least { "at least" } else { "at most" };
        let number = |value: f64| if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") };
        let line = format!("{name}: {} (limit: {bound} {})", number(figure), number(limit));
        println!("  {} {line}", if passed { "PASS" } else { "FAIL" });
        if !passed {
            lines.push(line);
        }
    };
    println!("\nfigures ({} cores):", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if let (Some(ours), Some(bare)) = (mean("track_700B/tributary"), mean("track_700B/serde_json_baseline")) {
        println!("  parse+validate+enrich+serialize a 700-byte track: {ours:.0} ns; bare serde_json: {bare:.0} ns");
        check("model: time over bare serde_json".to_owned(), ours / bare, 2.0, false);
    }
    for id in ["kinesis_sink_deliver/json", "kinesis_sink_deliver/json_unpaced", "kinesis_sink_deliver/base64"] {
        if let Some(ns) = mean(id) {
            check(format!("records/s through KinesisSink on one thread, {id}"), 500.0 / (ns / 1e9), 500_000.0, true);
        }
    }
    // Three rounds each, taking turns (`benches/benches/records.rs`): the ratio of the sums.
    let rounds =
        |name: &str| (1..=3).map(|r| mean(&format!("kinesis_sdk_put_records/{name}_{r}"))).sum::<Option<f64>>();
    if let (Some(ours), Some(sdk)) = (rounds("tributary"), rounds("sdk_baseline")) {
        let (ours, sdk) = (ours / 3.0, sdk / 3.0);
        println!(
            "  500 records through the SDK and HTTP: tributary {:.0} records/s, plain put_records {:.0} records/s",
            500.0 / (ours / 1e9),
            500.0 / (sdk / 1e9)
        );
        check("records through the SDK, over a plain put_records loop".to_owned(), sdk / ours, 0.9, true);
    }
    lines
}

/// Runs the message model's fuzz suite in a release build: `--cases N` (default 10 million) and `--seed S`.
fn fuzz(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let cases = value("--cases").unwrap_or_else(|| "10000000".to_owned());
    let cargo = cargo();
    let mut command = cmd!(
        sh,
        "{cargo} test --release --package segment-model --test integration fuzz::nothing_panics -- --nocapture"
    )
    .env("TRIBUTARY_FUZZ_CASES", cases);
    if let Some(seed) = value("--seed") {
        command = command.env("TRIBUTARY_FUZZ_SEED", seed);
    }
    command.run().context("the fuzz suite found failures; each is printed above with the seed and case")?;
    Ok(())
}

/// Builds `tributary` and the driver `bin` of the benches package in release mode, then runs the driver with
/// `args`; it prints its figures with PASS or FAIL beside each limit, and exits non-zero on a FAIL.
fn release_driver(sh: &Shell, bin: &str, args: &[String]) -> anyhow::Result<()> {
    let cargo = cargo();
    cmd!(sh, "{cargo} build --release --package runner --bin tributary --package benches --bin {bin}").run()?;
    let release = target_dir().join("release");
    let (driver, tributary) = (release.join(bin), release.join("tributary"));
    cmd!(sh, "{driver} --tributary {tributary} {args...}").run()?;
    Ok(())
}
