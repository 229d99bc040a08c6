//! The identity a message is grouped by.

use segment_model::Message;

/// Compares the user key of `input` with `expected`.
#[track_caller]
fn check(input: &str, expected: Option<&str>) {
    let message = Message::from_slice(input.as_bytes()).unwrap();
    assert_eq!(message.user_key().as_deref(), expected, "input: {input}");
}

#[test]
fn user_keys() {
    check(r#"{"type":"identify","userId":"user_1","anonymousId":"a"}"#, Some("user_1"));
    check(r#"{"type":"identify","anonymousId":"anon_9"}"#, Some("anon_9"));
    check(r#"{"type":"identify","userId":"","anonymousId":"anon_9"}"#, Some("anon_9"));
    check(r#"{"type":"identify","userId":12345}"#, Some("12345"));
    check(r#"{"type":"identify","userId":1.5e3}"#, Some("1500.0"));
    check(r#"{"type":"identify","userId":"u","messageId":"m-1"}"#, Some("u"));
    // Long identities are kept whole: cutting them is the Kinesis request builder's rule.
    let long = "k".repeat(300);
    check(&format!(r#"{{"type":"identify","userId":"{long}"}}"#), Some(long.as_str()));
}
