//! The spool's errors: each carries what went wrong and where; the command that opened the spool words the hint.

use std::path::PathBuf;
use std::sync::Arc;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds as many messages as it may; the caller should push back.
    #[error("the spool is full ({depth} messages waiting, the limit is {max})")]
    Full {
        /// Messages waiting.
        depth: u64,
        /// The limit.
        max: u64,
    },
    /// The spool holds as many bytes as it may; the caller should push back.
    #[error("the spool is full ({bytes} bytes waiting, the limit is {max})")]
    FullBytes {
        /// Bytes waiting.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// SQLite failed.
    #[error("spool database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A commit of the writer thread failed; nothing of it was stored.
    #[error("spool commit failed: {}: {source}", path.display())]
    Commit {
        /// The database file.
        path: PathBuf,
        /// What SQLite said, shared by every caller whose work was in the commit.
        source: Arc<rusqlite::Error>,
    },
    /// The spool folder could not be created.
    #[error("creating the spool folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The writer thread has stopped.
    #[error("the spool writer has stopped")]
    Stopped,
    /// Another process owns the spool folder.
    #[error(
        "the spool folder {} is in use by another process{}",
        path.display(),
        owner.map(|pid| format!(" (PID {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The folder.
        path: PathBuf,
        /// The owner's process ID, as it wrote it in the lock file.
        owner: Option<u32>,
    },
    /// There is no spool in the folder (a command that only reads or hands work to a spool's owner creates none).
    #[error("no spool at {}", path.display())]
    Missing {
        /// The database file looked for.
        path: PathBuf,
    },
    /// The spool was written by a newer version, whose layout this one does not read.
    #[error("{} was written by a newer Tributary (spool version {version}; this one reads up to {supported})", path.display())]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its layout version.
        version: i64,
        /// The newest layout this version reads.
        supported: i64,
    },
}
