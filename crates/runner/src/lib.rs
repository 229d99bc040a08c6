//! The `tributary` runner: config loading, routing, delivery, and the commands of the command line.
//!
//! The binary (`main.rs`) only parses arguments and prints errors; every command lives here so it can be tested.
//! The modules depend one way: `commands` and `serve` on `delivery`, `sync`, `route`, `config` and the helpers
//! below them (`metrics`, `format`, `faults`, `log`, `reloads`), never on each other.

pub mod commands;
pub mod config;
pub mod delivery;
pub mod erasure;
pub mod faults;
pub mod format;
pub mod log;
pub mod metrics;
pub mod plans;
pub mod reloads;
pub mod route;
pub mod serve;
pub mod suppression;
pub mod sync;

/// Where a command writes: its output, or its diagnostics.
pub type Out<'a> = &'a mut (dyn std::io::Write + Send);
