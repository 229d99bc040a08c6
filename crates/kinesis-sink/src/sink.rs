//! [`KinesisSink`]: batches records from every caller into PutRecords calls, per identity, with a short linger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sink::{Outcome, Record, Secret, Sink};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::config::KinesisConfig;
use crate::record::{Entry, ExternalId, KinesisApi};
use crate::request_builder::RequestBuilder;
use crate::sdk::{BaseCredentials, SdkKinesis};
use crate::service::{RetryPolicy, Service};

/// A record waiting for its batch, with the channel its outcome goes back on.
struct Queued {
    identity: ExternalId,
    entry: Entry,
    respond: oneshot::Sender<Outcome>,
}

/// The Kinesis destination.
///
/// Records from concurrent [`Sink::deliver`] calls share PutRecords calls: a batch is sent when it holds
/// `max_batch_records` records or `max_batch_bytes` bytes, or `linger_ms` after its first record arrived.
/// Records are grouped by the External ID they are sent as, because each identity signs its own calls.
pub struct KinesisSink<A = SdkKinesis> {
    service: Arc<Service<A>>,
    builder: RequestBuilder,
    role: bool,
    secret_id: Option<Secret>,
    queue: mpsc::UnboundedSender<Queued>,
}

impl KinesisSink<SdkKinesis> {
    /// Connects to the stream of `config`. `secret_id` is the resolved Secret ID, if the config has one.
    pub async fn connect(config: &KinesisConfig, secret_id: Option<Secret>, base: &BaseCredentials) -> Self {
        let api = SdkKinesis::connect(config, secret_id.is_some(), base).await;
        KinesisSink::with_api(api, config, secret_id)
    }
}

impl<A: KinesisApi + 'static> KinesisSink<A> {
    /// A sink over any [`KinesisApi`]; tests use this with a scripted client.
    pub fn with_api(api: A, config: &KinesisConfig, secret_id: Option<Secret>) -> Self {
        let delivery = &config.delivery;
        let policy = RetryPolicy {
            max_attempts: delivery.max_attempts,
            base: Duration::from_millis(delivery.backoff_base_ms),
            max: Duration::from_millis(delivery.backoff_max_ms),
        };
        let service = Arc::new(Service::new(api, policy));
        let builder = RequestBuilder {
            use_message_id: config.use_message_id,
            data_encoding: config.data_encoding,
            max_record_bytes: delivery.max_record_bytes,
            max_batch_records: delivery.max_batch_records,
            max_batch_bytes: delivery.max_batch_bytes,
        };
        let (queue, incoming) = mpsc::unbounded_channel();
        let batcher = Batcher {
            service: service.clone(),
            builder: builder.clone(),
            linger: Duration::from_millis(delivery.linger_ms),
            in_flight: Arc::new(Semaphore::new(delivery.max_in_flight)),
        };
        tokio::spawn(batcher.run(incoming));
        KinesisSink { service, builder, role: config.role_address.is_some(), secret_id, queue }
    }

    /// Whether PutRecords was denied and the sink now sends one PutRecord per record.
    pub fn is_single_record_mode(&self) -> bool {
        self.service.is_single_record_mode()
    }

    /// The identity a record is sent as: none without a role; with one, the Secret ID or else the source ID.
    fn identity(&self, record: &Record) -> ExternalId {
        if !self.role {
            return None;
        }
        Some(match &self.secret_id {
            Some(secret) => secret.expose().to_owned(),
            None => record.source_id().to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl<A: KinesisApi + 'static> Sink for KinesisSink<A> {
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut waiting = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match self.builder.encode(record) {
                Err(reason) => outcomes[i] = Some(Outcome::Failed(reason)),
                Ok(entry) => {
                    let (respond, outcome) = oneshot::channel();
                    let queued = Queued { identity: self.identity(record), entry, respond };
                    if self.queue.send(queued).is_err() {
                        outcomes[i] = Some(Outcome::Retryable("the Kinesis sink has stopped".to_owned()));
                    } else {
                        waiting.push((i, outcome));
                    }
                }
            }
        }
        for (i, outcome) in waiting {
            outcomes[i] =
                Some(outcome.await.unwrap_or_else(|_| Outcome::Retryable("the Kinesis sink has stopped".to_owned())));
        }
        outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect()
    }
}

/// The task that turns queued records into batches.
struct Batcher<A> {
    service: Arc<Service<A>>,
    builder: RequestBuilder,
    linger: Duration,
    in_flight: Arc<Semaphore>,
}

/// Records waiting for one identity's next batch.
#[derive(Default)]
struct Group {
    entries: Vec<Entry>,
    responders: Vec<oneshot::Sender<Outcome>>,
    bytes: usize,
}

impl<A: KinesisApi + 'static> Batcher<A> {
    async fn run(self, mut incoming: mpsc::UnboundedReceiver<Queued>) {
        let mut groups: HashMap<ExternalId, Group> = HashMap::new();
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
                    let Some(queued) = queued else { break };
                    let size = queued.entry.size();
                    let group = groups.entry(queued.identity.clone()).or_default();
                    if !group.entries.is_empty() && group.bytes + size > self.builder.max_batch_bytes {
                        let full = std::mem::take(group);
                        self.send(queued.identity.clone(), full).await;
                    }
                    let group = groups.entry(queued.identity.clone()).or_default();
                    group.entries.push(queued.entry);
                    group.responders.push(queued.respond);
                    group.bytes += size;
                    if group.entries.len() >= self.builder.max_batch_records {
                        let full = std::mem::take(group);
                        self.send(queued.identity, full).await;
                    }
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.linger);
                    }
                }
                () = wake => {
                    deadline = None;
                    for (identity, group) in groups.drain() {
                        if !group.entries.is_empty() {
                            self.send(identity, group).await;
                        }
                    }
                }
            }
        }
        for (identity, group) in groups.drain() {
            if !group.entries.is_empty() {
                self.send(identity, group).await;
            }
        }
    }

    /// Sends one batch on its own task, once a slot among `max_in_flight` is free.
    async fn send(&self, identity: ExternalId, group: Group) {
        let permit = self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let service = self.service.clone();
        tokio::spawn(async move {
            let outcomes = service.send(&identity, &group.entries).await;
            for (respond, outcome) in group.responders.into_iter().zip(outcomes) {
                // A caller that stopped waiting no longer needs its outcome.
                let _ = respond.send(outcome);
            }
            drop(permit);
        });
    }
}
