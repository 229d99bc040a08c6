//! What a computation is: an audience, a computed trait, or an account-level trait. The definition reads it and
//! the snapshot reads an export's columns by it.

use serde::Deserialize;

/// Whether a computation is an audience (members get `true`, leavers `false`), a computed trait (members get
/// their value, leavers `null`) or an account-level computed trait (the same, for every user of an account, sent
/// as `group` calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An audience: a set of users.
    Audience,
    /// A computed trait: a value per user.
    Trait,
    /// An account-level computed trait: a value per account (`[source] group_id_column`), told to each of the
    /// account's users with a `group` call.
    AccountTrait,
}

impl Kind {
    /// `computation_class` in `context.personas`.
    pub fn computation_class(self) -> &'static str {
        match self {
            Kind::Audience => "audience",
            Kind::Trait => "trait",
            Kind::AccountTrait => "account_trait",
        }
    }

    /// Whether members carry a value (traits) rather than `true` (audiences).
    pub fn has_value(self) -> bool {
        self != Kind::Audience
    }
}
