//! Sending one call's records to one delivery stream: PutRecordBatch, per-record results, retries of only what
//! failed, the PutRecord fallback and credential refresh, by the rules every AWS sink shares
//! ([`aws_common::retry`]). The SDK's own retry is disabled; what still fails goes back to the runner, which
//! retries it later.

use aws_common::retry::{BatchFallback, RECHECK_BATCH, RetryPolicy, Settling};
use aws_common::{ApiError, ErrorKind, SignAs};
use bytes::Bytes;
use sink::{Delivery, Outcome};

use crate::api::FirehoseApi;

/// The permission Segment's IAM template leaves out, which batching needs.
const PUT_RECORD_BATCH_HINT: &str = "add firehose:PutRecordBatch to the role's policy to send in batches of up to 500 (`tributary iam policy` prints it)";

/// Sends the calls of one destination.
pub struct Service<A> {
    api: A,
    policy: RetryPolicy,
    /// Whether PutRecordBatch was refused lately while PutRecord was allowed.
    single_records: BatchFallback,
}

fn delivered(record_id: String) -> Outcome {
    Outcome::Delivered(Delivery { receipt: Some(record_id) })
}

impl<A: FirehoseApi> Service<A> {
    /// A service over `api`.
    pub fn new(api: A, policy: RetryPolicy) -> Service<A> {
        Service { api, policy, single_records: BatchFallback::default() }
    }

    /// The client.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Whether this destination sends one PutRecord per record, because PutRecordBatch was refused lately.
    pub fn is_single_record_mode(&self) -> bool {
        self.single_records.is_single()
    }

    /// Delivers `records` (at most one PutRecordBatch call's worth) to `stream` as `identity`; one outcome per
    /// record, in order.
    ///
    /// Each round sends only the records still pending; delivered and permanently failed records are settled at
    /// once. What is still failing after `max_attempts` rounds is reported as retryable with its last reason.
    pub async fn send(&self, identity: &SignAs, stream: &str, records: &[Bytes]) -> Vec<Outcome> {
        let mut state = Settling::new(records.len());
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut failures = 0;
        while !pending.is_empty() {
            let refresh = match self.round((identity, stream), records, pending, &mut state).await {
                Round::Switched(left) => {
                    // Switched to PutRecord: send what is left at once, without counting a failure.
                    pending = left;
                    continue;
                }
                Round::Sent { refresh } => refresh,
            };
            let retry = std::mem::take(&mut state.retry);
            if retry.is_empty() {
                break;
            }
            failures += 1;
            if failures >= self.policy.max_attempts {
                state.give_up(&retry, failures);
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
        state.finish()
    }

    /// One round: `pending` sent in one PutRecordBatch call (or one PutRecord each), each record settled in
    /// `state` or queued in `state.retry`.
    async fn round(
        &self,
        (identity, stream): (&SignAs, &str),
        records: &[Bytes],
        mut pending: Vec<usize>,
        state: &mut Settling,
    ) -> Round {
        if self.is_single_record_mode() {
            return Round::Sent { refresh: self.one_by_one((identity, stream), records, &pending, state).await };
        }
        // The first round sends the caller's records as they are; later rounds copy only the failed (cheap
        // `Bytes` clones).
        let copied: Vec<Bytes>;
        let batch = if pending.len() == records.len() {
            records
        } else {
            copied = pending.iter().map(|&i| records[i].clone()).collect();
            &copied
        };
        let mut refresh = false;
        match self.api.put_record_batch(identity, stream, batch).await {
            Ok(results) => {
                for (&i, result) in pending.iter().zip(results) {
                    match result {
                        Ok(record_id) => state.outcomes[i] = Some(delivered(record_id)),
                        Err(error) => {
                            let reason = format!("{}: {} (delivery stream {stream})", error.code, error.message);
                            let kind = aws_common::error::classify_code(&error.code);
                            refresh |= kind == ErrorKind::ExpiredToken;
                            state.settle_error(i, ApiError { kind, code: Some(error.code), message: reason });
                        }
                    }
                }
            }
            Err(e) if e.kind == ErrorKind::AccessDenied => {
                if self.try_single_records((identity, stream), records, &pending, state, &e).await {
                    pending.retain(|&i| state.outcomes[i].is_none());
                    return Round::Switched(pending);
                }
            }
            Err(e) if e.kind == ErrorKind::Invalid && pending.len() > 1 => {
                // The call was refused for what some record holds: send each alone to find which.
                refresh = self.one_by_one((identity, stream), records, &pending, state).await;
            }
            Err(e) => refresh = state.settle_call(&pending, &e),
        }
        Round::Sent { refresh }
    }

    /// Sends the `pending` records one PutRecord each; returns whether credentials expired on the way.
    async fn one_by_one(
        &self,
        (identity, stream): (&SignAs, &str),
        records: &[Bytes],
        pending: &[usize],
        state: &mut Settling,
    ) -> bool {
        let mut expired = false;
        for &i in pending {
            match self.api.put_record(identity, stream, &records[i]).await {
                Ok(record_id) => state.outcomes[i] = Some(delivered(record_id)),
                Err(e) => {
                    expired |= e.kind == ErrorKind::ExpiredToken;
                    state.settle_error(i, e);
                }
            }
        }
        expired
    }

    /// PutRecordBatch was refused: if PutRecord is allowed, switch this destination to it, and try PutRecordBatch
    /// again after [`RECHECK_BATCH`]. Returns whether the switch happened. If PutRecord is refused too, no call
    /// this role may make can deliver the records now: they go back as retryable with both actions named.
    async fn try_single_records(
        &self,
        (identity, stream): (&SignAs, &str),
        records: &[Bytes],
        pending: &[usize],
        state: &mut Settling,
        batch_error: &ApiError,
    ) -> bool {
        let first = pending[0];
        match self.api.put_record(identity, stream, &records[first]).await {
            Ok(record_id) => {
                state.outcomes[first] = Some(delivered(record_id));
                if self.single_records.switch() {
                    tracing::warn!(
                        stream,
                        "firehose:PutRecordBatch was denied but firehose:PutRecord is allowed, so this destination \
                         now sends one record per call (and tries PutRecordBatch again every {}s); \
                         {PUT_RECORD_BATCH_HINT}",
                        RECHECK_BATCH.as_secs()
                    );
                }
                true
            }
            Err(single_error) => {
                let denied_both = format!(
                    "access denied to both firehose:PutRecordBatch and firehose:PutRecord on delivery stream {stream}: {}",
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
    /// PutRecordBatch was refused and the destination switched to PutRecord: these records are left to send.
    Switched(Vec<usize>),
}
