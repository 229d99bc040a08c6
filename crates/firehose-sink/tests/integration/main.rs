//! The Firehose sink's test binary: its pure parts, and delivery through a scripted Firehose (per-record
//! failures, the PutRecord fallback, credential refresh, several streams per message). Delivery to a real engine
//! (moto, LocalStack) is the runner suite's `firehose` module, through `tributary` itself.

mod delivery;
mod pure;
