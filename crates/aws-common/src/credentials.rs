//! Assumed-role credentials, cached per (role, External ID) and refreshed before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};

use crate::error::{ApiError, ErrorKind};
use crate::identity::SignAs;

/// How long before expiry cached credentials are replaced. Assumed-role sessions last an hour by default.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// One AssumeRole call. The STS implementation is [`crate::sdk::StsAssumer`]; tests supply their own.
#[async_trait::async_trait]
pub trait AssumeRole: Send + Sync + std::fmt::Debug {
    /// Assumes `role_arn`, presenting `external_id` when given.
    async fn assume_role(&self, role_arn: &str, external_id: Option<&str>) -> Result<Credentials, ApiError>;
}

/// Credentials for one role, per External ID.
///
/// Each External ID has its own slot behind an async lock, so concurrent callers for the same identity share one
/// AssumeRole call while other identities proceed.
pub struct CredentialCache {
    assumer: Arc<dyn AssumeRole>,
    role_arn: String,
    slots: Mutex<HashMap<SignAs, Arc<tokio::sync::Mutex<Option<Credentials>>>>>,
}

/// The SDK prints its credential providers at debug level; the External IDs (a Secret ID among them) stay out.
impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let identities = self.slots.lock().map(|slots| slots.len()).unwrap_or(0);
        f.debug_struct("CredentialCache").field("role_arn", &self.role_arn).field("identities", &identities).finish()
    }
}

impl CredentialCache {
    /// A cache for `role_arn`.
    pub fn new(assumer: Arc<dyn AssumeRole>, role_arn: String) -> CredentialCache {
        CredentialCache { assumer, role_arn, slots: Mutex::new(HashMap::new()) }
    }

    /// The role.
    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    fn slot(&self, identity: &SignAs) -> Arc<tokio::sync::Mutex<Option<Credentials>>> {
        let mut slots = self.slots.lock().expect("credential slots lock poisoned");
        slots.entry(identity.clone()).or_default().clone()
    }

    /// Credentials for `identity`: cached ones while they have more than [`REFRESH_BEFORE_EXPIRY`] left, else
    /// fresh ones from AssumeRole.
    pub async fn get(&self, identity: &SignAs) -> Result<Credentials, ApiError> {
        let slot = self.slot(identity);
        let mut cached = slot.lock().await;
        if let Some(credentials) = cached.as_ref()
            && credentials.expiry().is_none_or(|expiry| expiry > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        {
            return Ok(credentials.clone());
        }
        let fresh = self
            .assumer
            .assume_role(&self.role_arn, identity.external_id().map(|id| id.expose()))
            .await
            .map_err(|e| self.explain(identity, e))?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the credentials of `identity`, after the service reported them expired.
    pub async fn invalidate(&self, identity: &SignAs) {
        *self.slot(identity).lock().await = None;
    }

    /// Rewrites an AssumeRole failure so that it names the role and, unless it is secret, the External ID.
    fn explain(&self, identity: &SignAs, error: ApiError) -> ApiError {
        let external_id = match identity.external_id() {
            None => "no ExternalId".to_owned(),
            Some(id) if id.is_secret() => "the destination's secret_id as ExternalId".to_owned(),
            Some(id) => format!("ExternalId {:?}", id.expose()),
        };
        match error.kind {
            ErrorKind::AccessDenied | ErrorKind::AssumeRoleRefused => ApiError {
                kind: ErrorKind::AssumeRoleRefused,
                code: error.code,
                message: format!(
                    "assuming role {} with {external_id} was refused: the role's trust policy does not accept that \
                     ExternalId or does not trust this caller ({})",
                    self.role_arn, error.message
                ),
            },
            _ => ApiError {
                message: format!("assuming role {} with {external_id} failed: {}", self.role_arn, error.message),
                ..error
            },
        }
    }
}

/// The SDK's view of one identity's credentials: it reads the cache, which the sink fills before each call
/// ([`crate::sdk::signing_provider`]).
pub(crate) struct CachedRoleProvider {
    pub(crate) cache: Arc<CredentialCache>,
    pub(crate) identity: SignAs,
}

impl std::fmt::Debug for CachedRoleProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity may be the destination's Secret ID.
        f.debug_struct("CachedRoleProvider").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl ProvideCredentials for CachedRoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.cache.get(&self.identity).await.map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::identity::ExternalId;

    /// Hands out credentials that expire `lifetime` from now, counting calls; refuses the External ID "wrong".
    #[derive(Debug)]
    struct Fake {
        calls: AtomicUsize,
        lifetime: Duration,
    }

    #[async_trait::async_trait]
    impl AssumeRole for Fake {
        async fn assume_role(&self, _: &str, external_id: Option<&str>) -> Result<Credentials, ApiError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if external_id == Some("wrong") {
                return Err(ApiError { kind: ErrorKind::AccessDenied, code: None, message: "HTTP 403".into() });
            }
            let expiry = SystemTime::now() + self.lifetime;
            Ok(Credentials::new(format!("AKIA{n}"), "secret", Some("token".into()), Some(expiry), "test"))
        }
    }

    fn cache(lifetime: Duration) -> CredentialCache {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0), lifetime });
        CredentialCache::new(fake, "arn:aws:iam::123456789012:role/r".into())
    }

    fn sender(id: &str) -> SignAs {
        SignAs::ExternalId(ExternalId::sender(id))
    }

    #[tokio::test]
    async fn cached_per_external_id() {
        let cache = cache(Duration::from_secs(3600));
        let a = sender("src_a");
        let b = sender("src_b");
        let first = cache.get(&a).await.unwrap();
        assert_eq!(cache.get(&a).await.unwrap().access_key_id(), first.access_key_id());
        let other = cache.get(&b).await.unwrap();
        assert_ne!(other.access_key_id(), first.access_key_id());
    }

    #[tokio::test]
    async fn refreshed_before_expiry() {
        // Credentials that expire within the refresh window are replaced on every use.
        let cache = cache(REFRESH_BEFORE_EXPIRY - Duration::from_secs(1));
        let id = sender("src");
        let first = cache.get(&id).await.unwrap();
        let second = cache.get(&id).await.unwrap();
        assert_ne!(first.access_key_id(), second.access_key_id());
    }

    #[tokio::test]
    async fn invalidate_forces_a_new_session() {
        let cache = cache(Duration::from_secs(3600));
        let id = sender("src");
        let first = cache.get(&id).await.unwrap();
        cache.invalidate(&id).await;
        assert_ne!(cache.get(&id).await.unwrap().access_key_id(), first.access_key_id());
    }

    #[tokio::test]
    async fn refusal_names_the_role_and_external_id_unless_secret() {
        let shown = cache(Duration::from_secs(3600)).get(&sender("wrong")).await.unwrap_err();
        assert_eq!(shown.kind, ErrorKind::AssumeRoleRefused);
        assert!(
            shown
                .message
                .starts_with("assuming role arn:aws:iam::123456789012:role/r with ExternalId \"wrong\" was refused"),
            "{}",
            shown.message
        );
        let secret = SignAs::ExternalId(ExternalId::secret("wrong"));
        let hidden = cache(Duration::from_secs(3600)).get(&secret).await.unwrap_err();
        assert!(!hidden.message.contains("\"wrong\""), "{}", hidden.message);
        assert!(hidden.message.contains("secret_id as ExternalId"), "{}", hidden.message);
    }
}
