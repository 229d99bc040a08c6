//! Partition keys.

use segment_model::Message;

/// Compares the partition key of `input` (with and without `use_message_id`) with `expected`.
#[track_caller]
fn check(input: &str, use_message_id: bool, expected: &str) {
    let message = Message::from_slice(input.as_bytes()).unwrap();
    assert_eq!(message.partition_key(use_message_id), expected, "input: {input}");
}

#[test]
fn keys() {
    check(r#"{"type":"identify","userId":"user_1","anonymousId":"a"}"#, false, "user_1");
    check(r#"{"type":"identify","anonymousId":"anon_9"}"#, false, "anon_9");
    check(r#"{"type":"identify","userId":"","anonymousId":"anon_9"}"#, false, "anon_9");
    check(r#"{"type":"identify","userId":12345}"#, false, "12345");
    check(r#"{"type":"identify","userId":1.5e3}"#, false, "1500.0");
    check(r#"{"type":"identify","userId":"u","messageId":"m-1"}"#, true, "m-1");
    check(r#"{"type":"identify","userId":"u","messageId":"m-1"}"#, false, "u");
    // Not enriched yet: no messageId, so the identity stands in rather than an empty key.
    check(r#"{"type":"identify","userId":"u"}"#, true, "u");
}

#[test]
fn long_keys_are_cut_to_256_characters() {
    let long = "k".repeat(300);
    let message = Message::from_slice(format!(r#"{{"type":"identify","userId":"{long}"}}"#).as_bytes()).unwrap();
    assert_eq!(message.partition_key(false), "k".repeat(256));
    // Characters, not bytes: a multi-byte key is cut on a character boundary.
    let wide = "ü".repeat(300);
    let message = Message::from_slice(format!(r#"{{"type":"identify","userId":"{wide}"}}"#).as_bytes()).unwrap();
    assert_eq!(message.partition_key(false), "ü".repeat(256));
    let exact = "z".repeat(256);
    let message = Message::from_slice(format!(r#"{{"type":"identify","userId":"{exact}"}}"#).as_bytes()).unwrap();
    assert_eq!(message.partition_key(false), exact);
}
