//! Whom an AWS destination's calls are signed as, by Segment's rule: without a role, the process's own
//! credentials; with one, the role assumed presenting the destination's Secret ID as External ID if it has one,
//! else the ID of the source (or audience) the message came from.
//!
//! The sinks, `iam`, `check`, `tail` and `streams` all take their identities from [`IdentityRule`], so the rule is
//! written once.

/// The identity one call is signed as.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SignAs {
    /// The process's own credentials: the destination assumes no role.
    Process,
    /// The destination's role, assumed presenting this External ID.
    ExternalId(ExternalId),
}

/// An External ID presented to AssumeRole: a sender's ID, or the destination's Secret ID, which is never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExternalId {
    value: String,
    secret: bool,
}

impl ExternalId {
    /// A sender's ID (a source's, or an audience's `source_id`), which may be printed.
    pub fn sender(id: impl Into<String>) -> ExternalId {
        ExternalId { value: id.into(), secret: false }
    }

    /// The destination's Secret ID, which is never printed.
    pub fn secret(secret_id: impl Into<String>) -> ExternalId {
        ExternalId { value: secret_id.into(), secret: true }
    }

    /// The value to present. Never print it: it may be a secret.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether this is the destination's Secret ID.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl SignAs {
    /// The External ID to present, if a role is assumed.
    pub fn external_id(&self) -> Option<&ExternalId> {
        match self {
            SignAs::Process => None,
            SignAs::ExternalId(id) => Some(id),
        }
    }

    /// How the identity is named in output: the sender's ID, `secret_id`, or `own credentials`.
    pub fn label(&self) -> &str {
        match self {
            SignAs::Process => "own credentials",
            SignAs::ExternalId(id) if id.secret => "secret_id",
            SignAs::ExternalId(id) => &id.value,
        }
    }
}

/// A Secret ID among the identities must not reach logs through `Debug` (the SDK prints its providers at debug).
impl std::fmt::Debug for SignAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignAs::Process => f.write_str("Process"),
            SignAs::ExternalId(id) => f.debug_tuple("ExternalId").field(id).finish(),
        }
    }
}

impl std::fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.secret {
            true => f.write_str("<secret_id>"),
            false => write!(f, "{:?}", self.value),
        }
    }
}

/// Segment's rule for a destination, with its Secret ID resolved.
#[derive(Debug, Clone)]
pub enum IdentityRule {
    /// No role: every call uses the process's own credentials.
    Process,
    /// A role and a Secret ID: every call presents the Secret ID.
    SecretId(ExternalId),
    /// A role without a Secret ID: each call presents the ID of the sender of its messages.
    SenderId,
}

impl IdentityRule {
    /// The rule for a destination that assumes a role or not, given its resolved Secret ID (ignored without a
    /// role).
    pub fn new(assumes_role: bool, secret_id: Option<&str>) -> IdentityRule {
        match (assumes_role, secret_id) {
            (false, _) => IdentityRule::Process,
            (true, Some(secret)) => IdentityRule::SecretId(ExternalId::secret(secret)),
            (true, None) => IdentityRule::SenderId,
        }
    }

    /// What a message from `sender` (a source ID, or an audience's `source_id`) is signed as.
    pub fn sign_as(&self, sender: &str) -> SignAs {
        match self {
            IdentityRule::Process => SignAs::Process,
            IdentityRule::SecretId(secret) => SignAs::ExternalId(secret.clone()),
            IdentityRule::SenderId => SignAs::ExternalId(ExternalId::sender(sender)),
        }
    }

    /// Every identity the destination signs as, given the IDs of everything that sends to it: one without a role
    /// or with a Secret ID, else one per sender (none when nothing sends to it).
    pub fn identities<'a>(&self, senders: impl IntoIterator<Item = &'a str>) -> Vec<SignAs> {
        match self {
            IdentityRule::Process | IdentityRule::SecretId(_) => vec![self.sign_as("")],
            IdentityRule::SenderId => senders.into_iter().map(|sender| self.sign_as(sender)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_segments_rule() {
        assert_eq!(IdentityRule::new(false, Some("s3cr3t")).identities(["a"]), vec![SignAs::Process]);
        let by_secret = IdentityRule::new(true, Some("s3cr3t"));
        assert_eq!(by_secret.sign_as("src_a").external_id().unwrap().expose(), "s3cr3t");
        assert_eq!(by_secret.identities(["a", "b"]).len(), 1);
        assert_eq!(by_secret.sign_as("src_a").label(), "secret_id");
        assert!(!format!("{:?}", by_secret.sign_as("src_a")).contains("s3cr3t"));
        let by_sender = IdentityRule::new(true, None);
        assert_eq!(by_sender.sign_as("src_a"), SignAs::ExternalId(ExternalId::sender("src_a")));
        assert_eq!(by_sender.identities(["a", "b"]).iter().map(SignAs::label).collect::<Vec<_>>(), ["a", "b"]);
        assert!(by_sender.identities([]).is_empty());
    }
}
