//! The end-to-end test harness: emulator processes, endpoints from the environment, streams, and a recording
//! proxy.

pub mod emulator;
pub mod env;
pub mod export;
pub mod hostile;
pub mod iam;
pub mod proxy;
pub mod standin;
pub mod stream;
pub mod web;
