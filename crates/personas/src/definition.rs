//! `configs/audiences/*.toml`: what to sync, from where, to where.

use std::path::PathBuf;

use segment_model::ConfigProblem;
use serde::Deserialize;

/// Whether a computation is an audience (members get `true`, leavers `false`) or a computed trait (members get
/// their value, leavers `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An audience: a set of users.
    Audience,
    /// A computed trait: a value per user.
    Trait,
}

impl Kind {
    /// `computation_class` in `context.personas`.
    pub fn computation_class(self) -> &'static str {
        match self {
            Kind::Audience => "audience",
            Kind::Trait => "trait",
        }
    }
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
/// [source]
/// path = "members.csv"
/// user_id_column = "user_id"
/// anonymous_id_column = "anonymous_id"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputationConfig {
    /// The name; the trait key is its snake_case unless `key` is set.
    pub name: String,
    /// `audience` or `trait`.
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
    /// The names of the destinations the identify calls go to.
    pub destinations: Vec<String>,
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

/// The export with the current members (`[source]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// A `.csv` (with a header row) or `.ndjson` file, relative to the config folder unless absolute.
    pub path: PathBuf,
    /// The column (or NDJSON field) with the `userId`. Default `user_id`.
    #[serde(default = "user_id_column")]
    pub user_id_column: String,
    /// The column with the `anonymousId`, used when the user ID is empty. Default `anonymous_id`.
    #[serde(default = "anonymous_id_column")]
    pub anonymous_id_column: String,
    /// The column with the trait's value; traits only.
    #[serde(default)]
    pub value_column: Option<String>,
}

fn user_id_column() -> String {
    "user_id".to_owned()
}

fn anonymous_id_column() -> String {
    "anonymous_id".to_owned()
}

/// The default of [`ComputationConfig::max_removal_share`].
pub const DEFAULT_MAX_REMOVAL_SHARE: f64 = 0.5;

impl ComputationConfig {
    /// The trait key.
    pub fn key(&self) -> String {
        self.key.clone().unwrap_or_else(|| crate::key::snake_case(&self.name))
    }

    /// The source ID the calls come from.
    pub fn source_id(&self) -> &str {
        self.source_id.as_deref().unwrap_or(&self.space_id)
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
        match (self.kind, &self.source.value_column) {
            (Kind::Trait, None) => {
                add("source.value_column", "a trait needs the column that holds its value".to_owned())
            }
            (Kind::Audience, Some(_)) => {
                add("source.value_column", "is only for traits; an audience's members are true".to_owned())
            }
            _ => {}
        }
        let extension = self.source.path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(extension, "csv" | "ndjson" | "jsonl") {
            add("source.path", format!("{:?} is neither .csv nor .ndjson", self.source.path.display().to_string()));
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
}
