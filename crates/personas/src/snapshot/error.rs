//! Why an export could not be read.

use std::path::PathBuf;

/// Why an export could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A CSV could not be read.
    #[error("reading {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV error.
        source: csv::Error,
    },
    /// A Parquet file could not be read.
    #[error("reading Parquet {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader said.
        message: String,
    },
    /// A header (or a Parquet schema) lacks a column the config names.
    #[error("{path}: the header has no column {column:?} (source.{key} in the audience file); it has: {found}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The config key.
        key: &'static str,
        /// The column.
        column: String,
        /// The header's columns.
        found: String,
    },
    /// The export's location gives no readable parts.
    #[error("{path}: {message}")]
    Parts {
        /// The file, folder or glob.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Spilling or merging sorted runs failed.
    #[error("sorting the export in {dir}: {source}")]
    Spill {
        /// The folder of the runs.
        dir: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}
