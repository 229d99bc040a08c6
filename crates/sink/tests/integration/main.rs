//! The sink test binary.

mod builtin;
mod secret;
