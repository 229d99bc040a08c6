//! The personas test binary.

mod diff;
mod key;
mod message;
mod snapshot;
mod state;
