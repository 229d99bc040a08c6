//! [`Message`]: one validated Segment call, kept as the JSON object the client sent.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

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
        MessageType::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| Problem::UnknownType(s.to_owned()))
    }
}

/// A typed view of the fields that define each call. Identifiers are given as text (a number by its JSON
/// spelling); objects are parsed from the message on demand.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// An `identify` call.
    Identify {
        /// `traits`, when present.
        traits: Option<Map>,
    },
    /// A `track` call.
    Track {
        /// `event`, the action's name.
        event: String,
        /// `properties`, when present.
        properties: Option<Map>,
    },
    /// A `page` call.
    Page {
        /// `name` of the page, when present.
        name: Option<String>,
        /// `properties`, when present.
        properties: Option<Map>,
    },
    /// A `screen` call.
    Screen {
        /// `name` of the screen, when present.
        name: Option<String>,
        /// `properties`, when present.
        properties: Option<Map>,
    },
    /// A `group` call.
    Group {
        /// `groupId`.
        group_id: String,
        /// `traits` of the group, when present.
        traits: Option<Map>,
    },
    /// An `alias` call.
    Alias {
        /// `previousId`, the identity being merged.
        previous_id: String,
        /// `userId`, the identity it is merged into.
        user_id: String,
    },
}

/// One validated Segment message.
///
/// The top-level object is stored as its keys and each value's raw JSON, exactly as the client sent them, so
/// serializing a message gives back every field, known or not, byte for byte and in the client's order, without
/// building a tree of nested values. The only changes ever made are [enrichment](Message::enrich_with), the
/// removal of `writeKey`, and for a batch item the merge of the batch's `context`, `integrations` and `sentAt`.
#[derive(Debug, Clone)]
pub struct Message {
    kind: MessageType,
    fields: Vec<(String, Box<RawValue>)>,
    // Parsed once at construction, so that the accessors below can lend them out.
    user_id: Option<IdValue>,
    anonymous_id: Option<IdValue>,
    message_id: Option<String>,
    pub(crate) times: Times,
}

/// The client's times, parsed once by validation for enrichment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Times {
    pub(crate) timestamp: Option<time::OffsetDateTime>,
    pub(crate) sent_at: Option<time::OffsetDateTime>,
    pub(crate) original_timestamp: Option<time::OffsetDateTime>,
}

/// An owned identifier.
#[derive(Debug, Clone, PartialEq)]
enum IdValue {
    Str(String),
    Number(serde_json::Number),
}

impl IdValue {
    fn from_value(value: Value) -> Option<IdValue> {
        match value {
            Value::String(s) if !s.is_empty() => Some(IdValue::Str(s)),
            Value::Number(n) => Some(IdValue::Number(n)),
            _ => None,
        }
    }

    fn as_id(&self) -> Id<'_> {
        match self {
            IdValue::Str(s) => Id::Str(s),
            IdValue::Number(n) => Id::Number(n),
        }
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.kind == other.kind
            && self.fields.len() == other.fields.len()
            && self.fields.iter().zip(&other.fields).all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

/// The top-level keys of a JSON object with their raw values; a repeated key keeps its last value, as a parse into
/// a map would.
pub(crate) struct RawFields(pub(crate) Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawFields, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawFields, A::Error> {
                collect_fields(map).map(RawFields)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Reads an object's top-level fields with their raw values; a repeated key keeps its last value.
pub(crate) fn collect_fields<'de, A: serde::de::MapAccess<'de>>(
    mut map: A,
) -> Result<Vec<(String, Box<RawValue>)>, A::Error> {
    let mut fields: Vec<(String, Box<RawValue>)> = Vec::with_capacity(map.size_hint().unwrap_or(16));
    while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => fields.push((key, value)),
        }
    }
    Ok(fields)
}

/// Checks that `bytes` hold a JSON object, by its first token; otherwise says what they are (or why they are not
/// JSON at all), parsing them only on that error path.
pub(crate) fn expect_object(bytes: &[u8]) -> Result<(), ParseError> {
    if bytes.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(b'{') {
        return Ok(());
    }
    Err(match serde_json::from_slice::<Value>(bytes) {
        Ok(other) => ParseError::NotAnObject(json_type(&other)),
        Err(e) => ParseError::from_json(&e),
    })
}

/// Parses the top level of a JSON object; anything else is [`ParseError::NotAnObject`].
pub(crate) fn parse_fields(bytes: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, ParseError> {
    expect_object(bytes)?;
    serde_json::from_slice::<RawFields>(bytes).map(|f| f.0).map_err(|e| ParseError::from_json(&e))
}

/// A JSON value as raw JSON.
pub(crate) fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value always serializes")
}

/// The JSON type of a raw value, from its first byte.
fn raw_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
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
        Ok(Message::from_fields(parse_fields(bytes)?, kind)?)
    }

    /// Validates a JSON object whose `type` field names its call.
    pub fn from_map(fields: Map) -> Result<Message, ValidationError> {
        Message::from_map_as(fields, None)
    }

    /// Validates a JSON object for the endpoint of `kind`, as [`Message::from_slice_as`] does.
    pub fn from_map_as(fields: Map, kind: Option<MessageType>) -> Result<Message, ValidationError> {
        Message::from_fields(fields.into_iter().map(|(k, v)| (k, raw(&v))).collect(), kind)
    }

    pub(crate) fn from_fields(
        mut fields: Vec<(String, Box<RawValue>)>,
        kind: Option<MessageType>,
    ) -> Result<Message, ValidationError> {
        let declared = fields.iter().find(|(k, _)| k == "type").map(|(_, v)| parse(v));
        let kind = match (declared, kind) {
            (None | Some(Value::Null), Some(kind)) => {
                fields.retain(|(k, _)| k != "type");
                fields.push(("type".to_owned(), raw(&Value::String(kind.as_str().to_owned()))));
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
                    Problem::WrongType { expected: "a string", found: json_type(&other) },
                ));
            }
        };
        let mut message =
            Message { kind, fields, user_id: None, anonymous_id: None, message_id: None, times: Times::default() };
        let checked = validate(kind, &message)?;
        message.user_id = checked.user_id.and_then(IdValue::from_value);
        message.anonymous_id = checked.anonymous_id.and_then(IdValue::from_value);
        message.message_id = checked.message_id.filter(|id| !id.is_empty());
        message.times = checked.times;
        Ok(message)
    }

    /// The call type.
    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The typed view of the fields that define this call.
    pub fn call(&self) -> Call {
        let object = |name| match self.get(name) {
            Some(Value::Object(map)) => Some(map),
            _ => None,
        };
        let text = |name| match self.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        // Validation guarantees the required identifiers below are present.
        let id = |name| {
            self.get(name).and_then(IdValue::from_value).map(|v| v.as_id().to_text().into_owned()).unwrap_or_default()
        };
        match self.kind {
            MessageType::Identify => Call::Identify { traits: object("traits") },
            MessageType::Track => {
                Call::Track { event: text("event").unwrap_or_default(), properties: object("properties") }
            }
            MessageType::Page => Call::Page { name: text("name"), properties: object("properties") },
            MessageType::Screen => Call::Screen { name: text("name"), properties: object("properties") },
            MessageType::Group => Call::Group { group_id: id("groupId"), traits: object("traits") },
            MessageType::Alias => Call::Alias { previous_id: id("previousId"), user_id: id("userId") },
        }
    }

    /// `userId`, when present and not empty.
    pub fn user_id(&self) -> Option<Id<'_>> {
        self.user_id.as_ref().map(IdValue::as_id)
    }

    /// `anonymousId`, when present and not empty.
    pub fn anonymous_id(&self) -> Option<Id<'_>> {
        self.anonymous_id.as_ref().map(IdValue::as_id)
    }

    /// `messageId`, when present and not empty.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// One field's raw JSON, as sent.
    pub fn raw(&self, field: &str) -> Option<&RawValue> {
        self.fields.iter().find(|(k, _)| k == field).map(|(_, v)| &**v)
    }

    /// One field, parsed.
    pub fn get(&self, field: &str) -> Option<Value> {
        self.raw(field).map(parse)
    }

    /// The whole message as a JSON object (parsed; for inspection, not for the hot path).
    pub fn to_map(&self) -> Map {
        self.fields.iter().map(|(k, v)| (k.clone(), parse(v))).collect()
    }

    /// Consumes the message and returns its JSON object.
    pub fn into_map(self) -> Map {
        self.to_map()
    }

    /// Removes and returns `writeKey`, which some clients put in each message: it is a secret and must not be
    /// stored or forwarded.
    pub fn take_write_key(&mut self) -> Option<Value> {
        let index = self.fields.iter().position(|(k, _)| k == "writeKey")?;
        Some(parse(&self.fields.remove(index).1))
    }

    /// The message as compact JSON bytes: what a destination receives.
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>() + 2);
        out.push(b'{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing a string to a Vec cannot fail.
            serde_json::to_writer(&mut out, key).expect("a string serializes");
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// Sets a field, replacing its value in place or appending it.
    pub(crate) fn set(&mut self, field: &str, value: Box<RawValue>) {
        match self.fields.iter_mut().find(|(k, _)| k == field) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((field.to_owned(), value)),
        }
        if field == "messageId" {
            self.message_id = match self.get("messageId") {
                Some(Value::String(id)) if !id.is_empty() => Some(id),
                _ => None,
            };
        }
        if field == "originalTimestamp" {
            self.times.original_timestamp = match self.get("originalTimestamp") {
                Some(Value::String(text)) => crate::enrich::parse_timestamp(&text),
                _ => None,
            };
        }
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Parses a raw value that is known to be valid JSON.
fn parse(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).expect("raw values are valid JSON")
}

/// Checks an identifier field: absent, `null` and `""` are `Ok(None)`; a string or number is `Ok(Some)`.
fn check_id(message: &Message, name: &str) -> Result<Option<Value>, ValidationError> {
    match message.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(value @ (Value::String(_) | Value::Number(_))) => Ok(Some(value)),
        Some(other) => Err(ValidationError::new(
            name,
            Problem::WrongType { expected: "a string or a number", found: json_type(&other) },
        )),
    }
}

/// Checks a field that must be a non-empty identifier.
fn require_id(message: &Message, name: &str) -> Result<(), ValidationError> {
    match check_id(message, name)? {
        Some(_) => Ok(()),
        None if matches!(message.get(name), Some(Value::String(_))) => Err(ValidationError::new(name, Problem::Empty)),
        None => Err(ValidationError::new(name, Problem::Missing)),
    }
}

/// Checks an optional field's JSON type from its first byte, without parsing it.
fn check_type(
    message: &Message,
    name: &str,
    expected: &'static str,
    wanted: &'static str,
) -> Result<(), ValidationError> {
    match message.raw(name).map(raw_type) {
        None | Some("null") => Ok(()),
        Some(found) if found == wanted => Ok(()),
        Some(found) => Err(ValidationError::new(name, Problem::WrongType { expected, found })),
    }
}

/// What validation parsed on its way, kept so that nothing is parsed twice.
struct Checked {
    user_id: Option<Value>,
    anonymous_id: Option<Value>,
    message_id: Option<String>,
    times: Times,
}

/// Segment's rules, in the order a client most often breaks them.
fn validate(kind: MessageType, message: &Message) -> Result<Checked, ValidationError> {
    let user = check_id(message, "userId")?;
    let anonymous = check_id(message, "anonymousId")?;
    if user.is_none() && anonymous.is_none() {
        return Err(ValidationError::new("userId or anonymousId", Problem::Missing));
    }
    match kind {
        MessageType::Track => match message.get("event") {
            None | Some(Value::Null) => return Err(ValidationError::new("event", Problem::Missing)),
            Some(Value::String(s)) if s.is_empty() => return Err(ValidationError::new("event", Problem::Empty)),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ValidationError::new(
                    "event",
                    Problem::WrongType { expected: "a string", found: json_type(&other) },
                ));
            }
        },
        MessageType::Group => require_id(message, "groupId")?,
        MessageType::Alias => {
            require_id(message, "previousId")?;
            require_id(message, "userId")?;
        }
        MessageType::Page | MessageType::Screen => check_type(message, "name", "a string", "a string")?,
        MessageType::Identify => {}
    }
    let message_id = match message.get("messageId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let chars = s.chars().count();
            if chars > MAX_MESSAGE_ID_CHARS {
                return Err(ValidationError::new(
                    "messageId",
                    Problem::TooLong { max: MAX_MESSAGE_ID_CHARS, actual: chars },
                ));
            }
            Some(s)
        }
        Some(other) => {
            return Err(ValidationError::new(
                "messageId",
                Problem::WrongType { expected: "a string", found: json_type(&other) },
            ));
        }
    };
    for object in ["properties", "traits", "context", "integrations"] {
        check_type(message, object, "an object", "an object")?;
    }
    let mut times = Times::default();
    for stamp in ["timestamp", "sentAt", "originalTimestamp"] {
        match message.get(stamp) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                let Some(at) = crate::enrich::parse_timestamp(&s) else {
                    return Err(ValidationError::new(stamp, Problem::NotATimestamp(s)));
                };
                match stamp {
                    "timestamp" => times.timestamp = Some(at),
                    "sentAt" => times.sent_at = Some(at),
                    _ => times.original_timestamp = Some(at),
                }
            }
            Some(other) => {
                return Err(ValidationError::new(
                    stamp,
                    Problem::WrongType { expected: "an ISO-8601 date-time string", found: json_type(&other) },
                ));
            }
        }
    }
    Ok(Checked { user_id: user, anonymous_id: anonymous, message_id, times })
}
