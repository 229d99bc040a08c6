//! Routing: which destinations a message goes to, and the sinks behind them.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use kinesis_sink::{BaseCredentials, KinesisSink};
use segment_model::Message;
use serde_json::Value;
use sink::{FileSink, Outcome, Record, Sink, StdoutSink};

use crate::config::{Config, DestinationKind};

/// What building a Firehose destination's sink, or a command that sets one up, says in a build without the
/// Firehose SDK.
#[cfg(not(feature = "firehose"))]
pub(crate) const WITHOUT_FIREHOSE: &str = concat!(
    "this tributary was built without the `firehose` feature, which Firehose destinations need to deliver and be ",
    "set up; build it with default features"
);

/// The credentials every command starts from: the AWS default chain.
pub fn base_credentials() -> BaseCredentials {
    BaseCredentials::DefaultChain
}

/// A destination that is ready to deliver: its sink, and what delivery needs from its config.
pub struct Target {
    /// Its name.
    pub name: String,
    /// The name of its kind in Segment's catalog (`"Amazon Kinesis"`), which `integrations` objects written for
    /// Segment use.
    pub catalog_name: Option<&'static str>,
    /// Its sink.
    pub sink: Arc<dyn Sink>,
    /// How long a message is retried before it becomes a dead letter.
    pub max_retry: std::time::Duration,
    /// The most bytes it may have waiting in the spool, if its config says.
    pub max_backlog: Option<u64>,
    /// Its filters.
    pub filters: governance::Filters,
    /// Its privacy controls, with their key.
    pub privacy: governance::Privacy,
}

/// What a destination's filters and privacy controls made of one message.
#[derive(Debug)]
pub enum Filtered<'m> {
    /// The message goes on as it is (no control applied, or none changed it).
    Same(&'m Message),
    /// The message goes on, changed: by a filter (the action that last changed it), by privacy controls (each
    /// field's change), or both.
    Changed(Box<Message>, Option<&'static str>, Vec<governance::Change>),
    /// The message does not go to the destination; the action that decided (`error` for a condition that failed).
    Dropped(&'static str),
}

impl Target {
    /// Whether the destination's filters or privacy controls may change messages of `source`.
    pub fn controls(&self, source: &str) -> bool {
        self.filters.applies_to(source) || !self.privacy.is_empty()
    }

    /// The destination's filters, then its privacy controls, applied to `message` from `source`.
    pub fn filter<'m>(&self, source: &str, message: &'m Message) -> Filtered<'m> {
        if !self.controls(source) {
            return Filtered::Same(message);
        }
        // Copied only once a filter or a privacy control changes it.
        let mut changed = std::borrow::Cow::Borrowed(message);
        let applied = self.filters.apply_to(source, &mut changed);
        if !applied.kept {
            return Filtered::Dropped(applied.decided_by.unwrap_or("drop"));
        }
        let filtered = applied.changed.then(|| applied.decided_by.unwrap_or("drop_properties"));
        let privacy = match self.privacy.may_change(&changed) {
            true => self.privacy.apply(changed.to_mut()),
            false => Vec::new(),
        };
        match changed {
            std::borrow::Cow::Owned(changed) if filtered.is_some() || !privacy.is_empty() => {
                Filtered::Changed(Box::new(changed), filtered, privacy)
            }
            _ => Filtered::Same(message),
        }
    }
}

/// The sinks of every enabled destination, and which of them each source reaches.
pub struct Routes {
    destinations: HashMap<String, Target>,
    /// Source ID to the names of its enabled destinations.
    routes: HashMap<String, Vec<String>>,
}

impl Routes {
    /// Builds a sink for every enabled destination of `config`.
    pub async fn build(config: &Config, base: &BaseCredentials) -> anyhow::Result<Routes> {
        Routes::build_only(config, base, None).await
    }

    /// Builds a sink for the enabled destinations named in `only` (all, with `None`): a command that uses a few
    /// destinations does not need the secrets of the others.
    pub async fn build_only(config: &Config, base: &BaseCredentials, only: Option<&[&str]>) -> anyhow::Result<Routes> {
        Routes::build_with(config, base, only, &|_| None).await
    }

    /// Builds the routes of every enabled destination, taking the sink `reuse` gives for a destination (a reload
    /// keeps the sink of one whose settings did not change, with its credentials and counters) and building the
    /// others.
    pub async fn build_reusing(
        config: &Config,
        base: &BaseCredentials,
        reuse: &(dyn Fn(&crate::config::Destination) -> Option<Arc<dyn Sink>> + Sync),
    ) -> anyhow::Result<Routes> {
        Routes::build_with(config, base, None, reuse).await
    }

    async fn build_with(
        config: &Config,
        base: &BaseCredentials,
        only: Option<&[&str]>,
        reuse: &(dyn Fn(&crate::config::Destination) -> Option<Arc<dyn Sink>> + Sync),
    ) -> anyhow::Result<Routes> {
        let mut destinations = HashMap::new();
        let wanted = |name: &str| only.is_none_or(|names| names.contains(&name));
        for loaded in config.destinations.iter().filter(|d| d.config.enabled && wanted(&d.config.name)) {
            let d = &loaded.config;
            let sink: Arc<dyn Sink> = match reuse(d) {
                Some(sink) => sink,
                None => match &d.kind {
                    DestinationKind::Stdout => Arc::new(StdoutSink::stdout()),
                    DestinationKind::File(file) => Arc::new(
                        FileSink::open(&file.path)
                            .await
                            .with_context(|| format!("opening {} for destination {}", file.path.display(), d.name))?,
                    ),
                    DestinationKind::Kinesis(kinesis) => {
                        Arc::new(KinesisSink::connect(kinesis, config.identity_rule(&d.name)?, base).await)
                    }
                    #[cfg(feature = "firehose")]
                    DestinationKind::Firehose(firehose) => Arc::new(
                        firehose_sink::FirehoseSink::connect(firehose, config.identity_rule(&d.name)?, base).await,
                    ),
                    #[cfg(not(feature = "firehose"))]
                    DestinationKind::Firehose(_) => {
                        anyhow::bail!("destination {:?}: {}", d.name, WITHOUT_FIREHOSE)
                    }
                },
            };
            let target = Target {
                name: d.name.clone(),
                catalog_name: d.kind.catalog_name(),
                sink,
                max_retry: d.max_retry,
                max_backlog: d.max_backlog,
                filters: d.filters.clone(),
                privacy: config.privacy(&loaded.file, d.privacy.as_ref())?,
            };
            destinations.insert(d.name.clone(), target);
        }
        let routes = config
            .sources
            .iter()
            .map(|s| {
                let names = s.config.destinations.iter().filter(|n| destinations.contains_key(*n)).cloned().collect();
                (s.config.id.clone(), names)
            })
            .collect();
        Ok(Routes { destinations, routes })
    }

    /// The enabled destinations of `source_id` that `message` is meant for.
    pub fn destinations_for<'a>(&'a self, source_id: &str, message: &Message) -> Vec<&'a Target> {
        let Some(names) = self.routes.get(source_id) else { return Vec::new() };
        let integrations = match message.get("integrations") {
            Some(Value::Object(integrations)) => Some(integrations),
            _ => None,
        };
        names
            .iter()
            .filter_map(|n| self.destinations.get(n))
            .filter(|d| integrations.as_ref().is_none_or(|i| integrations_allow(i, &d.name, d.catalog_name)))
            .collect()
    }

    /// The destinations `messages` from `source_id` go to, each with the positions of its messages, in the order
    /// destinations first appear: how a request or a chunk is split per destination.
    pub fn group<'a, 'm>(
        &'a self,
        source_id: &str,
        messages: impl IntoIterator<Item = &'m Message>,
    ) -> Vec<(&'a Target, Vec<usize>)> {
        let mut groups: Vec<(&Target, Vec<usize>)> = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            for target in self.destinations_for(source_id, message) {
                match groups.iter_mut().find(|(t, _)| std::ptr::eq(*t, target)) {
                    Some((_, indices)) => indices.push(index),
                    None => groups.push((target, vec![index])),
                }
            }
        }
        groups
    }

    /// Every enabled destination.
    pub fn all(&self) -> impl Iterator<Item = &Target> {
        self.destinations.values()
    }

    /// The enabled destination named `name`.
    pub fn get(&self, name: &str) -> Option<&Target> {
        self.destinations.get(name)
    }

    /// The enabled destinations of `source_id`, whatever the message says.
    pub fn connected(&self, source_id: &str) -> Vec<&Target> {
        self.routes
            .get(source_id)
            .map(|names| names.iter().filter_map(|n| self.destinations.get(n)).collect())
            .unwrap_or_default()
    }
}

/// Delivers each destination's records, every destination at once, and returns each destination's outcomes in
/// the order of its records. The one fan-out of the commands that deliver directly (`send`, `personas sync`);
/// `serve` and `dlq replay` deliver through the spool's workers instead.
pub async fn fan_out(batches: Vec<(&Target, Vec<Record>)>) -> Vec<(&Target, Vec<Outcome>)> {
    let deliveries =
        batches.into_iter().map(|(target, records)| async move { (target, target.sink.deliver(records).await) });
    futures::future::join_all(deliveries).await
}

/// Whether a message's `integrations` object lets it go to a destination, as Segment reads it: the destination's own
/// entry wins, under its config name or else its catalog name (`"Amazon Kinesis"`), and any value but `false` counts
/// as on (Segment puts options objects there); without an entry, `All` decides, and it defaults to on.
pub fn integrations_allow(
    integrations: &serde_json::Map<String, Value>,
    name: &str,
    catalog_name: Option<&str>,
) -> bool {
    let on = |value: &Value| !matches!(value, Value::Bool(false));
    match integrations.get(name).or_else(|| catalog_name.and_then(|c| integrations.get(c))) {
        Some(value) => on(value),
        None => integrations.get("All").is_none_or(on),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(integrations: &str, expected: bool) {
        check_as(integrations, None, expected);
    }

    #[track_caller]
    fn check_as(integrations: &str, catalog_name: Option<&str>, expected: bool) {
        let map: serde_json::Map<String, Value> = serde_json::from_str(integrations).unwrap();
        assert_eq!(integrations_allow(&map, "kinesis-main", catalog_name), expected, "integrations: {integrations}");
    }

    #[test]
    fn integrations_object() {
        check("{}", true);
        check(r#"{"All":true}"#, true);
        check(r#"{"All":false}"#, false);
        check(r#"{"All":false,"kinesis-main":true}"#, true);
        check(r#"{"All":false,"kinesis-main":{"option":1}}"#, true);
        check(r#"{"kinesis-main":false}"#, false);
        check(r#"{"All":true,"kinesis-main":false}"#, false);
        check(r#"{"Other":false}"#, true);
    }

    #[test]
    fn catalog_names() {
        let kinesis = Some("Amazon Kinesis");
        check_as(r#"{"Amazon Kinesis":false}"#, kinesis, false);
        check_as(r#"{"Amazon Kinesis":false}"#, None, true);
        check_as(r#"{"All":false,"Amazon Kinesis":true}"#, kinesis, true);
        check_as(r#"{"All":false,"Amazon Kinesis":true}"#, None, false);
        check_as(r#"{"All":false,"Amazon Kinesis":{"option":1}}"#, kinesis, true);
        // The config name is more specific than the catalog name.
        check_as(r#"{"Amazon Kinesis":false,"kinesis-main":true}"#, kinesis, true);
        check_as(r#"{"All":false,"Amazon Kinesis":true,"kinesis-main":false}"#, kinesis, false);
    }
}
