//! What the last reload of a server's config did, as the server writes it beside its spool and `tributary reload`
//! reads it: the one channel back from a signal, which carries no answer of its own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in the spool folder that holds the outcome of the owner's last reload.
pub const OUTCOME_FILE: &str = "reload-outcome.json";

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The server's process ID.
    pub pid: u32,
    /// The reload's number since the server started, from 1.
    pub sequence: u64,
    /// When it ended, as RFC 3339.
    pub at: String,
    /// `applied` or `refused`.
    pub outcome: String,
    /// What started it: `signal` (SIGHUP, `tributary reload`) or `watch` (`serve --watch-config`).
    pub trigger: String,
    /// What changed, for an applied reload: one line for people.
    pub summary: String,
    /// Every problem found, each naming its file and key, for a refused reload.
    pub problems: Vec<String>,
}

/// Where the outcome of the reloads of the server owning the spool `dir` is written.
pub fn outcome_path(dir: &Path) -> PathBuf {
    dir.join(OUTCOME_FILE)
}

/// Writes `outcome` for the spool `dir`, whole or not at all (a reader never sees half a file).
pub fn write(dir: &Path, outcome: &Outcome) -> std::io::Result<()> {
    let path = outcome_path(dir);
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(outcome).map_err(std::io::Error::other)?)?;
    std::fs::rename(partial, path)
}

/// The outcome last written for the spool `dir`, if any can be read.
pub fn read(dir: &Path) -> Option<Outcome> {
    serde_json::from_slice(&std::fs::read(outcome_path(dir)).ok()?).ok()
}
