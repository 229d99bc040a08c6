//! The Kinesis SDK behind [`KinesisApi`], signing with credentials from `aws-common`'s cache.

use std::sync::Arc;
use std::time::Duration;

use aws_common::error::api_error;
use aws_common::sdk::{Clients, signing_provider};
use aws_common::{ApiError, BaseCredentials, CredentialCache, SignAs, sdk_config};
use aws_sdk_kinesis::config::IdentityCache;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::api::{EntryError, EntryResult, KinesisApi, Placement};
use crate::config::KinesisConfig;
use crate::entry::RequestEntry;
use crate::shards::Shard;

/// `builder`, signing as `identity` with credentials from `cache`, which is then the one owner of caching and
/// refresh (the SDK's identity cache is off).
pub(crate) fn signing_as(
    builder: aws_sdk_kinesis::config::Builder,
    cache: Arc<CredentialCache>,
    identity: SignAs,
) -> aws_sdk_kinesis::config::Builder {
    builder.credentials_provider(signing_provider(cache, identity)).identity_cache(IdentityCache::no_cache())
}

/// Kinesis through the SDK: one client per identity, each signing with that identity's credentials.
pub struct SdkKinesis {
    config: aws_sdk_kinesis::Config,
    clients: Clients<aws_sdk_kinesis::Client>,
}

impl SdkKinesis {
    /// A client for the destination `config`, signing with `base` (directly, or to assume the role).
    pub async fn connect(config: &KinesisConfig, base: &BaseCredentials) -> SdkKinesis {
        let timeout = Duration::from_millis(config.delivery.request_timeout_ms);
        let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, timeout).await;
        SdkKinesis {
            config: aws_sdk_kinesis::config::Builder::from(&shared).build(),
            clients: Clients::new(&shared, config.role_address.as_deref()),
        }
    }

    /// The client for `identity`, and for a role, fresh credentials in the cache it reads.
    async fn client(&self, identity: &SignAs) -> Result<aws_sdk_kinesis::Client, ApiError> {
        self.clients
            .get(identity, |roles| match roles {
                None => aws_sdk_kinesis::Client::from_conf(self.config.clone()),
                Some(cache) => aws_sdk_kinesis::Client::from_conf(
                    signing_as(self.config.to_builder(), cache, identity.clone()).build(),
                ),
            })
            .await
    }
}

fn is_arn(stream: &str) -> bool {
    stream.starts_with("arn:")
}

/// The SDK's request entries for `entries`.
pub fn sdk_entries(entries: &[RequestEntry]) -> Vec<PutRecordsRequestEntry> {
    entries
        .iter()
        .map(|entry| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(entry.data.to_vec()))
                .partition_key(&entry.partition_key)
                .set_explicit_hash_key(entry.explicit_hash_key.clone())
                .build()
                .expect("data and partition key are always set")
        })
        .collect()
}

#[async_trait::async_trait]
impl KinesisApi for SdkKinesis {
    async fn put_records(
        &self,
        identity: &SignAs,
        stream: &str,
        entries: &[RequestEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let client = self.client(identity).await?;
        let mut request = client.put_records().set_records(Some(sdk_entries(entries)));
        request = if is_arn(stream) { request.stream_arn(stream) } else { request.stream_name(stream) };
        let output =
            request.send().await.map_err(|e| api_error(&e, &format!("kinesis:PutRecords on stream {stream}")))?;
        // Taken, not borrowed: each result's shard ID and sequence number move into its outcome uncopied.
        let results = output.records;
        if results.len() != entries.len() {
            return Err(ApiError::classify(
                None,
                None,
                format!(
                    "kinesis:PutRecords on stream {stream} answered {} results for {} records",
                    results.len(),
                    entries.len()
                ),
            ));
        }
        Ok(results
            .into_iter()
            .map(|result| match result.error_code {
                None => Ok(Placement { shard_id: result.shard_id, sequence_number: result.sequence_number }),
                Some(code) => Err(EntryError { code, message: result.error_message.unwrap_or_default() }),
            })
            .collect())
    }

    async fn put_record(&self, identity: &SignAs, stream: &str, entry: &RequestEntry) -> Result<Placement, ApiError> {
        let client = self.client(identity).await?;
        let mut request = client
            .put_record()
            .data(Blob::new(entry.data.to_vec()))
            .partition_key(&entry.partition_key)
            .set_explicit_hash_key(entry.explicit_hash_key.clone());
        request = if is_arn(stream) { request.stream_arn(stream) } else { request.stream_name(stream) };
        let output =
            request.send().await.map_err(|e| api_error(&e, &format!("kinesis:PutRecord on stream {stream}")))?;
        Ok(Placement { shard_id: Some(output.shard_id), sequence_number: Some(output.sequence_number) })
    }

    async fn list_shards(&self, identity: &SignAs, stream: &str) -> Result<Vec<Shard>, ApiError> {
        let client = self.client(identity).await?;
        list_shards(&client, stream).await
    }

    async fn refresh_credentials(&self, identity: &SignAs) {
        self.clients.refresh(identity).await;
    }
}

/// Every shard of `stream`, open or closed by a reshard: every page of ListShards.
pub async fn all_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>, ApiError> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = client.list_shards();
        request = match &next {
            // A page after the first names only its token.
            Some(token) => request.next_token(token),
            None if is_arn(stream) => request.stream_arn(stream),
            None => request.stream_name(stream),
        };
        let output =
            request.send().await.map_err(|e| api_error(&e, &format!("kinesis:ListShards on stream {stream}")))?;
        next = output.next_token().map(str::to_owned);
        shards.extend(output.shards.unwrap_or_default());
        if next.is_none() {
            return Ok(shards);
        }
    }
}

/// The open shards of `stream` and their hash-key ranges: [`all_shards`] less those a reshard closed (with an
/// ending sequence number).
pub async fn list_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<Shard>, ApiError> {
    let mut open = Vec::new();
    for shard in all_shards(client, stream).await? {
        if shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some() {
            continue;
        }
        let range = shard.hash_key_range();
        let parse = |text: Option<&str>| text.and_then(|t| t.parse::<u128>().ok());
        let (Some(start), Some(end)) =
            (parse(range.map(|r| r.starting_hash_key())), parse(range.map(|r| r.ending_hash_key())))
        else {
            return Err(ApiError::classify(
                None,
                None,
                format!("kinesis:ListShards on stream {stream} gave shard {} no hash-key range", shard.shard_id()),
            ));
        };
        open.push(Shard { id: shard.shard_id().to_owned(), start, end });
    }
    Ok(open)
}
