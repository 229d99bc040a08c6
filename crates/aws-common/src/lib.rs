//! AWS plumbing every AWS sink shares, so that a second one (Firehose) does not copy it.
//!
//! - [`identity`]: whom a call is signed as ([`SignAs`]), by Segment's rule ([`IdentityRule`]): the process's own
//!   credentials, or the destination's role assumed with its Secret ID, or else the sender's ID, as External ID.
//! - [`credentials`]: assumed-role credentials per External ID, cached and refreshed before they expire: the one
//!   place a role is assumed ([`CredentialCache`]).
//! - [`sdk`]: the SDK's client configuration ([`sdk_config`]: region, endpoint, retries off, timeouts), where base
//!   credentials come from ([`BaseCredentials`]), and the STS and IAM calls behind the cache and `check`.
//! - [`error`]: a failed call ([`ApiError`]) and how it is handled ([`ErrorKind`]), classified from its AWS error
//!   code and HTTP status.
//! - [`iam`]: trust-policy building blocks: the document a role needs, the principal to trust, and reading a
//!   role's trust policy to tell why AssumeRole was refused.
//! - [`retry`]: the retry rules every AWS sink delivers by: what is retried within a delivery and what goes back
//!   to the runner ([`retry::Settling`]), the backoff ([`retry::RetryPolicy`]), and the fallback from a refused
//!   batch call to one record per call ([`retry::BatchFallback`]).
//!
//! It depends on no sink, only on the `sink` crate's trait types (an entry's [`sink::Outcome`]); each sink depends
//! on it and on its own service's SDK only.

pub mod credentials;
pub mod error;
pub mod iam;
pub mod identity;
pub mod retry;
pub mod sdk;

pub use credentials::{AssumeRole, CredentialCache};
pub use error::{ApiError, ErrorKind};
pub use identity::{ExternalId, IdentityRule, SignAs};
pub use sdk::{BaseCredentials, sdk_config};

/// Credentials type used by [`BaseCredentials::Static`], re-exported so callers need not depend on the AWS crates.
pub use aws_credential_types::Credentials;
