//! Enrichment on receipt: `messageId`, `receivedAt`, and the clock-skew correction of `timestamp`.

use std::fmt::Write as _;

use serde_json::Value;
use serde_json::value::RawValue;
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
        self.enrich_on(&Receipt::new(received_at), new_id);
    }

    /// [`Message::enrich_with`] for a message of a request received at `receipt`, which formats the time once for
    /// all of the request's messages.
    pub fn enrich_on(&mut self, receipt: &Receipt, new_id: impl FnOnce() -> String) {
        if self.message_id().is_none() {
            self.set("messageId", string(&new_id()));
        }
        let times = self.times;
        let client_time = match times.original_timestamp {
            Some(original) => Some(original),
            None => {
                if times.timestamp.is_some() {
                    let sent = self.raw("timestamp").expect("validated").to_owned();
                    self.set("originalTimestamp", sent);
                }
                times.timestamp
            }
        };
        match (client_time, times.sent_at) {
            (Some(client), Some(sent)) => {
                self.set("timestamp", string(&format_timestamp(receipt.at - (sent - client))))
            }
            (Some(_), None) => {
                if self.raw("timestamp").is_none() {
                    // Only reachable when the client time came from `originalTimestamp` alone.
                    let original = self.raw("originalTimestamp").expect("the client time came from it").to_owned();
                    self.set("timestamp", original);
                }
            }
            (None, _) => self.set("timestamp", receipt.raw.clone()),
        }
        self.set("receivedAt", receipt.raw.clone());
    }
}

/// The time a request was received, formatted once for all of its messages.
#[derive(Debug, Clone)]
pub struct Receipt {
    at: OffsetDateTime,
    raw: Box<RawValue>,
}

impl Receipt {
    /// A receipt at `at`.
    pub fn new(at: OffsetDateTime) -> Receipt {
        Receipt { at, raw: string(&format_timestamp(at)) }
    }
}

/// A JSON string as raw JSON.
fn string(text: &str) -> Box<RawValue> {
    crate::message::raw(&Value::String(text.to_owned()))
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
    let local =
        format_description!(version = 2, "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(text, local).ok().map(PrimitiveDateTime::assume_utc)
}
