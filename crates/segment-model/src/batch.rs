//! The `/v1/batch` envelope: `{batch: [...], context, integrations, sentAt, writeKey}`.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ParseError;
use crate::message::Rejected;
use crate::raw::{Fields, JsonType, json_type, object_size, raw};
use crate::{MAX_MESSAGE_BYTES, Map, Message};

/// Segment's limit on one batch request body, in bytes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// How large a batch's messages may become once the batch's `context` and `integrations` are merged into each:
/// twice the body limit. Without a bound, a 400 KB context merged into 2,500 tiny items would make a 500 KB body
/// cost a gigabyte of copies.
pub const MAX_EXPANDED_BYTES: usize = 2 * MAX_BATCH_BYTES;

/// Segment's limit on the number of messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 2_500;

/// A parsed `/v1/batch` (or `/v1/import`) body.
///
/// The body is read in one pass: each item's top-level fields are kept as raw JSON until [`Batch::messages`]
/// validates them. An item's size is measured on its compact JSON.
#[derive(Debug)]
pub struct Batch {
    items: Vec<Item>,
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
    /// The messages, with the batch's `context` and `integrations` merged into each, would be larger than
    /// [`MAX_EXPANDED_BYTES`]: a small body must not turn into a large amount of work and storage.
    #[error("batch: its messages with the batch context merged in come to {size} bytes, more than the {max} allowed")]
    TooLargeMerged {
        /// The size the merged messages would have, at most, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// `batch` holds more messages than Segment allows.
    #[error("batch: holds {count} messages, more than the {max} Segment allows")]
    TooManyMessages {
        /// The number found.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// One item of `batch`: its top-level fields, or the JSON type it was instead of an object.
#[derive(Debug)]
enum Item {
    Fields(Fields),
    Not(JsonType),
}

/// The `batch` field: the items, or the JSON type it was instead of an array.
enum Items {
    List(Vec<Item>),
    Not(JsonType),
}

struct ItemVisitor;

impl<'de> serde::de::Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a message")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
        crate::raw::collect_fields(map).map(Item::Fields)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Item::Not(JsonType::Array))
    }

    fn visit_str<E>(self, _: &str) -> Result<Item, E> {
        Ok(Item::Not(JsonType::String))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::Not(JsonType::Boolean))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
        Ok(Item::Not(JsonType::Number))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
        Ok(Item::Not(JsonType::Number))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
        Ok(Item::Not(JsonType::Number))
    }

    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::Not(JsonType::Null))
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Items, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Items;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of messages")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(100).min(MAX_BATCH_MESSAGES + 1));
                while let Some(item) = seq.next_element::<Item>()? {
                    items.push(item);
                }
                Ok(Items::List(items))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Items, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Items::Not(JsonType::Object))
            }

            fn visit_str<E>(self, _: &str) -> Result<Items, E> {
                Ok(Items::Not(JsonType::String))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Items, E> {
                Ok(Items::Not(JsonType::Boolean))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Items, E> {
                Ok(Items::Not(JsonType::Number))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Items, E> {
                Ok(Items::Not(JsonType::Number))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Items, E> {
                Ok(Items::Not(JsonType::Number))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
struct Envelope {
    batch: Option<Items>,
    context: Option<Value>,
    integrations: Option<Value>,
    #[serde(rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey")]
    write_key: Option<Value>,
}

impl Batch {
    /// Parses a batch body and checks the envelope and Segment's size and count limits.
    ///
    /// The body is read once: each item's top-level values stay raw JSON until [`Batch::messages`] validates them.
    pub fn from_slice(bytes: &[u8]) -> Result<Batch, BatchError> {
        if bytes.len() > MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge { size: bytes.len(), max: MAX_BATCH_BYTES });
        }
        let text = crate::raw::checked_text(bytes).map_err(BatchError::Parse)?;
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| BatchError::Parse(ParseError::from_json(&e)))?;
        let object = |field, value: Option<Value>| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => {
                Err(BatchError::Envelope { field, expected: JsonType::Object.name(), found: json_type(&other) })
            }
        };
        let context = object("context", envelope.context)?;
        let integrations = object("integrations", envelope.integrations)?;
        let write_key = match envelope.write_key {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key),
            Some(other) => {
                return Err(BatchError::Envelope {
                    field: "writeKey",
                    expected: JsonType::String.name(),
                    found: json_type(&other),
                });
            }
        };
        let items = match envelope.batch {
            Some(Items::List(items)) => items,
            Some(Items::Not(found)) => {
                return Err(BatchError::Envelope {
                    field: "batch",
                    expected: JsonType::Array.name(),
                    found: found.name(),
                });
            }
            None => {
                return Err(BatchError::Parse(ParseError::Invalid(crate::ValidationError::new(
                    "batch",
                    crate::Problem::Missing,
                ))));
            }
        };
        if items.is_empty() {
            return Err(BatchError::Empty);
        }
        if items.len() > MAX_BATCH_MESSAGES {
            return Err(BatchError::TooManyMessages { count: items.len(), max: MAX_BATCH_MESSAGES });
        }
        let batch = Batch { items, context, integrations, sent_at: envelope.sent_at, write_key };
        batch.check_expansion()?;
        Ok(batch)
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
    pub fn messages(&self) -> Vec<Result<Message, Rejected>> {
        self.items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let item = match item {
                    Item::Fields(fields) => Item::Fields(fields.clone()),
                    Item::Not(found) => Item::Not(*found),
                };
                self.item(index, item)
            })
            .collect()
    }

    /// As [`Batch::messages`], consuming the batch so that no item is copied.
    pub fn into_messages(self) -> Vec<Result<Message, Rejected>> {
        let mut items = self.items;
        let rest = Batch { items: Vec::new(), ..self };
        items.drain(..).enumerate().map(|(index, item)| rest.item(index, item)).collect()
    }

    /// Refuses a batch whose merged messages could exceed [`MAX_EXPANDED_BYTES`], counting in each item the whole
    /// batch `context` and `integrations` (an upper bound: an item's own keys replace some of them).
    fn check_expansion(&self) -> Result<(), BatchError> {
        // The size of the compact JSON a map serializes to, counted without building it.
        let merged = |map: &Option<Map>| {
            map.as_ref().filter(|m| !m.is_empty()).map_or(0, |m| {
                let mut counter = ByteCount(0);
                serde_json::to_writer(&mut counter, m).map_or(0, |()| counter.0)
            })
        };
        let per_item = merged(&self.context) + merged(&self.integrations);
        if per_item == 0 {
            return Ok(());
        }
        let size = self
            .items
            .iter()
            .map(|item| match item {
                Item::Fields(fields) => object_size(fields).min(MAX_MESSAGE_BYTES + 1) + per_item,
                Item::Not(_) => 0,
            })
            .sum::<usize>();
        match size > MAX_EXPANDED_BYTES {
            true => Err(BatchError::TooLargeMerged { size, max: MAX_EXPANDED_BYTES }),
            false => Ok(()),
        }
    }

    fn item(&self, index: usize, item: Item) -> Result<Message, Rejected> {
        let mut fields = match item {
            Item::Not(found) => {
                return Err(Rejected { index: Some(index), error: ParseError::NotAnObject(found.name()), json: None });
            }
            Item::Fields(fields) => fields,
        };
        let size = object_size(&fields);
        if size > MAX_MESSAGE_BYTES {
            let error = ParseError::TooLarge { size, max: MAX_MESSAGE_BYTES };
            return Err(Rejected { index: Some(index), error, json: None });
        }
        merge_defaults(&mut fields, "context", self.context.as_ref());
        merge_defaults(&mut fields, "integrations", self.integrations.as_ref());
        if let Some(sent_at) = &self.sent_at {
            match fields.iter_mut().find(|(k, _)| k == "sentAt") {
                Some(slot) if slot.1.get() == "null" => slot.1 = raw(sent_at),
                Some(_) => {}
                None => fields.push((crate::raw::Key::Borrowed("sentAt"), raw(sent_at))),
            }
        }
        Message::from_fields(fields, None).map_err(|invalid| Rejected::new(Some(index), invalid))
    }
}

/// A writer that only counts what is written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fills the object `fields[name]` with the keys of `defaults` it lacks.
fn merge_defaults(fields: &mut Fields, name: &str, defaults: Option<&Map>) {
    let Some(defaults) = defaults.filter(|d| !d.is_empty()) else { return };
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some(slot) if slot.1.get().starts_with('{') => {
            let mut own: Map = serde_json::from_str(slot.1.get()).expect("raw values are valid JSON");
            for (key, value) in defaults {
                if !own.contains_key(key) {
                    own.insert(key.clone(), value.clone());
                }
            }
            slot.1 = raw(&Value::Object(own));
        }
        Some(slot) if slot.1.get() == "null" => slot.1 = raw(&Value::Object(defaults.clone())),
        // A non-object is left for validation to report.
        Some(_) => {}
        None => fields.push((crate::raw::key(name), raw(&Value::Object(defaults.clone())))),
    }
}
