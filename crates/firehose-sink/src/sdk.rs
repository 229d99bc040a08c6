//! The Firehose SDK behind [`FirehoseApi`], signing with credentials from `aws-common`'s cache.

use std::sync::Arc;
use std::time::Duration;

use aws_common::error::api_error;
use aws_common::sdk::{Clients, signing_provider};
use aws_common::{ApiError, BaseCredentials, CredentialCache, SignAs, sdk_config};
use aws_sdk_firehose::config::IdentityCache;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use bytes::Bytes;

use crate::api::{FirehoseApi, RecordError, RecordResult};
use crate::config::FirehoseConfig;

/// `builder`, signing as `identity` with credentials from `cache`, which is then the one owner of caching and
/// refresh (the SDK's identity cache is off).
pub(crate) fn signing_as(
    builder: aws_sdk_firehose::config::Builder,
    cache: Arc<CredentialCache>,
    identity: SignAs,
) -> aws_sdk_firehose::config::Builder {
    builder.credentials_provider(signing_provider(cache, identity)).identity_cache(IdentityCache::no_cache())
}

/// Firehose through the SDK: one client per identity, each signing with that identity's credentials.
pub struct SdkFirehose {
    config: aws_sdk_firehose::Config,
    clients: Clients<aws_sdk_firehose::Client>,
}

impl SdkFirehose {
    /// A client for the destination `config`, signing with `base` (directly, or to assume the role).
    pub async fn connect(config: &FirehoseConfig, base: &BaseCredentials) -> SdkFirehose {
        let timeout = Duration::from_millis(config.delivery.request_timeout_ms);
        let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, timeout).await;
        SdkFirehose {
            config: aws_sdk_firehose::config::Builder::from(&shared).build(),
            clients: Clients::new(&shared, config.role_address.as_deref()),
        }
    }

    /// The client for `identity`, and for a role, fresh credentials in the cache it reads.
    async fn client(&self, identity: &SignAs) -> Result<aws_sdk_firehose::Client, ApiError> {
        self.clients
            .get(identity, |roles| match roles {
                None => aws_sdk_firehose::Client::from_conf(self.config.clone()),
                Some(cache) => aws_sdk_firehose::Client::from_conf(
                    signing_as(self.config.to_builder(), cache, identity.clone()).build(),
                ),
            })
            .await
    }
}

fn record(data: &Bytes) -> Record {
    Record::builder().data(Blob::new(data.to_vec())).build().expect("data is always set")
}

#[async_trait::async_trait]
impl FirehoseApi for SdkFirehose {
    async fn put_record_batch(
        &self,
        identity: &SignAs,
        stream: &str,
        records: &[Bytes],
    ) -> Result<Vec<RecordResult>, ApiError> {
        let client = self.client(identity).await?;
        let output = client
            .put_record_batch()
            .delivery_stream_name(stream)
            .set_records(Some(records.iter().map(record).collect()))
            .send()
            .await
            .map_err(|e| api_error(&e, &format!("firehose:PutRecordBatch on delivery stream {stream}")))?;
        let results = output.request_responses;
        if results.len() != records.len() {
            return Err(ApiError::classify(
                None,
                None,
                format!(
                    "firehose:PutRecordBatch on delivery stream {stream} answered {} results for {} records",
                    results.len(),
                    records.len()
                ),
            ));
        }
        Ok(results
            .into_iter()
            .map(|result| match result.error_code {
                None => Ok(result.record_id.unwrap_or_default()),
                Some(code) => Err(RecordError { code, message: result.error_message.unwrap_or_default() }),
            })
            .collect())
    }

    async fn put_record(&self, identity: &SignAs, stream: &str, data: &Bytes) -> Result<String, ApiError> {
        let client = self.client(identity).await?;
        let output = client
            .put_record()
            .delivery_stream_name(stream)
            .record(record(data))
            .send()
            .await
            .map_err(|e| api_error(&e, &format!("firehose:PutRecord on delivery stream {stream}")))?;
        Ok(output.record_id)
    }

    async fn refresh_credentials(&self, identity: &SignAs) {
        self.clients.refresh(identity).await;
    }
}
