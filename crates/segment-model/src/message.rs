//! [`Message`]: one validated Segment call, kept as the JSON object the client sent.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{ParseError, Problem, ValidationError};
use crate::raw::{Fields, JsonType, json_type, parse, raw};
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

impl MessageType {
    /// The call type of an endpoint path segment: the full name (`track`) or, as analytics.js 2.0 posts them, its
    /// first letter (`t`, `i`, `p`, `s`, `g`, `a`).
    pub fn from_path(segment: &str) -> Option<MessageType> {
        match segment {
            "t" => Some(MessageType::Track),
            "i" => Some(MessageType::Identify),
            "p" => Some(MessageType::Page),
            "s" => Some(MessageType::Screen),
            "g" => Some(MessageType::Group),
            "a" => Some(MessageType::Alias),
            name => name.parse().ok(),
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
    pub(crate) kind: MessageType,
    pub(crate) fields: Fields,
    // Parsed once at construction, so that the accessors below can lend them out.
    user_id: Option<IdValue>,
    anonymous_id: Option<IdValue>,
    pub(crate) message_id: Option<String>,
    pub(crate) times: crate::timestamp::ClientTimes,
    /// The members of `context`, `properties` and `traits`, once read.
    pub(crate) members: crate::members::ObjectMembers,
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

/// A message that failed validation, with the fields it had, so that the caller can keep it for the operator.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) error: ValidationError,
    pub(crate) fields: Fields,
}

/// One message posted to a single-call endpoint (`/v1/track` and the others), parsed but not yet validated, so that
/// its write key can be checked before any more work is done on it.
#[derive(Debug)]
pub struct Single {
    fields: Fields,
}

/// A message that was parsed but broke one of Segment's rules: where it was, what is wrong, and the message as the
/// client sent it (without `writeKey`), for the operator to inspect. Oversize messages and batch items that are not
/// objects are not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", match index { Some(i) => format!("batch[{i}]: "), None => String::new() })]
pub struct Rejected {
    /// The message's zero-based position in a batch's `batch` array; `None` for a single call.
    pub index: Option<usize>,
    /// What is wrong, naming the field.
    pub error: ParseError,
    /// The message's compact JSON, when it was an object within the size limit.
    pub json: Option<Vec<u8>>,
}

impl Rejected {
    pub(crate) fn new(index: Option<usize>, invalid: Invalid) -> Rejected {
        let mut fields = invalid.fields;
        fields.retain(|(k, _)| k != "writeKey");
        Rejected { index, error: ParseError::Invalid(invalid.error), json: Some(crate::raw::write_object(&fields)) }
    }

    /// The field at fault, when the message was an object (`event`, `userId or anonymousId`).
    pub fn field(&self) -> Option<&str> {
        match &self.error {
            ParseError::Invalid(invalid) => Some(&invalid.field),
            _ => None,
        }
    }
}

impl Single {
    /// Parses a message body of at most [`MAX_MESSAGE_BYTES`]: a JSON object, nested at most
    /// [`crate::MAX_DEPTH`] levels.
    pub fn from_slice(bytes: &[u8]) -> Result<Single, ParseError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_BYTES });
        }
        Ok(Single { fields: crate::raw::parse_fields(bytes)? })
    }

    /// The `writeKey` field, when it is a string.
    pub fn write_key(&self) -> Option<String> {
        let at = crate::raw::position(&self.fields, "writeKey")?;
        match parse(&self.fields[at].1) {
            Value::String(key) => Some(key),
            _ => None,
        }
    }

    /// Validates the message for the endpoint of `kind`, as [`Message::from_slice_as`] does, without its
    /// `writeKey`.
    pub fn into_message(mut self, kind: MessageType) -> Result<Message, Rejected> {
        self.fields.retain(|(k, _)| k != "writeKey");
        Message::from_fields(self.fields, Some(kind)).map_err(|invalid| Rejected::new(None, invalid))
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
        let single = Single::from_slice(bytes)?;
        Message::from_fields(single.fields, kind).map_err(|invalid| ParseError::Invalid(invalid.error))
    }

    /// Validates a JSON object whose `type` field names its call.
    pub fn from_map(fields: Map) -> Result<Message, ValidationError> {
        Message::from_map_as(fields, None)
    }

    /// Validates a JSON object for the endpoint of `kind`, as [`Message::from_slice_as`] does.
    pub fn from_map_as(fields: Map, kind: Option<MessageType>) -> Result<Message, ValidationError> {
        Message::from_fields(fields.into_iter().map(|(k, v)| (crate::raw::key(&k), raw(&v))).collect(), kind)
            .map_err(|i| i.error)
    }

    pub(crate) fn from_fields(mut fields: Fields, kind: Option<MessageType>) -> Result<Message, Invalid> {
        let invalid = |error, fields| Err(Invalid { error, fields });
        let declared = crate::raw::position(&fields, "type").map(|at| parse(&fields[at].1));
        let kind = match (declared, kind) {
            (None | Some(Value::Null), Some(kind)) => {
                fields.retain(|(k, _)| k != "type");
                fields.push((crate::raw::Key::Borrowed("type"), crate::raw::raw_string(kind.as_str())));
                kind
            }
            (None | Some(Value::Null), None) => return invalid(ValidationError::new("type", Problem::Missing), fields),
            (Some(Value::String(name)), endpoint) => match name.parse::<MessageType>() {
                Err(problem) => return invalid(ValidationError::new("type", problem), fields),
                Ok(named) if endpoint.is_some_and(|endpoint| endpoint != named) => {
                    let expected = endpoint.map_or("", MessageType::as_str);
                    return invalid(
                        ValidationError::new("type", Problem::TypeMismatch { expected, found: name.clone() }),
                        fields,
                    );
                }
                Ok(named) => named,
            },
            (Some(other), _) => {
                let problem = Problem::WrongType { expected: JsonType::String.name(), found: json_type(&other) };
                return invalid(ValidationError::new("type", problem), fields);
            }
        };
        let mut message = Message {
            kind,
            fields,
            user_id: None,
            anonymous_id: None,
            message_id: None,
            times: Default::default(),
            members: Default::default(),
        };
        match validate(kind, &message) {
            Ok(checked) => {
                message.user_id = checked.user_id.and_then(IdValue::from_value);
                message.anonymous_id = checked.anonymous_id.and_then(IdValue::from_value);
                message.message_id = checked.message_id.filter(|id| !id.is_empty());
                message.times = checked.times;
                Ok(message)
            }
            Err(error) => Err(Invalid { error, fields: message.fields }),
        }
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
        crate::raw::position(&self.fields, field).map(|at| &*self.fields[at].1)
    }

    /// Every field's name and raw JSON, in the client's order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), &**v))
    }

    /// One field, parsed.
    pub fn get(&self, field: &str) -> Option<Value> {
        self.raw(field).map(parse)
    }

    /// The whole message as a JSON object (parsed; for inspection, not for the hot path).
    pub fn to_map(&self) -> Map {
        self.fields.iter().map(|(k, v)| (k.to_string(), parse(v))).collect()
    }

    /// Consumes the message and returns its JSON object.
    pub fn into_map(self) -> Map {
        self.to_map()
    }

    /// Removes and returns `writeKey`, which some clients put in each message: it is a secret and must not be
    /// stored or forwarded.
    pub fn take_write_key(&mut self) -> Option<Value> {
        let index = crate::raw::position(&self.fields, "writeKey")?;
        Some(parse(&self.fields.remove(index).1))
    }

    /// The message as compact JSON bytes: what a destination receives.
    pub fn to_json_vec(&self) -> Vec<u8> {
        crate::raw::write_object(&self.fields)
    }

    /// Appends the message's compact JSON ([`Message::to_json_vec`]) to `out`, so that many messages can share one
    /// buffer.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        crate::raw::append_object(&self.fields, out);
    }

    /// About the length of the message's compact JSON (exact unless a key needs escapes), to size a buffer.
    pub fn json_size(&self) -> usize {
        crate::raw::object_size(&self.fields)
    }

    /// Fills `context.ip` with `ip`, as Segment's HTTP API does, when the message has no `context.ip` (or `null`)
    /// and either `always` is set or the message says `context.direct: true`. Returns whether it did.
    ///
    /// The context's other members keep their bytes: only its top level is read, and `ip` is appended.
    pub fn fill_ip(&mut self, ip: &str, always: bool) -> bool {
        let at = crate::raw::position(&self.fields, "context");
        let context = at.map(|at| &self.fields[at].1);
        let mut members = match context {
            None => Vec::new(),
            Some(raw) if raw.get() == "null" => Vec::new(),
            // A message that does not ask for it is never parsed further than this.
            Some(raw) if !always && !raw.get().contains("\"direct\"") => return false,
            Some(raw) => match serde_json::from_str::<crate::raw::RawFields>(raw.get()) {
                Ok(fields) => fields.0,
                // Validation made sure the context is an object; anything else is left alone.
                Err(_) => return false,
            },
        };
        let direct = members.iter().any(|(k, v)| k == "direct" && v.get() == "true");
        if !(always || direct) {
            return false;
        }
        match members.iter_mut().find(|(k, _)| k == "ip") {
            Some((_, value)) if value.get() != "null" => return false,
            Some((_, value)) => *value = crate::raw::raw_string(ip),
            None => members.push((crate::raw::Key::Borrowed("ip"), crate::raw::raw_string(ip))),
        }
        let object = crate::raw::write_object(&members);
        let object = String::from_utf8(object).expect("JSON written from strings is UTF-8");
        let raw = RawValue::from_string(object).expect("an object written from raw values is valid JSON");
        self.set("context", raw);
        true
    }

    /// Replaces one of the free-form objects a destination's controls may change (`properties`, `traits`,
    /// `context`) with `value`, in place, keeping the other fields' bytes. Returns `false`, changing nothing, for any
    /// other field: the ones validation read stay as validated.
    pub fn replace_object(&mut self, field: &str, value: &Value) -> bool {
        if !matches!(field, "properties" | "traits" | "context") {
            return false;
        }
        let raw = serde_json::value::to_raw_value(value).expect("a JSON value serializes");
        self.set(field, raw);
        true
    }

    /// As [`Message::replace_object`], with the object's JSON text (left as it is written). Returns `false`,
    /// changing nothing, for another field or for text that is not a JSON object.
    pub fn replace_object_json(&mut self, field: &str, json: String) -> bool {
        if !matches!(field, "properties" | "traits" | "context") || !json.trim_start().starts_with('{') {
            return false;
        }
        match RawValue::from_string(json) {
            Ok(raw) => {
                self.set(field, raw);
                true
            }
            Err(_) => false,
        }
    }

    /// Sets a field, replacing its value in place or appending it. Callers keep any cache of the field up to date.
    pub(crate) fn set(&mut self, field: &str, value: Box<RawValue>) {
        self.members.forget(field);
        match crate::raw::position(&self.fields, field) {
            Some(at) => self.fields[at].1 = value,
            None => self.fields.push((crate::raw::key(field), value)),
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

/// Checks an identifier field: absent, `null` and `""` are `Ok(None)`; a string or number is `Ok(Some)`.
///
/// The type is read from the first byte, so an array or object is refused without being parsed.
fn check_id(message: &Message, name: &str) -> Result<Option<Value>, ValidationError> {
    let Some(raw) = message.raw(name) else { return Ok(None) };
    match JsonType::of_raw(raw) {
        JsonType::Null => Ok(None),
        JsonType::String | JsonType::Number => match parse(raw) {
            Value::String(s) if s.is_empty() => Ok(None),
            value => Ok(Some(value)),
        },
        other => Err(ValidationError::new(
            name,
            Problem::WrongType { expected: "a string or a number", found: other.name() },
        )),
    }
}

/// Checks a field that must be a non-empty identifier.
fn require_id(message: &Message, name: &str) -> Result<(), ValidationError> {
    match check_id(message, name)? {
        Some(_) => Ok(()),
        None if message.raw(name).is_some_and(|raw| JsonType::of_raw(raw) == JsonType::String) => {
            Err(ValidationError::new(name, Problem::Empty))
        }
        None => Err(ValidationError::new(name, Problem::Missing)),
    }
}

/// Reads an optional string field: `Ok(None)` when absent or `null`; any other type is an error, found from the
/// first byte without parsing.
fn optional_string(message: &Message, name: &str, expected: &'static str) -> Result<Option<String>, ValidationError> {
    let Some(raw) = message.raw(name) else { return Ok(None) };
    match JsonType::of_raw(raw) {
        JsonType::Null => Ok(None),
        JsonType::String => match parse(raw) {
            Value::String(s) => Ok(Some(s)),
            _ => unreachable!("a value that starts with a quote is a string"),
        },
        other => Err(ValidationError::new(name, Problem::WrongType { expected, found: other.name() })),
    }
}

/// Checks an optional field's JSON type from its first byte, without parsing it.
fn check_type(message: &Message, name: &str, wanted: JsonType) -> Result<(), ValidationError> {
    match message.raw(name).map(JsonType::of_raw) {
        None | Some(JsonType::Null) => Ok(()),
        Some(found) if found == wanted => Ok(()),
        Some(found) => {
            Err(ValidationError::new(name, Problem::WrongType { expected: wanted.name(), found: found.name() }))
        }
    }
}

/// What validation parsed on its way, kept so that nothing is parsed twice.
struct Checked {
    user_id: Option<Value>,
    anonymous_id: Option<Value>,
    message_id: Option<String>,
    times: crate::timestamp::ClientTimes,
}

/// Segment's rules, in the order a client most often breaks them.
fn validate(kind: MessageType, message: &Message) -> Result<Checked, ValidationError> {
    let user = check_id(message, "userId")?;
    let anonymous = check_id(message, "anonymousId")?;
    if user.is_none() && anonymous.is_none() {
        return Err(ValidationError::new("userId or anonymousId", Problem::Missing));
    }
    match kind {
        MessageType::Track => match optional_string(message, "event", JsonType::String.name())? {
            None => return Err(ValidationError::new("event", Problem::Missing)),
            Some(s) if s.is_empty() => return Err(ValidationError::new("event", Problem::Empty)),
            Some(_) => {}
        },
        MessageType::Group => require_id(message, "groupId")?,
        MessageType::Alias => {
            require_id(message, "previousId")?;
            require_id(message, "userId")?;
        }
        MessageType::Page | MessageType::Screen => check_type(message, "name", JsonType::String)?,
        MessageType::Identify => {}
    }
    let message_id = optional_string(message, "messageId", JsonType::String.name())?;
    if let Some(id) = &message_id {
        let chars = id.chars().count();
        if chars > MAX_MESSAGE_ID_CHARS {
            return Err(ValidationError::new(
                "messageId",
                Problem::TooLong { max: MAX_MESSAGE_ID_CHARS, actual: chars },
            ));
        }
    }
    for object in ["properties", "traits", "context", "integrations"] {
        check_type(message, object, JsonType::Object)?;
    }
    // A date-time string that does not parse is kept as sent and not used; only another JSON type is refused.
    let time = |name| {
        optional_string(message, name, "an ISO-8601 date-time string")
            .map(|text| text.map(|text| crate::timestamp::parse_timestamp(&text)))
    };
    let times = crate::timestamp::ClientTimes {
        timestamp: time("timestamp")?,
        sent_at: time("sentAt")?,
        original_timestamp: time("originalTimestamp")?,
    };
    Ok(Checked { user_id: user, anonymous_id: anonymous, message_id, times })
}
