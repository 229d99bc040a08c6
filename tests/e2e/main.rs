//! End-to-end suites against the AWS emulators that `cargo xtask test` starts.

mod kinesis;
mod shards;
mod sts;
mod support;
