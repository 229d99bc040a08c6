//! Dropping resends as Segment does: a valid message whose messageId was accepted within the window is not stored
//! again, and its request is still answered 200. On one node the keys live in the spool; a fleet shares them in
//! Redis ([`shared`]).
//!
//! A message's key is a keyed hash of its messageId (and of its source, for a source with `dedupe_scope =
//! "source"`), so that no client, knowing the IDs others send, can craft a key that suppresses their messages. The
//! keys live in the spool, recorded in the commit that stores the messages they stand for: a resend after a lost
//! 200 is dropped, a resend after a failed commit is stored. Two copies arriving at once may both be stored, never
//! both dropped.

pub mod request;
pub mod shared;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use segment_model::Message;
use sha2::{Digest as _, Sha256};

/// The secret file a spool gets when `--dedupe-secret-file` is not given.
pub const SECRET_FILE: &str = "dedupe-secret";

/// The fewest bytes a dedupe secret may have.
const MIN_SECRET_BYTES: usize = 16;

/// How resends are dropped: how messageIds are keyed and where the keys are held.
pub struct Dedupe {
    /// The keyed hash.
    pub keys: Keys,
    /// How long a key counts.
    pub window: std::time::Duration,
    /// The fleet's shared store (`--dedupe-store`); without it, the keys are the spool's own.
    pub shared: Option<std::sync::Arc<shared::Store>>,
    /// Refuse (503) a request the shared store could not check, rather than take it without dedupe.
    pub required: bool,
}

/// The keyed hash of messageIds.
pub struct Keys {
    secret: Vec<u8>,
}

impl Keys {
    /// Keys made with `secret`.
    pub fn new(secret: Vec<u8>) -> Keys {
        Keys { secret }
    }

    /// The key of `message_id`, within `source` for a source whose scope is its own.
    pub fn key(&self, source: Option<&str>, message_id: &str) -> i64 {
        let mut hash = Sha256::new();
        hash.update((self.secret.len() as u32).to_le_bytes());
        hash.update(&self.secret);
        match source {
            // Length-prefixed, so that no source and ID can be taken for another pair.
            Some(source) => {
                hash.update([1]);
                hash.update((source.len() as u32).to_le_bytes());
                hash.update(source.as_bytes());
            }
            None => hash.update([0]),
        }
        hash.update(message_id.as_bytes());
        let digest = hash.finalize();
        i64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
    }

    /// The keys of `messages` to look up and record, and which messages repeat an earlier one of the same request.
    /// A message without a messageId of its own (one is made for it later) has no key and is never a duplicate.
    pub fn of(&self, source: Option<&str>, messages: &[Message]) -> (Vec<Option<i64>>, Vec<bool>) {
        let keys: Vec<Option<i64>> = messages
            .iter()
            .map(|m| m.message_id().filter(|id| !id.is_empty()).map(|id| self.key(source, id)))
            .collect();
        let mut seen = HashSet::with_capacity(keys.len());
        let repeated = keys.iter().map(|key| key.is_some_and(|key| !seen.insert(key))).collect();
        (keys, repeated)
    }
}

/// The secret keys are made with: `--dedupe-secret-file` (which every node of a fleet shares), or the spool's own,
/// made once from the system's random source and kept beside it (readable by its owner only).
pub fn secret(file: Option<&Path>, spool_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(file) = file {
        let text = std::fs::read(file).with_context(|| format!("reading --dedupe-secret-file {}", file.display()))?;
        let secret = text.trim_ascii().to_vec();
        if secret.len() < MIN_SECRET_BYTES {
            bail!(
                "--dedupe-secret-file {} holds {} bytes; a dedupe secret needs at least {MIN_SECRET_BYTES} (for example \
                 `head -c 32 /dev/urandom | base64 > FILE`)",
                file.display(),
                secret.len()
            );
        }
        return Ok(secret);
    }
    let path = spool_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= MIN_SECRET_BYTES => return Ok(secret),
        Ok(_) => bail!("{} is shorter than a dedupe secret: remove it to have a new one made", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    make_secret(&path)
}

/// Makes a secret of 32 random bytes at `path`, written whole or not at all. The bytes come from the kernel's
/// `getrandom`, which needs no `/dev` (an image run without one still starts).
fn make_secret(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0u8; 32];
    let mut filled = 0;
    while filled < secret.len() {
        filled += rustix::rand::getrandom(&mut secret[filled..], rustix::rand::GetRandomFlags::empty())
            .context("reading the kernel's random source for a dedupe secret")?;
    }
    let partial = path.with_extension("partial");
    let written = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
        file.write_all(&secret)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    written.with_context(|| format!("writing the dedupe secret {}", path.display()))?;
    Ok(secret)
}

/// Logs, once each time, when the window the key store holds drops below `window` (the key budget is full: the
/// oldest keys went first) and when it is whole again, until `stop` turns true.
pub async fn watch_window(
    spool: spool::Spool,
    window: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let window_millis = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let mut short = false;
    while !*stop.borrow() {
        let held = spool.dedupe_stats().window_held_millis;
        // A second of slack: keys are dated, and removed, to within a second.
        let now_short = held < window_millis - 1_000;
        if now_short != short {
            short = now_short;
            let held = crate::format::format_duration(std::time::Duration::from_millis(held.max(0) as u64));
            let window = crate::format::format_duration(window);
            if short {
                tracing::warn!(held = %held, window = %window, "the dedupe keys fill --dedupe-max-bytes: the oldest go first, and resends older than the window held are stored again");
            } else {
                tracing::warn!(held = %held, window = %window, "the dedupe keys hold the whole --dedupe-window again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_secret_the_id_and_the_scope() {
        let (a, b) = (Keys::new(b"a secret of sixteen".to_vec()), Keys::new(b"another secret, 16".to_vec()));
        assert_eq!(a.key(None, "m-1"), a.key(None, "m-1"));
        assert_ne!(a.key(None, "m-1"), b.key(None, "m-1"), "another secret, another key");
        assert_ne!(a.key(None, "m-1"), a.key(None, "m-2"));
        assert_ne!(a.key(None, "m-1"), a.key(Some("src"), "m-1"), "a source's own scope is apart from the global one");
        assert_ne!(a.key(Some("src"), "m-1"), a.key(Some("src2"), "m-1"));
        // Neither source nor ID can spill into the other.
        assert_ne!(a.key(Some("ab"), "c"), a.key(Some("a"), "bc"));
    }

    #[test]
    fn a_made_secret_is_kept_and_read_back() {
        let dir = std::env::temp_dir().join(format!("tributary-dedupe-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = secret(None, &dir).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(secret(None, &dir).unwrap(), first, "the spool keeps its secret");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
        let short = dir.join("short");
        std::fs::write(&short, "too short\n").unwrap();
        let error = secret(Some(&short), &dir).unwrap_err().to_string();
        assert!(error.contains("--dedupe-secret-file") && error.contains("at least 16"), "{error}");
        std::fs::write(&short, "a secret shared by the fleet\n").unwrap();
        assert_eq!(secret(Some(&short), &dir).unwrap(), b"a secret shared by the fleet");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
