//! Enrichment on receipt: `messageId`, `receivedAt`, and the clock-skew correction of `timestamp`.

use std::fmt::Write as _;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::Message;

impl Message {
    /// Enriches the message as Segment does on receipt, with a random UUID for a missing `messageId`.
    ///
    /// See [`Message::enrich_with`] for the rules.
    pub fn enrich(&mut self, received_at: OffsetDateTime) {
        self.enrich_with(received_at, || uuid::Uuid::new_v4().to_string());
    }

    /// Enriches the message as Segment does on receipt.
    ///
    /// - `messageId`: set from `new_id` when missing, `null` or empty; it is the key consumers dedupe on.
    /// - `receivedAt`: set to `received_at`.
    /// - `originalTimestamp`: the client's `timestamp`, kept as sent. A message that already carries
    ///   `originalTimestamp` (one exported from Segment, say) keeps it and is corrected from it.
    /// - `timestamp`: when the client sent `sentAt` as well, corrected for the client's clock skew as
    ///   `receivedAt - (sentAt - originalTimestamp)`; without `sentAt` the client's value stands; without any
    ///   client time it is `receivedAt`.
    ///
    /// Every time this writes is RFC 3339 in UTC with millisecond precision (`2026-11-25T23:54:55.123Z`).
    pub fn enrich_with(&mut self, received_at: OffsetDateTime, new_id: impl FnOnce() -> String) {
        let fields = self.fields_mut();
        if !matches!(fields.get("messageId"), Some(Value::String(s)) if !s.is_empty()) {
            fields.insert("messageId".to_owned(), Value::String(new_id()));
        }
        let received_text = format_timestamp(received_at);
        let stamp = |name: &str, fields: &crate::Map| {
            fields.get(name).and_then(Value::as_str).and_then(parse_timestamp)
        };
        let client_time = match stamp("originalTimestamp", fields) {
            Some(original) => Some(original),
            None => {
                let client = stamp("timestamp", fields);
                if client.is_some() {
                    let sent = fields["timestamp"].clone();
                    fields.insert("originalTimestamp".to_owned(), sent);
                }
                client
            }
        };
        let timestamp = match (client_time, stamp("sentAt", fields)) {
            (Some(client), Some(sent)) => Some(format_timestamp(received_at - (sent - client))),
            (Some(_), None) => None,
            (None, _) => Some(received_text.clone()),
        };
        if let Some(timestamp) = timestamp {
            fields.insert("timestamp".to_owned(), Value::String(timestamp));
        } else if !fields.contains_key("timestamp") {
            // Only reachable when the client time came from `originalTimestamp` alone.
            let original = fields["originalTimestamp"].clone();
            fields.insert("timestamp".to_owned(), original);
        }
        fields.insert("receivedAt".to_owned(), Value::String(received_text));
    }
}

/// Formats a time as Segment does: RFC 3339 in UTC with milliseconds, `2026-11-25T23:54:55.123Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    );
    out
}

/// Parses the date-times Segment's libraries send: RFC 3339, or ISO 8601 without an offset (taken as UTC).
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let local = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(text, local).ok().map(PrimitiveDateTime::assume_utc)
}
