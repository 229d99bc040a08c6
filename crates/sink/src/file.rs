//! NDJSON appended to a file.

use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::sync::Mutex;

use crate::stdout::{outcomes, write_lines};
use crate::{Outcome, Record, Sink};

/// The `file` destination type: appends each record's JSON as one line and syncs the file to disk before it
/// reports the batch delivered, so a delivered record survives a crash.
pub struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
    /// Whether the file can be synced: a regular file can; a device or a pipe (`/dev/null`, a FIFO a reader
    /// drains) cannot, and a write to one is as delivered as it gets.
    syncs: bool,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending. Missing parent folders are created.
    pub async fn open(path: impl AsRef<Path>) -> std::io::Result<FileSink> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).await?;
        let syncs = file.metadata().await?.file_type().is_file();
        Ok(FileSink { path, file: Mutex::new(file), syncs })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let mut file = self.file.lock().await;
        let mut result = write_lines(&mut *file, &records).await;
        if result.is_ok() && self.syncs {
            result = file.sync_data().await;
        }
        outcomes(records.len(), result, &self.path.display().to_string())
    }
}
