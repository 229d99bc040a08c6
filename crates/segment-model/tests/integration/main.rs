//! The segment-model test binary: one per crate, modules per area.

mod batch;
mod enrich;
mod fuzz;
mod key;
mod roundtrip;
mod validate;
