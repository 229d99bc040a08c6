//! `tributary validate`: checks the config folder and prints every problem with its file and key.

use std::path::Path;
use std::process::ExitCode;

use crate::Out;
use crate::config::load;

/// Checks `dir`: every problem goes to `err` (the command fails on any error), the counts to `out`.
pub fn run(dir: &Path, out: Out<'_>, err: Out<'_>) -> anyhow::Result<ExitCode> {
    let config = load(dir, err)?;
    writeln!(
        out,
        "{}: {} sources, {} destinations, {} audiences and traits, no errors",
        dir.display(),
        config.sources.len(),
        config.destinations.len(),
        config.audiences.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
