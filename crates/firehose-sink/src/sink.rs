//! [`FirehoseSink`]: a delivery's records mapped to their delivery streams, framed, grouped by identity and
//! stream, cut into PutRecordBatch calls within Firehose's limits and sent, at most `max_in_flight` calls at once
//! across the destination.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_common::{IdentityRule, SignAs};
use bytes::Bytes;
use sink::{Delivery, MetricFamily, MetricKind, Outcome, Record, Sample, Sink};
use tokio::sync::Semaphore;

use crate::api::FirehoseApi;
use crate::config::FirehoseConfig;
use crate::mapping::Mapping;
use crate::record::{calls, frame};
use crate::service::Service;

/// The most records the sink remembers as delivered to some of their streams but not all, so that a retry sends
/// them only where they are missing. Beyond it a retry sends to every stream again (at least once, never lost).
const MAX_PARTIAL: usize = 100_000;

/// Where a call goes: the identity that signs it and the delivery stream.
type Target = (SignAs, Arc<str>);

/// A record by its source and messageId.
type RecordKey = (Arc<str>, String);

/// The records of one delivery for one target: their positions in the delivery, and their framed bytes.
#[derive(Default)]
struct Group {
    positions: Vec<usize>,
    records: Vec<Bytes>,
}

/// Counts for `/metrics`.
#[derive(Default)]
struct Counts {
    unmatched: AtomicU64,
    /// Per delivery stream: records Firehose took, and record sends that failed (each attempt).
    streams: Mutex<HashMap<Arc<str>, (u64, u64)>>,
}

/// The Firehose destination.
pub struct FirehoseSink<A> {
    service: Arc<Service<A>>,
    mapping: Mapping,
    identities: IdentityRule,
    in_flight: Arc<Semaphore>,
    counts: Counts,
    /// Records delivered to some of their streams but not all, by source and messageId: the streams that have
    /// them.
    partial: Mutex<HashMap<RecordKey, Vec<Arc<str>>>>,
}

#[cfg(feature = "sdk")]
impl FirehoseSink<crate::sdk::SdkFirehose> {
    /// Connects to the delivery streams of `config`, signing each record as `identities` says.
    pub async fn connect(
        config: &FirehoseConfig,
        identities: IdentityRule,
        base: &aws_common::BaseCredentials,
    ) -> Self {
        let api = crate::sdk::SdkFirehose::connect(config, base).await;
        FirehoseSink::with_api(api, config, identities)
    }
}

impl<A: FirehoseApi + 'static> FirehoseSink<A> {
    /// A sink over any [`FirehoseApi`]; tests use this with a scripted client.
    pub fn with_api(api: A, config: &FirehoseConfig, identities: IdentityRule) -> Self {
        FirehoseSink {
            service: Arc::new(Service::new(api, config.delivery.retry())),
            mapping: Mapping::new(&config.mapping),
            identities,
            in_flight: Arc::new(Semaphore::new(config.delivery.max_in_flight.max(1))),
            counts: Counts::default(),
            partial: Mutex::new(HashMap::new()),
        }
    }

    /// Whether PutRecordBatch was denied and the sink now sends one PutRecord per record.
    pub fn is_single_record_mode(&self) -> bool {
        self.service.is_single_record_mode()
    }

    /// Messages no mapping row matched, so far.
    pub fn unmatched(&self) -> u64 {
        self.counts.unmatched.load(Ordering::Relaxed)
    }

    /// The client.
    pub fn api(&self) -> &A {
        self.service.api()
    }

    /// The streams `record` still needs: those its message maps to, less those a partial delivery reached.
    fn streams_for(&self, record: &Record) -> Vec<Arc<str>> {
        let mut streams = self.mapping.streams_of(record.payload());
        if streams.is_empty() || record.message_id().is_empty() {
            return streams;
        }
        let partial = self.partial.lock().expect("partial lock poisoned");
        if !partial.is_empty()
            && let Some(done) = partial.get(&(Arc::from(record.source_id()), record.message_id().to_owned()))
        {
            streams.retain(|s| !done.contains(s));
        }
        streams
    }

    /// Settles one record from the outcomes of its streams: delivered when every stream has it; else retryable
    /// while any stream may still take it (remembering the streams that have it); else failed.
    fn combine(&self, record: &Record, results: Vec<(Arc<str>, Outcome)>) -> Outcome {
        let key = || (Arc::from(record.source_id()), record.message_id().to_owned());
        let mut receipt = None;
        let (mut retry, mut failed) = (None, None);
        let mut reached = Vec::new();
        for (stream, outcome) in results {
            match outcome {
                Outcome::Delivered(delivery) => {
                    receipt = receipt.or(delivery.receipt);
                    reached.push(stream);
                }
                Outcome::Retryable(reason) => {
                    retry = retry.or_else(|| Some(format!("delivery stream {stream}: {reason}")));
                }
                Outcome::Failed(reason) => {
                    failed = failed.or_else(|| Some(format!("delivery stream {stream}: {reason}")));
                }
            }
        }
        let mut partial = self.partial.lock().expect("partial lock poisoned");
        match (retry, failed) {
            (Some(reason), _) => {
                if !reached.is_empty() && !record.message_id().is_empty() {
                    let room = partial.len() < MAX_PARTIAL;
                    match partial.get_mut(&key()) {
                        Some(done) => done.extend(reached),
                        None if room => {
                            partial.insert(key(), reached);
                        }
                        None => {}
                    }
                }
                Outcome::Retryable(reason)
            }
            (None, failed) => {
                if !partial.is_empty() {
                    partial.remove(&key());
                }
                match failed {
                    Some(reason) => Outcome::Failed(reason),
                    None => Outcome::Delivered(Delivery { receipt }),
                }
            }
        }
    }

    /// Sends one target's group, cut into calls, each once a slot among `max_in_flight` is free; the outcomes
    /// of the group's records, in its order.
    async fn send_group(&self, (identity, stream): &Target, group: &Group) -> Vec<Outcome> {
        let ranges = calls(group.records.iter().map(Bytes::len));
        let sends = ranges.into_iter().map(|range| async move {
            let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
            self.service.send(identity, stream, &group.records[range]).await
        });
        let outcomes: Vec<Outcome> = futures::future::join_all(sends).await.into_iter().flatten().collect();
        let delivered = outcomes.iter().filter(|o| o.is_delivered()).count() as u64;
        let mut streams = self.counts.streams.lock().expect("counts lock poisoned");
        let counts = streams.entry(stream.clone()).or_default();
        counts.0 += delivered;
        counts.1 += outcomes.len() as u64 - delivered;
        outcomes
    }
}

#[async_trait::async_trait]
impl<A: FirehoseApi + 'static> Sink for FirehoseSink<A> {
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let mut settled: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut results: Vec<Vec<(Arc<str>, Outcome)>> = vec![Vec::new(); records.len()];
        let mut groups: HashMap<Target, Group> = HashMap::new();
        // The identity of the record before, by its sender: runs from one source sign alike without a look-up each.
        let mut last: Option<(&str, SignAs)> = None;
        for (i, record) in records.iter().enumerate() {
            let streams = self.streams_for(record);
            if streams.is_empty() {
                if self.mapping.streams_of(record.payload()).is_empty() {
                    self.counts.unmatched.fetch_add(1, Ordering::Relaxed);
                }
                // Unmatched (not sent, as Segment does not send it), or already in every stream it maps to.
                settled[i] = Some(Outcome::Delivered(Delivery::default()));
                continue;
            }
            let data = match frame(record.payload()) {
                Ok(data) => Bytes::from(data),
                Err(too_large) => {
                    settled[i] = Some(Outcome::Failed(too_large.to_string()));
                    continue;
                }
            };
            let identity = match &last {
                Some((sender, identity)) if *sender == record.source_id() => identity.clone(),
                _ => {
                    let identity = self.identities.sign_as(record.source_id());
                    last = Some((record.source_id(), identity.clone()));
                    identity
                }
            };
            for stream in streams {
                let group = groups.entry((identity.clone(), stream)).or_default();
                group.positions.push(i);
                group.records.push(data.clone());
            }
        }
        let sends = groups.iter().map(|(target, group)| async move { (target, self.send_group(target, group).await) });
        for (target, outcomes) in futures::future::join_all(sends).await {
            let group = &groups[target];
            for (&i, outcome) in group.positions.iter().zip(outcomes) {
                results[i].push((target.1.clone(), outcome));
            }
        }
        records
            .iter()
            .zip(settled)
            .zip(results)
            .map(|((record, settled), results)| settled.unwrap_or_else(|| self.combine(record, results)))
            .collect()
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        let streams = self.counts.streams.lock().expect("counts lock poisoned");
        let per_stream = |pick: fn(&(u64, u64)) -> u64| {
            let mut samples: Vec<Sample> = streams
                .iter()
                .map(|(stream, counts)| Sample { labels: vec![("stream", stream.to_string())], value: pick(counts) })
                .collect();
            samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            samples
        };
        vec![
            MetricFamily {
                name: "firehose_unmatched",
                help: "Messages no row of the Firehose mapping matched, so not sent (as Segment does not send them)",
                kind: MetricKind::Counter,
                samples: vec![Sample { labels: Vec::new(), value: self.unmatched() }],
            },
            MetricFamily {
                name: "firehose_records",
                help: "Records Firehose took, per delivery stream",
                kind: MetricKind::Counter,
                samples: per_stream(|c| c.0),
            },
            MetricFamily {
                name: "firehose_records_not_delivered",
                help: "Records a delivery could not get into a delivery stream (retried later or dead-lettered), per \
                       delivery stream",
                kind: MetricKind::Counter,
                samples: per_stream(|c| c.1),
            },
            MetricFamily {
                name: "firehose_single_record_mode",
                help: "1 while PutRecordBatch is denied and one PutRecord per record is sent, else 0",
                kind: MetricKind::Gauge,
                samples: vec![Sample { labels: Vec::new(), value: u64::from(self.is_single_record_mode()) }],
            },
        ]
    }
}
