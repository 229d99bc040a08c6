//! Enrichment on receipt: `messageId`, `receivedAt`, and the clock-skew correction of `timestamp`.

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::Message;
use crate::raw::raw_string;
use crate::timestamp::{correct_skew, timestamp_json};

/// What enrichment noticed about a message, for the caller to log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// The client's `sentAt` and time were so far apart that the corrected `timestamp` would leave the years 0 to
    /// 9999; `timestamp` is `receivedAt` instead, and the client's time is kept as `originalTimestamp`.
    pub skew_out_of_range: bool,
}

impl Message {
    /// Enriches the message as Segment does on receipt.
    ///
    /// - `messageId`: set from `new_id` when missing, `null` or empty; it is the key consumers dedupe on.
    /// - `receivedAt`: set to `received_at`.
    /// - `originalTimestamp`: the client's `timestamp`, kept as sent. A message that already carries
    ///   `originalTimestamp` (one exported from Segment, say) keeps it and is corrected from it.
    /// - `timestamp`: when the client sent `sentAt` as well, corrected for the client's clock skew as
    ///   `receivedAt - (sentAt - originalTimestamp)`; without `sentAt` the client's value stands; without any
    ///   client time it is `receivedAt`.
    /// - A client time or `sentAt` that is not a date-time is kept as sent and not used: `timestamp` is then
    ///   `receivedAt` (or the client's time without correction, when only `sentAt` is broken). A correction that
    ///   would leave the years 0 to 9999 is not applied either; [`Enrichment::skew_out_of_range`] says so.
    ///
    /// Every time this writes is RFC 3339 in UTC with millisecond precision (`2026-11-25T23:54:55.123Z`).
    pub fn enrich_with(&mut self, received_at: OffsetDateTime, new_id: impl FnOnce() -> String) -> Enrichment {
        self.enrich_on(&Receipt::new(received_at), new_id)
    }

    /// [`Message::enrich_with`] for a message of a request received at `receipt`, which formats the time once for
    /// all of the request's messages.
    pub fn enrich_on(&mut self, receipt: &Receipt, new_id: impl FnOnce() -> String) -> Enrichment {
        let mut note = Enrichment::default();
        if self.message_id.is_none() {
            let id = new_id();
            self.set("messageId", raw_string(&id));
            self.message_id = Some(id).filter(|id| !id.is_empty());
        }
        let times = self.times;
        // The client's own time: `originalTimestamp` when a message already carries it, else `timestamp`, which is
        // then kept as `originalTimestamp`.
        let client = match times.original_timestamp {
            Some(original) => original,
            None => {
                if times.timestamp.is_some() {
                    let sent = self.raw("timestamp").expect("validation saw it").to_owned();
                    self.set("originalTimestamp", sent);
                    self.times.original_timestamp = times.timestamp;
                }
                times.timestamp.flatten()
            }
        };
        let timestamp = match (client, times.sent_at.flatten()) {
            (Some(client), Some(sent)) => match correct_skew(receipt.at, sent, client) {
                Some(corrected) => Some((timestamp_raw(corrected), corrected)),
                None => {
                    note.skew_out_of_range = true;
                    None
                }
            },
            // No usable `sentAt`: the client's time stands, copied from `originalTimestamp` when that was its source.
            (Some(client), None) => match times.timestamp.flatten() {
                Some(_) => return self.received(receipt, note),
                None => Some((self.raw("originalTimestamp").expect("the client time came from it").to_owned(), client)),
            },
            (None, _) => None,
        };
        let (raw, at) = timestamp.unwrap_or_else(|| (receipt.raw.clone(), receipt.at));
        self.set("timestamp", raw);
        self.times.timestamp = Some(Some(at));
        self.received(receipt, note)
    }

    fn received(&mut self, receipt: &Receipt, note: Enrichment) -> Enrichment {
        self.set("receivedAt", receipt.raw.clone());
        note
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
        Receipt { at, raw: timestamp_raw(at) }
    }
}

fn timestamp_raw(at: OffsetDateTime) -> Box<RawValue> {
    RawValue::from_string(timestamp_json(at)).expect("a formatted time is a JSON string")
}
