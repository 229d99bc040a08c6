//! `configs/audiences/*.toml`: what to sync, from where, to where.

use std::collections::BTreeMap;

use segment_model::ConfigProblem;
use serde::Deserialize;

pub use crate::kind::Kind;
pub use crate::snapshot::SnapshotConfig;

// Here, not in kind.rs: the calls are the definition's, and the kind must not depend on it.
impl Kind {
    /// The calls sent when the definition does not say: `identify`, or `group` for an account trait.
    pub fn default_send(self) -> Vec<Call> {
        match self {
            Kind::AccountTrait => vec![Call::Group],
            _ => vec![Call::Identify],
        }
    }
}

/// A call Engage sends for a change (`send = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Call {
    /// `identify` with the trait (user-level audiences and traits).
    Identify,
    /// `track`: `Audience Entered`/`Audience Exited` for an audience, `track_event` for a trait.
    Track,
    /// `group` with the trait (account traits).
    Group,
}

impl Call {
    /// The call of a name.
    pub fn from_name(name: &str) -> Option<Call> {
        [Call::Identify, Call::Track, Call::Group].into_iter().find(|c| c.name() == name)
    }

    /// The call's name, as in `send` and in the sync log.
    pub fn name(self) -> &'static str {
        match self {
            Call::Identify => "identify",
            Call::Track => "track",
            Call::Group => "group",
        }
    }
}

/// What one destination is sent, overriding the computation's settings (`[per_destination.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// The calls this destination gets; default: the computation's `send`.
    #[serde(default)]
    pub send: Option<Vec<Call>>,
    /// The most records per second this destination gets from a sync; default: the computation's `max_rate`,
    /// else, for a Kinesis destination, 80% of 1,000 records/s per open shard of its stream.
    #[serde(default)]
    pub max_rate: Option<u32>,
}

/// An audience or computed trait (`configs/audiences/*.toml`).
///
/// ```toml
/// name = "Order Completed Last 30 Days"
/// kind = "audience"                 # or "trait"
/// computation_id = "aud_123"
/// space_id = "spa_1"
/// namespace = "spa_1"
/// destinations = ["kinesis-main"]
///
/// send = ["identify", "track"]    # default ["identify"] (["group"] for an account_trait)
/// max_rate = 2000                   # records per second, per destination
///
/// [per_destination.archive]         # overrides for one destination
/// send = ["track"]
///
/// [source]
/// path = "members.csv"              # or .ndjson, .parquet, .csv.gz, a folder, a glob, s3://bucket/prefix/
/// user_id_column = "user_id"
/// anonymous_id_column = "anonymous_id"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputationConfig {
    /// The name; the trait key is its snake_case unless `key` is set.
    pub name: String,
    /// `audience`, `trait` or `account_trait`.
    pub kind: Kind,
    /// The trait key; default: the snake_cased name (see [`crate::key`]).
    #[serde(default)]
    pub key: Option<String>,
    /// The computation's ID, as `context.personas.computation_id`; it also seeds the deterministic messageIds.
    pub computation_id: String,
    /// The Personas space, as `context.personas.space_id`.
    pub space_id: String,
    /// The identity namespace, as `context.personas.namespace`.
    pub namespace: String,
    /// The names of the destinations the calls go to.
    pub destinations: Vec<String>,
    /// Which calls each change becomes, as Engage lets a destination choose: `identify` (the trait on the user),
    /// `track` (`Audience Entered` and `Audience Exited` with `audience_key`, or `track_event` with `trait_key`), or
    /// both; an account trait sends `group` (and may add `track`). Default: `["identify"]`, or `["group"]`.
    #[serde(default)]
    pub send: Option<Vec<Call>>,
    /// The event name of a trait's track calls. Default `"Trait Computed"`.
    #[serde(default)]
    pub track_event: Option<String>,
    /// The most records per second a sync sends each destination. Default: none for a file or stdout
    /// destination; for a Kinesis destination, 80% of 1,000 records/s per open shard of its stream.
    #[serde(default)]
    pub max_rate: Option<u32>,
    /// How long the sync log keeps what a run sent, as a duration (`"30d"`, `"12h"`). Default 30 days.
    #[serde(default)]
    pub log_retention: Option<String>,
    /// Settings for one destination, overriding the ones above.
    #[serde(default)]
    pub per_destination: BTreeMap<String, DestinationSettings>,
    /// The source the calls come from; a destination that assumes a role without `secret_id` presents it as the
    /// External ID. Default: `space_id`.
    #[serde(default)]
    pub source_id: Option<String>,
    /// The largest share of the audience one run may remove before it stops, unless `--allow-mass-removal` is
    /// given; guards against a broken export. Default 0.5.
    #[serde(default)]
    pub max_removal_share: Option<f64>,
    /// Where the current members come from.
    pub source: SnapshotConfig,
}

/// The default of [`ComputationConfig::max_removal_share`].
pub const DEFAULT_MAX_REMOVAL_SHARE: f64 = 0.5;

/// The default of [`ComputationConfig::track_event`].
pub const DEFAULT_TRACK_EVENT: &str = "Trait Computed";

impl ComputationConfig {
    /// The trait key.
    pub fn key(&self) -> String {
        self.key.clone().unwrap_or_else(|| crate::key::snake_case(&self.name))
    }

    /// The source ID the calls come from.
    pub fn source_id(&self) -> &str {
        self.source_id.as_deref().unwrap_or(&self.space_id)
    }

    /// The calls `destination` gets, each once, in a fixed order.
    pub fn calls_for(&self, destination: &str) -> Vec<Call> {
        let chosen = self.per_destination.get(destination).and_then(|d| d.send.as_ref()).or(self.send.as_ref());
        let mut calls = chosen.cloned().unwrap_or_else(|| self.kind.default_send());
        calls.sort();
        calls.dedup();
        calls
    }

    /// The rate set for `destination`, if any.
    pub fn max_rate_for(&self, destination: &str) -> Option<u32> {
        self.per_destination.get(destination).and_then(|d| d.max_rate).or(self.max_rate)
    }

    /// Problems with the definition, keys relative to the file.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut add = |key, message: String| problems.push(ConfigProblem { key, message });
        if self.key().is_empty() {
            add("key", "the name has no letters or digits to make a key from; set key".to_owned());
        }
        for (key, value) in
            [("computation_id", &self.computation_id), ("space_id", &self.space_id), ("namespace", &self.namespace)]
        {
            if value.is_empty() {
                add(key, "must not be empty".to_owned());
            }
        }
        match (self.kind.has_value(), &self.source.value_column) {
            (true, None) => add("source.value_column", "a trait needs the column that holds its value".to_owned()),
            (false, Some(_)) => {
                add("source.value_column", "is only for traits; an audience's members are true".to_owned())
            }
            _ => {}
        }
        match (self.kind, &self.source.group_id_column) {
            (Kind::AccountTrait, None) => {
                add("source.group_id_column", "an account trait needs the column that holds the account's ID".into())
            }
            (Kind::Audience | Kind::Trait, Some(_)) => {
                add("source.group_id_column", "is only for account traits (kind = \"account_trait\")".into())
            }
            _ => {}
        }
        if let Err(message) = crate::snapshot::check_path(&self.source) {
            add("source.path", message);
        }
        if !self.source.is_remote() && (self.source.region.is_some() || self.source.endpoint.is_some()) {
            add("source.endpoint", "region and endpoint are for an s3:// path".to_owned());
        }
        if let Some(endpoint) = &self.source.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            add("source.endpoint", format!("{endpoint:?} is not an http:// or https:// URL"));
        }
        self.call_problems(&mut add);
        if self.kind == Kind::Audience && self.track_event.is_some() {
            add("track_event", "is for traits; an audience's events are Audience Entered and Audience Exited".into());
        }
        if self.track_event.as_deref().is_some_and(|e| e.trim().is_empty()) {
            add("track_event", "must not be empty".to_owned());
        }
        if let Some(share) = self.max_removal_share
            && !(0.0..=1.0).contains(&share)
        {
            add("max_removal_share", format!("{share} is not between 0 and 1"));
        }
        if self.destinations.is_empty() {
            add("destinations", "lists no destination".to_owned());
        }
        problems
    }

    /// Problems with which calls go where, and how fast.
    fn call_problems(&self, add: &mut impl FnMut(&'static str, String)) {
        let allowed = match self.kind {
            Kind::AccountTrait => "group and track",
            _ => "identify and track",
        };
        let mut check_send = |key: &'static str, whose: String, send: &Option<Vec<Call>>| match send.as_deref() {
            Some([]) => add(key, format!("{whose}lists no call; give {allowed}")),
            Some(calls) => {
                let wrong = match self.kind {
                    Kind::AccountTrait => calls.iter().find(|c| **c == Call::Identify),
                    _ => calls.iter().find(|c| **c == Call::Group),
                };
                if let Some(call) = wrong {
                    let kind = match self.kind {
                        Kind::Audience => "an audience",
                        Kind::Trait => "a trait",
                        Kind::AccountTrait => "an account trait",
                    };
                    add(key, format!("{whose}{:?} is not sent for {kind}; use {allowed}", call.name()));
                }
            }
            None => {}
        };
        check_send("send", String::new(), &self.send);
        for (name, settings) in &self.per_destination {
            check_send("per_destination.send", format!("[per_destination.{name}] "), &settings.send);
        }
        for name in self.per_destination.keys() {
            if !self.destinations.contains(name) {
                add(
                    "per_destination",
                    format!("{name:?} is not one of destinations ({})", self.destinations.join(", ")),
                );
            }
        }
        let rates = std::iter::once(self.max_rate).chain(self.per_destination.values().map(|d| d.max_rate));
        if rates.flatten().any(|rate| rate == 0) {
            add("max_rate", "must be at least 1 record per second".to_owned());
        }
    }
}
