//! Reading into a message's raw JSON without building it: the scanner of [`segment_model::scan`], and a parse for
//! the values a reader needs whole.

pub use segment_model::scan::*;

/// Parses a value into a tree.
pub fn parse(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}
