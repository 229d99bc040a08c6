//! What goes in and comes out of the spool: entries to append and entries read back, their settlements, dead
//! letters, rejections, and the counts of what waits.

/// Messages to store for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The destination's name.
    pub destination: String,
    /// The source the messages came from.
    pub source_id: String,
    /// The messages, encoded by the caller.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
}

/// A message the server accepted the request of but refused to deliver (it broke a rule of the sender's protocol),
/// kept for the operator to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRejection {
    /// The source the message came from.
    pub source_id: String,
    /// Its position in the request, when the request held several.
    pub index: Option<u32>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The message as sent, when it is kept.
    pub message: Option<Vec<u8>>,
}

/// A stored rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its ID; increasing in order of arrival.
    pub id: i64,
    /// When it was stored, in Unix milliseconds.
    pub at: i64,
    /// The source the message came from.
    pub source_id: String,
    /// Its position in the request, when the request held several.
    pub index: Option<u32>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The message as sent, when it was kept.
    pub message: Option<Vec<u8>>,
}

/// Which rejections to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    /// Only those of this source.
    pub source_id: Option<String>,
    /// Only those stored at or after this time, in Unix milliseconds.
    pub since: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its spool ID; increasing in order of arrival.
    pub id: i64,
    /// The destination's name.
    pub destination: String,
    /// The source the messages came from.
    pub source_id: String,
    /// The messages, as the caller encoded them.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
    /// When it was stored, in Unix milliseconds.
    pub enqueued_at: i64,
    /// How many delivery attempts have failed so far.
    pub attempts: i64,
    /// Whether it has never been tried since the spool was opened by its owner (not waiting for a retry).
    pub fresh: bool,
}

/// What became of an entry after a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The entry.
    pub id: i64,
    /// The messages still to deliver, if any, and when to try again.
    pub retry: Option<Retry>,
    /// Messages that failed permanently, each with its bytes and reason; they move to the dead-letter table.
    pub dead: Vec<(Vec<u8>, String)>,
}

/// The rest of an entry, to try again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The messages left, encoded by the caller.
    pub items: Vec<u8>,
    /// How many messages `items` holds.
    pub count: u32,
    /// When to try again, in Unix milliseconds.
    pub at: i64,
    /// Why the last attempt failed.
    pub reason: String,
}

/// A message whose delivery failed permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its dead-letter ID.
    pub id: i64,
    /// The destination's name.
    pub destination: String,
    /// The source the message came from.
    pub source_id: String,
    /// The message bytes.
    pub message: Vec<u8>,
    /// When it was first stored, in Unix milliseconds.
    pub enqueued_at: i64,
    /// When it failed for good, in Unix milliseconds.
    pub failed_at: i64,
    /// Why.
    pub reason: String,
}

/// What one destination has waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Messages.
    pub messages: u64,
    /// Bytes of their stored entries.
    pub bytes: u64,
    /// Of those bytes, the ones of dead letters moved back by a replay: they were stored already, so a backlog
    /// budget, which bounds what ingest adds, does not count them.
    pub replayed_bytes: u64,
}

/// The durability settings of the connection that commits the spool's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `PRAGMA journal_mode`, lowercase as SQLite reports it (`wal`).
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    pub synchronous: i64,
}
