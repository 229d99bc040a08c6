//! Which delivery streams a message goes to, as Segment's Firehose destination maps them: by a track event's name
//! or a call type, without regard to case, and `*` for every message.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::MappingRow;

/// The mapping of a destination, compiled once: a look-up per message, whatever the number of rows.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The streams of the `*` rows.
    every: Vec<Arc<str>>,
    /// The streams of the other rows, by their event in lower case.
    named: HashMap<String, Vec<Arc<str>>>,
}

/// The fields of a message the mapping reads.
#[derive(Debug, Default, Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
}

impl Mapping {
    /// The mapping of `rows` (checked by [`crate::FirehoseConfig::problems`]).
    pub fn new(rows: &[MappingRow]) -> Mapping {
        let mut every: Vec<Arc<str>> = Vec::new();
        let mut named: HashMap<String, Vec<Arc<str>>> = HashMap::new();
        for row in rows {
            let streams = match row.event.trim() {
                "*" => &mut every,
                event => named.entry(event.to_lowercase()).or_default(),
            };
            if !streams.iter().any(|s| **s == *row.stream) {
                streams.push(Arc::from(row.stream.as_str()));
            }
        }
        Mapping { every, named }
    }

    /// The streams a message of call type `kind` (and `event`, a track call's name) goes to, each once, in the
    /// order of the rows' first appearance by kind: the event's rows, the call type's, then `*`'s. Empty when no
    /// row matches.
    pub fn streams(&self, kind: &str, event: Option<&str>) -> Vec<Arc<str>> {
        let mut streams: Vec<Arc<str>> = Vec::new();
        let mut add = |found: Option<&Vec<Arc<str>>>| {
            for stream in found.into_iter().flatten() {
                if !streams.contains(stream) {
                    streams.push(stream.clone());
                }
            }
        };
        if kind.eq_ignore_ascii_case("track")
            && let Some(event) = event
        {
            add(self.named.get(&event.to_lowercase()));
        }
        add(self.named.get(&kind.to_lowercase()));
        add(Some(&self.every));
        streams
    }

    /// The streams of a message's JSON (its `type` and `event`, read in one pass over it); a payload that is not
    /// a JSON object goes only to the `*` rows.
    pub fn streams_of(&self, json: &[u8]) -> Vec<Arc<str>> {
        let head: Head<'_> = serde_json::from_slice(json).unwrap_or_default();
        self.streams(head.kind.as_deref().unwrap_or_default(), head.event.as_deref())
    }

    /// Every delivery stream the mapping names, each once, in the order of the rows.
    pub fn all_streams(rows: &[MappingRow]) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for row in rows {
            if !all.contains(&row.stream.as_str()) {
                all.push(&row.stream);
            }
        }
        all
    }
}
