//! Parsing and validation: each case is an input and the exact error (or none) it must give.

use segment_model::{Call, Message, MessageType, ParseError};

/// Parses `input` and compares the outcome's text with `expected` (`"ok"` for a valid message).
#[track_caller]
fn check(input: &str, expected: &str) {
    let actual = match Message::from_slice(input.as_bytes()) {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    assert_eq!(actual, expected, "input: {input}");
}

#[test]
fn the_documented_track_call_is_valid() {
    let input = r#"{"type":"track","userId":"user_1","event":"User Registered","properties":{"plan":"Pro Annual","account_type":"Facebook"}}"#;
    let message = Message::from_slice(input.as_bytes()).unwrap();
    assert_eq!(message.kind(), MessageType::Track);
    let Call::Track { event, properties } = message.call() else { panic!("not a track call") };
    assert_eq!(event, "User Registered");
    let properties = properties.unwrap();
    assert_eq!(properties["plan"], "Pro Annual");
    assert_eq!(properties["account_type"], "Facebook");
    assert_eq!(message.user_id().unwrap().to_string(), "user_1");
}

#[test]
fn identities() {
    check(r#"{"type":"identify","userId":"u"}"#, "ok");
    check(r#"{"type":"identify","anonymousId":"a"}"#, "ok");
    check(r#"{"type":"identify","userId":42}"#, "ok");
    check(r#"{"type":"identify","userId":4.5,"anonymousId":"a"}"#, "ok");
    check(r#"{"type":"identify","userId":"","anonymousId":"a"}"#, "ok");
    check(r#"{"type":"identify","userId":null,"anonymousId":"a"}"#, "ok");
    check(r#"{"type":"identify"}"#, "userId or anonymousId: is required");
    check(r#"{"type":"identify","userId":"","anonymousId":""}"#, "userId or anonymousId: is required");
    check(r#"{"type":"identify","userId":null}"#, "userId or anonymousId: is required");
    check(r#"{"type":"identify","userId":true}"#, "userId: must be a string or a number, found a boolean");
    check(
        r#"{"type":"identify","userId":"u","anonymousId":["a"]}"#,
        "anonymousId: must be a string or a number, found an array",
    );
    check(r#"{"type":"identify","userId":{"id":1}}"#, "userId: must be a string or a number, found an object");
}

#[test]
fn required_fields_per_call() {
    check(r#"{"type":"track","userId":"u","event":"E"}"#, "ok");
    check(r#"{"type":"track","userId":"u"}"#, "event: is required");
    check(r#"{"type":"track","userId":"u","event":""}"#, "event: must not be empty");
    check(r#"{"type":"track","userId":"u","event":7}"#, "event: must be a string, found a number");
    check(r#"{"type":"group","userId":"u","groupId":"g"}"#, "ok");
    check(r#"{"type":"group","userId":"u","groupId":12}"#, "ok");
    check(r#"{"type":"group","userId":"u"}"#, "groupId: is required");
    check(r#"{"type":"group","userId":"u","groupId":""}"#, "groupId: must not be empty");
    check(r#"{"type":"alias","userId":"u","previousId":"p"}"#, "ok");
    check(r#"{"type":"alias","userId":"u"}"#, "previousId: is required");
    check(r#"{"type":"alias","anonymousId":"a","previousId":"p"}"#, "userId: is required");
    check(r#"{"type":"page","anonymousId":"a","name":"Home"}"#, "ok");
    check(r#"{"type":"page","anonymousId":"a","name":3}"#, "name: must be a string, found a number");
    check(r#"{"type":"screen","anonymousId":"a"}"#, "ok");
}

#[test]
fn types_and_envelope() {
    check(r#"{"userId":"u"}"#, "type: is required");
    check(
        r#"{"type":"click","userId":"u"}"#,
        r#"type: "click" is not a Segment call type (track, identify, page, screen, group, alias)"#,
    );
    check(r#"{"type":1,"userId":"u"}"#, "type: must be a string, found a number");
    check(r#"[1]"#, "a message must be a JSON object, found an array");
    check(r#"{"type":"track","userId":"u","#, "invalid JSON at line 1, column 29: EOF while parsing a value");
    check("{\"type\":\"track\",\n\"userId\" 1}", "invalid JSON at line 2, column 10: expected `:`");
}

#[test]
fn optional_fields_are_type_checked() {
    check(
        r#"{"type":"track","userId":"u","event":"E","properties":[]}"#,
        "properties: must be an object, found an array",
    );
    check(r#"{"type":"identify","userId":"u","traits":"x"}"#, "traits: must be an object, found a string");
    check(r#"{"type":"identify","userId":"u","context":1}"#, "context: must be an object, found a number");
    check(
        r#"{"type":"identify","userId":"u","integrations":true}"#,
        "integrations: must be an object, found a boolean",
    );
    // A time string that does not parse is kept as sent (enrichment does not use it); only other types are refused.
    check(r#"{"type":"identify","userId":"u","timestamp":"yesterday"}"#, "ok");
    check(r#"{"type":"identify","userId":"u","timestamp":"2015-2-02T00:30:08.276Z"}"#, "ok");
    check(
        r#"{"type":"identify","userId":"u","timestamp":{"at":1}}"#,
        "timestamp: must be an ISO-8601 date-time string, found an object",
    );
    check(
        r#"{"type":"identify","userId":"u","sentAt":12}"#,
        "sentAt: must be an ISO-8601 date-time string, found a number",
    );
    check(r#"{"type":"identify","userId":"u","timestamp":"2026-11-25T10:00:00.123456+01:00"}"#, "ok");
    check(r#"{"type":"identify","userId":"u","timestamp":"2026-11-25T10:00:00.123"}"#, "ok");
}

#[test]
fn message_id_limits() {
    let id_100 = "m".repeat(100);
    let id_101 = "m".repeat(101);
    check(&format!(r#"{{"type":"identify","userId":"u","messageId":"{id_100}"}}"#), "ok");
    check(
        &format!(r#"{{"type":"identify","userId":"u","messageId":"{id_101}"}}"#),
        "messageId: is 101 characters long, more than the 100 allowed",
    );
    // Characters, not bytes: 100 two-byte characters are allowed.
    let wide = "é".repeat(100);
    check(&format!(r#"{{"type":"identify","userId":"u","messageId":"{wide}"}}"#), "ok");
    check(r#"{"type":"identify","userId":"u","messageId":5}"#, "messageId: must be a string, found a number");
}

#[test]
fn message_size_limit() {
    let pad =
        |n: usize| format!(r#"{{"type":"track","userId":"u","event":"E","properties":{{"p":"{}"}}}}"#, "x".repeat(n));
    let base = pad(0).len();
    check(&pad(32 * 1024 - base), "ok");
    check(&pad(32 * 1024 - base + 1), "message is 32769 bytes, more than the 32768 bytes Segment allows");
}

#[test]
fn endpoint_types() {
    let body = br#"{"userId":"u","event":"E"}"#;
    let message = Message::from_slice_as(MessageType::Track, body).unwrap();
    assert_eq!(message.get("type").unwrap(), "track");
    let wrong = Message::from_slice_as(MessageType::Identify, br#"{"type":"track","userId":"u","event":"E"}"#);
    assert_eq!(wrong.unwrap_err().to_string(), r#"type: is "track" but the endpoint takes "identify""#);
    assert!(matches!(Message::from_slice_as(MessageType::Track, br#"{"userId":"u"}"#), Err(ParseError::Invalid(_))));
}

#[test]
fn nesting_is_bounded_before_parsing() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let body = |n| format!(r#"{{"type":"track","userId":"u","event":"E","properties":{{"p":{}}}}}"#, nested(n));
    // The message object and `properties` take two levels.
    check(&body(segment_model::MAX_DEPTH - 2), "ok");
    check(&body(segment_model::MAX_DEPTH - 1), "invalid JSON: arrays and objects nest more than 127 levels deep");
    // Identifiers of the wrong type are refused from their first byte, however deep they go.
    check(
        &format!(r#"{{"type":"identify","userId":{}}}"#, nested(100)),
        "userId: must be a string or a number, found an array",
    );
}
