//! Sending one request: PutRecords (admitted by the shards' pacing), per-entry results, retries of only what
//! failed, the PutRecord fallback and credential refresh. Within a delivery this is the one owner of retries; the
//! SDK's own retry is disabled, and what still fails goes back to the runner, which retries it later.

use std::sync::Arc;
use std::time::Duration;

use aws_common::SignAs;
use aws_common::retry::{BatchFallback, Settling, merge};
use sink::Outcome;

use crate::api::{ApiError, ErrorKind, KinesisApi, classify_code};
use crate::entry::RequestEntry;
use crate::registry::StreamRegistry;
use crate::shards::ShardMap;

pub use aws_common::retry::RetryPolicy;

/// The permission Segment's setup guide leaves out, which batching needs.
const PUT_RECORDS_HINT: &str = "add kinesis:PutRecords to the role's policy to send in batches of up to 500";

/// Sends the requests of one destination.
pub struct Service<A> {
    api: A,
    policy: RetryPolicy,
    /// Whether PutRecords was refused lately while PutRecord was allowed, so one PutRecord per record is sent.
    single_records: BatchFallback,
    /// The shard maps, pacing windows and counts of the streams sent to.
    streams: StreamRegistry,
}

/// How long a destination sends one PutRecord per record before it tries PutRecords again.
pub const RECHECK_PUT_RECORDS: Duration = aws_common::retry::RECHECK_BATCH;

impl<A: KinesisApi> Service<A> {
    /// A service over `api`, keeping what it learns of streams in `streams`.
    pub fn new(api: A, policy: RetryPolicy, streams: StreamRegistry) -> Service<A> {
        Service { api, policy, single_records: BatchFallback::default(), streams }
    }

    /// What the service knows of the streams it sent to.
    pub fn streams(&self) -> &StreamRegistry {
        &self.streams
    }

    /// The shard map of `stream` ([`StreamRegistry::shard_map`]).
    pub async fn shard_map(&self, identity: &SignAs, stream: &Arc<str>) -> Option<Arc<ShardMap>> {
        self.streams.shard_map(&self.api, identity, stream).await
    }

    /// The client.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Whether this destination sends one PutRecord per record, because PutRecords was refused lately.
    pub fn is_single_record_mode(&self) -> bool {
        self.single_records.is_single()
    }

    /// Delivers the entries of one request as `identity` and returns one outcome per entry, in order.
    ///
    /// Each round sends only the entries still pending; delivered and permanently failed entries are settled at
    /// once. What is still failing after `max_attempts` rounds is reported as retryable with its last reason.
    pub async fn send(&self, identity: &SignAs, stream: &Arc<str>, entries: &[RequestEntry]) -> Vec<Outcome> {
        let mut state = Settling::new(entries.len());
        let mut waiting: Vec<usize> = (0..entries.len()).collect();
        let mut failures = 0;
        self.shard_map(identity, stream).await;
        while !waiting.is_empty() {
            // What the shards cannot take yet stays in `waiting`, and is not a failure.
            let pending = self.streams.admit(stream, entries, &mut waiting).await;
            let refresh = match self.round(identity, stream, entries, pending, &mut state).await {
                Round::Switched(left) => {
                    // Switched to PutRecord: resend what is left at once, without counting a failure.
                    waiting = merge(left, waiting);
                    continue;
                }
                Round::Sent { refresh } => refresh,
            };
            let retry = std::mem::take(&mut state.retry);
            if retry.is_empty() {
                continue;
            }
            failures += 1;
            if failures >= self.policy.max_attempts {
                state.give_up(&retry, failures);
                continue;
            }
            if refresh {
                // Expired credentials are not load: refresh and resend without waiting.
                self.api.refresh_credentials(identity).await;
            } else {
                tokio::time::sleep(self.policy.backoff(failures)).await;
            }
            waiting = merge(retry, waiting);
        }
        if self.streams.is_stale(stream) {
            // A reshard showed itself in the answers: read the new shards now, not when the next batch comes.
            self.shard_map(identity, stream).await;
        }
        state.finish()
    }

    /// One round: `pending` sent in one PutRecords call (or one PutRecord each), each entry settled in `state` or
    /// queued in `state.retry`.
    async fn round(
        &self,
        identity: &SignAs,
        stream: &str,
        entries: &[RequestEntry],
        mut pending: Vec<usize>,
        state: &mut Settling,
    ) -> Round {
        if self.is_single_record_mode() {
            return Round::Sent { refresh: self.one_by_one((identity, stream), entries, &pending, state).await };
        }
        // `pending` is ascending and distinct, so all of it is every entry in order: the first round of almost every
        // request sends the caller's entries as they are, without copying a key per entry.
        let copied: Vec<RequestEntry>;
        let batch = match pending.len() == entries.len() {
            true => entries,
            false => {
                copied = pending.iter().map(|&i| entries[i].clone()).collect();
                &copied
            }
        };
        let mut refresh = false;
        match self.api.put_records(identity, stream, batch).await {
            Ok(results) => {
                self.streams.note(stream, entries, &pending, &results);
                for (&i, result) in pending.iter().zip(results) {
                    match result {
                        Ok(delivery) => state.outcomes[i] = Some(Outcome::Delivered(delivery.into())),
                        Err(error) => {
                            let reason = format!("{}: {} (stream {stream})", error.code, error.message);
                            let kind = classify_code(&error.code);
                            refresh |= kind == ErrorKind::ExpiredToken;
                            state.settle_error(i, ApiError { kind, code: Some(error.code), message: reason });
                        }
                    }
                }
            }
            Err(e) if e.kind == ErrorKind::AccessDenied => {
                if self.try_single_records(identity, stream, entries, &pending, state, &e).await {
                    pending.retain(|&i| state.outcomes[i].is_none());
                    return Round::Switched(pending);
                }
            }
            Err(e) if e.kind == ErrorKind::Invalid && pending.len() > 1 => {
                // The call was refused for what some record holds: send each alone to find which.
                refresh = self.one_by_one((identity, stream), entries, &pending, state).await;
            }
            Err(e) => {
                if e.code.as_deref() == Some("ResourceNotFoundException") {
                    self.streams.mark_stale(stream);
                }
                refresh = state.settle_call(&pending, &e);
            }
        }
        Round::Sent { refresh }
    }

    /// Sends the `pending` entries one PutRecord each; returns whether credentials expired on the way.
    async fn one_by_one(
        &self,
        (identity, stream): (&SignAs, &str),
        entries: &[RequestEntry],
        pending: &[usize],
        state: &mut Settling,
    ) -> bool {
        let mut expired = false;
        for &i in pending {
            match self.api.put_record(identity, stream, &entries[i]).await {
                Ok(delivery) => state.outcomes[i] = Some(Outcome::Delivered(delivery.into())),
                Err(e) => {
                    expired |= e.kind == ErrorKind::ExpiredToken;
                    state.settle_error(i, e);
                }
            }
        }
        expired
    }

    /// PutRecords was refused: if PutRecord is allowed, switch this destination to it, and try PutRecords again
    /// after [`RECHECK_PUT_RECORDS`].
    ///
    /// Returns whether the switch happened. If PutRecord is refused too, no call this role may make can deliver
    /// the entries now: they go back as retryable with that reason, to wait for the policy to change.
    async fn try_single_records(
        &self,
        identity: &SignAs,
        stream: &str,
        entries: &[RequestEntry],
        pending: &[usize],
        state: &mut Settling,
        batch_error: &ApiError,
    ) -> bool {
        let first = pending[0];
        match self.api.put_record(identity, stream, &entries[first]).await {
            Ok(delivery) => {
                state.outcomes[first] = Some(Outcome::Delivered(delivery.into()));
                if self.single_records.switch() {
                    tracing::warn!(
                        stream,
                        "kinesis:PutRecords was denied but kinesis:PutRecord is allowed, so this destination now \
                         sends one record per call (and tries PutRecords again every {}s); {PUT_RECORDS_HINT}",
                        RECHECK_PUT_RECORDS.as_secs()
                    );
                }
                true
            }
            Err(single_error) => {
                let denied_both = format!(
                    "access denied to both kinesis:PutRecords and kinesis:PutRecord on stream {stream}: {}",
                    batch_error.message
                );
                state.fallback_refused(pending, single_error, denied_both);
                false
            }
        }
    }
}

/// How a round ended.
enum Round {
    /// Sent; `refresh` when credentials expired on the way.
    Sent { refresh: bool },
    /// PutRecords was refused and the destination switched to PutRecord: these entries are left to send.
    Switched(Vec<usize>),
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::api::{EntryError, EntryResult, Placement};

    /// What the fake returns for one call: per-entry codes (`None` = success), or an error for the whole call.
    enum Reply {
        Entries(Vec<Option<&'static str>>),
        Call(ApiError),
    }

    /// A scripted Kinesis: replies are taken in order; when the script is empty every call succeeds.
    #[derive(Default)]
    struct Fake {
        put_records: Mutex<VecDeque<Reply>>,
        put_record: Mutex<VecDeque<Result<(), ApiError>>>,
        /// The partition keys of each PutRecords call, and of each PutRecord call.
        calls: Mutex<Vec<(&'static str, Vec<String>)>>,
        refreshes: Mutex<Vec<SignAs>>,
    }

    fn delivered(n: usize) -> Placement {
        Placement { shard_id: Some("shardId-000000000000".into()), sequence_number: Some(n.to_string()) }
    }

    #[async_trait::async_trait]
    impl KinesisApi for Fake {
        async fn put_records(
            &self,
            _: &SignAs,
            _: &str,
            entries: &[RequestEntry],
        ) -> Result<Vec<EntryResult>, ApiError> {
            let keys = entries.iter().map(|e| e.partition_key.clone()).collect();
            self.calls.lock().unwrap().push(("PutRecords", keys));
            match self.put_records.lock().unwrap().pop_front() {
                None => Ok((0..entries.len()).map(|n| Ok(delivered(n))).collect()),
                Some(Reply::Call(e)) => Err(e),
                Some(Reply::Entries(codes)) => {
                    assert_eq!(codes.len(), entries.len(), "script and request disagree on the entry count");
                    Ok(codes
                        .into_iter()
                        .enumerate()
                        .map(|(n, code)| match code {
                            None => Ok(delivered(n)),
                            Some(code) => Err(EntryError { code: code.into(), message: "scripted".into() }),
                        })
                        .collect())
                }
            }
        }

        async fn put_record(&self, _: &SignAs, _: &str, entry: &RequestEntry) -> Result<Placement, ApiError> {
            self.calls.lock().unwrap().push(("PutRecord", vec![entry.partition_key.clone()]));
            self.put_record.lock().unwrap().pop_front().unwrap_or(Ok(())).map(|()| delivered(0))
        }

        async fn refresh_credentials(&self, identity: &SignAs) {
            self.refreshes.lock().unwrap().push(identity.clone());
        }

        async fn list_shards(&self, _: &SignAs, _: &str) -> Result<Vec<crate::shards::Shard>, ApiError> {
            Ok(vec![crate::shards::Shard { id: "shardId-000000000000".into(), start: 0, end: u128::MAX }])
        }
    }

    fn entries(keys: &[&str]) -> Vec<RequestEntry> {
        keys.iter()
            .map(|k| RequestEntry {
                partition_key: (*k).into(),
                explicit_hash_key: None,
                data: Bytes::from_static(b"{}"),
            })
            .collect()
    }

    fn service(fake: Fake, max_attempts: u32) -> Service<Fake> {
        let policy = RetryPolicy { max_attempts, base: Duration::from_millis(1), max: Duration::from_millis(2) };
        Service::new(fake, policy, StreamRegistry::default())
    }

    fn error(kind: ErrorKind, code: Option<&str>) -> ApiError {
        ApiError { kind, code: code.map(Into::into), message: format!("{kind:?}") }
    }

    /// The outcomes as short words, for compact assertions.
    fn summary(outcomes: &[Outcome]) -> Vec<&'static str> {
        outcomes
            .iter()
            .map(|o| match o {
                Outcome::Delivered(_) => "delivered",
                Outcome::Retryable(_) => "retryable",
                Outcome::Failed(_) => "failed",
            })
            .collect()
    }

    fn calls(service: &Service<Fake>) -> Vec<(&'static str, Vec<String>)> {
        service.api().calls.lock().unwrap().clone()
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn only_failed_entries_are_retried() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().extend([
            Reply::Entries(vec![None, Some("ProvisionedThroughputExceededException"), None, Some("InternalFailure")]),
            Reply::Entries(vec![None, Some("ProvisionedThroughputExceededException")]),
        ]);
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b", "c", "d"])).await;
        assert_eq!(summary(&outcomes), ["delivered"; 4]);
        assert_eq!(
            calls(&service),
            [
                ("PutRecords", keys(&["a", "b", "c", "d"])),
                ("PutRecords", keys(&["b", "d"])),
                ("PutRecords", keys(&["d"]))
            ]
        );
    }

    #[tokio::test]
    async fn entry_errors_that_need_a_fix_go_back_to_the_spool_at_once() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().extend([Reply::Entries(vec![
            Some("KMSDisabledException"),
            None,
            Some("KMSThrottlingException"),
            Some("KMSAccessDeniedException"),
        ])]);
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b", "c", "d"])).await;
        assert_eq!(summary(&outcomes), ["retryable", "delivered", "delivered", "retryable"]);
        let Outcome::Retryable(reason) = &outcomes[0] else { unreachable!() };
        assert_eq!(reason, "KMSDisabledException: scripted (stream events)");
        assert_eq!(calls(&service).len(), 2);
    }

    #[tokio::test]
    async fn retries_stop_after_max_attempts() {
        let fake = Fake::default();
        fake.put_records
            .lock()
            .unwrap()
            .extend((0..3).map(|_| Reply::Entries(vec![None, Some("ProvisionedThroughputExceededException")])).take(1));
        fake.put_records
            .lock()
            .unwrap()
            .extend((0..2).map(|_| Reply::Entries(vec![Some("ProvisionedThroughputExceededException")])));
        let service = service(fake, 3);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b"])).await;
        assert_eq!(summary(&outcomes), ["delivered", "retryable"]);
        let Outcome::Retryable(reason) = &outcomes[1] else { unreachable!() };
        assert!(reason.starts_with("gave up after 3 attempts: ProvisionedThroughputExceededException"), "{reason}");
        assert_eq!(calls(&service).len(), 3);
    }

    #[tokio::test]
    async fn whole_call_errors_are_classified() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().extend([
            Reply::Call(error(ErrorKind::Retryable, Some("ServiceUnavailable"))),
            Reply::Call(error(ErrorKind::Fixable, Some("ResourceNotFoundException"))),
        ]);
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b"])).await;
        // The outage is retried here; the missing stream waits for the runner's next try, and nothing fails.
        assert_eq!(summary(&outcomes), ["retryable", "retryable"]);
        assert_eq!(calls(&service).len(), 2);
    }

    #[tokio::test]
    async fn an_invalid_batch_is_sent_record_by_record_to_find_the_invalid_one() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().push_back(Reply::Call(error(ErrorKind::Invalid, Some("ValidationException"))));
        fake.put_record.lock().unwrap().extend([
            Ok(()),
            Err(error(ErrorKind::Invalid, Some("ValidationException"))),
            Ok(()),
        ]);
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b", "c"])).await;
        assert_eq!(summary(&outcomes), ["delivered", "failed", "delivered"]);
        assert!(!service.is_single_record_mode());
    }

    #[test]
    fn only_validation_errors_fail_a_record() {
        for code in ["ResourceNotFoundException", "KMSDisabledException", "KMSNotFoundException", "SomethingNew"] {
            assert_eq!(classify_code(code), ErrorKind::Fixable, "{code}");
        }
        assert_eq!(classify_code("ValidationException"), ErrorKind::Invalid);
        assert_eq!(ApiError::classify(None, Some(503), String::new()).kind, ErrorKind::Retryable);
        assert_eq!(ApiError::classify(None, Some(404), String::new()).kind, ErrorKind::Fixable);
    }

    #[tokio::test]
    async fn denied_put_records_falls_back_to_put_record_for_good() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().push_back(Reply::Call(error(ErrorKind::AccessDenied, None)));
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b", "c"])).await;
        assert_eq!(summary(&outcomes), ["delivered"; 3]);
        assert!(service.is_single_record_mode());
        // The next batch goes straight to PutRecord without trying PutRecords again.
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["d"])).await;
        assert_eq!(summary(&outcomes), ["delivered"]);
        assert_eq!(
            calls(&service),
            [
                ("PutRecords", keys(&["a", "b", "c"])),
                ("PutRecord", keys(&["a"])),
                ("PutRecord", keys(&["b"])),
                ("PutRecord", keys(&["c"])),
                ("PutRecord", keys(&["d"])),
            ]
        );
    }

    #[tokio::test]
    async fn denied_everything_waits_with_both_actions_named() {
        let fake = Fake::default();
        fake.put_records.lock().unwrap().push_back(Reply::Call(error(ErrorKind::AccessDenied, None)));
        fake.put_record.lock().unwrap().push_back(Err(error(ErrorKind::AccessDenied, None)));
        let service = service(fake, 5);
        let outcomes = service.send(&SignAs::Process, &Arc::from("events"), &entries(&["a", "b"])).await;
        assert_eq!(summary(&outcomes), ["retryable", "retryable"]);
        let Outcome::Retryable(reason) = &outcomes[0] else { unreachable!() };
        assert!(reason.contains("kinesis:PutRecords and kinesis:PutRecord on stream events"), "{reason}");
        assert!(!service.is_single_record_mode());
    }

    #[tokio::test]
    async fn expired_token_refreshes_then_retries() {
        let fake = Fake::default();
        fake.put_records
            .lock()
            .unwrap()
            .push_back(Reply::Call(error(ErrorKind::ExpiredToken, Some("ExpiredTokenException"))));
        let service = service(fake, 5);
        let identity = SignAs::ExternalId(aws_common::ExternalId::sender("src_1"));
        let outcomes = service.send(&identity, &Arc::from("events"), &entries(&["a"])).await;
        assert_eq!(summary(&outcomes), ["delivered"]);
        assert_eq!(*service.api().refreshes.lock().unwrap(), [identity]);
        assert_eq!(calls(&service).len(), 2);
    }

    #[tokio::test]
    async fn a_refused_role_waits_for_the_spool_without_retrying_here() {
        let fake = Fake::default();
        fake.put_records
            .lock()
            .unwrap()
            .push_back(Reply::Call(error(ErrorKind::AssumeRoleRefused, Some("AccessDenied"))));
        let service = service(fake, 5);
        let outcomes = service
            .send(&SignAs::ExternalId(aws_common::ExternalId::sender("src_x")), &Arc::from("events"), &entries(&["a"]))
            .await;
        assert_eq!(summary(&outcomes), ["retryable"]);
        assert_eq!(calls(&service).len(), 1);
    }
}
