//! The `tributary` runner: config loading, routing and the commands of the command line.
//!
//! The binary (`main.rs`) only parses arguments and prints errors; every command lives here so it can be tested.

pub mod commands;
pub mod config;
pub mod route;
pub mod serve;
