//! [`KinesisSink`]: batches records from every caller into PutRecords calls, per identity, with a short linger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sink::{Outcome, Record, Sink};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::api::KinesisApi;
use crate::entry::RequestEntry;
use crate::registry::StreamRegistry;
use crate::request_builder::RequestBuilder;
use crate::requests::RequestCaps;
use crate::route::StreamRoute;
use aws_common::BaseCredentials;
use aws_common::{IdentityRule, SignAs};

use crate::sdk::SdkKinesis;
use crate::service::Service;
use crate::settings::KinesisSettings;

/// Where a batch goes: the identity that signs it and the stream it is for.
type BatchKey = (SignAs, Arc<str>);

/// The records of one [`Sink::deliver`] call for one identity and stream, with the channel their outcomes go back
/// on.
struct Queued {
    target: BatchKey,
    entries: Vec<RequestEntry>,
    respond: oneshot::Sender<Vec<Outcome>>,
}

/// Outcomes of one [`Queued`] chunk as its records come back, possibly from several batches.
struct Pending {
    outcomes: Vec<Option<Outcome>>,
    remaining: usize,
    respond: Option<oneshot::Sender<Vec<Outcome>>>,
}

impl Pending {
    /// Records the outcomes of the chunk's records from `start`; answers the caller once all are in.
    fn settle(&mut self, start: usize, outcomes: impl IntoIterator<Item = Outcome>) {
        for (slot, outcome) in self.outcomes[start..].iter_mut().zip(outcomes) {
            *slot = Some(outcome);
            self.remaining -= 1;
        }
        if self.remaining == 0
            && let Some(respond) = self.respond.take()
        {
            let outcomes = std::mem::take(&mut self.outcomes);
            // A caller that stopped waiting no longer needs its outcomes.
            let _ = respond.send(outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect());
        }
    }
}

/// The Kinesis destination.
///
/// Records from concurrent [`Sink::deliver`] calls share PutRecords calls: a batch is sent when it holds
/// `max_batch_records` records or `max_batch_bytes` bytes, or `linger_ms` after its first record arrived.
/// Records are grouped by the External ID they are sent as, because each identity signs its own calls.
pub struct KinesisSink<A = SdkKinesis> {
    service: Arc<Service<A>>,
    builder: RequestBuilder,
    route: StreamRoute,
    identities: IdentityRule,
    queue: mpsc::UnboundedSender<Queued>,
}

impl KinesisSink<SdkKinesis> {
    /// Connects to the streams of `settings`, signing each record as `identities` says.
    pub async fn connect(settings: &KinesisSettings, identities: IdentityRule, base: &BaseCredentials) -> Self {
        let api = SdkKinesis::connect(&settings.config, base).await;
        KinesisSink::with_api(api, settings, identities)
    }
}

impl<A: KinesisApi + 'static> KinesisSink<A> {
    /// A sink over any [`KinesisApi`]; tests use this with a scripted client.
    pub fn with_api(api: A, settings: &KinesisSettings, identities: IdentityRule) -> Self {
        let streams = StreamRegistry::new(settings.pacing, settings.caps.aggregate);
        let service = Arc::new(Service::new(api, settings.retry, streams));
        // Counts start at zero for each sink.
        let mut builder = settings.encoding.clone();
        builder.partitioning.counts = Default::default();
        let mut route = settings.route.clone();
        route.defaulted = Default::default();
        let (queue, incoming) = mpsc::unbounded_channel();
        let batcher = Batcher {
            service: service.clone(),
            caps: settings.caps,
            linger: settings.linger,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
        };
        tokio::spawn(batcher.run(incoming));
        KinesisSink { service, builder, route, identities, queue }
    }

    /// Entries Kinesis throttled so far.
    pub fn throttled(&self) -> u64 {
        self.service.streams().throttled()
    }

    /// The IDs of the open shards of `stream` as the pacer last read them.
    pub fn known_shards(&self, stream: &str) -> Vec<String> {
        self.service.streams().known_shards(stream)
    }

    /// Whether PutRecords was denied and the sink now sends one PutRecord per record.
    pub fn is_single_record_mode(&self) -> bool {
        self.service.is_single_record_mode()
    }
}

#[async_trait::async_trait]
impl<A: KinesisApi + 'static> Sink for KinesisSink<A> {
    fn metrics(&self) -> Vec<sink::MetricFamily> {
        let counts = &self.builder.partitioning.counts;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        crate::metrics::families(crate::metrics::Counts {
            partition_key_fallbacks: load(&counts.fallbacks),
            explicit_hash_keys_ignored: load(&counts.hash_keys_ignored),
            stream_defaults: load(&self.route.defaulted),
            streams: self.service.streams().samples(),
        })
    }

    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let stopped = || Outcome::Retryable("the Kinesis sink has stopped".to_owned());
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        // One chunk per identity and stream, in record order; the positions map its outcomes back. Chunks are
        // found by hash: a template over a field clients set can make as many streams as records.
        let mut chunks: Vec<(BatchKey, Vec<usize>, Vec<RequestEntry>)> = Vec::new();
        let mut chunk_of: HashMap<BatchKey, usize> = HashMap::new();
        // The chunk of the record before, by its sender and stream: runs of records from one source to one stream
        // (the usual delivery) find their chunk without building and hashing a target for each.
        let mut last: Option<(&str, Arc<str>, usize)> = None;
        for (i, record) in records.iter().enumerate() {
            match self.builder.encode(record) {
                Err(reason) => outcomes[i] = Some(Outcome::Failed(reason)),
                Ok(entry) => {
                    let stream = self.route.resolve(record.payload());
                    let at = match &last {
                        Some((sender, last_stream, at)) if *sender == record.source_id() && *last_stream == stream => {
                            *at
                        }
                        _ => {
                            let target = (self.identities.sign_as(record.source_id()), stream.clone());
                            let at = match chunk_of.get(&target) {
                                Some(&at) => at,
                                None => {
                                    chunk_of.insert(target.clone(), chunks.len());
                                    chunks.push((target, Vec::new(), Vec::new()));
                                    chunks.len() - 1
                                }
                            };
                            last = Some((record.source_id(), stream, at));
                            at
                        }
                    };
                    chunks[at].1.push(i);
                    chunks[at].2.push(entry);
                }
            }
        }
        let mut waiting = Vec::with_capacity(chunks.len());
        for (target, positions, entries) in chunks {
            let (respond, answer) = oneshot::channel();
            if self.queue.send(Queued { target, entries, respond }).is_err() {
                positions.iter().for_each(|&i| outcomes[i] = Some(stopped()));
            } else {
                waiting.push((positions, answer));
            }
        }
        for (positions, answer) in waiting {
            match answer.await {
                Ok(answered) => positions.into_iter().zip(answered).for_each(|(i, o)| outcomes[i] = Some(o)),
                Err(_) => positions.iter().for_each(|&i| outcomes[i] = Some(stopped())),
            }
        }
        outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect()
    }
}

/// The task that turns queued records into batches.
struct Batcher<A> {
    service: Arc<Service<A>>,
    caps: RequestCaps,
    linger: Duration,
    in_flight: Arc<Semaphore>,
}

/// Records waiting for one target's next batch: the entries, and which chunk (and where in it) each run of
/// them came from.
#[derive(Default)]
struct Group {
    entries: Vec<RequestEntry>,
    parts: Vec<(Arc<std::sync::Mutex<Pending>>, usize, usize)>,
    bytes: usize,
}

impl Group {
    fn push(&mut self, pending: &Arc<std::sync::Mutex<Pending>>, index: usize, entry: RequestEntry) {
        self.bytes += entry.size();
        self.entries.push(entry);
        match self.parts.last_mut() {
            Some((last, start, len)) if Arc::ptr_eq(last, pending) && *start + *len == index => *len += 1,
            _ => self.parts.push((pending.clone(), index, 1)),
        }
    }
}

impl<A: KinesisApi + 'static> Batcher<A> {
    async fn run(self, mut incoming: mpsc::UnboundedReceiver<Queued>) {
        let mut groups: HashMap<BatchKey, Group> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let wake = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                queued = incoming.recv() => {
                    let Some(Queued { target, entries, respond }) = queued else { break };
                    let pending = Arc::new(std::sync::Mutex::new(Pending {
                        outcomes: vec![None; entries.len()],
                        remaining: entries.len(),
                        respond: Some(respond),
                    }));
                    // One lookup per chunk: every entry of it goes to the same target's group.
                    let group = groups.entry(target.clone()).or_default();
                    for (index, entry) in entries.into_iter().enumerate() {
                        if self.caps.must_gather_before(group.entries.len(), group.bytes, entry.size()) {
                            let full = std::mem::take(group);
                            self.send(target.clone(), full).await;
                        }
                        group.push(&pending, index, entry);
                        if self.caps.is_gathered(group.entries.len()) {
                            let full = std::mem::take(group);
                            self.send(target.clone(), full).await;
                        }
                    }
                    if deadline.is_none() && groups.values().any(|g| !g.entries.is_empty()) {
                        deadline = Some(Instant::now() + self.linger);
                    }
                }
                () = wake => {
                    deadline = None;
                    for (target, group) in groups.drain() {
                        if !group.entries.is_empty() {
                            self.send(target, group).await;
                        }
                    }
                }
            }
        }
        for (target, group) in groups.drain() {
            if !group.entries.is_empty() {
                self.send(target, group).await;
            }
        }
    }

    /// Sends one batch on its own task, once a slot among `max_in_flight` is free.
    async fn send(&self, (identity, stream): BatchKey, group: Group) {
        let permit = self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let service = self.service.clone();
        let caps = self.caps;
        tokio::spawn(async move {
            let map = if caps.aggregate { service.shard_map(&identity, &stream).await } else { None };
            let requests = caps.requests(group.entries, map.as_deref());
            let mut sent = Vec::new();
            for request in requests.each() {
                sent.extend(service.send(&identity, &stream, request).await);
            }
            let mut outcomes = requests.outcomes(sent).into_iter();
            for (pending, start, len) in group.parts {
                pending.lock().expect("pending lock poisoned").settle(start, outcomes.by_ref().take(len));
            }
            drop(permit);
        });
    }
}
