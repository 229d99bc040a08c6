//! Erasure requests (`tributary privacy delete`): which stored messages are a user's, and the owner of a spool
//! carrying out the requests a command left in it, at start and within a moment while it runs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spool::{IdKind, Spool};
use tokio::sync::watch;

use crate::delivery::stored;

/// The messages of some users, as the spool's erasures ask: a message is a user's when its `userId` (or, for an
/// anonymousId, its `anonymousId`) names them, or when it is an `alias` whose `previousId` does.
pub struct UserEraser {
    user_ids: HashSet<String>,
    anonymous_ids: HashSet<String>,
    /// Each ID's bytes: a message none of them appears in, with no escape in it, names none of them.
    finders: Vec<memchr::memmem::Finder<'static>>,
}

/// The fields that say whose a message is; serde skips the rest without building it.
#[derive(Deserialize)]
struct Whose {
    #[serde(rename = "userId")]
    user_id: Option<serde_json::Value>,
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<serde_json::Value>,
    #[serde(rename = "previousId")]
    previous_id: Option<serde_json::Value>,
}

/// An ID as Segment compares it: a string, or a number's text.
fn id_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

impl UserEraser {
    /// The messages of `ids`.
    pub fn new(ids: &[(IdKind, String)]) -> UserEraser {
        let pick = |kind| ids.iter().filter(move |(k, _)| *k == kind).map(|(_, id)| id.clone());
        let user_ids: HashSet<String> = pick(IdKind::UserId).collect();
        let anonymous_ids: HashSet<String> = pick(IdKind::AnonymousId).collect();
        let finders = user_ids
            .iter()
            .chain(&anonymous_ids)
            .map(|id| memchr::memmem::Finder::new(id.as_bytes()).into_owned())
            .collect();
        UserEraser { user_ids, anonymous_ids, finders }
    }

    /// Whether the message `json` is one of the users'. JSON that does not parse (a rejected message) is theirs
    /// when it holds one of their IDs as a string.
    pub fn matches(&self, json: &[u8]) -> bool {
        // The common case: none of the IDs in it, and no escape that could spell one differently.
        if !self.finders.iter().any(|f| f.find(json).is_some()) && memchr::memchr(b'\\', json).is_none() {
            return false;
        }
        let Ok(whose) = serde_json::from_slice::<Whose>(json) else {
            return self.user_ids.iter().chain(&self.anonymous_ids).any(|id| {
                let quoted = serde_json::to_string(id).unwrap_or_default();
                memchr::memmem::find(json, quoted.as_bytes()).is_some()
            });
        };
        let named = |value: Option<&serde_json::Value>, set: &HashSet<String>| {
            id_text(value).is_some_and(|id| set.contains(&id))
        };
        named(whose.user_id.as_ref(), &self.user_ids)
            || named(whose.anonymous_id.as_ref(), &self.anonymous_ids)
            || named(whose.previous_id.as_ref(), &self.user_ids)
            || named(whose.previous_id.as_ref(), &self.anonymous_ids)
    }
}

impl spool::Eraser for UserEraser {
    fn entry(&self, items: &[u8]) -> Option<spool::Rewrite> {
        // An entry that cannot be read cannot be delivered either; it stays for `dlq` to show.
        let plain = stored::plain(&bytes::Bytes::copy_from_slice(items)).ok()?;
        let triples = stored::triples(&plain).ok()?;
        let (theirs, kept): (Vec<_>, Vec<_>) = triples.into_iter().partition(|(_, _, json)| self.matches(json));
        if theirs.is_empty() {
            return None;
        }
        let removed = theirs.iter().map(|(id, _, _)| (*id).to_owned()).collect();
        let count = kept.len() as u32;
        Some(spool::Rewrite { items: stored::encode(kept), count, removed })
    }

    fn message(&self, message: &[u8]) -> bool {
        self.matches(message)
    }
}

/// What an erasure removed from a spool, as its owner reports it to the command that asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolReport {
    /// Messages removed from waiting entries, by destination.
    pub waiting: BTreeMap<String, u64>,
    /// Entries rewritten without them.
    pub entries: u64,
    /// Dead letters removed.
    pub dead_letters: u64,
    /// Rejections removed.
    pub rejected: u64,
    /// Messages a delivery had taken before the erasure reached them: handed to a sink, they may be delivered.
    pub handed: Vec<Handed>,
    /// Free pages overwritten with zeros.
    pub free_pages: u64,
    /// Whether the WAL was checkpointed and truncated.
    pub checkpointed: bool,
    /// The process that carried it out.
    pub by_pid: u32,
}

/// A message handed to a sink before its erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    /// Where it was going.
    pub destination: String,
    /// Its messageId.
    #[serde(rename = "messageId")]
    pub message_id: String,
}

/// Carries out every erasure asked of `spool` (whose owner this process is), reporting each in the spool.
pub async fn carry_out(spool: &Spool) -> Result<usize, spool::SpoolError> {
    let requests = spool.erasure_requests().await?;
    for request in &requests {
        let eraser = Arc::new(UserEraser::new(&request.ids));
        let erased = spool.erase(eraser, Some(request.id)).await?;
        let report = SpoolReport {
            waiting: erased.waiting,
            entries: erased.entries,
            dead_letters: erased.dead_letters,
            rejected: erased.rejected,
            handed: erased
                .handed
                .into_iter()
                .map(|(destination, message_id)| Handed { destination, message_id })
                .collect(),
            free_pages: erased.free_pages,
            checkpointed: erased.checkpointed,
            by_pid: std::process::id(),
        };
        // The log says what was removed, never whose.
        tracing::info!(
            request = request.id,
            waiting = report.waiting.values().sum::<u64>(),
            dead_letters = report.dead_letters,
            rejected = report.rejected,
            handed = report.handed.len(),
            "carried out an erasure request"
        );
        let text = serde_json::to_string(&report).expect("a report serializes");
        spool.report_erasure(request.id, text).await?;
    }
    Ok(requests.len())
}

/// How often a server looks for erasure requests.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Carries out the erasures asked of the server's `spool` until `stopped`: those left before it started at once,
/// later ones within [`POLL_EVERY`]. A failure is logged and the request tried again at the next poll.
pub fn watch(spool: Spool, mut stopped: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = carry_out(&spool).await {
                tracing::warn!(error = %e, "carrying out an erasure request failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = stopped.changed() => return,
            }
        }
    });
}
