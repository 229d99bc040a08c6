//! The SDK's client configuration, and the STS and IAM calls behind [`CredentialCache`] and a destination's
//! `check`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

pub use aws_config::SdkConfig;

use crate::credentials::{AssumeRole, CachedRoleProvider, CredentialCache};
use crate::error::{ApiError, api_error};
use crate::identity::SignAs;

/// Where the credentials that sign requests (or assume the role) come from.
#[derive(Debug, Clone, Default)]
pub enum BaseCredentials {
    /// The AWS default chain: environment, profile files, web identity, container and instance metadata.
    #[default]
    DefaultChain,
    /// Fixed credentials, for tools and tests that manage their own.
    Static(Credentials),
}

/// Loads the shared SDK config for a destination: its region and endpoint, retries off (the sink owns retries),
/// and a timeout per call.
pub async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    base: &BaseCredentials,
    request_timeout: Duration,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(request_timeout)
                .build(),
        );
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let BaseCredentials::Static(credentials) = base {
        loader = loader.credentials_provider(credentials.clone());
    }
    loader.load().await
}

/// The SDK's defaults (region from the environment unless `region` is given, the SDK's own retries), for tools
/// that are not sinks, such as fetching exports.
pub async fn default_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}

/// STS AssumeRole through the SDK.
#[derive(Debug, Clone)]
pub struct StsAssumer {
    client: aws_sdk_sts::Client,
    session_name: String,
}

impl StsAssumer {
    /// An assumer that signs with the credentials of `config`.
    pub fn new(config: &SdkConfig) -> StsAssumer {
        StsAssumer { client: aws_sdk_sts::Client::new(config), session_name: "tributary".to_owned() }
    }
}

#[async_trait::async_trait]
impl AssumeRole for StsAssumer {
    async fn assume_role(&self, role_arn: &str, external_id: Option<&str>) -> Result<Credentials, ApiError> {
        let output = self
            .client
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(external_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| api_error(&e, "sts:AssumeRole"))?;
        let issued = output
            .credentials()
            .ok_or_else(|| ApiError::classify(None, None, "sts:AssumeRole returned no credentials".into()))?;
        let expiry = SystemTime::try_from(*issued.expiration()).ok();
        Ok(Credentials::new(
            issued.access_key_id(),
            issued.secret_access_key(),
            Some(issued.session_token().to_owned()),
            expiry,
            "tributary-assume-role",
        ))
    }
}

/// The credential cache of a destination's role, assuming it through STS with the credentials of `shared`.
pub fn role_cache(shared: &SdkConfig, role: &str) -> Arc<CredentialCache> {
    let assumer: Arc<dyn AssumeRole> = Arc::new(StsAssumer::new(shared));
    Arc::new(CredentialCache::new(assumer, role.to_owned()))
}

/// The credentials provider a service client signs as `identity` with: it reads `cache`, which is then the one
/// owner of caching and refresh (turn the client's identity cache off).
pub fn signing_provider(cache: Arc<CredentialCache>, identity: SignAs) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(CachedRoleProvider { cache, identity })
}

/// A sink's service clients, one per identity, each signing with that identity's credentials: the shape every
/// AWS sink's SDK seam shares, over its own service's client type `C`.
pub struct Clients<C> {
    /// With a role: the credentials per External ID. Without: `None`, and every client signs as the process.
    roles: Option<Arc<CredentialCache>>,
    clients: std::sync::Mutex<std::collections::HashMap<SignAs, C>>,
}

impl<C: Clone> Clients<C> {
    /// Clients of a destination that assumes `role` (from `shared`'s credentials), or none.
    pub fn new(shared: &SdkConfig, role: Option<&str>) -> Clients<C> {
        Clients { roles: role.map(|role| role_cache(shared, role)), clients: Default::default() }
    }

    /// The client for `identity`; with a role, its credentials are fetched first, here rather than inside the
    /// SDK, so that an AssumeRole failure is classified and explained. A new client is `make`'s, given the role's
    /// cache to sign through ([`signing_provider`]) or `None` to sign as the process.
    pub async fn get(
        &self,
        identity: &SignAs,
        make: impl FnOnce(Option<Arc<CredentialCache>>) -> C,
    ) -> Result<C, ApiError> {
        if let Some(cache) = &self.roles {
            cache.get(identity).await?;
        }
        let mut clients = self.clients.lock().expect("client map lock poisoned");
        Ok(clients.entry(identity.clone()).or_insert_with(|| make(self.roles.clone())).clone())
    }

    /// Drops the cached credentials of `identity`, so its next call assumes the role again.
    pub async fn refresh(&self, identity: &SignAs) {
        if let Some(cache) = &self.roles {
            cache.invalidate(identity).await;
        }
    }
}

/// The ARN of the identity the credentials of `shared` belong to, from STS `GetCallerIdentity`.
pub async fn caller_arn(shared: &SdkConfig) -> Result<String, ApiError> {
    let output = aws_sdk_sts::Client::new(shared)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| api_error(&e, "sts:GetCallerIdentity"))?;
    output
        .arn()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::classify(None, None, "sts:GetCallerIdentity returned no ARN".into()))
}

/// What IAM says of a role.
// Without the `iam` feature nothing looks a role up, so only `Unknown` is made.
#[cfg_attr(not(feature = "iam"), allow(dead_code))]
pub enum RoleLookup {
    /// It exists, with this trust policy document (URL-encoded, as IAM returns it).
    Found(String),
    /// It does not exist.
    Missing,
    /// These credentials may not read it, or this build looks nothing up in IAM (without the `iam` feature).
    Unknown,
}

/// Looks the role `role` (an ARN) up with IAM GetRole.
#[cfg(feature = "iam")]
pub async fn look_up_role(shared: &SdkConfig, role: &str) -> RoleLookup {
    let name = role.rsplit('/').next().unwrap_or(role);
    match aws_sdk_iam::Client::new(shared).get_role().role_name(name).send().await {
        Ok(output) => match output.role() {
            Some(found) => RoleLookup::Found(found.assume_role_policy_document().unwrap_or_default().to_owned()),
            None => RoleLookup::Unknown,
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => RoleLookup::Missing,
        Err(_) => RoleLookup::Unknown,
    }
}

/// Without the `iam` feature, roles are not looked up; a refusal is explained without the role's trust policy.
#[cfg(not(feature = "iam"))]
pub async fn look_up_role(_: &SdkConfig, _: &str) -> RoleLookup {
    RoleLookup::Unknown
}
