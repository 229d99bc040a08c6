//! Personas-style audiences and computed traits, synced as Segment Personas syncs a user-property destination.
//!
//! - [`definition`]: the audience files, `configs/audiences/*.toml`.
//! - [`key`]: the snake_case rule that turns a name into a trait key.
//! - [`diff`]: the membership diff, pure: previous state and current snapshot in, changes out.
//! - [`message`]: the identify message for each change, with a deterministic `messageId`.
//! - [`snapshot`]: reading the warehouse export (CSV or NDJSON).
//! - [`state`]: the SQLite store of what each destination was last told.

pub mod definition;
pub mod diff;
pub mod key;
pub mod message;
pub mod snapshot;
pub mod state;

/// Who a member is: a `userId` when the export has one, else an `anonymousId`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// Known by `userId`.
    User(String),
    /// Known only by `anonymousId`.
    Anonymous(String),
}

impl Identity {
    /// The key the state store and the diff sort by: `u:` or `a:` before the ID.
    pub fn storage_key(&self) -> String {
        match self {
            Identity::User(id) => format!("u:{id}"),
            Identity::Anonymous(id) => format!("a:{id}"),
        }
    }

    /// The identity of a storage key.
    pub fn from_storage_key(key: &str) -> Option<Identity> {
        match key.split_at_checked(2)? {
            ("u:", id) => Some(Identity::User(id.to_owned())),
            ("a:", id) => Some(Identity::Anonymous(id.to_owned())),
            _ => None,
        }
    }
}
