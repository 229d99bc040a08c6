//! Delivery, as `serve` and `dlq replay` both run it: the per-destination worker (`worker`), the spool entry
//! format it reads (`stored`), and what workers report about themselves (`health`).

pub mod health;
pub mod stored;
pub mod worker;

use std::path::Path;

use spool::SpoolError;

/// `error`, from opening the spool in `dir` (`serve`, `dlq`, `rejected`), worded with what the operator can do: the
/// spool's errors carry what went wrong, and the commands know their flags.
pub fn spool_error(dir: &Path, error: SpoolError) -> anyhow::Error {
    let hint = match &error {
        SpoolError::Locked { .. } => {
            "a `serve`, or a `dlq replay` delivering with no server running; stop it, or give this server its own \
             --spool-dir"
        }
        SpoolError::Missing { .. } => "pass the server's --spool-dir",
        SpoolError::Newer { .. } => "run that version on it, or give this one another --spool-dir",
        _ => return anyhow::Error::new(error).context(format!("opening the spool in {}", dir.display())),
    };
    anyhow::anyhow!("opening the spool in {}: {error}: {hint}", dir.display())
}
