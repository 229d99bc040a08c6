//! What an operator runs around delivery, not during it: creating, describing and reading streams (`admin`), and
//! the IAM documents a destination needs with the `check` that tries each identity (`iam`).

pub mod admin;
pub mod iam;
