//! NDJSON appended to a file.

use std::io::{IoSlice, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::stdout::outcomes;
use crate::{Outcome, Record, Sink};

/// The `file` destination type: appends each record's JSON as one line and syncs the file to disk before it
/// reports the batch delivered, so a delivered record survives a crash.
pub struct FileSink {
    path: PathBuf,
    /// An async lock, taken in the order deliveries arrive, so that batches land in that order; the writing itself
    /// happens on a blocking thread that holds it.
    file: Arc<Mutex<std::fs::File>>,
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
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?.into_std().await;
        let syncs = file.metadata()?.file_type().is_file();
        Ok(FileSink { path, file: Arc::new(Mutex::new(file)), syncs })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How many slices one `writev` takes: Linux's `IOV_MAX`.
const SLICES_PER_WRITE: usize = 1024;

/// Writes each record's payload and a newline straight from the records' buffers (vectored writes), so that a
/// batch is copied once, by the kernel, instead of first into one buffer of its own.
fn write_records(file: &mut std::fs::File, records: &[Record]) -> std::io::Result<()> {
    for chunk in records.chunks(SLICES_PER_WRITE / 2) {
        let mut slices: Vec<IoSlice<'_>> =
            chunk.iter().flat_map(|r| [IoSlice::new(r.payload()), IoSlice::new(b"\n")]).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut rest, written),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let mut file = self.file.clone().lock_owned().await;
        let syncs = self.syncs;
        let count = records.len();
        let result = tokio::task::spawn_blocking(move || {
            write_records(&mut file, &records)?;
            match syncs {
                true => file.sync_data(),
                false => Ok(()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        outcomes(count, result, &self.path.display().to_string())
    }
}
