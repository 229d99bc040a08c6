//! Sending one batch: PutRecords, per-entry results, retries of only what failed, the PutRecord fallback and
//! credential refresh. This is the single owner of retries; the SDK's own retry is disabled.

use std::time::{Duration, Instant};

use rand::Rng;
use sink::Outcome;

use crate::identity::SignAs;
use crate::record::{ApiError, Entry, ErrorKind, KinesisApi, classify_code};

/// Exponential backoff with full jitter: before attempt `n` (from 1), sleep a random time in
/// `[0, min(max, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// How many times an entry is sent before it is reported as still retryable.
    pub max_attempts: u32,
    /// The first backoff ceiling.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub max: Duration,
}

impl RetryPolicy {
    /// The ceiling of the backoff after `failures` failed attempts.
    pub fn ceiling(&self, failures: u32) -> Duration {
        sink::backoff::doubling(self.base, self.max, failures)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }
}

/// The permission Segment's setup guide leaves out, which batching needs.
const PUT_RECORDS_HINT: &str = "add kinesis:PutRecords to the role's policy to send in batches of up to 500";

/// Sends batches for one destination.
pub struct Service<A> {
    api: A,
    policy: RetryPolicy,
    /// When PutRecords was last refused while PutRecord was allowed: for [`RECHECK_PUT_RECORDS`] after that, one
    /// PutRecord per record; then PutRecords is tried again, since a policy that was being changed (a revoked
    /// role being restored) may allow it now.
    single_records_since: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a destination sends one PutRecord per record before it tries PutRecords again.
pub const RECHECK_PUT_RECORDS: Duration = Duration::from_secs(10);

impl<A: KinesisApi> Service<A> {
    /// A service over `api`.
    pub fn new(api: A, policy: RetryPolicy) -> Service<A> {
        Service { api, policy, single_records_since: std::sync::Mutex::new(None) }
    }

    /// The client.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Whether this destination sends one PutRecord per record, because PutRecords was refused lately.
    pub fn is_single_record_mode(&self) -> bool {
        let mut since = self.single_records_since.lock().expect("single-record lock poisoned");
        match *since {
            Some(at) if at.elapsed() < RECHECK_PUT_RECORDS => true,
            Some(_) => {
                *since = None;
                false
            }
            None => false,
        }
    }

    /// Delivers `entries` as `identity` and returns one outcome per entry, in order.
    ///
    /// Each round sends only the entries still pending; delivered and permanently failed entries are settled at
    /// once. What is still failing after `max_attempts` rounds is reported as retryable with its last reason.
    pub async fn send(&self, identity: &SignAs, entries: &[Entry]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; entries.len()];
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut last_reason = vec![String::new(); entries.len()];
        let mut failures = 0;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            let mut refresh = false;
            if self.is_single_record_mode() {
                refresh |=
                    self.one_by_one(identity, entries, &pending, &mut outcomes, &mut retry, &mut last_reason).await;
            } else {
                let batch: Vec<Entry> = pending.iter().map(|&i| entries[i].clone()).collect();
                match self.api.put_records(identity, &batch).await {
                    Ok(results) => {
                        for (&i, result) in pending.iter().zip(results) {
                            match result {
                                Ok(delivery) => outcomes[i] = Some(Outcome::Delivered(delivery)),
                                Err(error) => {
                                    let reason =
                                        format!("{}: {} (stream {})", error.code, error.message, self.api.stream());
                                    let kind = classify_code(&error.code);
                                    refresh |= kind == ErrorKind::ExpiredToken;
                                    let e = ApiError { kind, code: Some(error.code), message: reason };
                                    self.settle_error(i, e, &mut outcomes, &mut retry, &mut last_reason);
                                }
                            }
                        }
                    }
                    Err(e) if e.kind == ErrorKind::AccessDenied => {
                        if self.try_single_records(identity, entries, &pending, &mut outcomes, &e).await {
                            // Switched modes: resend what is left at once, without counting a failure.
                            pending.retain(|&i| outcomes[i].is_none());
                            continue;
                        }
                    }
                    Err(e) if e.kind == ErrorKind::Invalid && pending.len() > 1 => {
                        // The call was refused for what some record holds: send each alone to find which.
                        refresh |= self
                            .one_by_one(identity, entries, &pending, &mut outcomes, &mut retry, &mut last_reason)
                            .await;
                    }
                    Err(e) => {
                        refresh |= e.kind == ErrorKind::ExpiredToken;
                        for &i in &pending {
                            self.settle_error(i, e.clone(), &mut outcomes, &mut retry, &mut last_reason);
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            failures += 1;
            if failures >= self.policy.max_attempts {
                for &i in &retry {
                    let reason = format!("gave up after {failures} attempts: {}", last_reason[i]);
                    outcomes[i] = Some(Outcome::Retryable(reason));
                }
                break;
            }
            if refresh {
                // Expired credentials are not load: refresh and resend without waiting.
                self.api.refresh_credentials(identity).await;
            } else {
                tokio::time::sleep(self.policy.backoff(failures)).await;
            }
            pending = retry;
        }
        outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Retryable("not sent".to_owned()))).collect()
    }

    /// Sends the `pending` entries one PutRecord each; returns whether credentials expired on the way.
    async fn one_by_one(
        &self,
        identity: &SignAs,
        entries: &[Entry],
        pending: &[usize],
        outcomes: &mut [Option<Outcome>],
        retry: &mut Vec<usize>,
        last_reason: &mut [String],
    ) -> bool {
        let mut expired = false;
        for &i in pending {
            match self.api.put_record(identity, &entries[i]).await {
                Ok(delivery) => outcomes[i] = Some(Outcome::Delivered(delivery)),
                Err(e) => {
                    expired |= e.kind == ErrorKind::ExpiredToken;
                    self.settle_error(i, e, outcomes, retry, last_reason);
                }
            }
        }
        expired
    }

    /// Records a failed entry: what passes by itself is queued for the next round; what needs a fix is handed back
    /// as retryable at once, for the spool's schedule; only an invalid record fails.
    fn settle_error(
        &self,
        i: usize,
        error: ApiError,
        outcomes: &mut [Option<Outcome>],
        retry: &mut Vec<usize>,
        last_reason: &mut [String],
    ) {
        match error.kind {
            ErrorKind::Retryable | ErrorKind::ExpiredToken => {
                last_reason[i] = error.message;
                retry.push(i);
            }
            ErrorKind::AccessDenied | ErrorKind::AssumeRoleRefused | ErrorKind::Fixable => {
                outcomes[i] = Some(Outcome::Retryable(error.message));
            }
            ErrorKind::Invalid => outcomes[i] = Some(Outcome::Failed(error.message)),
        }
    }

    /// PutRecords was refused: if PutRecord is allowed, switch this destination to it for good.
    ///
    /// Returns whether the switch happened. If PutRecord is refused too, no call this role may make can deliver
    /// the entries now: they go back as retryable with that reason, to wait for the policy to change.
    async fn try_single_records(
        &self,
        identity: &SignAs,
        entries: &[Entry],
        pending: &[usize],
        outcomes: &mut [Option<Outcome>],
        batch_error: &ApiError,
    ) -> bool {
        let first = pending[0];
        match self.api.put_record(identity, &entries[first]).await {
            Ok(delivery) => {
                outcomes[first] = Some(Outcome::Delivered(delivery));
                if self
                    .single_records_since
                    .lock()
                    .expect("single-record lock poisoned")
                    .replace(Instant::now())
                    .is_none()
                {
                    tracing::warn!(
                        stream = self.api.stream(),
                        "kinesis:PutRecords was denied but kinesis:PutRecord is allowed, so this destination now \
                         sends one record per call (and tries PutRecords again every {}s); {PUT_RECORDS_HINT}",
                        RECHECK_PUT_RECORDS.as_secs()
                    );
                }
                true
            }
            Err(single_error) => {
                let reason = if single_error.kind == ErrorKind::AccessDenied {
                    format!(
                        "access denied to both kinesis:PutRecords and kinesis:PutRecord on stream {}: {}",
                        self.api.stream(),
                        batch_error.message
                    )
                } else {
                    single_error.message.clone()
                };
                let invalid = single_error.kind == ErrorKind::Invalid;
                outcomes[first] =
                    Some(if invalid { Outcome::Failed(reason.clone()) } else { Outcome::Retryable(reason.clone()) });
                for &i in &pending[1..] {
                    // One record's validation error says nothing of the others.
                    outcomes[i] = Some(Outcome::Retryable(reason.clone()));
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use bytes::Bytes;
    use sink::Delivery;

    use super::*;
    use crate::record::{EntryError, EntryResult};

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

    fn delivered(n: usize) -> Delivery {
        Delivery { shard_id: Some("shardId-000000000000".into()), sequence_number: Some(n.to_string()) }
    }

    #[async_trait::async_trait]
    impl KinesisApi for Fake {
        async fn put_records(&self, _: &SignAs, entries: &[Entry]) -> Result<Vec<EntryResult>, ApiError> {
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

        async fn put_record(&self, _: &SignAs, entry: &Entry) -> Result<Delivery, ApiError> {
            self.calls.lock().unwrap().push(("PutRecord", vec![entry.partition_key.clone()]));
            self.put_record.lock().unwrap().pop_front().unwrap_or(Ok(())).map(|()| delivered(0))
        }

        async fn refresh_credentials(&self, identity: &SignAs) {
            self.refreshes.lock().unwrap().push(identity.clone());
        }

        fn stream(&self) -> &str {
            "events"
        }
    }

    fn entries(keys: &[&str]) -> Vec<Entry> {
        keys.iter()
            .map(|k| Entry { partition_key: (*k).into(), explicit_hash_key: None, data: Bytes::from_static(b"{}") })
            .collect()
    }

    fn service(fake: Fake, max_attempts: u32) -> Service<Fake> {
        let policy = RetryPolicy { max_attempts, base: Duration::from_millis(1), max: Duration::from_millis(2) };
        Service::new(fake, policy)
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b", "c", "d"])).await;
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b", "c", "d"])).await;
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b"])).await;
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b"])).await;
        // The outage is retried here; the missing stream waits on the spool's schedule, and nothing fails.
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b", "c"])).await;
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b", "c"])).await;
        assert_eq!(summary(&outcomes), ["delivered"; 3]);
        assert!(service.is_single_record_mode());
        // The next batch goes straight to PutRecord without trying PutRecords again.
        let outcomes = service.send(&SignAs::Process, &entries(&["d"])).await;
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
        let outcomes = service.send(&SignAs::Process, &entries(&["a", "b"])).await;
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
        let identity = SignAs::ExternalId(crate::identity::ExternalId::sender("src_1"));
        let outcomes = service.send(&identity, &entries(&["a"])).await;
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
        let outcomes =
            service.send(&SignAs::ExternalId(crate::identity::ExternalId::sender("src_x")), &entries(&["a"])).await;
        assert_eq!(summary(&outcomes), ["retryable"]);
        assert_eq!(calls(&service).len(), 1);
    }

    #[test]
    fn backoff_ceiling_doubles_to_the_cap() {
        let policy = RetryPolicy { max_attempts: 10, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        let ceilings: Vec<u128> = (1..=6).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(100), Duration::from_secs(1));
        for failures in 1..=6 {
            assert!(policy.backoff(failures) <= policy.ceiling(failures));
        }
    }
}
