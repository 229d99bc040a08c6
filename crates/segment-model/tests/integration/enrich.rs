//! Enrichment: messageId, receivedAt and the timestamp correction.

use segment_model::Message;
use serde_json::{Value, json};
use time::macros::datetime;

/// Enriches `input` as received at 12:00:10 UTC with the ID `generated`, and compares the given fields.
#[track_caller]
fn check(input: Value, expected: Value) {
    let mut message = Message::from_map(input.as_object().unwrap().clone()).unwrap();
    message.enrich_with(datetime!(2026-11-25 12:00:10 UTC), || "generated".to_owned());
    let actual = message.to_map();
    for (field, want) in expected.as_object().unwrap() {
        let got = actual.get(field).cloned().unwrap_or(Value::Null);
        assert_eq!(&got, want, "field {field} of {}", serde_json::to_string(&actual).unwrap());
    }
}

#[test]
fn message_id_is_added_only_when_missing() {
    check(json!({"type":"identify","userId":"u"}), json!({"messageId":"generated"}));
    check(json!({"type":"identify","userId":"u","messageId":null}), json!({"messageId":"generated"}));
    check(json!({"type":"identify","userId":"u","messageId":""}), json!({"messageId":"generated"}));
    check(json!({"type":"identify","userId":"u","messageId":"mine"}), json!({"messageId":"mine"}));
}

#[test]
fn received_at_is_set() {
    check(json!({"type":"identify","userId":"u"}), json!({"receivedAt":"2026-11-25T12:00:10.000Z"}));
}

#[test]
fn timestamp_is_corrected_for_clock_skew() {
    // The client's clock is 5 minutes fast: it stamped the event at 12:04:58 and sent it at 12:05:00.
    check(
        json!({"type":"identify","userId":"u","timestamp":"2026-11-25T12:04:58.000Z","sentAt":"2026-11-25T12:05:00.000Z"}),
        json!({
            "originalTimestamp":"2026-11-25T12:04:58.000Z",
            "timestamp":"2026-11-25T12:00:08.000Z",
            "sentAt":"2026-11-25T12:05:00.000Z",
            "receivedAt":"2026-11-25T12:00:10.000Z"
        }),
    );
    // Offsets and sub-millisecond precision are honoured; output is UTC with milliseconds.
    check(
        json!({"type":"identify","userId":"u","timestamp":"2026-11-25T13:00:00.5005+01:00","sentAt":"2026-11-25T12:00:01.000Z"}),
        json!({"originalTimestamp":"2026-11-25T13:00:00.5005+01:00","timestamp":"2026-11-25T12:00:09.500Z"}),
    );
}

#[test]
fn timestamp_without_sent_at_stands() {
    check(
        json!({"type":"identify","userId":"u","timestamp":"2026-11-20T08:00:00Z"}),
        json!({"timestamp":"2026-11-20T08:00:00Z","originalTimestamp":"2026-11-20T08:00:00Z"}),
    );
}

#[test]
fn no_client_time_means_received_at() {
    check(
        json!({"type":"identify","userId":"u","sentAt":"2026-11-25T12:05:00.000Z"}),
        json!({"timestamp":"2026-11-25T12:00:10.000Z","originalTimestamp":null}),
    );
}

#[test]
fn an_exported_message_keeps_its_original_timestamp() {
    check(
        json!({"type":"identify","userId":"u","originalTimestamp":"2026-11-25T12:04:58.000Z","timestamp":"2026-11-25T12:00:00.000Z","sentAt":"2026-11-25T12:05:00.000Z"}),
        json!({"originalTimestamp":"2026-11-25T12:04:58.000Z","timestamp":"2026-11-25T12:00:08.000Z"}),
    );
}

#[test]
fn broken_times_are_kept_and_not_used() {
    // Segment's own example batch sends this timestamp.
    check(
        json!({"type":"identify","userId":"u","timestamp":"2015-2-02T00:30:08.276Z","sentAt":"2026-11-25T12:05:00Z"}),
        json!({"originalTimestamp":"2015-2-02T00:30:08.276Z","timestamp":"2026-11-25T12:00:10.000Z","sentAt":"2026-11-25T12:05:00Z"}),
    );
    // A broken sentAt: the client's time stands, uncorrected.
    check(
        json!({"type":"identify","userId":"u","timestamp":"2026-11-20T08:00:00Z","sentAt":"soon"}),
        json!({"timestamp":"2026-11-20T08:00:00Z","originalTimestamp":"2026-11-20T08:00:00Z","sentAt":"soon"}),
    );
    // A broken originalTimestamp is not replaced, and no client time is used.
    check(
        json!({"type":"identify","userId":"u","originalTimestamp":"then","sentAt":"2026-11-25T12:05:00Z"}),
        json!({"originalTimestamp":"then","timestamp":"2026-11-25T12:00:10.000Z"}),
    );
}

#[test]
fn a_correction_out_of_range_falls_back_to_received_at() {
    let input = json!({"type":"track","userId":"u","event":"e","sentAt":"0001-01-01T00:00:00Z","timestamp":"9999-12-31T00:00:00Z"});
    let mut message = Message::from_map(input.as_object().unwrap().clone()).unwrap();
    let note = message.enrich_with(datetime!(2026-11-25 12:00:10 UTC), || "generated".to_owned());
    assert!(note.skew_out_of_range);
    let map = message.to_map();
    assert_eq!(map["timestamp"], "2026-11-25T12:00:10.000Z");
    assert_eq!(map["originalTimestamp"], "9999-12-31T00:00:00Z");
    // The other way round, and a correction that would land before year 0.
    for (sent, client) in
        [("9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"), ("9000-01-01T00:00:00Z", "0001-01-01T00:00:00Z")]
    {
        let input = json!({"type":"identify","userId":"u","sentAt":sent,"timestamp":client});
        let mut message = Message::from_map(input.as_object().unwrap().clone()).unwrap();
        assert!(message.enrich_with(datetime!(2026-11-25 12:00:10 UTC), || "g".to_owned()).skew_out_of_range);
        assert_eq!(message.to_map()["timestamp"], "2026-11-25T12:00:10.000Z");
    }
}

#[test]
fn enrichment_appends_and_keeps_everything_else() {
    let mut message =
        Message::from_slice(br#"{"type":"track","userId":"user_1","event":"E","custom":{"a":[1,2]}}"#).unwrap();
    message.enrich_with(datetime!(2026-11-25 12:00:10 UTC), || "m1".to_owned());
    assert_eq!(
        String::from_utf8(message.to_json_vec()).unwrap(),
        r#"{"type":"track","userId":"user_1","event":"E","custom":{"a":[1,2]},"messageId":"m1","timestamp":"2026-11-25T12:00:10.000Z","receivedAt":"2026-11-25T12:00:10.000Z"}"#
    );
}

#[test]
fn the_clients_ip_is_filled_when_asked_for() {
    #[track_caller]
    fn check(input: &str, always: bool, expected: &str) {
        let mut message = Message::from_slice(input.as_bytes()).unwrap();
        let filled = message.fill_ip("203.0.113.9", always);
        assert_eq!(String::from_utf8(message.to_json_vec()).unwrap(), expected, "input: {input}");
        assert_eq!(filled, input != expected, "input: {input}");
    }
    // context.direct asks for it, as Segment's HTTP API documents; other members keep their bytes.
    check(
        r#"{"type":"track","userId":"u","event":"E","context":{"direct":true,"n":12345678901234567890123}}"#,
        false,
        r#"{"type":"track","userId":"u","event":"E","context":{"direct":true,"n":12345678901234567890123,"ip":"203.0.113.9"}}"#,
    );
    // A source that collects IPs fills it for every message, with or without a context.
    check(
        r#"{"type":"identify","userId":"u"}"#,
        true,
        r#"{"type":"identify","userId":"u","context":{"ip":"203.0.113.9"}}"#,
    );
    check(
        r#"{"type":"identify","userId":"u","context":{"ip":null}}"#,
        true,
        r#"{"type":"identify","userId":"u","context":{"ip":"203.0.113.9"}}"#,
    );
    // Never over an IP the client sent, never without being asked, and "direct" must be true.
    for (input, always) in [
        (r#"{"type":"identify","userId":"u","context":{"ip":"198.51.100.1","direct":true}}"#, true),
        (r#"{"type":"identify","userId":"u","context":{"library":{"name":"x"}}}"#, false),
        (r#"{"type":"identify","userId":"u","context":{"direct":false}}"#, false),
        (r#"{"type":"identify","userId":"u","context":{"x":{"direct":true}}}"#, false),
        (r#"{"type":"identify","userId":"u"}"#, false),
    ] {
        check(input, always, input);
    }
}
