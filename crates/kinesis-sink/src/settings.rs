//! A Kinesis destination's settings as production uses them, resolved once from its `[kinesis]` table
//! ([`crate::KinesisConfig::resolve`]): nothing downstream parses the table again.

use std::time::Duration;

use aws_common::IdentityRule;
use aws_common::iam::{is_kms_key_arn, is_region, is_role_arn};
use segment_model::ConfigProblem;
use sink::Secret;

use crate::config::{Aggregation, KinesisConfig};
use crate::pace::Limits;
use crate::partition::{KeySource, Partitioning};
use crate::request_builder::RequestBuilder;
use crate::requests::RequestCaps;
use crate::route::StreamRoute;
use crate::service::RetryPolicy;

/// A checked `[kinesis]` table and what it resolves to.
#[derive(Debug, Clone)]
pub struct KinesisSettings {
    /// The table as written: region, endpoint, role, Secret ID reference, KMS key.
    pub config: KinesisConfig,
    /// Which stream each record goes to.
    pub route: StreamRoute,
    /// How records become entries: partition key, explicit hash key, data encoding, record size limit.
    pub encoding: RequestBuilder,
    /// How a batch is cut into requests, and whether records are aggregated.
    pub caps: RequestCaps,
    /// Retries within one delivery.
    pub retry: RetryPolicy,
    /// Each shard's share of its limits, when pacing is on.
    pub pacing: Option<Limits>,
    /// How long a partial batch waits for more records.
    pub linger: Duration,
    /// How many requests may be in flight at once.
    pub max_in_flight: usize,
}

impl KinesisConfig {
    /// The settings production uses, resolved in one pass that collects every problem (in key order, keyed as
    /// in the table): the stream route, partitioning, retry policy, request caps and pacing.
    pub fn resolve(self) -> Result<KinesisSettings, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        if !is_region(&self.region) {
            let message = format!("{:?} is not an AWS region (for example us-west-2)", self.region);
            problems.push(ConfigProblem { key: "region", message });
        }
        let route = match StreamRoute::new(&self.stream, self.default_stream.as_deref()) {
            Ok(route) => Some(route),
            Err(found) => {
                problems.extend(found);
                None
            }
        };
        let mut add = |key, message: String| problems.push(ConfigProblem { key, message });
        self.key_problems(&mut add);
        if !(1..=1000).contains(&self.shard_rate_limit) {
            add("shard_rate_limit", format!("{} is not a percentage between 1 and 1000", self.shard_rate_limit));
        }
        if let Some(key) = &self.kms_key
            && !is_kms_key_arn(key)
        {
            add("kms_key", format!("{key:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"));
        }
        if let Some(role) = &self.role_address
            && !is_role_arn(role)
        {
            add("role_address", format!("{role:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            add("endpoint", format!("{endpoint:?} is not an http:// or https:// URL"));
        }
        self.delivery.problems(&mut add);
        match route {
            Some(route) if problems.is_empty() => Ok(KinesisSettings::new(self, route)),
            _ => Err(problems),
        }
    }
}

/// Settings are equal when their tables are: everything else is resolved from the table.
impl PartialEq for KinesisSettings {
    fn eq(&self, other: &KinesisSettings) -> bool {
        self.config == other.config
    }
}

impl KinesisSettings {
    /// The settings of a table whose checks passed, with its route.
    pub(crate) fn new(config: KinesisConfig, route: StreamRoute) -> KinesisSettings {
        let delivery = &config.delivery;
        KinesisSettings {
            route,
            encoding: RequestBuilder {
                partitioning: Partitioning {
                    key: KeySource::from_settings(config.use_message_id, config.partition_key.as_deref()),
                    explicit_hash_key: config.explicit_hash_key.as_deref().map(crate::partition::split),
                    counts: Default::default(),
                },
                data_encoding: config.data_encoding,
                max_record_bytes: delivery.max_record_bytes,
            },
            caps: RequestCaps {
                max_record_bytes: delivery.max_record_bytes,
                max_batch_records: delivery.max_batch_records,
                max_batch_bytes: delivery.max_batch_bytes,
                aggregate: config.aggregation == Aggregation::Kpl,
            },
            retry: RetryPolicy {
                max_attempts: delivery.max_attempts,
                base: Duration::from_millis(delivery.backoff_base_ms),
                max: Duration::from_millis(delivery.backoff_max_ms),
            },
            pacing: config.pacing.then(|| Limits::percent(config.shard_rate_limit)),
            linger: Duration::from_millis(delivery.linger_ms),
            max_in_flight: delivery.max_in_flight,
            config,
        }
    }

    /// Whom its calls are signed as, by Segment's rule, given its resolved Secret ID (ignored without a role).
    pub fn identity_rule(&self, secret_id: Option<&Secret>) -> IdentityRule {
        IdentityRule::new(self.config.role_address.is_some(), secret_id.map(Secret::expose))
    }

    /// The stream a command works on: `explicit` if the destination can send to it, else the one stream named
    /// without a message (the stream, or a template's `default_stream`).
    pub fn stream_for(&self, explicit: Option<&str>) -> Result<String, String> {
        match explicit {
            None => Ok(self.route.fixed().to_owned()),
            Some(name) if self.route.can_name(name) => Ok(name.to_owned()),
            Some(name) => Err(format!(
                "stream {name:?} is not one this destination sends to (stream = {:?}{})",
                self.config.stream,
                self.config.default_stream.as_deref().map(|d| format!(", default_stream = {d:?}")).unwrap_or_default()
            )),
        }
    }
}
