//! The `/v1/batch` envelope: `{batch: [...], context, integrations, sentAt, writeKey}`.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{ParseError, json_type};
use crate::{MAX_MESSAGE_BYTES, Map, Message};

/// Segment's limit on one batch request body, in bytes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Segment's limit on the number of messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 2_500;

/// A parsed `/v1/batch` (or `/v1/import`) body.
///
/// The items are kept as raw JSON until [`Batch::messages`] validates them, so each one's size is measured on the
/// bytes the client sent.
#[derive(Debug)]
pub struct Batch {
    items: Vec<Box<RawValue>>,
    context: Option<Map>,
    integrations: Option<Map>,
    sent_at: Option<Value>,
    write_key: Option<String>,
}

/// Why a batch body as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is larger than Segment's batch limit.
    #[error("batch is {size} bytes, more than the {max} bytes Segment allows")]
    TooLarge {
        /// The size that was found, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The body is not a valid batch envelope.
    #[error("{0}")]
    Parse(ParseError),
    /// A field of the envelope has the wrong type.
    #[error("{field}: must be {expected}, found {found}")]
    Envelope {
        /// The envelope field at fault.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
    /// `batch` holds no messages.
    #[error("batch: must hold at least one message")]
    Empty,
    /// `batch` holds more messages than Segment allows.
    #[error("batch: holds {count} messages, more than the {max} Segment allows")]
    TooManyMessages {
        /// The number found.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch[{index}]: {error}")]
pub struct BatchItemError {
    /// The item's zero-based position in `batch`.
    pub index: usize,
    /// What is wrong with it.
    pub error: ParseError,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    context: Option<Value>,
    integrations: Option<Value>,
    #[serde(rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey")]
    write_key: Option<Value>,
}

/// The first byte that is not JSON white space.
fn first_token(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Why `bytes` is not a JSON object: its own parse error, or the type it is.
fn not_an_object(bytes: &[u8]) -> BatchError {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(other) => BatchError::Parse(ParseError::NotAnObject(json_type(&other))),
        Err(e) => BatchError::Parse(ParseError::from_json(&e)),
    }
}

impl Batch {
    /// Parses a batch body and checks the envelope and Segment's size and count limits.
    ///
    /// The `batch` array is borrowed from the body as raw JSON, so each item is parsed once, by
    /// [`Batch::messages`].
    pub fn from_slice(bytes: &[u8]) -> Result<Batch, BatchError> {
        if bytes.len() > MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge { size: bytes.len(), max: MAX_BATCH_BYTES });
        }
        if first_token(bytes) != Some(b'{') {
            return Err(not_an_object(bytes));
        }
        let envelope: Envelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| BatchError::Parse(ParseError::from_json(&e)))?;
        let object = |field, value: Option<Value>| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(BatchError::Envelope { field, expected: "an object", found: json_type(&other) }),
        };
        let context = object("context", envelope.context)?;
        let integrations = object("integrations", envelope.integrations)?;
        let write_key = match envelope.write_key {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key),
            Some(other) => {
                return Err(BatchError::Envelope { field: "writeKey", expected: "a string", found: json_type(&other) });
            }
        };
        let raw = match envelope.batch {
            Some(raw) if raw.get() != "null" => raw,
            _ => {
                return Err(BatchError::Parse(ParseError::Invalid(crate::ValidationError::new(
                    "batch",
                    crate::Problem::Missing,
                ))));
            }
        };
        if first_token(raw.get().as_bytes()) != Some(b'[') {
            let found = serde_json::from_str::<Value>(raw.get()).map(|v| json_type(&v)).unwrap_or("invalid JSON");
            return Err(BatchError::Envelope { field: "batch", expected: "an array", found });
        }
        let items: Vec<Box<RawValue>> =
            serde_json::from_str(raw.get()).map_err(|e| BatchError::Parse(ParseError::from_json(&e)))?;
        if items.is_empty() {
            return Err(BatchError::Empty);
        }
        if items.len() > MAX_BATCH_MESSAGES {
            return Err(BatchError::TooManyMessages { count: items.len(), max: MAX_BATCH_MESSAGES });
        }
        Ok(Batch { items, context, integrations, sent_at: envelope.sent_at, write_key })
    }

    /// The `writeKey` field of the body, when the client sent one there.
    pub fn write_key(&self) -> Option<&str> {
        self.write_key.as_deref()
    }

    /// The number of items in `batch`.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether `batch` is empty (never true for a parsed batch).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Validates each item, with the batch's `context`, `integrations` and `sentAt` merged in.
    ///
    /// An item's own keys win: the batch `context` supplies only the keys the item's `context` lacks, and so on
    /// for `integrations`; `sentAt` is copied only into items without one.
    pub fn messages(&self) -> Vec<Result<Message, BatchItemError>> {
        self.items.iter().enumerate().map(|(index, raw)| self.item(index, raw)).collect()
    }

    fn item(&self, index: usize, raw: &RawValue) -> Result<Message, BatchItemError> {
        let fail = |error| BatchItemError { index, error };
        let bytes = raw.get().as_bytes();
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(fail(ParseError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_BYTES }));
        }
        let mut fields = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => return Err(fail(ParseError::NotAnObject(json_type(&other)))),
            Err(e) => return Err(fail(ParseError::from_json(&e))),
        };
        merge_defaults(&mut fields, "context", self.context.as_ref());
        merge_defaults(&mut fields, "integrations", self.integrations.as_ref());
        if let Some(sent_at) = &self.sent_at
            && matches!(fields.get("sentAt"), None | Some(Value::Null))
        {
            fields.insert("sentAt".to_owned(), sent_at.clone());
        }
        Message::from_map(fields).map_err(|e| fail(ParseError::Invalid(e)))
    }
}

/// Fills the object `fields[name]` with the keys of `defaults` it lacks.
fn merge_defaults(fields: &mut Map, name: &str, defaults: Option<&Map>) {
    let Some(defaults) = defaults.filter(|d| !d.is_empty()) else { return };
    match fields.get_mut(name) {
        Some(Value::Object(own)) => {
            for (key, value) in defaults {
                if !own.contains_key(key) {
                    own.insert(key.clone(), value.clone());
                }
            }
        }
        // A non-object is left for validation to report.
        Some(other) if !other.is_null() => {}
        _ => {
            fields.insert(name.to_owned(), Value::Object(defaults.clone()));
        }
    }
}
