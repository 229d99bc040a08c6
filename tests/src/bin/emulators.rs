//! Starts the AWS emulators the end-to-end suites need, prints their endpoints, and stops them when its
//! standard input closes. `cargo xtask test` runs it (`cargo xtask demo` starts kinesis-local itself, without
//! building this crate).
//!
//! Where a Docker engine answers, Kinesis is LocalStack (`localstack/localstack:4.5`) through testcontainers.
//! Where none does, Kinesis is served by two host emulators: moto and kinesis-local. Either way a second moto
//! runs with IAM enforcement on, for the STS/IAM suite, because LocalStack's community edition does not enforce
//! IAM.
//!
//! Output, one `NAME=VALUE` line per setting, then `READY`:
//! - `TRIBUTARY_TEST_KINESIS`: `name=url` pairs, comma-separated, one per Kinesis emulator;
//! - `TRIBUTARY_TEST_IAM`: the enforcing moto's URL;
//! - `TRIBUTARY_TEST_IAM_ADMIN`: `key_id:secret` of an administrator on it.

use std::io::BufRead as _;
use std::time::Duration;

use anyhow::Context as _;
use tests::emulator::{self, Emulators};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let emulators: Emulators = runtime.block_on(emulator::start_all()).context("starting the emulators")?;
    for (name, value) in emulators.environment() {
        println!("{name}={value}");
    }
    println!("READY");
    runtime.block_on(async {
        // Stop when the parent closes our standard input (it ended, or died), or when we are told to stop: either
        // way the emulators go with us.
        let stdin_closed =
            tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines().map_while(Result::ok) {});
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        tokio::select! {
            _ = stdin_closed => {}
            _ = term.recv() => {}
            _ = hangup.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tokio::time::timeout(Duration::from_secs(20), emulators.stop()).await.ok();
        anyhow::Ok(())
    })?;
    // The blocking stdin reader may still be parked; the process ends here regardless.
    std::process::exit(0)
}
