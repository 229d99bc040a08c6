//! Suppressed users: their messages are dropped at ingest, never stored, and not sent by `send` or `personas
//! sync`. Two lists are in force together and a message is dropped if either names its user (fail closed): the
//! spool's, changed by `tributary privacy suppress|unsuppress` and read again by a running server within a second,
//! and the config folder's `suppressions/*.toml`, which a fleet shares through git and reload.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use segment_model::Message;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::Config;

/// Suppressed identifiers, looked up per message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Suppressions {
    user_ids: HashSet<String>,
    anonymous_ids: HashSet<String>,
}

/// The identifiers of an invalid message, read from its JSON.
#[derive(Deserialize)]
struct Ids {
    #[serde(default, rename = "userId")]
    user_id: Option<serde_json::Value>,
    #[serde(default, rename = "anonymousId")]
    anonymous_id: Option<serde_json::Value>,
}

fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Suppressions {
    /// The config folder's list: every `suppressions/*.toml`.
    pub fn from_config(config: &Config) -> Suppressions {
        let mut list = Suppressions::default();
        for file in &config.suppressions {
            list.user_ids.extend(file.config.user_ids.iter().cloned());
            list.anonymous_ids.extend(file.config.anonymous_ids.iter().cloned());
        }
        list
    }

    /// The spool's list.
    pub fn from_spool(rows: &[spool::Suppressed]) -> Suppressions {
        let mut list = Suppressions::default();
        for row in rows {
            match row.kind {
                spool::IdKind::UserId => list.user_ids.insert(row.id.clone()),
                spool::IdKind::AnonymousId => list.anonymous_ids.insert(row.id.clone()),
            };
        }
        list
    }

    /// Both lists: the config folder's and the spool's in `spool_dir` (none when there is no spool there).
    pub fn in_force(config: &Config, spool_dir: Option<&Path>) -> anyhow::Result<Suppressions> {
        let mut list = Suppressions::from_config(config);
        if let Some(dir) = spool_dir {
            let rows = spool::suppressions(dir).map_err(|e| crate::delivery::spool_error(dir, e))?;
            let spooled = Suppressions::from_spool(&rows);
            list.user_ids.extend(spooled.user_ids);
            list.anonymous_ids.extend(spooled.anonymous_ids);
        }
        Ok(list)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty() && self.anonymous_ids.is_empty()
    }

    /// Whether `message`'s userId or anonymousId is listed.
    pub fn suppresses(&self, message: &Message) -> bool {
        let listed = |set: &HashSet<String>, id: Option<segment_model::Id<'_>>| {
            !set.is_empty() && id.is_some_and(|id| set.contains(id.to_text().as_ref()))
        };
        listed(&self.user_ids, message.user_id()) || listed(&self.anonymous_ids, message.anonymous_id())
    }

    /// Whether the message whose JSON is `json` (an invalid one, which has no [`Message`]) names a listed user.
    pub fn suppresses_json(&self, json: &[u8]) -> bool {
        let Ok(ids) = serde_json::from_slice::<Ids>(json) else { return false };
        let listed = |set: &HashSet<String>, id: Option<&serde_json::Value>| {
            id.and_then(id_text).is_some_and(|id| set.contains(&id))
        };
        listed(&self.user_ids, ids.user_id.as_ref()) || listed(&self.anonymous_ids, ids.anonymous_id.as_ref())
    }
}

/// The spool's list as a running server holds it.
pub type SpoolList = Arc<RwLock<Arc<Suppressions>>>;

/// How often a server looks for a change to the spool's list: a change is in force within this long.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Reads the spool's list in `spool_dir` (whose owner has opened it) and keeps it current until `stopped`: a
/// change made by `privacy suppress` beside the server is in force within [`POLL_EVERY`]. A failed read keeps the
/// list as it was, and says so in the log.
pub fn watch_spool(spool_dir: &Path, mut stopped: watch::Receiver<bool>) -> anyhow::Result<SpoolList> {
    let mut watching =
        spool::SuppressionWatch::open(spool_dir).map_err(|e| crate::delivery::spool_error(spool_dir, e))?;
    let first = watching.poll().map_err(|e| crate::delivery::spool_error(spool_dir, e))?.unwrap_or_default();
    let list: SpoolList = Arc::new(RwLock::new(Arc::new(Suppressions::from_spool(&first))));
    let shared = list.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = stopped.changed() => return,
            }
            let polled = tokio::task::spawn_blocking(move || {
                let polled = watching.poll();
                (watching, polled)
            })
            .await;
            let Ok((back, polled)) = polled else { return };
            watching = back;
            match polled {
                Ok(Some(rows)) => {
                    *shared.write().expect("suppression list lock poisoned") =
                        Arc::new(Suppressions::from_spool(&rows));
                    tracing::info!(listed = rows.len(), "the spool's suppression list changed");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the spool's suppression list failed; the last one read stays in force")
                }
            }
        }
    });
    Ok(list)
}
