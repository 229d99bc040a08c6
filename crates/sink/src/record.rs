//! What a sink receives and what it reports back.

use std::sync::Arc;

use bytes::Bytes;
use segment_model::Message;

/// One message on its way to a destination: its JSON and the keys destinations partition by.
///
/// The keys are worked out once, when the record is made from a [`Message`], so a record read back from a store
/// is delivered without parsing its message again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    source_id: Arc<str>,
    message_id: String,
    user_key: String,
    payload: Bytes,
}

impl Record {
    /// A record of `message`, received from the source `source_id`.
    pub fn new(source_id: Arc<str>, message: Message) -> Record {
        let payload = Bytes::from(message.to_json_vec());
        Record::from_parts(source_id, &message, payload)
    }

    /// A record whose payload is already serialized: `payload` must be `message`'s JSON, as read back from a store
    /// that kept it. Saves serializing the message again.
    pub fn from_parts(source_id: Arc<str>, message: &Message, payload: Bytes) -> Record {
        Record {
            source_id,
            message_id: message.message_id().unwrap_or_default().to_owned(),
            user_key: message.user_key().unwrap_or_default().into_owned(),
            payload,
        }
    }

    /// A record from keys and payload kept by a store: `message_id` and `user_key` must be what
    /// [`Record::message_id`] and [`Record::user_key`] gave for the same message.
    pub fn from_stored(source_id: Arc<str>, message_id: String, user_key: String, payload: Bytes) -> Record {
        Record { source_id, message_id, user_key, payload }
    }

    /// The ID of the source the message came from. A Kinesis destination without a Secret ID uses it as the
    /// External ID when it assumes its role.
    pub fn source_id(&self) -> &str {
        &self.source_id
    }

    /// The message's compact JSON.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The message's `messageId`, or `""` for a message that was never enriched.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The identity the message is grouped by ([`Message::user_key`]): `userId || anonymousId`, whole, or `""`
    /// for a message that was never validated.
    pub fn user_key(&self) -> &str {
        &self.user_key
    }
}

/// Where a delivered record landed, when the destination can say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The destination's own name for the record, as text: for a Kinesis stream, its sequence number
    /// (`49590338271490256608559692538361571095921575989136588898`).
    pub receipt: Option<String>,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has the record.
    Delivered(Delivery),
    /// Delivery failed for a reason that may pass (throttling, an outage); sending it again later may succeed.
    Retryable(String),
    /// Delivery failed for a reason that will not pass by itself (the record is too large, access is denied);
    /// the record belongs in a dead-letter store with this reason.
    Failed(String),
}

impl Outcome {
    /// Whether the record was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered(_))
    }
}
