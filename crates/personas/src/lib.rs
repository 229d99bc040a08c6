//! Personas-style audiences and computed traits, synced as Segment Personas syncs a user-property destination.
//!
//! - [`definition`]: the audience files, `configs/audiences/*.toml`.
//! - [`key`]: the snake_case rule that turns a name into a trait key.
//! - [`diff`]: the membership diff, pure: previous state and current snapshot in, changes out.
//! - [`message`]: the calls for each change (identify, track, group), each with a deterministic `messageId`.
//! - [`snapshot`]: reading the warehouse export (CSV or NDJSON, gzip, parts), sorted on disk when larger than memory.
//! - [`state`]: the SQLite store of what each destination was last told, and the sync log of every run.

pub mod definition;
pub mod diff;
pub mod key;
pub mod kind;
pub mod message;
pub mod snapshot;
pub mod state;

/// Who a member is: a `userId` when the export has one, else an `anonymousId`; for an account trait, a user of
/// an account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// Known by `userId`.
    User(String),
    /// Known only by `anonymousId`.
    Anonymous(String),
    /// A user (or anonymous visitor) of the account `group` (the `groupId`).
    Account {
        /// The account's ID.
        group: String,
        /// The user.
        user: Box<Identity>,
    },
}

impl Identity {
    /// The key the state store and the diff sort by: `u:` or `a:` before the ID; for an account's user, `g:`, the
    /// length of the account ID, `:`, the account ID and the user's key (the length makes any account ID safe).
    pub fn storage_key(&self) -> String {
        match self {
            Identity::User(id) => format!("u:{id}"),
            Identity::Anonymous(id) => format!("a:{id}"),
            Identity::Account { group, user } => format!("g:{}:{group}{}", group.len(), user.storage_key()),
        }
    }

    /// The identity of a storage key.
    pub fn from_storage_key(key: &str) -> Option<Identity> {
        match key.split_at_checked(2)? {
            ("u:", id) => Some(Identity::User(id.to_owned())),
            ("a:", id) => Some(Identity::Anonymous(id.to_owned())),
            ("g:", rest) => {
                let (length, rest) = rest.split_once(':')?;
                let (group, user) = rest.split_at_checked(length.parse().ok()?)?;
                match Identity::from_storage_key(user)? {
                    user @ (Identity::User(_) | Identity::Anonymous(_)) => {
                        Some(Identity::Account { group: group.to_owned(), user: Box::new(user) })
                    }
                    Identity::Account { .. } => None,
                }
            }
            _ => None,
        }
    }

    /// The userId or anonymousId (an account's user's, for an account trait).
    pub fn user_or_anonymous_id(&self) -> &str {
        match self {
            Identity::User(id) | Identity::Anonymous(id) => id,
            Identity::Account { user, .. } => user.user_or_anonymous_id(),
        }
    }
}
