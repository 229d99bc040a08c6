//! The runner test binary: config examples, validation, and the `tributary` command end to end.

mod acceptance;
mod browser;
mod cli;
mod clients;
mod dedupe;
mod durability;
mod engage;
mod examples;
mod faults;
mod filters;
mod firehose;
mod fleet;
mod hostile;
mod keys;
mod libraries;
mod operations;
mod overload;
mod personas;
mod plans;
mod privacy;
mod reload;
mod serve;
mod server;
mod setup;
mod streams;
mod timing;
mod validate;

use std::path::{Path, PathBuf};

/// The repository's `configs/` folder.
pub fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// A fresh, empty folder for one test. The first call of a run removes the folders runs that have ended left
/// behind (named for their process, which no longer exists), so that runs on one machine do not fill its disk.
pub fn scratch(name: &str) -> PathBuf {
    scratch_under(&std::env::temp_dir(), name)
}

/// Where [`scratch_in_memory`] puts its folders: Linux's memory-backed `/dev/shm`.
const MEMORY: &str = "/dev/shm";

/// A fresh, empty folder for one test in memory (`/dev/shm`), for the latency comparisons' spools. On this
/// machine's disk a commit's fsync takes either about 2.4 or about 3.4 ms, whatever the load, so a p99 measured on
/// it is the disk's and flips between rounds by more than the comparisons' 20%; in memory it measures the server.
/// Where there is no `/dev/shm`, the temporary folder.
pub fn scratch_in_memory(name: &str) -> PathBuf {
    match Path::new(MEMORY).is_dir() {
        true => scratch_under(Path::new(MEMORY), name),
        false => scratch(name),
    }
}

fn scratch_under(parent: &Path, name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| [std::env::temp_dir(), PathBuf::from(MEMORY)].iter().for_each(|d| remove_left_behind(d)));
    let dir = parent.join(format!("tributary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `tributary-NAME-PID` folders in `parent` whose process is gone.
fn remove_left_behind(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `tributary-NAME-PID`, or a server's log beside its spool, `tributary-NAME-PID.PORT.log`.
        let Some(pid) = name.strip_prefix("tributary-").and_then(|rest| rest.rsplit('-').next()?.split('.').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        }
    }
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// Runs `tributary` with `args`, returning (exit success, stdout, stderr).
pub fn tributary(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"));
    command
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run tributary");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}
