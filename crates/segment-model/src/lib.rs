//! The Segment message model.
//!
//! A [`Message`] is a validated Segment call (`track`, `identify`, `page`, `screen`, `group` or `alias`).
//! It keeps the JSON object exactly as the client sent it, so fields this crate does not know about survive a
//! round trip, and offers typed views ([`Message::call`]) over the fields Segment defines.
//!
//! The crate is pure: it does no IO and knows nothing of AWS or HTTP. Functions that need the current time or a
//! fresh ID take them as arguments ([`Message::enrich_with`]), so every outcome is reproducible in a test.

mod batch;
mod config_problem;
mod enrich;
mod error;
mod id;
mod members;
mod message;
mod raw;
pub mod scan;
mod timestamp;
mod user_key;

pub use batch::{Batch, BatchError, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_EXPANDED_BYTES};
pub use config_problem::ConfigProblem;
pub use enrich::{Enrichment, Receipt};
pub use error::{ParseError, Problem, ValidationError};
pub use id::Id;
pub use members::ObjectMembersIter;
pub use message::{Call, MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_CHARS, Message, MessageType, Rejected, Single};
pub use raw::MAX_DEPTH;
pub use timestamp::format_timestamp;

/// The JSON object type messages are made of; key order is preserved as sent.
pub type Map = serde_json::Map<String, serde_json::Value>;
