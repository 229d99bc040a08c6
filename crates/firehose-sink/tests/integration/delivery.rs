//! Delivery through a scripted Firehose: what is sent in which call, and what each record's outcome is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use firehose_sink::api::{ApiError, ErrorKind, RecordError, RecordResult, SignAs};
use firehose_sink::{FirehoseApi, FirehoseConfig, FirehoseSink, IdentityRule};
use sink::{Outcome, Record, Sink};

/// What the fake answers one PutRecordBatch: per-record codes (`None` = taken), or an error for the whole call.
enum Reply {
    Records(Vec<Option<&'static str>>),
    Call(ApiError),
}

/// A scripted Firehose: replies are taken in order; when a script is empty, every call succeeds. It notes every
/// call as (operation, stream, the records' data as text).
#[derive(Default)]
struct Fake {
    batches: Mutex<VecDeque<Reply>>,
    singles: Mutex<VecDeque<Result<(), ApiError>>>,
    calls: Mutex<Vec<(&'static str, String, Vec<String>)>>,
    refreshes: Mutex<usize>,
}

fn text(data: &Bytes) -> String {
    String::from_utf8(data.to_vec()).unwrap()
}

#[async_trait::async_trait]
impl FirehoseApi for Fake {
    async fn put_record_batch(
        &self,
        _: &SignAs,
        stream: &str,
        records: &[Bytes],
    ) -> Result<Vec<RecordResult>, ApiError> {
        self.calls.lock().unwrap().push(("PutRecordBatch", stream.to_owned(), records.iter().map(text).collect()));
        match self.batches.lock().unwrap().pop_front() {
            None => Ok((0..records.len()).map(|n| Ok(format!("id-{n}"))).collect()),
            Some(Reply::Call(e)) => Err(e),
            Some(Reply::Records(codes)) => {
                assert_eq!(codes.len(), records.len(), "script and call disagree on the record count");
                Ok(codes
                    .into_iter()
                    .enumerate()
                    .map(|(n, code)| match code {
                        None => Ok(format!("id-{n}")),
                        Some(code) => Err(RecordError { code: code.into(), message: "scripted".into() }),
                    })
                    .collect())
            }
        }
    }

    async fn put_record(&self, _: &SignAs, stream: &str, record: &Bytes) -> Result<String, ApiError> {
        self.calls.lock().unwrap().push(("PutRecord", stream.to_owned(), vec![text(record)]));
        self.singles.lock().unwrap().pop_front().unwrap_or(Ok(())).map(|()| "one".to_owned())
    }

    async fn refresh_credentials(&self, _: &SignAs) {
        *self.refreshes.lock().unwrap() += 1;
    }
}

fn config(mapping: &str) -> FirehoseConfig {
    toml::from_str(&format!(
        "region = \"us-east-1\"\nmapping = {mapping}\n[delivery]\nmax_attempts = 3\nbackoff_base_ms = 1\nbackoff_max_ms = 2\n"
    ))
    .unwrap()
}

fn sink(fake: Fake, mapping: &str) -> FirehoseSink<Fake> {
    // Signing with the process's own credentials: no role.
    FirehoseSink::with_api(fake, &config(mapping), IdentityRule::new(false, None))
}

/// A record of a track call named `event` (or a call of `kind` when `event` is empty), numbered `n`.
fn record(n: usize, kind: &str, event: &str) -> Record {
    let json = match event {
        "" => format!(r#"{{"type":"{kind}","userId":"u{n}","messageId":"m{n}"}}"#),
        _ => format!(r#"{{"type":"{kind}","event":"{event}","userId":"u{n}","messageId":"m{n}"}}"#),
    };
    Record::from_stored(Arc::from("src_1"), format!("m{n}"), format!("u{n}"), Bytes::from(json))
}

fn tracks(n: usize) -> Vec<Record> {
    (0..n).map(|i| record(i, "track", "Viewed")).collect()
}

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

/// The user IDs each call carried, to name records briefly.
fn calls(sink: &FirehoseSink<Fake>) -> Vec<(&'static str, String, Vec<String>)> {
    let users = |records: &Vec<String>| {
        records
            .iter()
            .map(|r| {
                let value: serde_json::Value = serde_json::from_str(r.trim_end()).unwrap();
                value["userId"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    sink.api().calls.lock().unwrap().iter().map(|(op, stream, records)| (*op, stream.clone(), users(records))).collect()
}

fn users(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const EVERYTHING: &str = r#"[{ event = "*", stream = "all" }]"#;

#[tokio::test]
async fn each_record_is_its_json_and_a_newline() {
    let sink = sink(Fake::default(), EVERYTHING);
    let records = tracks(2);
    let outcomes = sink.deliver(records.clone()).await;
    assert_eq!(summary(&outcomes), ["delivered"; 2]);
    let sent = sink.api().calls.lock().unwrap()[0].2.clone();
    let expected: Vec<String> = records.iter().map(|r| format!("{}\n", text(r.payload()))).collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn only_the_failed_records_of_a_batch_are_sent_again() {
    let fake = Fake::default();
    fake.batches.lock().unwrap().extend([
        Reply::Records(vec![None, Some("ServiceUnavailableException"), None, Some("InternalFailure")]),
        Reply::Records(vec![None, Some("ServiceUnavailableException")]),
    ]);
    let sink = sink(fake, EVERYTHING);
    let outcomes = sink.deliver(tracks(4)).await;
    assert_eq!(summary(&outcomes), ["delivered"; 4]);
    assert_eq!(
        calls(&sink),
        [
            ("PutRecordBatch", "all".to_owned(), users(&["u0", "u1", "u2", "u3"])),
            ("PutRecordBatch", "all".to_owned(), users(&["u1", "u3"])),
            ("PutRecordBatch", "all".to_owned(), users(&["u3"])),
        ]
    );
}

#[tokio::test]
async fn records_still_failing_after_max_attempts_go_back_with_the_last_reason() {
    let fake = Fake::default();
    fake.batches.lock().unwrap().extend([
        Reply::Records(vec![None, Some("ServiceUnavailableException")]),
        Reply::Records(vec![Some("ServiceUnavailableException")]),
        Reply::Records(vec![Some("ServiceUnavailableException")]),
    ]);
    let sink = sink(fake, EVERYTHING);
    let outcomes = sink.deliver(tracks(2)).await;
    assert_eq!(summary(&outcomes), ["delivered", "retryable"]);
    let Outcome::Retryable(reason) = &outcomes[1] else { unreachable!() };
    assert!(reason.contains("gave up after 3 attempts: ServiceUnavailableException: scripted"), "{reason}");
    assert_eq!(calls(&sink).len(), 3);
}

#[tokio::test]
async fn errors_an_operator_fixes_go_back_at_once_and_invalid_records_fail() {
    let fake = Fake::default();
    fake.batches.lock().unwrap().extend([Reply::Records(vec![
        Some("InvalidKMSResourceException"),
        None,
        Some("ValidationException"),
    ])]);
    let sink = sink(fake, EVERYTHING);
    let outcomes = sink.deliver(tracks(3)).await;
    assert_eq!(summary(&outcomes), ["retryable", "delivered", "failed"]);
    assert_eq!(calls(&sink).len(), 1, "nothing an operator must fix is retried within the delivery");
}

fn denied() -> ApiError {
    ApiError { kind: ErrorKind::AccessDenied, code: None, message: "HTTP 403".into() }
}

#[tokio::test]
async fn a_role_allowed_only_put_record_delivers_one_record_per_call() {
    let fake = Fake::default();
    fake.batches.lock().unwrap().push_back(Reply::Call(denied()));
    let sink = sink(fake, EVERYTHING);
    let outcomes = sink.deliver(tracks(3)).await;
    assert_eq!(summary(&outcomes), ["delivered"; 3]);
    assert!(sink.is_single_record_mode());
    // The next delivery goes straight to PutRecord, without trying PutRecordBatch again.
    let outcomes = sink.deliver(vec![record(9, "page", "")]).await;
    assert_eq!(summary(&outcomes), ["delivered"]);
    assert_eq!(
        calls(&sink),
        [
            ("PutRecordBatch", "all".to_owned(), users(&["u0", "u1", "u2"])),
            ("PutRecord", "all".to_owned(), users(&["u0"])),
            ("PutRecord", "all".to_owned(), users(&["u1"])),
            ("PutRecord", "all".to_owned(), users(&["u2"])),
            ("PutRecord", "all".to_owned(), users(&["u9"])),
        ]
    );
    let metrics = sink.metrics();
    let mode = metrics.iter().find(|f| f.name == "firehose_single_record_mode").unwrap();
    assert_eq!(mode.samples[0].value, 1);
}

#[tokio::test]
async fn a_role_denied_both_calls_waits_with_both_actions_named() {
    let fake = Fake::default();
    fake.batches.lock().unwrap().push_back(Reply::Call(denied()));
    fake.singles.lock().unwrap().push_back(Err(denied()));
    let sink = sink(fake, EVERYTHING);
    let outcomes = sink.deliver(tracks(2)).await;
    assert_eq!(summary(&outcomes), ["retryable"; 2]);
    let Outcome::Retryable(reason) = &outcomes[1] else { unreachable!() };
    assert!(reason.contains("firehose:PutRecordBatch and firehose:PutRecord on delivery stream all"), "{reason}");
    assert!(!sink.is_single_record_mode());
}

#[tokio::test]
async fn expired_credentials_are_refreshed_and_the_call_sent_again_at_once() {
    let fake = Fake::default();
    let expired = ApiError {
        kind: ErrorKind::ExpiredToken,
        code: Some("ExpiredTokenException".into()),
        message: "expired".into(),
    };
    fake.batches.lock().unwrap().push_back(Reply::Call(expired));
    let sink = sink(fake, EVERYTHING);
    assert_eq!(summary(&sink.deliver(tracks(1)).await), ["delivered"]);
    assert_eq!(*sink.api().refreshes.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_record_over_1000_kib_fails_without_a_call_and_the_rest_are_delivered() {
    let sink = sink(Fake::default(), EVERYTHING);
    let big = format!(
        r#"{{"type":"track","event":"Big","userId":"u1","messageId":"m1","properties":{{"x":"{}"}}}}"#,
        "x".repeat(1_024_000)
    );
    let records = vec![
        record(0, "track", "Small"),
        Record::from_stored(Arc::from("src_1"), "m1".into(), "u1".into(), Bytes::from(big)),
    ];
    let outcomes = sink.deliver(records).await;
    assert_eq!(summary(&outcomes), ["delivered", "failed"]);
    let Outcome::Failed(reason) = &outcomes[1] else { unreachable!() };
    assert!(reason.contains("Firehose takes at most 1024000"), "{reason}");
    assert_eq!(calls(&sink), [("PutRecordBatch", "all".to_owned(), users(&["u0"]))]);
}

#[tokio::test]
async fn unmatched_messages_are_counted_not_sent_and_matched_ones_go_to_every_stream() {
    let mapping = r#"[{ event = "order completed", stream = "orders" }, { event = "PAGE", stream = "pages" }, { event = "track", stream = "tracks" }]"#;
    let sink = sink(Fake::default(), mapping);
    let records = vec![record(0, "track", "Order Completed"), record(1, "page", ""), record(2, "identify", "")];
    let outcomes = sink.deliver(records).await;
    assert_eq!(summary(&outcomes), ["delivered"; 3]);
    let mut sent = calls(&sink);
    sent.sort();
    assert_eq!(
        sent,
        [
            ("PutRecordBatch", "orders".to_owned(), users(&["u0"])),
            ("PutRecordBatch", "pages".to_owned(), users(&["u1"])),
            ("PutRecordBatch", "tracks".to_owned(), users(&["u0"])),
        ]
    );
    assert_eq!(sink.unmatched(), 1);
}

#[tokio::test]
async fn a_retry_sends_a_record_only_to_the_streams_that_lack_it() {
    let mapping = r#"[{ event = "track", stream = "tracks" }, { event = "*", stream = "all" }]"#;
    let fake = Fake::default();
    // One stream refuses while the other takes it: the record goes back to the spool as retryable.
    let refused = ApiError {
        kind: ErrorKind::Fixable,
        code: Some("ResourceNotFoundException".into()),
        message: "missing".into(),
    };
    fake.batches.lock().unwrap().push_back(Reply::Call(refused));
    let sink = sink(fake, mapping);
    let outcomes = sink.deliver(tracks(1)).await;
    assert_eq!(summary(&outcomes), ["retryable"]);
    let Outcome::Retryable(reason) = &outcomes[0] else { unreachable!() };
    assert!(reason.starts_with("delivery stream "), "{reason}");
    let first: Vec<String> = calls(&sink).into_iter().map(|(_, stream, _)| stream).collect();
    assert_eq!(first.len(), 2);
    // The runner retries the record: it goes only to the stream that refused it.
    let outcomes = sink.deliver(tracks(1)).await;
    assert_eq!(summary(&outcomes), ["delivered"]);
    let again: Vec<String> = calls(&sink).into_iter().skip(2).map(|(_, stream, _)| stream).collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(first.contains(&again[0]));
    // Once every stream has it, it is forgotten: a later resend goes everywhere again.
    sink.deliver(tracks(1)).await;
    assert_eq!(calls(&sink).len(), 5);
}
