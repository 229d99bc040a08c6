//! The governance test binary: FQL on the material of Segment's reference, and destination filters.

mod filters;
mod fql;
