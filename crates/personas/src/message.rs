//! The calls for one change, as Segment Engage sends them to an event destination.

use segment_model::Message;
use serde_json::{Map, Value, json};

use crate::Identity;
use crate::definition::{Call, ComputationConfig, DEFAULT_TRACK_EVENT, Kind};
use crate::diff::{Change, ChangeKind};

/// The namespace of the deterministic messageIds (a UUID v5 namespace of our own).
const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c0f_2b4e_9a55_4d2e_8f1b_7c3a_5e9d_1f42);

/// The messageId of `call` for a change of the computation `computation_id` (see [`Computation::message_id`]).
pub fn message_id(computation_id: &str, change: &Change, call: Call) -> String {
    let mut name = format!("{computation_id}\u{0}{}\u{0}{}", change.key, change.version);
    if call != Call::Identify {
        name.push('\u{0}');
        name.push_str(call.name());
    }
    uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// A computation, resolved from its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computation {
    /// The trait key.
    pub key: String,
    /// Audience, trait or account trait.
    pub kind: Kind,
    /// `computation_id`.
    pub computation_id: String,
    /// `space_id`.
    pub space_id: String,
    /// `namespace`.
    pub namespace: String,
    /// The event of a trait's track calls.
    pub track_event: String,
}

impl From<&ComputationConfig> for Computation {
    fn from(config: &ComputationConfig) -> Computation {
        Computation {
            key: config.key(),
            kind: config.kind,
            computation_id: config.computation_id.clone(),
            space_id: config.space_id.clone(),
            namespace: config.namespace.clone(),
            track_event: config.track_event.clone().unwrap_or_else(|| DEFAULT_TRACK_EVENT.to_owned()),
        }
    }
}

impl Computation {
    /// What a leaver is sent: `false` for an audience, `null` for a trait.
    pub fn removed_value(&self) -> &'static str {
        match self.kind {
            Kind::Audience => "false",
            Kind::Trait | Kind::AccountTrait => "null",
        }
    }

    /// The messageId of `call` for a change: the same computation, identity, version and call always give the
    /// same ID, so a retried run resends the IDs the failed one used, each later change of the identity gets new
    /// ones, and the track and identify calls of one change differ. (The identify call's name has no suffix, as
    /// before calls could be chosen, so a change left to retry from an older version keeps its ID.)
    pub fn message_id(&self, change: &Change, call: Call) -> String {
        message_id(&self.computation_id, change, call)
    }

    /// The identify call for `change`.
    pub fn identify(&self, change: &Change) -> Message {
        self.call(change, Call::Identify)
    }

    /// The `call` for `change`:
    /// - identify: `traits: {KEY: value}`;
    /// - group: `groupId` and `traits: {KEY: value}`, for an account's user;
    /// - track: `Audience Entered` (or `Audience Exited` for a leaver) with `properties: {audience_key: KEY,
    ///   KEY: true|false}` for an audience; `track_event` with `properties: {trait_key: KEY, KEY: value}` for a
    ///   trait (an account trait's carries the `groupId` in `context`).
    ///
    /// Each with `context.personas` and its deterministic `messageId`.
    pub fn call(&self, change: &Change, call: Call) -> Message {
        let value: Value = serde_json::from_str(&change.value).unwrap_or_else(|_| Value::String(change.value.clone()));
        let mut body = Map::new();
        body.insert("type".into(), Value::String(call.name().into()));
        match call {
            Call::Identify | Call::Group => {
                body.insert("traits".into(), json!({self.key.as_str(): value}));
            }
            Call::Track => {
                let (event, key_name) = match self.kind {
                    Kind::Audience if change.kind == ChangeKind::Removed => ("Audience Exited", "audience_key"),
                    Kind::Audience => ("Audience Entered", "audience_key"),
                    Kind::Trait | Kind::AccountTrait => (self.track_event.as_str(), "trait_key"),
                };
                body.insert("event".into(), Value::String(event.into()));
                body.insert("properties".into(), json!({key_name: self.key, self.key.as_str(): value}));
            }
        }
        let mut context = Map::new();
        context.insert(
            "personas".into(),
            json!({
                "computation_class": self.kind.computation_class(),
                "computation_id": self.computation_id,
                "computation_key": self.key,
                "namespace": self.namespace,
                "space_id": self.space_id,
            }),
        );
        let mut identity = Identity::from_storage_key(&change.key);
        if let Some(Identity::Account { group, user }) = identity {
            match call {
                Call::Group => body.insert("groupId".into(), Value::String(group)),
                _ => context.insert("groupId".into(), Value::String(group)),
            };
            identity = Some(*user);
        }
        body.insert("context".into(), Value::Object(context));
        body.insert("messageId".into(), Value::String(self.message_id(change, call)));
        match identity {
            Some(Identity::User(id)) => body.insert("userId".into(), Value::String(id)),
            Some(Identity::Anonymous(id)) => body.insert("anonymousId".into(), Value::String(id)),
            // Keys are written by this crate; an unknown one is kept whole as a userId rather than dropped.
            Some(Identity::Account { .. }) | None => body.insert("userId".into(), Value::String(change.key.clone())),
        };
        Message::from_map(body).expect("a personas call is valid: it has an identity, a type and its fields")
    }
}
