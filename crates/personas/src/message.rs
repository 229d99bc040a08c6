//! The identify call for one change, as Segment Personas sends it.

use segment_model::Message;
use serde_json::{Value, json};

use crate::Identity;
use crate::definition::{ComputationConfig, Kind};
use crate::diff::Change;

/// The namespace of the deterministic messageIds (a UUID v5 namespace of our own).
const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c0f_2b4e_9a55_4d2e_8f1b_7c3a_5e9d_1f42);

/// A computation, resolved from its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computation {
    /// The trait key.
    pub key: String,
    /// Audience or trait.
    pub kind: Kind,
    /// `computation_id`.
    pub computation_id: String,
    /// `space_id`.
    pub space_id: String,
    /// `namespace`.
    pub namespace: String,
}

impl From<&ComputationConfig> for Computation {
    fn from(config: &ComputationConfig) -> Computation {
        Computation {
            key: config.key(),
            kind: config.kind,
            computation_id: config.computation_id.clone(),
            space_id: config.space_id.clone(),
            namespace: config.namespace.clone(),
        }
    }
}

impl Computation {
    /// What a leaver is sent: `false` for an audience, `null` for a trait.
    pub fn removed_value(&self) -> &'static str {
        match self.kind {
            Kind::Audience => "false",
            Kind::Trait => "null",
        }
    }

    /// The messageId of a change: the same computation, identity and version always give the same ID, so a
    /// retried run resends the IDs the failed one used, and each later change of the identity gets a new one.
    pub fn message_id(&self, change: &Change) -> String {
        let name = format!("{}\u{0}{}\u{0}{}", self.computation_id, change.key, change.version);
        uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, name.as_bytes()).to_string()
    }

    /// The identify call for `change`.
    pub fn identify(&self, change: &Change) -> Message {
        let value: Value = serde_json::from_str(&change.value).unwrap_or_else(|_| Value::String(change.value.clone()));
        let mut body = json!({
            "type": "identify",
            "traits": {self.key.as_str(): value},
            "context": {
                "personas": {
                    "computation_class": self.kind.computation_class(),
                    "computation_id": self.computation_id,
                    "computation_key": self.key,
                    "namespace": self.namespace,
                    "space_id": self.space_id,
                }
            },
            "messageId": self.message_id(change),
        });
        match Identity::from_storage_key(&change.key) {
            Some(Identity::User(id)) => body["userId"] = Value::String(id),
            Some(Identity::Anonymous(id)) => body["anonymousId"] = Value::String(id),
            // Keys are written by this crate; an unknown prefix is kept whole as a userId rather than dropped.
            None => body["userId"] = Value::String(change.key.clone()),
        }
        let Value::Object(map) = body else { unreachable!("built as an object") };
        Message::from_map(map).expect("a personas identify call is valid: it has an identity and a type")
    }
}
