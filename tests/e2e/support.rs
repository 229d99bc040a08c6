//! Helpers shared by the suites.

use std::sync::Arc;

use kinesis_sink::{BaseCredentials, KinesisConfig, KinesisSink};
use segment_model::Message;
use serde_json::Value;
use sink::{Outcome, Record, Secret, Sink};
use time::macros::datetime;

/// A Kinesis destination config for `stream` on the emulator at `url`.
pub fn config(url: &str, stream: &str) -> KinesisConfig {
    let mut config: KinesisConfig = serde_json::from_value(serde_json::json!({
        "region": tests::env::REGION,
        "stream": stream,
        "endpoint": url,
    }))
    .unwrap();
    // Emulators answer fast; short linger and backoff keep the suites quick.
    config.delivery.linger_ms = 5;
    config.delivery.backoff_base_ms = 20;
    config.delivery.backoff_max_ms = 200;
    config
}

/// A sink signing with `credentials`.
pub async fn sink(config: &KinesisConfig, secret: Option<&str>, credentials: kinesis_sink::Credentials) -> KinesisSink {
    let settings = config.clone().resolve().expect("the suites' configs are valid");
    KinesisSink::connect(
        &settings,
        settings.identity_rule(secret.map(Secret::new).as_ref()),
        &BaseCredentials::Static(credentials),
    )
    .await
}

/// Parses and enriches `body` as received at a fixed time, with `id` as messageId when it has none.
pub fn message(body: Value, id: &str) -> Message {
    let mut message = Message::from_map(body.as_object().unwrap().clone()).unwrap();
    message.enrich_with(datetime!(2026-11-25 12:00:00 UTC), || id.to_owned());
    message
}

/// Records from the source `source`.
pub fn records(source: &str, messages: &[Message]) -> Vec<Record> {
    let source: Arc<str> = Arc::from(source);
    messages.iter().map(|m| Record::new(source.clone(), m.clone())).collect()
}

/// Delivers and asserts every record was delivered.
pub async fn deliver_all(sink: &dyn Sink, records: Vec<Record>, emulator: &str) -> Vec<Outcome> {
    let count = records.len();
    let outcomes = sink.deliver(records).await;
    assert_eq!(outcomes.len(), count);
    for outcome in &outcomes {
        assert!(outcome.is_delivered(), "{emulator}: {outcome:?}");
    }
    outcomes
}
