//! The governance test binary: FQL on the material of Segment's reference, destination filters, and privacy controls.

mod filters;
mod fql;
mod plan;
mod privacy;
