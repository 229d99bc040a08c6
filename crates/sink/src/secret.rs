//! Secrets in config files: written as `{ env = "NAME" }` or `{ file = "PATH" }` so that they stay out of git.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How a config file refers to a secret.
///
/// ```toml
/// secret_id = { env = "KINESIS_SECRET_ID" }      # read from the environment
/// secret_id = { file = "/run/secrets/secret_id" } # read from a file (relative paths are from the config folder)
/// secret_id = "inline-value"                      # allowed, but `validate` warns: it belongs outside git
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    /// The secret itself, written in the file.
    Inline(String),
    /// The name of an environment variable that holds the secret.
    Env {
        /// The variable's name.
        env: String,
    },
    /// A file that holds the secret; surrounding white space is trimmed.
    File {
        /// The file's path, relative to the config folder unless absolute.
        file: PathBuf,
    },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Inline(_) => f.write_str("SecretRef::Inline(***)"),
            SecretRef::Env { env } => write!(f, "SecretRef::Env({env:?})"),
            SecretRef::File { file } => write!(f, "SecretRef::File({file:?})"),
        }
    }
}

/// Why a secret could not be read. The message names where it was looked for, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not valid Unicode).
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file's path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The secret resolved to an empty string.
    #[error("the secret is empty")]
    Empty,
}

impl SecretRef {
    /// Whether the secret is written in the config file itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, SecretRef::Inline(_))
    }

    /// Reads the secret. Relative file paths are taken from `base_dir`.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Inline(value) => value.clone(),
            SecretRef::Env { env } => std::env::var(env).map_err(|_| SecretError::MissingEnv(env.clone()))?,
            SecretRef::File { file } => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|source| SecretError::File { path, source })?;
                text.trim().to_owned()
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(value))
    }
}

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that is already known.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
