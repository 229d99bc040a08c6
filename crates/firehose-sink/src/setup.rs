//! Setup through the SDK for a Firehose destination: a check that tries every identity and describes every mapped
//! delivery stream without sending a record, and the calls behind `tributary streams create|describe` and
//! `tributary tail` (a delivery stream to S3, and where it writes). The permission policy is [`crate::policy`]'s.

use std::time::Duration;

use aws_common::error::api_error;
use aws_common::iam::{CheckResult, explain_refusal};
use aws_common::sdk::{RoleLookup, SdkConfig, look_up_role, role_cache};
use aws_common::{ApiError, BaseCredentials, ErrorKind, SignAs, sdk_config};
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
};

use crate::config::FirehoseConfig;
use crate::mapping::Mapping;
use crate::sdk::signing_as;

/// The SDK configuration of the destination's region and endpoint, signing with `base`.
async fn shared(config: &FirehoseConfig, base: &BaseCredentials) -> SdkConfig {
    let timeout = Duration::from_millis(config.delivery.request_timeout_ms);
    sdk_config(&config.region, config.endpoint.as_deref(), base, timeout).await
}

/// The ARN of the identity the process's own credentials belong to (STS `GetCallerIdentity`).
pub async fn caller_arn(config: &FirehoseConfig, base: &BaseCredentials) -> Result<String, ApiError> {
    aws_common::sdk::caller_arn(&shared(config, base).await).await
}

/// A Firehose client for administration and reading. Its SDK client stays inside, so callers name no SDK type.
#[derive(Debug, Clone)]
pub struct Client {
    sdk: aws_sdk_firehose::Client,
}

impl Client {
    /// A client with the caller's own credentials (`base`), not the destination's role: creating a delivery
    /// stream passes its delivery role, which a sending role may not do.
    pub async fn own(config: &FirehoseConfig, base: &BaseCredentials) -> Client {
        Client { sdk: aws_sdk_firehose::Client::new(&shared(config, base).await) }
    }
}

/// What `streams describe` prints of a delivery stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The delivery stream's name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// `CREATING`, `ACTIVE`, `DELETING` or a failure state.
    pub status: String,
    /// `DirectPut`, `KinesisStreamAsSource` or `MSKAsSource`: only `DirectPut` takes PutRecord calls.
    pub kind: String,
    /// Where it writes, when it writes to S3.
    pub s3: Option<S3Target>,
}

/// Where a delivery stream writes in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// The bucket's ARN (`arn:aws:s3:::NAME`).
    pub bucket_arn: String,
    /// The key prefix of its objects (Firehose adds `YYYY/MM/DD/HH/` after it).
    pub prefix: String,
    /// The role Firehose assumes to write the bucket.
    pub role_arn: String,
    /// How long Firehose buffers before it writes an object, when it says.
    pub buffer_seconds: Option<i32>,
    /// How many MiB it buffers at most, when it says.
    pub buffer_mib: Option<i32>,
}

impl S3Target {
    /// The bucket's name: the ARN's last part.
    pub fn bucket(&self) -> &str {
        self.bucket_arn.rsplit(':').next().unwrap_or(&self.bucket_arn)
    }
}

/// Describes the delivery stream `name`.
pub async fn describe(client: &Client, name: &str) -> Result<StreamSummary, ApiError> {
    let output = client
        .sdk
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .map_err(|e| api_error(&e, &format!("firehose:DescribeDeliveryStream on delivery stream {name}")))?;
    let Some(description) = output.delivery_stream_description else {
        return Err(ApiError::classify(None, None, format!("delivery stream {name} was described without a body")));
    };
    let s3 = description.destinations().iter().find_map(|d| {
        if let Some(s3) = d.extended_s3_destination_description() {
            let hints = s3.buffering_hints();
            return Some(S3Target {
                bucket_arn: s3.bucket_arn().to_owned(),
                prefix: s3.prefix().unwrap_or_default().to_owned(),
                role_arn: s3.role_arn().to_owned(),
                buffer_seconds: hints.and_then(BufferingHints::interval_in_seconds),
                buffer_mib: hints.and_then(BufferingHints::size_in_mbs),
            });
        }
        d.s3_destination_description().map(|s3| {
            let hints = s3.buffering_hints();
            S3Target {
                bucket_arn: s3.bucket_arn().to_owned(),
                prefix: s3.prefix().unwrap_or_default().to_owned(),
                role_arn: s3.role_arn().to_owned(),
                buffer_seconds: hints.and_then(BufferingHints::interval_in_seconds),
                buffer_mib: hints.and_then(BufferingHints::size_in_mbs),
            }
        })
    });
    Ok(StreamSummary {
        name: description.delivery_stream_name().to_owned(),
        arn: description.delivery_stream_arn().to_owned(),
        status: description.delivery_stream_status().as_str().to_owned(),
        kind: description.delivery_stream_type().as_str().to_owned(),
        s3,
    })
}

/// A DirectPut delivery stream to S3, as `streams create` makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStream {
    /// The bucket's ARN.
    pub bucket_arn: String,
    /// The role Firehose assumes to write the bucket.
    pub delivery_role: String,
    /// The key prefix of its objects.
    pub prefix: Option<String>,
    /// How long Firehose buffers before it writes an object (0 to 900; Firehose's own default is 300).
    pub buffer_seconds: i32,
}

/// Whether `create` made the stream or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Made now.
    New,
    /// It existed.
    Existing,
}

/// Creates the delivery stream `name` as `new` says (or finds it), and waits up to `wait` for it to be `ACTIVE`.
pub async fn create(client: &Client, name: &str, new: &NewStream, wait: Duration) -> Result<Created, ApiError> {
    let hints = BufferingHints::builder().interval_in_seconds(new.buffer_seconds).size_in_mbs(1).build();
    let s3 = ExtendedS3DestinationConfiguration::builder()
        .bucket_arn(&new.bucket_arn)
        .role_arn(&new.delivery_role)
        .set_prefix(new.prefix.clone())
        .buffering_hints(hints)
        // Stated, not left to the default: `tail` reads the objects as written, and a describe that omits the
        // format is refused by the SDK.
        .compression_format(CompressionFormat::Uncompressed)
        .build()
        .map_err(|e| ApiError::classify(None, None, format!("delivery stream {name}: {e}")))?;
    let created = match client
        .sdk
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(s3)
        .send()
        .await
    {
        Ok(_) => Created::New,
        Err(e) => {
            let error = api_error(&e, &format!("firehose:CreateDeliveryStream of {name}"));
            if error.code.as_deref() != Some("ResourceInUseException") {
                return Err(error);
            }
            Created::Existing
        }
    };
    let until = tokio::time::Instant::now() + wait;
    loop {
        let summary = describe(client, name).await?;
        if summary.status == "ACTIVE" {
            return Ok(created);
        }
        if summary.status.contains("FAILED") || tokio::time::Instant::now() >= until {
            return Err(ApiError {
                kind: ErrorKind::Fixable,
                code: None,
                message: format!("delivery stream {name} is {} after {}s", summary.status, wait.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Tries each identity: assumes the role with its External ID (when there is a role), then describes every
/// mapped delivery stream. Nothing is sent.
pub async fn check(
    destination: &str,
    config: &FirehoseConfig,
    identities: &[SignAs],
    base: &BaseCredentials,
) -> Vec<CheckResult> {
    let shared = shared(config, base).await;
    let mut results = Vec::new();
    for identity in identities {
        let outcome = check_one(destination, config, identity, &shared).await;
        results.push(CheckResult { identity: Some(identity.clone()), outcome });
    }
    results
}

async fn check_one(
    destination: &str,
    config: &FirehoseConfig,
    identity: &SignAs,
    shared: &SdkConfig,
) -> Result<String, String> {
    let mut builder = aws_sdk_firehose::config::Builder::from(shared);
    let mut assumed = String::new();
    if let Some(role) = &config.role_address {
        // Looking the role up first, where these credentials may, tells a missing role from a refusal.
        if let RoleLookup::Missing = look_up_role(shared, role).await {
            return Err(format!("role {role} does not exist: create it, or fix firehose.role_address"));
        }
        let cache = role_cache(shared, role);
        if let Err(error) = cache.get(identity).await {
            return Err(explain_refusal("firehose", destination, role, identity, shared, error).await);
        }
        assumed = format!("assumed {role}; ");
        builder = signing_as(builder, cache, identity.clone());
    }
    let client = Client { sdk: aws_sdk_firehose::Client::from_conf(builder.build()) };
    let who = config.role_address.as_deref().unwrap_or("these credentials");
    let mut found = Vec::new();
    for stream in Mapping::all_streams(&config.mapping) {
        let summary = match describe(&client, stream).await {
            Ok(summary) => summary,
            Err(e) if e.kind == ErrorKind::AccessDenied => {
                return Err(format!(
                    "the policy of {who} lacks firehose:DescribeDeliveryStream on delivery stream {stream}: attach \
                     the policy that `tributary iam policy --destination {destination}` prints ({})",
                    e.message
                ));
            }
            Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {
                return Err(format!(
                    "delivery stream {stream} does not exist in region {}: create it with `tributary streams create \
                     --destination {destination} --stream {stream} --bucket-arn ARN --delivery-role ARN`, or fix \
                     the mapping or firehose.region",
                    config.region
                ));
            }
            Err(e) => return Err(e.message),
        };
        if summary.kind != "DirectPut" {
            return Err(format!(
                "delivery stream {stream} reads from {} (its source is not Direct PUT), so it refuses PutRecord: map \
                 a Direct PUT delivery stream",
                summary.kind
            ));
        }
        if summary.status != "ACTIVE" {
            return Err(format!(
                "delivery stream {stream} is {}, not ACTIVE: wait for it, or recreate it",
                summary.status
            ));
        }
        let into = match &summary.s3 {
            Some(s3) => format!(" to s3://{}/{}", s3.bucket(), s3.prefix),
            None => String::new(),
        };
        found.push(format!("{stream}{into}"));
    }
    Ok(format!("{assumed}delivery streams ACTIVE: {}", found.join(", ")))
}
