//! Delivery, as `serve` and `dlq replay` both run it: the per-destination worker (`worker`), the spool entry
//! format it reads (`stored`), and what workers report about themselves (`health`).

pub mod health;
pub mod stored;
pub mod worker;
