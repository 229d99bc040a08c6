//! Stream administration and reading: the calls behind `tributary streams` and `tributary tail`.

use std::time::Duration;

use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};

use aws_common::error::api_error;
use aws_common::sdk::role_cache;
use aws_common::{ApiError, BaseCredentials, SignAs, sdk_config};

use crate::sdk::signing_as;
use crate::settings::KinesisSettings;

/// A Kinesis client for administration and reading. Its SDK client stays inside, so callers name no SDK type.
#[derive(Debug, Clone)]
pub struct Client {
    sdk: aws_sdk_kinesis::Client,
}

impl Client {
    /// Wraps an SDK client that tools and tests configured themselves.
    pub fn from_sdk(sdk: aws_sdk_kinesis::Client) -> Client {
        Client { sdk }
    }
}

/// A Kinesis client for a destination, signing as `identity` when the destination has a role.
pub async fn client(settings: &KinesisSettings, identity: SignAs, base: &BaseCredentials) -> Result<Client, ApiError> {
    let config = &settings.config;
    let timeout = Duration::from_millis(config.delivery.request_timeout_ms);
    let shared = sdk_config(&config.region, config.endpoint.as_deref(), base, timeout).await;
    let mut builder = aws_sdk_kinesis::config::Builder::from(&shared);
    if let Some(role) = &config.role_address {
        let cache = role_cache(&shared, role);
        cache.get(&identity).await?;
        builder = signing_as(builder, cache, identity);
    }
    Ok(Client { sdk: aws_sdk_kinesis::Client::from_conf(builder.build()) })
}

/// What `streams describe` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's name.
    pub name: String,
    /// The stream's ARN.
    pub arn: String,
    /// `CREATING`, `ACTIVE`, `UPDATING` or `DELETING`.
    pub status: String,
    /// The number of open shards.
    pub open_shards: i32,
    /// How long records are kept.
    pub retention_hours: i32,
    /// The largest record the stream takes, in KiB, when the service reports it (1024 by default).
    pub max_record_size_kib: Option<i32>,
    /// `PROVISIONED` or `ON_DEMAND` (`PROVISIONED` when the service does not say).
    pub mode: String,
    /// The KMS key the stream is encrypted with, `None` when it is not encrypted.
    pub kms_key: Option<String>,
}

/// Describes `stream` (a name or an ARN).
pub async fn describe(client: &Client, stream: &str) -> Result<StreamSummary, ApiError> {
    let mut request = client.sdk.describe_stream_summary();
    request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
    let output = request
        .send()
        .await
        .map_err(|e| api_error(&e, &format!("kinesis:DescribeStreamSummary on stream {stream}")))?;
    let summary = output.stream_description_summary().ok_or_else(|| {
        ApiError::classify(None, None, format!("kinesis:DescribeStreamSummary on stream {stream} returned no summary"))
    })?;
    Ok(StreamSummary {
        name: summary.stream_name().to_owned(),
        arn: summary.stream_arn().to_owned(),
        status: summary.stream_status().as_str().to_owned(),
        open_shards: summary.open_shard_count(),
        retention_hours: summary.retention_period_hours(),
        max_record_size_kib: summary.max_record_size_in_kib(),
        mode: summary
            .stream_mode_details()
            .map_or_else(|| "PROVISIONED".to_owned(), |m| m.stream_mode().as_str().to_owned()),
        kms_key: summary
            .encryption_type()
            .filter(|e| **e == aws_sdk_kinesis::types::EncryptionType::Kms)
            .and(summary.key_id().map(str::to_owned)),
    })
}

/// Whether `create` made the stream or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The stream was created.
    New,
    /// A stream of that name already existed.
    Existing,
}

/// How a stream is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStream {
    /// `Some(n)`: provisioned with `n` shards; `None`: on-demand, which scales its shards itself.
    pub shards: Option<i32>,
    /// The ARN of a customer-managed KMS key to encrypt the stream with.
    pub kms_key: Option<String>,
}

/// Creates `name` as `new` says (or finds it), waits up to `timeout` until it is `ACTIVE`, then, with a KMS key,
/// turns on its encryption (a found stream encrypted with another key is re-keyed) and waits again.
pub async fn create(client: &Client, name: &str, new: &NewStream, timeout: Duration) -> Result<Created, ApiError> {
    let mut request = client.sdk.create_stream().stream_name(name);
    request = match new.shards {
        Some(shards) => request.shard_count(shards),
        None => request.stream_mode_details(
            aws_sdk_kinesis::types::StreamModeDetails::builder()
                .stream_mode(aws_sdk_kinesis::types::StreamMode::OnDemand)
                .build()
                .expect("the stream mode is set"),
        ),
    };
    let created = match request.send().await {
        Ok(_) => Created::New,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Created::Existing,
        Err(e) => return Err(api_error(&e, &format!("kinesis:CreateStream of stream {name}"))),
    };
    wait_active(client, name, timeout).await?;
    if let Some(key) = &new.kms_key
        && describe(client, name).await?.kms_key.as_deref() != Some(key.as_str())
    {
        client
            .sdk
            .start_stream_encryption()
            .stream_name(name)
            .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
            .key_id(key)
            .send()
            .await
            .map_err(|e| api_error(&e, &format!("kinesis:StartStreamEncryption of stream {name} with key {key}")))?;
        wait_active(client, name, timeout).await?;
    }
    Ok(created)
}

/// Polls until `stream` is `ACTIVE`.
pub async fn wait_active(client: &Client, stream: &str, timeout: Duration) -> Result<(), ApiError> {
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        let summary = describe(client, stream).await;
        match summary {
            Ok(s) if s.status == StreamStatus::Active.as_str() => return Ok(()),
            Ok(_) => {}
            // A stream being created may not be visible yet.
            Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(e),
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(ApiError::classify(None, None, format!("stream {stream} was not ACTIVE after {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// The shard it is in.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data, as a consumer receives it (the SDK has undone the wire's base64).
    pub data: Vec<u8>,
}

/// The partition keys with the most records written to `stream` over the last `window`, read back from the
/// stream (so whoever wrote them), aggregated records counted by the records they carry: key, records, bytes
/// (data plus key). At most `n`, the most records first.
pub async fn hot_keys(
    client: &Client,
    stream: &str,
    window: Duration,
    n: usize,
) -> Result<Vec<(String, u64, u64)>, ApiError> {
    let since = std::time::SystemTime::now() - window;
    let mut counts: std::collections::HashMap<String, (u64, u64)> = std::collections::HashMap::new();
    let mut add = |key: &str, bytes: usize| {
        let count = counts.entry(key.to_owned()).or_default();
        count.0 += 1;
        count.1 += (bytes + key.len()) as u64;
    };
    read(client, stream, StartAt::Since(since), false, |record| {
        match crate::aggregate::unpack(&record.data) {
            Some(inner) => inner.iter().for_each(|u| add(&u.partition_key, u.data.len())),
            None => add(&record.partition_key, record.data.len()),
        }
        true
    })
    .await?;
    let mut top: Vec<(String, u64, u64)> = counts.into_iter().map(|(k, (r, b))| (k, r, b)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    Ok(top)
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
    /// Records written since this time.
    Since(std::time::SystemTime),
}

/// Reads every shard of a stream, calling `on_record` for each record.
///
/// With `follow` false it stops once every shard is caught up (or closed); with `follow` true it keeps polling
/// until `on_record` returns `false`.
pub async fn read(
    client: &Client,
    stream: &str,
    start: StartAt,
    follow: bool,
    mut on_record: impl FnMut(ReadRecord) -> bool,
) -> Result<(), ApiError> {
    let named = |doing: &str| format!("{doing} on stream {stream}");
    let shards: Vec<String> =
        crate::sdk::all_shards(&client.sdk, stream).await?.iter().map(|s| s.shard_id().to_owned()).collect();
    let (kind, since) = match start {
        StartAt::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
        StartAt::Latest => (ShardIteratorType::Latest, None),
        StartAt::Since(at) => (ShardIteratorType::AtTimestamp, Some(aws_sdk_kinesis::primitives::DateTime::from(at))),
    };
    let mut iterators = Vec::new();
    for shard in &shards {
        let mut request =
            client.sdk.get_shard_iterator().shard_id(shard).shard_iterator_type(kind.clone()).set_timestamp(since);
        request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
        let output = request.send().await.map_err(|e| api_error(&e, &named("kinesis:GetShardIterator")))?;
        iterators.push((shard.clone(), output.shard_iterator().map(str::to_owned)));
    }
    loop {
        let mut all_caught_up = true;
        for (shard, iterator) in &mut iterators {
            let Some(current) = iterator.clone() else { continue };
            let output = client
                .sdk
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| api_error(&e, &named("kinesis:GetRecords")))?;
            let records = output.records();
            for record in records {
                let keep_going = on_record(ReadRecord {
                    shard_id: shard.clone(),
                    sequence_number: record.sequence_number().to_owned(),
                    partition_key: record.partition_key().unwrap_or_default().to_owned(),
                    data: record.data().as_ref().to_vec(),
                });
                if !keep_going {
                    return Ok(());
                }
            }
            let behind = output.millis_behind_latest().unwrap_or(0);
            if !records.is_empty() || behind > 0 {
                all_caught_up = false;
            }
            *iterator = output.next_shard_iterator().map(str::to_owned);
        }
        if all_caught_up {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
