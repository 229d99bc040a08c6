//! `configs/`: source and destination files, loaded with figment and checked as a whole.
//!
//! Each file is read on its own, then overridden by environment variables named
//! `TRIBUTARY__SOURCES__<FILE STEM>__<KEY>` or `TRIBUTARY__DESTINATIONS__<FILE STEM>__<KEY>`, with `__` between
//! nested keys (`TRIBUTARY__DESTINATIONS__KINESIS_MAIN__KINESIS__STREAM=other`). The distinctive prefix keeps
//! stray variables from changing a deployment.
//!
//! Files are read into the structs below as written (their doc comments are the reference for each key), checked
//! as a whole, and resolved once into typed values: a [`Destination`] carries exactly the settings of its
//! [`DestinationKind`]. Secrets stay references until a command needs them, and are read in one place
//! ([`Config::secret`]), so that `validate` works without them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use firehose_sink::FirehoseConfig;
use kinesis_sink::{IdentityRule, KinesisConfig, KinesisSettings, SignAs};
use serde::Deserialize;
use sink::{Secret, SecretRef};

/// A source: where events come from (`sources/*.toml`).
///
/// ```toml
/// id = "src_web"                      # the source ID; the External ID for roles without a secret_id
/// name = "Web"
/// write_key = { env = "WEB_WRITE_KEY" }
/// destinations = ["kinesis-main"]     # destination names
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's ID. A Kinesis destination whose role has no `secret_id` presents it as the External ID.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The write key clients authenticate with. Write it as `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub write_key: SecretRef,
    /// The names of the destinations this source delivers to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Refuse a whole request (`400`, naming the field and the batch index) when any message in it is invalid.
    ///
    /// By default a source answers as Segment's HTTP API does: `200` to every request that is valid JSON within the
    /// size limits, with the valid messages delivered and each invalid one kept in the spool's rejected table
    /// (`tributary rejected list`). Segment's libraries never retry a 400, so strict mode loses the valid messages
    /// of a mixed batch at the client; it is for teams who want a broken sender to fail loudly.
    #[serde(default)]
    pub strict: bool,
    /// The web origins browsers may send this source's events from, as `scheme://host[:port]`
    /// (`"https://www.example.com"`), or `"https://*.example.com"` for its subdomains.
    ///
    /// Absent (the default), empty or `["*"]` allows any origin: a browser write key is public anyway. A request
    /// with an `Origin` header that is not listed is refused with 403 (`origin_not_allowed`) and stores nothing;
    /// requests without one (servers, mobile apps) are not affected.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// The most messages per second this source may send; past it, requests get 429 with `Retry-After` and
    /// `x-ratelimit-reset`, which Segment's libraries honour. A token bucket holding one second's worth: a batch
    /// larger than that still passes and makes the next requests wait. Absent (the default) means no limit.
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
    /// Fill `context.ip` of every message that has none with the client's address, as Segment does for browser
    /// and mobile sources. Without it, only messages that set `context.direct: true` get it (Segment's rule for
    /// its HTTP API). The address is the connection's, or, behind a proxy listed in `serve --trusted-proxy`, the
    /// client that proxy forwarded for.
    #[serde(default)]
    pub collect_ip: bool,
    /// Whose resends this source's messages are checked against (`serve --dedupe-window`): `"global"` (the
    /// default, as Segment: a messageId accepted from any source within the window is a duplicate) or `"source"`
    /// (only this source's own messages count). A browser or mobile write key is public and messageIds can be
    /// predictable, so `"source"` keeps another source's messages from suppressing this one's.
    #[serde(default)]
    pub dedupe_scope: DedupeScope,
    /// Privacy controls on every message of this source, before dedupe and before any destination sees it:
    /// `hash` and `drop` lists of paths (`"traits.email"`) and matchers (`"matcher:email"`), `privacy_key` for the
    /// HMAC, and custom `[privacy.matchers.NAME]`. See [`governance::PrivacyConfig`].
    #[serde(default)]
    pub privacy: Option<governance::PrivacyConfig<SecretRef>>,
    /// The tracking plan this source's messages are checked against, after suppression and before its privacy
    /// controls: `name` (`tracking-plans/NAME.json`), `on_violation` (`"allow"`, the default: delivered, counted
    /// and listed; `"omit_properties"`: delivered without the properties or traits that violate; `"block"`: kept
    /// out, in the rejected table with the schema path and reason), and `forward_violations_to`, a destination
    /// that gets a `Violation Generated` track call per violation. See [`governance::SourcePlanConfig`].
    #[serde(default)]
    pub tracking_plan: Option<governance::SourcePlanConfig>,
}

/// A file of suppressed users in the config folder (`suppressions/*.toml`), for instance one per request:
///
/// ```toml
/// reason = "GDPR request 2026-118"      # for people; not used
/// user_ids = ["u_123", "u_456"]
/// anonymous_ids = ["3f0c3b3e-6a1e-4f59-9d1e-0c7e7c1d2a10"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionFile {
    /// Why these users are suppressed, for the people who read the file.
    #[serde(default)]
    pub reason: Option<String>,
    /// The `userId`s whose messages are dropped.
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// The `anonymousId`s whose messages are dropped.
    #[serde(default)]
    pub anonymous_ids: Vec<String>,
}

/// Whose messages a source's messages are checked against for duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupeScope {
    /// Every source's, keyed on the messageId alone, as Segment's.
    #[default]
    Global,
    /// This source's own, keyed on the source and the messageId.
    Source,
}

/// The kinds of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// An AWS Kinesis Data Stream; settings in `[kinesis]`.
    Kinesis,
    /// Amazon Kinesis Data Firehose delivery streams; settings in `[firehose]`.
    Firehose,
    /// NDJSON to standard output.
    Stdout,
    /// NDJSON appended to a file; settings in `[file]`.
    File,
}

/// A destination: where events go (`destinations/*.toml`).
///
/// ```toml
/// name = "kinesis-main"
/// type = "kinesis"
/// enabled = true
///
/// [kinesis]
/// region = "us-west-2"
/// stream = "segment-events"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The destination's name, which sources list in `destinations` and messages name in `integrations`.
    pub name: String,
    /// `kinesis`, `firehose`, `stdout` or `file`.
    #[serde(rename = "type")]
    pub kind: DestinationType,
    /// Whether events are delivered to it; `false` stops delivery, as toggling a destination off in Segment does.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Settings of a `kinesis` destination.
    #[serde(default)]
    pub kinesis: Option<KinesisConfig>,
    /// Settings of a `firehose` destination.
    #[serde(default)]
    pub firehose: Option<FirehoseConfig>,
    /// Settings of a `file` destination.
    #[serde(default)]
    pub file: Option<FileConfig>,
    /// How long a message keeps being retried while deliveries fail in a way that passes or that an operator can
    /// fix (throttling, an outage, access denied, a refused role, a missing stream, a disabled KMS key), before it
    /// moves to the dead-letter table with the last reason: `"90s"`, `"30m"`, `"4h"`, `"2d"`. Default `"4h"`, as
    /// Segment. Only a record that cannot be delivered at all (over the size limit, refused as invalid) is
    /// dead-lettered at once.
    #[serde(default)]
    pub max_retry_duration: Option<String>,
    /// The most bytes of stored messages this destination may have waiting in the spool: a number of bytes, or a
    /// size such as `"512MiB"` or `"2GB"`. Beyond it, its oldest waiting messages move to the dead-letter table
    /// with the reason `backlog budget exceeded` (replayable with `dlq replay`), so that a destination that is
    /// down for long cannot fill the spool for the others. Default: an equal share of `serve --spool-max-bytes`
    /// among the enabled destinations. Bytes are counted as the spool stores them, compressed (LZ4), so the same
    /// budget holds more messages the more alike they are.
    #[serde(default)]
    pub max_backlog_bytes: Option<ByteSize>,
    /// Destination filters, as Segment's (`[[filters]]` tables): each with an optional `source`, a condition `if`
    /// in Segment's Filter Query Language, and an `action`: `drop`, `sample` (`percent`, `by = "message" | "user"`),
    /// `drop_properties` or `allow_properties` (`fields`, paths under `properties`, `traits` or `context`). They run
    /// in Segment's order (sample, drop, drop properties, allow properties) before a message is stored for the
    /// destination; a condition that fails on a message drops it, as Segment does.
    #[serde(default)]
    pub filters: Vec<governance::FilterConfig>,
    /// Privacy controls on every message this destination gets, after its filters (as a source's `[privacy]`):
    /// `hash`, `drop`, `privacy_key` and `[privacy.matchers.NAME]`. See [`governance::PrivacyConfig`].
    #[serde(default)]
    pub privacy: Option<governance::PrivacyConfig<SecretRef>>,
}

/// How long messages are retried when a destination does not say: four hours, as Segment retries.
pub const DEFAULT_MAX_RETRY: Duration = Duration::from_secs(4 * 3_600);

/// A destination, resolved from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Its name.
    pub name: String,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// What it is, with the settings of that kind.
    pub kind: DestinationKind,
    /// How long a message is retried before it becomes a dead letter.
    pub max_retry: Duration,
    /// The most bytes it may have waiting in the spool, if its file says.
    pub max_backlog: Option<u64>,
    /// Its filters, compiled.
    pub filters: governance::Filters,
    /// Its privacy controls, checked; compiled where its key is read (see [`Config::privacy`]).
    pub privacy: Option<governance::PrivacyConfig<SecretRef>>,
}

/// A destination's kind and the settings only that kind has. A new kind of destination is a variant here, its
/// settings table in [`DestinationConfig`], and its sink in `route.rs`.
#[derive(Debug, Clone, PartialEq)]
// One per destination, resolved once at load: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum DestinationKind {
    /// An AWS Kinesis Data Stream, its `[kinesis]` table resolved once into what delivery uses.
    Kinesis(KinesisSettings),
    /// Amazon Kinesis Data Firehose delivery streams, as its `[firehose]` table says.
    Firehose(FirehoseConfig),
    /// NDJSON to standard output.
    Stdout,
    /// NDJSON appended to a file.
    File(FileConfig),
}

impl DestinationKind {
    /// The kind as files write it in `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            DestinationKind::Kinesis(_) => "kinesis",
            DestinationKind::Firehose(_) => "firehose",
            DestinationKind::Stdout => "stdout",
            DestinationKind::File(_) => "file",
        }
    }

    /// Of an AWS destination, its settings table's name (`kinesis`, `firehose`), its `role_address` and its
    /// `secret_id`: what Segment's identity rule reads.
    pub fn aws_role(&self) -> Option<(&'static str, &Option<String>, &Option<SecretRef>)> {
        match self {
            DestinationKind::Kinesis(k) => Some(("kinesis", &k.config.role_address, &k.config.secret_id)),
            DestinationKind::Firehose(f) => Some(("firehose", &f.role_address, &f.secret_id)),
            DestinationKind::Stdout | DestinationKind::File(_) => None,
        }
    }

    /// The destination's name in Segment's catalog, for kinds Segment has: what `integrations` objects written
    /// for Segment use (`"Amazon Kinesis"`).
    pub fn catalog_name(&self) -> Option<&'static str> {
        match self {
            DestinationKind::Kinesis(_) => Some("Amazon Kinesis"),
            DestinationKind::Firehose(_) => Some("Amazon Kinesis Firehose"),
            DestinationKind::Stdout | DestinationKind::File(_) => None,
        }
    }
}

/// A size in bytes, written as a number or as text with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// A number of bytes.
    Bytes(u64),
    /// A number and a unit: `B`, `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (of 1024).
    Text(String),
}

impl ByteSize {
    /// The size in bytes, or what is wrong with it.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(text) => parse_size(text),
        }
    }
}

/// Parses a size such as `512MiB`, `2GB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<u64>() else {
        return Err(format!("{text:?} is not a size: write a whole number and a unit, such as 512MiB or 2GB"));
    };
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!("{other:?} in {text:?} is not a unit of size: use B, KB, MB, GB, KiB, MiB or GiB"));
        }
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration such as `50ms`, `90s`, `15m`, `2h`, `7d` or `1w` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    use anyhow::{Context as _, bail};
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<u64>() else {
        bail!("{text:?} is not a duration: write a whole number and a unit, such as 90s, 15m, 2h or 7d")
    };
    let millis = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => bail!("{other:?} in {text:?} is not a unit of time: use ms, s, m, h, d or w"),
    };
    number.checked_mul(millis).map(Duration::from_millis).with_context(|| format!("{text:?} is too long a duration"))
}

fn enabled_by_default() -> bool {
    true
}

/// Settings of a `file` destination (`[file]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The NDJSON file to append to; relative paths are from the working directory.
    pub path: PathBuf,
}

/// One problem found in the config folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file at fault.
    pub file: PathBuf,
    /// The key at fault, dotted (`kinesis.role_address`), or empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Whether this stops the config from loading (warnings do not).
    pub error: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.error { "error" } else { "warning" };
        match self.key.is_empty() {
            true => write!(f, "{level}: {}: {}", self.file.display(), self.message),
            false => write!(f, "{level}: {}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// Every problem found, errors and warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    fn error(&mut self, file: &Path, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { file: file.to_owned(), key: key.into(), message: message.into(), error: true });
    }

    fn warn(&mut self, file: &Path, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { file: file.to_owned(), key: key.into(), message: message.into(), error: false });
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.error)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A loaded file and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    /// The file.
    pub file: PathBuf,
    /// Its contents.
    pub config: T,
}

/// The whole config folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The folder.
    pub dir: PathBuf,
    /// `sources/*.toml`, in file name order.
    pub sources: Vec<Loaded<SourceConfig>>,
    /// `destinations/*.toml`, in file name order, resolved.
    pub destinations: Vec<Loaded<Destination>>,
    /// `audiences/*.toml`: audiences and computed traits, in file name order.
    pub audiences: Vec<Loaded<personas::definition::ComputationConfig>>,
    /// `suppressions/*.toml`: users whose messages are dropped, in file name order.
    pub suppressions: Vec<Loaded<SuppressionFile>>,
    /// `tracking-plans/*.json`: the tracking plans sources name, compiled, by the file's name.
    pub plans: Vec<Loaded<Arc<governance::Plan>>>,
    /// Warnings that did not stop loading.
    pub warnings: Problems,
}

/// Loads the config folder `dir`, writing its warnings to `err`; on errors, writes every problem and fails.
pub fn load(dir: &Path, err: &mut dyn std::io::Write) -> anyhow::Result<Config> {
    match Config::load(dir) {
        Ok(config) => {
            write!(err, "{}", config.warnings)?;
            Ok(config)
        }
        Err(problems) => {
            write!(err, "{problems}")?;
            bail!("the config in {} has errors", dir.display())
        }
    }
}

/// Why an `allowed_origins` entry is not an origin.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((scheme, rest)) = pattern.split_once("://") else {
        return Err(format!(
            "{pattern:?} is not an origin: write scheme://host[:port], such as https://www.example.com"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{pattern:?} is not an origin: the scheme must be http or https"));
    }
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(format!("{pattern:?} is not an origin: no path, only scheme://host[:port]"));
    }
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    if host.is_empty() || host.contains('*') {
        return Err(format!(
            "{pattern:?} is not an origin: a wildcard may only stand for subdomains, as https://*.example.com"
        ));
    }
    Ok(())
}

impl Config {
    /// Loads and checks `dir`. On any error, returns every problem found (errors and warnings).
    pub fn load(dir: &Path) -> Result<Config, Problems> {
        let mut problems = Problems::default();
        if !dir.is_dir() {
            problems.error(dir, "", "is not a folder (pass the config folder with --config)");
            return Err(problems);
        }
        let sources: Vec<Loaded<SourceConfig>> = load_all(dir, "sources", &mut problems);
        let destinations: Vec<Loaded<DestinationConfig>> = load_all(dir, "destinations", &mut problems);
        let audiences: Vec<Loaded<personas::definition::ComputationConfig>> = load_all(dir, "audiences", &mut problems);
        check_sources(&sources, &destinations, &mut problems);
        check_audiences(&audiences, &destinations, &mut problems);
        check_filter_sources(&sources, &audiences, &destinations, &mut problems);
        let destinations = resolve_destinations(destinations, &mut problems);
        let suppressions = load_all(dir, "suppressions", &mut problems);
        check_suppressions(&suppressions, &mut problems);
        let plans = load_plans(dir, &mut problems);
        check_source_plans(&sources, &plans, &destinations, &mut problems);
        if problems.has_errors() {
            return Err(problems);
        }
        Ok(Config { dir: dir.to_owned(), sources, destinations, audiences, suppressions, plans, warnings: problems })
    }

    /// The source with `id`.
    pub fn source(&self, id: &str) -> Option<&Loaded<SourceConfig>> {
        self.sources.iter().find(|s| s.config.id == id)
    }

    /// The destination named `name`.
    pub fn destination(&self, name: &str) -> Option<&Loaded<Destination>> {
        self.destinations.iter().find(|d| d.config.name == name)
    }

    /// The `[kinesis]` settings of the destination `name`, or an error naming what it is instead.
    pub fn kinesis(&self, name: &str) -> anyhow::Result<&KinesisSettings> {
        let Some(loaded) = self.destination(name) else {
            let known: Vec<&str> = self.destinations.iter().map(|d| d.config.name.as_str()).collect();
            bail!("no destination is named {name:?} (known: {})", known.join(", "));
        };
        match &loaded.config.kind {
            DestinationKind::Kinesis(kinesis) => Ok(kinesis),
            other => bail!("destination {name:?} is of type {}, not kinesis", other.type_name()),
        }
    }

    /// The `[firehose]` table of the destination `name`, or an error naming what it is instead.
    pub fn firehose(&self, name: &str) -> anyhow::Result<&FirehoseConfig> {
        let Some(loaded) = self.destination(name) else {
            let known: Vec<&str> = self.destinations.iter().map(|d| d.config.name.as_str()).collect();
            bail!("no destination is named {name:?} (known: {})", known.join(", "));
        };
        match &loaded.config.kind {
            DestinationKind::Firehose(firehose) => Ok(firehose),
            other => bail!("destination {name:?} is of type {}, not firehose", other.type_name()),
        }
    }

    /// Whom the AWS destination `name` (Kinesis or Firehose) signs as (Segment's rule), with its Secret ID read.
    pub fn identity_rule(&self, name: &str) -> anyhow::Result<IdentityRule> {
        let Some(loaded) = self.destination(name) else {
            self.kinesis(name)?;
            unreachable!("kinesis() fails for a destination that does not exist");
        };
        let Some((table, role, secret)) = loaded.config.kind.aws_role() else {
            bail!("destination {name:?} is of type {}, which signs no AWS calls", loaded.config.kind.type_name());
        };
        let secret_id = match (role, secret) {
            (Some(_), Some(secret)) => Some(self.secret(&loaded.file, &format!("{table}.secret_id"), secret)?),
            _ => None,
        };
        Ok(IdentityRule::new(role.is_some(), secret_id.as_ref().map(Secret::expose)))
    }

    /// Every identity the AWS destination `name` signs as: one without a role or with a Secret ID, else one per
    /// source or audience that sends to it.
    pub fn identities(&self, name: &str) -> anyhow::Result<Vec<SignAs>> {
        Ok(self.identity_rule(name)?.identities(self.senders_of(name)))
    }

    /// The write key of `source`.
    pub fn write_key(&self, source: &Loaded<SourceConfig>) -> anyhow::Result<Secret> {
        self.secret(&source.file, "write_key", &source.config.write_key)
    }

    /// Reads a secret the file `file` refers to at `key`: the one place secrets are resolved, so that every
    /// failure names the file and key, and none prints the value.
    pub fn secret(&self, file: &Path, key: &str, secret: &SecretRef) -> anyhow::Result<Secret> {
        secret.resolve(&self.dir).with_context(|| format!("{}: {key}", file.display()))
    }

    /// The privacy controls `table` of the file `file` sets, compiled with the key it refers to (read here), or none.
    pub fn privacy(
        &self,
        file: &Path,
        table: Option<&governance::PrivacyConfig<SecretRef>>,
    ) -> anyhow::Result<governance::Privacy> {
        let Some(table) = table else { return Ok(governance::Privacy::default()) };
        let key = match &table.privacy_key {
            Some(key) => Some(self.secret(file, "privacy.privacy_key", key)?),
            None => None,
        };
        governance::Privacy::compile(table, key.as_ref().map(|k| k.expose().as_bytes())).map_err(|problems| {
            let lines: Vec<String> =
                problems.iter().map(|p| format!("{}: privacy.{}: {}", file.display(), p.key, p.message)).collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })
    }

    /// The privacy controls of the source `source`, compiled with its key.
    pub fn source_privacy(&self, source: &Loaded<SourceConfig>) -> anyhow::Result<governance::Privacy> {
        self.privacy(&source.file, source.config.privacy.as_ref())
    }

    /// The tracking plan the source `source` names, compiled, if it names one.
    pub fn source_plan(&self, source: &SourceConfig) -> Option<crate::plans::SourcePlan> {
        let table = source.tracking_plan.as_ref()?;
        let plan = self.plans.iter().find(|p| p.file.file_stem().is_some_and(|s| s == &*table.name))?;
        Some(crate::plans::SourcePlan::new(&source.id, &source.name, plan.config.clone(), table))
    }

    /// The IDs of the sources connected to the destination `name`.
    pub fn sources_of(&self, name: &str) -> Vec<&str> {
        self.sources
            .iter()
            .filter(|s| s.config.destinations.iter().any(|d| d == name))
            .map(|s| s.config.id.as_str())
            .collect()
    }

    /// The IDs messages reach the destination `name` from, sorted and once each: its connected sources, and the
    /// `source_id` of every audience or trait that delivers there. Without a `secret_id`, these are its External IDs.
    pub fn senders_of(&self, name: &str) -> Vec<&str> {
        let mut ids = self.sources_of(name);
        ids.extend(
            self.audiences
                .iter()
                .filter(|a| a.config.destinations.iter().any(|d| d == name))
                .map(|a| a.config.source_id()),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The audience or trait named `name`.
    pub fn audience(&self, name: &str) -> Option<&Loaded<personas::definition::ComputationConfig>> {
        self.audiences.iter().find(|a| a.config.name == name)
    }
}

/// Loads every `*.toml` in `dir/sub`, sorted by name.
fn load_all<T: for<'de> Deserialize<'de>>(dir: &Path, sub: &str, problems: &mut Problems) -> Vec<Loaded<T>> {
    let folder = dir.join(sub);
    let Ok(read) = std::fs::read_dir(&folder) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    let mut loaded = Vec::new();
    for file in files {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy().to_uppercase().replace(['-', '.', ' '], "_");
        let figment = Figment::from(Toml::file_exact(&file))
            .merge(Env::prefixed(&format!("TRIBUTARY__{}__{stem}__", sub.to_uppercase())).split("__"));
        match figment.extract::<T>() {
            Ok(config) => loaded.push(Loaded { file, config }),
            Err(errors) => {
                // figment reports every error it found; print each with its key, as Rocket does.
                for error in errors {
                    let (key, message) = describe(&error);
                    let source = match error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                        Some(figment::Source::File(_)) | None => String::new(),
                        Some(other) => format!(" (from {other})"),
                    };
                    problems.error(&file, key, format!("{message}{source}"));
                }
            }
        }
    }
    loaded
}

/// Loads and compiles `tracking-plans/*.json`, each named by its file's name; a problem names the file and the key
/// (`rules[2].jsonSchema`), or the line and column of JSON that does not parse.
fn load_plans(dir: &Path, problems: &mut Problems) -> Vec<Loaded<Arc<governance::Plan>>> {
    let Ok(read) = std::fs::read_dir(dir.join("tracking-plans")) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    let mut plans = Vec::new();
    for file in files {
        let name = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let text = match std::fs::read(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.error(&file, "", format!("cannot be read: {e}"));
                continue;
            }
        };
        let parsed: governance::PlanFile = match serde_json::from_slice(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.error(&file, "", format!("line {} column {}: {e}", e.line(), e.column()));
                continue;
            }
        };
        match governance::Plan::compile(&name, &parsed) {
            Ok(plan) => plans.push(Loaded { file, config: Arc::new(plan) }),
            Err(found) => found.into_iter().for_each(|p| problems.error(&file, p.key, p.message)),
        }
    }
    plans
}

/// Checks that each source's plan and violations destination exist.
fn check_source_plans(
    sources: &[Loaded<SourceConfig>],
    plans: &[Loaded<Arc<governance::Plan>>],
    destinations: &[Loaded<Destination>],
    problems: &mut Problems,
) {
    for source in sources {
        let Some(table) = &source.config.tracking_plan else { continue };
        let named =
            |loaded: &&Loaded<Arc<governance::Plan>>| loaded.file.file_stem().is_some_and(|s| s == &*table.name);
        if !plans.iter().any(|p| named(&p)) {
            problems.error(
                &source.file,
                "tracking_plan.name",
                format!(
                    "no tracking plan {:?}: expected tracking-plans/{}.json in the config folder",
                    table.name, table.name
                ),
            );
        }
        if let Some(forward) = &table.forward_violations_to {
            match destinations.iter().find(|d| d.config.name == *forward) {
                None => problems.error(
                    &source.file,
                    "tracking_plan.forward_violations_to",
                    format!("no destination {forward:?}"),
                ),
                Some(d) if !d.config.enabled => problems.error(
                    &source.file,
                    "tracking_plan.forward_violations_to",
                    format!("{forward:?} is disabled (enabled = false): violations would wait for it forever"),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Checks each destination file on its own and turns those without errors into [`Destination`]s; names used
/// twice are errors too.
fn resolve_destinations(files: Vec<Loaded<DestinationConfig>>, problems: &mut Problems) -> Vec<Loaded<Destination>> {
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut resolved = Vec::new();
    for Loaded { file, config } in files {
        let errors = problems.0.iter().filter(|p| p.error).count();
        if let Some(first) = names.insert(config.name.clone(), file.clone()) {
            problems.error(&file, "name", format!("{:?} is already the name of {}", config.name, first.display()));
        }
        if config.name.is_empty() {
            problems.error(&file, "name", "must not be empty");
        }
        let max_retry = match config.max_retry_duration.as_deref().map(parse_duration) {
            None => DEFAULT_MAX_RETRY,
            Some(Ok(duration)) if duration.is_zero() => {
                problems.error(&file, "max_retry_duration", "must be longer than 0s (every message gets retries)");
                DEFAULT_MAX_RETRY
            }
            Some(Ok(duration)) => duration,
            Some(Err(e)) => {
                problems.error(&file, "max_retry_duration", e.to_string());
                DEFAULT_MAX_RETRY
            }
        };
        let max_backlog = match config.max_backlog_bytes.as_ref().map(ByteSize::bytes) {
            None => None,
            Some(Ok(0)) => {
                problems.error(&file, "max_backlog_bytes", "must be more than 0 bytes");
                None
            }
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(message)) => {
                problems.error(&file, "max_backlog_bytes", message);
                None
            }
        };
        let filters = match governance::Filters::compile(&config.filters, &config.name) {
            Ok(filters) => filters,
            Err(found) => {
                for p in found {
                    problems.error(&file, format!("filters[{}].{}", p.filter - 1, p.key), p.message);
                }
                governance::Filters::default()
            }
        };
        check_privacy(&file, config.privacy.as_ref(), problems);
        let tables = Tables { kinesis: config.kinesis, firehose: config.firehose, file: config.file };
        let kind = resolve_kind(&file, config.kind, tables, problems);
        if let Some(kind) = kind
            && problems.0.iter().filter(|p| p.error).count() == errors
        {
            let (name, enabled) = (config.name, config.enabled);
            let privacy = config.privacy;
            let destination = Destination { name, enabled, kind, max_retry, max_backlog, filters, privacy };
            resolved.push(Loaded { file, config: destination });
        }
    }
    resolved
}

/// The settings tables a destination file may hold, one per type that has settings.
struct Tables {
    kinesis: Option<KinesisConfig>,
    firehose: Option<FirehoseConfig>,
    file: Option<FileConfig>,
}

/// The kind of a destination file, with the one settings table its `type` takes; a table for another type is an
/// error.
fn resolve_kind(
    file: &Path,
    kind: DestinationType,
    tables: Tables,
    problems: &mut Problems,
) -> Option<DestinationKind> {
    let Tables { kinesis, firehose, file: file_table } = tables;
    let name = match kind {
        DestinationType::Kinesis => "kinesis",
        DestinationType::Firehose => "firehose",
        DestinationType::Stdout => "stdout",
        DestinationType::File => "file",
    };
    if kind != DestinationType::Kinesis && kinesis.is_some() {
        problems.error(file, "kinesis", format!("is only for kinesis destinations, and this one is {name:?}"));
    }
    if kind != DestinationType::Firehose && firehose.is_some() {
        problems.error(file, "firehose", format!("is only for firehose destinations, and this one is {name:?}"));
    }
    if kind != DestinationType::File && file_table.is_some() {
        problems.error(file, "file", format!("is only for file destinations, and this one is {name:?}"));
    }
    match kind {
        DestinationType::Kinesis => {
            let Some(kinesis) = kinesis else {
                problems.error(file, "kinesis", "a kinesis destination needs a [kinesis] table");
                return None;
            };
            if kinesis.secret_id.as_ref().is_some_and(SecretRef::is_inline) {
                problems.warn(
                    file,
                    "kinesis.secret_id",
                    "is written inline; it belongs in the environment: secret_id = { env = \"NAME\" }",
                );
            }
            match kinesis.resolve() {
                Ok(settings) => Some(DestinationKind::Kinesis(settings)),
                Err(found) => {
                    for p in found {
                        problems.error(file, format!("kinesis.{}", p.key), p.message);
                    }
                    None
                }
            }
        }
        DestinationType::Firehose => {
            let Some(firehose) = firehose else {
                problems.error(
                    file,
                    "firehose",
                    "a firehose destination needs a [firehose] table with region and mapping",
                );
                return None;
            };
            if firehose.secret_id.as_ref().is_some_and(SecretRef::is_inline) {
                problems.warn(
                    file,
                    "firehose.secret_id",
                    "is written inline; it belongs in the environment: secret_id = { env = \"NAME\" }",
                );
            }
            let found = firehose.problems();
            for p in &found {
                problems.error(file, format!("firehose.{}", p.key), p.message.clone());
            }
            found.is_empty().then_some(DestinationKind::Firehose(firehose))
        }
        DestinationType::Stdout => Some(DestinationKind::Stdout),
        DestinationType::File => match file_table {
            Some(table) => Some(DestinationKind::File(table)),
            None => {
                problems.error(file, "file", "a file destination needs a [file] table with a path");
                None
            }
        },
    }
}

/// Checks audiences and traits: their own settings, their destinations, and names, keys and IDs used twice.
fn check_audiences(
    audiences: &[Loaded<personas::definition::ComputationConfig>],
    destinations: &[Loaded<DestinationConfig>],
    problems: &mut Problems,
) {
    let names: HashSet<&str> = destinations.iter().map(|d| d.config.name.as_str()).collect();
    let mut seen_names: HashMap<&str, &Path> = HashMap::new();
    let mut seen_ids: HashMap<&str, &Path> = HashMap::new();
    let mut seen_keys: HashMap<String, &Path> = HashMap::new();
    for a in audiences {
        let config = &a.config;
        for p in config.problems() {
            problems.error(&a.file, p.key, p.message);
        }
        if let Some(Err(e)) = config.log_retention.as_deref().map(parse_duration) {
            problems.error(&a.file, "log_retention", format!("{e:#}"));
        }
        if let Some(first) = seen_names.insert(&config.name, &a.file) {
            problems.error(&a.file, "name", format!("{:?} is already the name of {}", config.name, first.display()));
        }
        if let Some(first) = seen_ids.insert(&config.computation_id, &a.file) {
            problems.error(
                &a.file,
                "computation_id",
                format!("{:?} is already the computation_id of {}", config.computation_id, first.display()),
            );
        }
        if let Some(first) = seen_keys.insert(config.key(), &a.file) {
            problems.error(
                &a.file,
                "key",
                format!(
                    "{:?} is already the key of {}; their traits would overwrite each other",
                    config.key(),
                    first.display()
                ),
            );
        }
        for (i, name) in config.destinations.iter().enumerate() {
            if !names.contains(name.as_str()) {
                problems.error(&a.file, format!("destinations[{i}]"), format!("no destination is named {name:?}"));
            }
        }
    }
}

/// The dotted key and the message of one figment error, naming the exact key for missing and unknown fields.
fn describe(error: &figment::Error) -> (String, String) {
    use figment::error::Kind;
    let mut path = error.path.clone();
    let message = match &error.kind {
        Kind::MissingField(field) => {
            path.push(field.to_string());
            "is required".to_owned()
        }
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("is not a known key (expected one of: {})", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("{found:?} is not one of: {}", expected.join(", "))
        }
        other => other.to_string(),
    };
    (path.join("."), message)
}

/// A filter scoped to a source must name one (a source's ID, or an audience's `source_id`): a misspelt one would
/// never apply.
fn check_filter_sources(
    sources: &[Loaded<SourceConfig>],
    audiences: &[Loaded<personas::definition::ComputationConfig>],
    destinations: &[Loaded<DestinationConfig>],
    problems: &mut Problems,
) {
    let ids: HashSet<&str> =
        sources.iter().map(|s| s.config.id.as_str()).chain(audiences.iter().map(|a| a.config.source_id())).collect();
    for d in destinations {
        for (n, filter) in d.config.filters.iter().enumerate() {
            if let Some(source) = filter.source.as_deref().filter(|s| !ids.contains(s)) {
                problems.error(&d.file, format!("filters[{n}].source"), format!("no source is named {source:?}"));
            }
        }
    }
}

/// An empty identifier in a suppression file would suppress nothing and hide a mistake.
fn check_suppressions(files: &[Loaded<SuppressionFile>], problems: &mut Problems) {
    for f in files {
        for (key, ids) in [("user_ids", &f.config.user_ids), ("anonymous_ids", &f.config.anonymous_ids)] {
            for (i, id) in ids.iter().enumerate() {
                if id.trim().is_empty() {
                    problems.error(&f.file, format!("{key}[{i}]"), "must not be empty");
                }
            }
        }
    }
}

/// Checks a `[privacy]` table without its key, which is read only where messages are handled: every path and
/// matcher, and that a key is given, by reference, when `hash` needs one.
fn check_privacy(file: &Path, table: Option<&governance::PrivacyConfig<SecretRef>>, problems: &mut Problems) {
    let Some(table) = table else { return };
    if table.privacy_key.as_ref().is_some_and(SecretRef::is_inline) {
        problems.warn(
            file,
            "privacy.privacy_key",
            "is written inline; it belongs in the environment: privacy_key = { env = \"NAME\" }",
        );
    }
    // A stand-in of the shortest length allowed: the key's own length is checked when it is read.
    let stand_in = table.privacy_key.as_ref().map(|_| [0u8; governance::privacy::MIN_KEY_BYTES]);
    if let Err(found) = governance::Privacy::compile(table, stand_in.as_ref().map(|k| k.as_slice())) {
        for p in found {
            problems.error(file, format!("privacy.{}", p.key), p.message);
        }
    }
}

/// Checks sources: IDs and write keys used twice, their settings, and the destinations they name.
fn check_sources(
    sources: &[Loaded<SourceConfig>],
    destinations: &[Loaded<DestinationConfig>],
    problems: &mut Problems,
) {
    let names: HashSet<&str> = destinations.iter().map(|d| d.config.name.as_str()).collect();
    let mut ids: HashMap<&str, &Path> = HashMap::new();
    let mut keys: Vec<(&SecretRef, &Path)> = Vec::new();
    for s in sources {
        let config = &s.config;
        if config.id.is_empty() {
            problems.error(&s.file, "id", "must not be empty");
        }
        if let Some(first) = ids.insert(&config.id, &s.file) {
            problems.error(&s.file, "id", format!("{:?} is already the ID of {}", config.id, first.display()));
        }
        match keys.iter().find(|(key, _)| **key == config.write_key) {
            Some((_, first)) => {
                problems.error(&s.file, "write_key", format!("is the same as the write key of {}", first.display()));
            }
            None => keys.push((&config.write_key, &s.file)),
        }
        for (i, pattern) in config.allowed_origins.iter().flatten().enumerate() {
            if let Err(message) = check_pattern(pattern) {
                problems.error(&s.file, format!("allowed_origins[{i}]"), message);
            }
        }
        if config.max_messages_per_second == Some(0) {
            problems.error(&s.file, "max_messages_per_second", "must be at least 1 (leave it out for no limit)");
        }
        check_privacy(&s.file, config.privacy.as_ref(), problems);
        if config.write_key.is_inline() {
            problems.warn(
                &s.file,
                "write_key",
                "is written inline; it belongs in the environment: write_key = { env = \"NAME\" }",
            );
        }
        let mut seen = HashSet::new();
        for (i, name) in config.destinations.iter().enumerate() {
            if !names.contains(name.as_str()) {
                problems.error(&s.file, format!("destinations[{i}]"), format!("no destination is named {name:?}"));
            }
            if !seen.insert(name) {
                problems.error(&s.file, format!("destinations[{i}]"), format!("{name:?} is listed twice"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        for good in ["*", "https://www.example.com", "http://127.0.0.1:8080", "https://*.example.com"] {
            assert!(check_pattern(good).is_ok(), "{good}");
        }
        for bad in
            ["www.example.com", "ftp://x.test", "https://x.test/path", "https://*", "https://a.*.test", "https://"]
        {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
