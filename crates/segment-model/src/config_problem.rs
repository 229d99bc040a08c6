//! The one shape a settings check reports in.

use std::fmt;

/// One problem with a block of settings: the key at fault, relative to the block that was checked, and what is
/// wrong. Every crate that checks settings (a sink's table, a personas definition) reports in this shape, and the
/// runner adds the file. It lives here because every such crate already depends on the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, for example `region` or `source.value_column`.
    pub key: &'static str,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key`.
    pub fn new(key: &'static str, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { key, message: message.into() }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
