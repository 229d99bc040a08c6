//! Starts the AWS emulators the end-to-end suites need, prints their endpoints, and stops them when its
//! standard input closes. `cargo xtask test` and `cargo xtask demo` run it.
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

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let only_kinesis = std::env::args().any(|a| a == "--kinesis-only");
    let emulators: Emulators = runtime.block_on(emulator::start_all(!only_kinesis)).context("starting the emulators")?;
    for (name, value) in emulators.environment() {
        println!("{name}={value}");
    }
    println!("READY");
    // Wait for the parent to close our standard input, whether it ends normally or dies.
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), emulators.stop()).await.ok();
    });
    Ok(())
}
