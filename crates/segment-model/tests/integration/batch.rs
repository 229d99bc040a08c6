//! The /v1/batch envelope.

use segment_model::{Batch, BatchError, Message};
use serde_json::json;

fn messages(body: serde_json::Value) -> Vec<Result<Message, String>> {
    let batch = Batch::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    batch.messages().into_iter().map(|m| m.map_err(|e| e.to_string())).collect()
}

#[test]
fn batch_context_and_integrations_merge_into_items() {
    let out = messages(json!({
        "batch": [
            {"type":"track","userId":"u","event":"E","context":{"ip":"1.2.3.4"}},
            {"type":"identify","anonymousId":"a","integrations":{"Kinesis":false}}
        ],
        "context": {"library":{"name":"analytics-python","version":"2.3.3"},"ip":"9.9.9.9"},
        "integrations": {"All": true},
        "sentAt": "2026-11-25T12:00:00Z",
        "writeKey": "wk"
    }));
    let first = out[0].as_ref().unwrap();
    assert_eq!(
        first.get("context").unwrap(),
        json!({"ip":"1.2.3.4","library":{"name":"analytics-python","version":"2.3.3"}})
    );
    assert_eq!(first.get("integrations").unwrap(), json!({"All": true}));
    assert_eq!(first.get("sentAt").unwrap(), "2026-11-25T12:00:00Z");
    let second = out[1].as_ref().unwrap();
    assert_eq!(second.get("integrations").unwrap(), json!({"Kinesis": false, "All": true}));
    assert_eq!(second.get("context").unwrap()["ip"], "9.9.9.9");
}

#[test]
fn invalid_items_are_named_by_index() {
    let out = messages(json!({"batch": [
        {"type":"track","userId":"u","event":"E"},
        {"type":"track","userId":"u"},
        {"type":"group","anonymousId":"a"},
        "not an object"
    ]}));
    assert!(out[0].is_ok());
    assert_eq!(out[1].as_ref().unwrap_err(), "batch[1]: event: is required");
    assert_eq!(out[2].as_ref().unwrap_err(), "batch[2]: groupId: is required");
    assert_eq!(out[3].as_ref().unwrap_err(), "batch[3]: a message must be a JSON object, found a string");
}

#[test]
fn envelope_errors() {
    let check = |body: &[u8], expected: &str| {
        assert_eq!(
            Batch::from_slice(body).unwrap_err().to_string(),
            expected,
            "body: {}",
            String::from_utf8_lossy(body)
        );
    };
    check(br#"{"batch":[]}"#, "batch: must hold at least one message");
    check(br#"{}"#, "batch: is required");
    check(br#"{"batch":{}}"#, "batch: must be an array, found an object");
    check(
        br#"{"batch":[{}],"context":[]}"#,
        "context: must be an array, found an array".replace("an array, found", "an object, found").as_str(),
    );
    check(br#"{"batch":[{}],"writeKey":1}"#, "writeKey: must be a string, found a number");
    check(br#"[]"#, "a message must be a JSON object, found an array");
    check(br#"{"batch":[}"#, "invalid JSON at line 1, column 11: expected value");
    let many = format!(r#"{{"batch":[{}]}}"#, vec!["{}"; 2501].join(","));
    check(many.as_bytes(), "batch: holds 2501 messages, more than the 2500 Segment allows");
    let big = format!(r#"{{"batch":[{{"p":"{}"}}]}}"#, "x".repeat(500 * 1024));
    assert!(matches!(Batch::from_slice(big.as_bytes()), Err(BatchError::TooLarge { .. })));
}

#[test]
fn item_size_is_checked() {
    let big = "x".repeat(33 * 1024);
    let out = messages(json!({"batch": [{"type":"track","userId":"u","event":"E","properties":{"p": big}}]}));
    assert!(out[0].as_ref().unwrap_err().starts_with("batch[0]: message is 33"), "{:?}", out[0]);
}

#[test]
fn write_key_in_body() {
    let batch = Batch::from_slice(br#"{"batch":[{"type":"identify","userId":"u"}],"writeKey":"secret"}"#).unwrap();
    assert_eq!(batch.write_key(), Some("secret"));
    assert_eq!(batch.len(), 1);
}
