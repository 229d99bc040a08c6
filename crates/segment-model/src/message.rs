//! [`Message`]: one validated Segment call, kept as the JSON object the client sent.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::error::{ParseError, Problem, ValidationError, json_type};
use crate::{Id, Map};

/// Segment's limit on one message, in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Segment's limit on `messageId`, in characters.
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    /// `identify`: who the user is, with traits.
    Identify,
    /// `track`: an action the user performed, with an `event` name.
    Track,
    /// `page`: a web page view.
    Page,
    /// `screen`: a mobile screen view.
    Screen,
    /// `group`: the user joins a group (`groupId`).
    Group,
    /// `alias`: merges a `previousId` into a `userId`.
    Alias,
}

impl MessageType {
    /// Every call type, in the order of Segment's spec.
    pub const ALL: [MessageType; 6] = [
        MessageType::Identify,
        MessageType::Track,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    /// The name Segment uses in `type` and in the endpoint path.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Identify => "identify",
            MessageType::Track => "track",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        MessageType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| Problem::UnknownType(s.to_owned()))
    }
}

/// A typed view of the fields that define each call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call<'a> {
    /// An `identify` call.
    Identify {
        /// `traits`, when present.
        traits: Option<&'a Map>,
    },
    /// A `track` call.
    Track {
        /// `event`, the action's name.
        event: &'a str,
        /// `properties`, when present.
        properties: Option<&'a Map>,
    },
    /// A `page` call.
    Page {
        /// `name` of the page, when present.
        name: Option<&'a str>,
        /// `properties`, when present.
        properties: Option<&'a Map>,
    },
    /// A `screen` call.
    Screen {
        /// `name` of the screen, when present.
        name: Option<&'a str>,
        /// `properties`, when present.
        properties: Option<&'a Map>,
    },
    /// A `group` call.
    Group {
        /// `groupId`.
        group_id: Id<'a>,
        /// `traits` of the group, when present.
        traits: Option<&'a Map>,
    },
    /// An `alias` call.
    Alias {
        /// `previousId`, the identity being merged.
        previous_id: Id<'a>,
        /// `userId`, the identity it is merged into.
        user_id: Id<'a>,
    },
}

/// One validated Segment message.
///
/// The JSON object is stored as sent, so serializing a message gives back every field, known or not, in the
/// client's order. The only changes ever made are [enrichment](Message::enrich_with) and, for a batch item, the
/// merge of the batch's `context` and `integrations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    kind: MessageType,
    fields: Map,
}

impl Message {
    /// Parses and validates one message whose `type` field names its call.
    pub fn from_slice(bytes: &[u8]) -> Result<Message, ParseError> {
        Message::from_slice_inner(bytes, None)
    }

    /// Parses and validates one message posted to the endpoint of `kind` (`/v1/track` and so on).
    ///
    /// A missing `type` is filled in from the endpoint; a `type` that names another call is an error.
    pub fn from_slice_as(kind: MessageType, bytes: &[u8]) -> Result<Message, ParseError> {
        Message::from_slice_inner(bytes, Some(kind))
    }

    fn from_slice_inner(bytes: &[u8], kind: Option<MessageType>) -> Result<Message, ParseError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_BYTES });
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::from_json(&e))?;
        match value {
            Value::Object(fields) => Ok(Message::from_map_as(fields, kind)?),
            other => Err(ParseError::NotAnObject(json_type(&other))),
        }
    }

    /// Validates a JSON object whose `type` field names its call.
    pub fn from_map(fields: Map) -> Result<Message, ValidationError> {
        Message::from_map_as(fields, None)
    }

    /// Validates a JSON object for the endpoint of `kind`, as [`Message::from_slice_as`] does.
    pub fn from_map_as(mut fields: Map, kind: Option<MessageType>) -> Result<Message, ValidationError> {
        let kind = match (fields.get("type"), kind) {
            (None | Some(Value::Null), Some(kind)) => {
                fields.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
                kind
            }
            (None | Some(Value::Null), None) => return Err(ValidationError::new("type", Problem::Missing)),
            (Some(Value::String(name)), endpoint) => {
                let named = name.parse().map_err(|problem| ValidationError::new("type", problem))?;
                if let Some(endpoint) = endpoint
                    && endpoint != named
                {
                    return Err(ValidationError::new(
                        "type",
                        Problem::TypeMismatch { expected: endpoint.as_str(), found: name.clone() },
                    ));
                }
                named
            }
            (Some(other), _) => {
                return Err(ValidationError::new(
                    "type",
                    Problem::WrongType { expected: "a string", found: json_type(other) },
                ));
            }
        };
        validate(kind, &fields)?;
        Ok(Message { kind, fields })
    }

    /// The call type.
    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The typed view of the fields that define this call.
    pub fn call(&self) -> Call<'_> {
        let object = |name| self.fields.get(name).and_then(Value::as_object);
        let text = |name| self.fields.get(name).and_then(Value::as_str);
        // Validation guarantees the required identifiers below are present, so `expect` cannot fire.
        let required = |name| id(self.fields.get(name)).expect("validated on construction");
        match self.kind {
            MessageType::Identify => Call::Identify { traits: object("traits") },
            MessageType::Track => Call::Track {
                event: text("event").expect("validated on construction"),
                properties: object("properties"),
            },
            MessageType::Page => Call::Page { name: text("name"), properties: object("properties") },
            MessageType::Screen => Call::Screen { name: text("name"), properties: object("properties") },
            MessageType::Group => Call::Group { group_id: required("groupId"), traits: object("traits") },
            MessageType::Alias => Call::Alias { previous_id: required("previousId"), user_id: required("userId") },
        }
    }

    /// `userId`, when present and not empty.
    pub fn user_id(&self) -> Option<Id<'_>> {
        id(self.fields.get("userId"))
    }

    /// `anonymousId`, when present and not empty.
    pub fn anonymous_id(&self) -> Option<Id<'_>> {
        id(self.fields.get("anonymousId"))
    }

    /// `messageId`, when present and not empty.
    pub fn message_id(&self) -> Option<&str> {
        self.fields.get("messageId").and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// The whole JSON object.
    pub fn as_map(&self) -> &Map {
        &self.fields
    }

    /// One field of the JSON object.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// Consumes the message and returns its JSON object.
    pub fn into_map(self) -> Map {
        self.fields
    }

    /// The message as compact JSON bytes: what a destination receives.
    pub fn to_json_vec(&self) -> Vec<u8> {
        // Serializing a map of `Value`s with string keys cannot fail.
        serde_json::to_vec(&self.fields).expect("a JSON map always serializes")
    }

    /// Removes and returns `writeKey`, which some clients put in each message: it is a secret and must not be
    /// stored or forwarded.
    pub fn take_write_key(&mut self) -> Option<Value> {
        self.fields.shift_remove("writeKey")
    }

    pub(crate) fn fields_mut(&mut self) -> &mut Map {
        &mut self.fields
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

/// An identifier field read leniently: `None` when absent, `null`, empty or of a type validation rejects.
fn id(value: Option<&Value>) -> Option<Id<'_>> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(Id::Str(s)),
        Value::Number(n) => Some(Id::Number(n)),
        _ => None,
    }
}

/// Checks an identifier field: absent, `null` and `""` are `Ok(None)`; a string or number is `Ok(Some)`.
fn check_id<'a>(fields: &'a Map, name: &str) -> Result<Option<Id<'a>>, ValidationError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(Id::Str(s))),
        Some(Value::Number(n)) => Ok(Some(Id::Number(n))),
        Some(other) => Err(ValidationError::new(
            name,
            Problem::WrongType { expected: "a string or a number", found: json_type(other) },
        )),
    }
}

/// Checks a field that must be a non-empty identifier.
fn require_id(fields: &Map, name: &str) -> Result<(), ValidationError> {
    match check_id(fields, name)? {
        Some(_) => Ok(()),
        None if matches!(fields.get(name), Some(Value::String(_))) => Err(ValidationError::new(name, Problem::Empty)),
        None => Err(ValidationError::new(name, Problem::Missing)),
    }
}

/// Checks an optional field against a JSON type.
fn check_type(
    fields: &Map,
    name: &str,
    expected: &'static str,
    ok: fn(&Value) -> bool,
) -> Result<(), ValidationError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if ok(value) => Ok(()),
        Some(other) => Err(ValidationError::new(name, Problem::WrongType { expected, found: json_type(other) })),
    }
}

/// Segment's rules, in the order a client most often breaks them.
fn validate(kind: MessageType, fields: &Map) -> Result<(), ValidationError> {
    let user = check_id(fields, "userId")?;
    let anonymous = check_id(fields, "anonymousId")?;
    if user.is_none() && anonymous.is_none() {
        return Err(ValidationError::new("userId or anonymousId", Problem::Missing));
    }
    match kind {
        MessageType::Track => match fields.get("event") {
            None | Some(Value::Null) => return Err(ValidationError::new("event", Problem::Missing)),
            Some(Value::String(s)) if s.is_empty() => return Err(ValidationError::new("event", Problem::Empty)),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ValidationError::new(
                    "event",
                    Problem::WrongType { expected: "a string", found: json_type(other) },
                ));
            }
        },
        MessageType::Group => require_id(fields, "groupId")?,
        MessageType::Alias => {
            require_id(fields, "previousId")?;
            require_id(fields, "userId")?;
        }
        MessageType::Page | MessageType::Screen => check_type(fields, "name", "a string", Value::is_string)?,
        MessageType::Identify => {}
    }
    match fields.get("messageId") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            let chars = s.chars().count();
            if chars > MAX_MESSAGE_ID_CHARS {
                return Err(ValidationError::new(
                    "messageId",
                    Problem::TooLong { max: MAX_MESSAGE_ID_CHARS, actual: chars },
                ));
            }
        }
        Some(other) => {
            return Err(ValidationError::new(
                "messageId",
                Problem::WrongType { expected: "a string", found: json_type(other) },
            ));
        }
    }
    for object in ["properties", "traits", "context", "integrations"] {
        check_type(fields, object, "an object", Value::is_object)?;
    }
    for stamp in ["timestamp", "sentAt", "originalTimestamp"] {
        match fields.get(stamp) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                if crate::enrich::parse_timestamp(s).is_none() {
                    return Err(ValidationError::new(stamp, Problem::NotATimestamp(s.clone())));
                }
            }
            Some(other) => {
                return Err(ValidationError::new(
                    stamp,
                    Problem::WrongType { expected: "an ISO-8601 date-time string", found: json_type(other) },
                ));
            }
        }
    }
    Ok(())
}
