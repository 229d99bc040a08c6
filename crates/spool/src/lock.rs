//! The owner's lock on a spool folder: one process delivers a spool at a time.

use std::path::Path;

use crate::SpoolError;

/// The name of the lock file in the spool folder; it holds the owner's process ID.
pub const LOCK_FILE: &str = "spool.lock";

pub(crate) fn create_folder(dir: &Path) -> Result<(), SpoolError> {
    std::fs::create_dir_all(dir).map_err(|source| SpoolError::Folder { path: dir.to_owned(), source })
}

/// Takes the owner's lock on the spool folder `dir` and writes this process's ID into it. The lock is the
/// kernel's (`flock`), so it goes when the process does, however it ends.
pub(crate) fn lock(dir: &Path) -> Result<std::fs::File, SpoolError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| SpoolError::Folder { path: path.clone(), source };
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(SpoolError::Locked { path: dir.to_owned(), owner: text.trim().parse().ok() })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// The process ID of the process that owns the spool folder `dir` now, or `None` when none does (no lock file, or
/// its lock is free: the owner ended). Takes no lock that outlives the call.
pub fn owner(dir: &Path) -> Result<Option<u32>, SpoolError> {
    use std::io::Read as _;
    let path = dir.join(LOCK_FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SpoolError::Folder { path, source }),
    };
    match file.try_lock_shared() {
        // Free: nobody owns it (the lock goes as this handle closes).
        Ok(()) => Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(|source| SpoolError::Folder { path: path.clone(), source })?;
            Ok(text.trim().parse().ok())
        }
        Err(std::fs::TryLockError::Error(source)) => Err(SpoolError::Folder { path, source }),
    }
}
