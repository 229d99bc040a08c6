//! Destination filters, as Segment applies them: per destination, for all of its sources or one, in Segment's
//! order whatever the order written (sample, drop, drop properties, allow properties), each with an FQL condition.
//! A condition that cannot be evaluated on a message drops the message, as Segment does.

use segment_model::Message;
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;

use crate::fql::{Condition, PathTree, Prefetched, field_path};

/// One `[[filters]]` table of a destination file.
///
/// ```toml
/// [[filters]]
/// source = "src_web"                 # optional: every source when absent
/// if = "type = 'track' and match(event, 'Test *')"
/// action = "drop"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The source whose messages the filter applies to; every source's when absent.
    #[serde(default)]
    pub source: Option<String>,
    /// The condition, in Segment's Filter Query Language; every message when absent.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    /// What the filter does to a message its condition holds for.
    pub action: Action,
    /// For `sample`: the share of messages kept, in percent (0 to 100).
    #[serde(default)]
    pub percent: Option<f64>,
    /// For `sample`: what decides which messages are kept: `message` (its messageId, the default) or `user` (its
    /// userId or anonymousId, so that a user's messages are kept or dropped together).
    #[serde(default)]
    pub by: Option<SampleBy>,
    /// For `drop_properties` and `allow_properties`: paths under `properties`, `traits` or `context`
    /// (`properties.email`, `context.ip`), other characters escaped with `\` as in FQL.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

/// A filter's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep only `percent` of the messages the condition holds for.
    Sample,
    /// Drop the messages the condition holds for (Segment's "only send" is a drop of the rest).
    Drop,
    /// Remove `fields` from the messages the condition holds for.
    DropProperties,
    /// Keep only `fields` of `properties`, `traits` and `context`, in the messages the condition holds for.
    AllowProperties,
}

impl Action {
    /// How `/metrics` and `filters test` name it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Sample => "sample",
            Action::Drop => "drop",
            Action::DropProperties => "drop_properties",
            Action::AllowProperties => "allow_properties",
        }
    }

    /// Segment's order: sample, drop, drop properties, allow properties.
    fn rank(self) -> u8 {
        match self {
            Action::Sample => 0,
            Action::Drop => 1,
            Action::DropProperties => 2,
            Action::AllowProperties => 3,
        }
    }
}

/// What a sample is decided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    /// The messageId: each message on its own.
    #[default]
    Message,
    /// The user (userId, else anonymousId): all of a user's messages alike.
    User,
}

/// A problem with one filter, by its position (from 1) in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterProblem {
    /// The filter's position in the file, from 1.
    pub filter: usize,
    /// The key at fault (`if`, `percent`, `fields`).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The object a field path lives in, and the path within it.
type Field = (String, Vec<String>);

#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Sample { percent: f64, by: SampleBy },
    Drop,
    DropFields(Vec<Field>),
    AllowFields(Vec<Field>),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    /// Its position in the file, from 1.
    position: usize,
    action: Action,
    source: Option<String>,
    condition: Option<Condition>,
    effect: Effect,
}

/// A destination's filters, compiled once (conditions parsed, patterns compiled) and sorted in Segment's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    filters: Vec<Filter>,
    /// Mixed into the sampling hash, so that two destinations sampling 10% do not keep the same tenth.
    salt: String,
    /// Every path the conditions read, read from a message at once.
    paths: PathTree,
}

/// What one filter did to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Its condition did not hold, or it is for another source: nothing.
    Skipped,
    /// A sample kept the message.
    Sampled,
    /// The message was dropped (by `drop`, or by a sample that did not keep it).
    Dropped,
    /// These fields were removed.
    Removed(Vec<String>),
    /// Its condition could not be evaluated: the message was dropped, as Segment drops it.
    Failed(String),
}

/// What a destination's filters did to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Whether the message goes on to the destination.
    pub kept: bool,
    /// Whether its content changed.
    pub changed: bool,
    /// The action that decided (dropped it, or last changed it), for counting.
    pub decided_by: Option<&'static str>,
    /// What each filter did, by its position in the file, in the order they ran.
    pub steps: Vec<(usize, Action, Step)>,
}

fn split_field(position: usize, text: &str) -> Result<Field, FilterProblem> {
    let problem = |message: String| FilterProblem { filter: position, key: "fields", message };
    let segments = field_path(text).map_err(|why| problem(format!("{text:?}: {why}")))?;
    match segments.split_first() {
        Some((top, rest)) if matches!(top.as_str(), "properties" | "traits" | "context") && !rest.is_empty() => {
            Ok((top.clone(), rest.to_vec()))
        }
        _ => Err(problem(format!("{text:?} is not a path under properties, traits or context"))),
    }
}

fn compile_one(position: usize, config: &FilterConfig) -> Result<Filter, Vec<FilterProblem>> {
    let mut problems = Vec::new();
    let mut add = |key: &'static str, message: String| problems.push(FilterProblem { filter: position, key, message });
    let condition = match config.condition.as_deref().map(Condition::parse).transpose() {
        Ok(condition) => condition,
        Err(e) => {
            add("if", e.to_string());
            None
        }
    };
    let fields = |add: &mut dyn FnMut(&'static str, String)| -> Vec<Field> {
        match &config.fields {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(|text| split_field(position, text).map_err(|p| add(p.key, p.message)).ok())
                .collect(),
            _ => {
                add("fields", format!("{} needs fields = [\"properties.NAME\", ...]", config.action.name()));
                Vec::new()
            }
        }
    };
    let effect = match config.action {
        Action::Sample => {
            let percent = config.percent.unwrap_or(f64::NAN);
            if !(0.0..=100.0).contains(&percent) {
                add("percent", "sample needs percent = 0 to 100".to_owned());
            }
            Effect::Sample { percent, by: config.by.unwrap_or_default() }
        }
        Action::Drop => Effect::Drop,
        Action::DropProperties => Effect::DropFields(fields(&mut add)),
        Action::AllowProperties => Effect::AllowFields(fields(&mut add)),
    };
    if config.action != Action::Sample && (config.percent.is_some() || config.by.is_some()) {
        add("percent", format!("percent and by are for sample, and this filter is {}", config.action.name()));
    }
    if !matches!(config.action, Action::DropProperties | Action::AllowProperties) && config.fields.is_some() {
        add("fields", format!("fields are for drop_properties and allow_properties, not {}", config.action.name()));
    }
    match problems.is_empty() {
        true => Ok(Filter { position, action: config.action, source: config.source.clone(), condition, effect }),
        false => Err(problems),
    }
}

impl Filters {
    /// Compiles a destination's filters; `salt` (the destination's name) keeps its samples its own. Every problem of
    /// every filter is reported.
    pub fn compile(configs: &[FilterConfig], salt: &str) -> Result<Filters, Vec<FilterProblem>> {
        let mut filters = Vec::new();
        let mut problems = Vec::new();
        for (n, config) in configs.iter().enumerate() {
            match compile_one(n + 1, config) {
                Ok(filter) => filters.push(filter),
                Err(found) => problems.extend(found),
            }
        }
        // Stable: filters of one action keep the order written.
        filters.sort_by_key(|f| f.action.rank());
        let paths = PathTree::of(filters.iter().filter_map(|f| f.condition.as_ref()).flat_map(Condition::paths));
        for condition in filters.iter_mut().filter_map(|f| f.condition.as_mut()) {
            condition.bind(&paths);
        }
        match problems.is_empty() {
            true => Ok(Filters { filters, salt: salt.to_owned(), paths }),
            false => Err(problems),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether any filter applies to messages of `source_id`.
    pub fn applies_to(&self, source_id: &str) -> bool {
        self.filters.iter().any(|f| f.source.as_deref().is_none_or(|s| s == source_id))
    }

    /// Applies the filters to `message` from `source_id`, changing it in place when a filter removes fields.
    pub fn apply(&self, source_id: &str, message: &mut Message) -> Applied {
        let mut cow = std::borrow::Cow::Borrowed(&*message);
        let applied = self.apply_to(source_id, &mut cow);
        if let std::borrow::Cow::Owned(changed) = cow {
            *message = changed;
        }
        applied
    }

    /// As [`Filters::apply`], copying `message` only when a filter changes it. The paths the conditions read are
    /// read once, and again after a change.
    pub fn apply_to(&self, source_id: &str, message: &mut std::borrow::Cow<'_, Message>) -> Applied {
        let mut applied =
            Applied { kept: true, changed: false, decided_by: None, steps: Vec::with_capacity(self.filters.len()) };
        let mut fetched: Option<Prefetched> = None;
        for filter in &self.filters {
            if filter.source.as_deref().is_some_and(|s| s != source_id) {
                continue;
            }
            let fields = fetched.get_or_insert_with(|| Prefetched::read(message, &self.paths));
            let step = self.step(filter, fields, message);
            let ends = matches!(step, Step::Dropped | Step::Failed(_));
            if ends {
                applied.kept = false;
                applied.decided_by = Some(if matches!(step, Step::Failed(_)) { "error" } else { filter.action.name() });
            } else if matches!(step, Step::Removed(ref fields) if !fields.is_empty()) {
                applied.changed = true;
                applied.decided_by = Some(filter.action.name());
                fetched = None;
            }
            applied.steps.push((filter.position, filter.action, step));
            if ends {
                break;
            }
        }
        applied
    }

    fn step(&self, filter: &Filter, fields: &Prefetched, message: &mut std::borrow::Cow<'_, Message>) -> Step {
        match filter.condition.as_ref().map(|c| c.eval(fields)) {
            Some(Err(e)) => return Step::Failed(e.0),
            Some(Ok(false)) => return Step::Skipped,
            Some(Ok(true)) | None => {}
        }
        match &filter.effect {
            Effect::Drop => Step::Dropped,
            Effect::Sample { percent, by } => match self.kept_by_sample(filter.position, *percent, *by, message) {
                true => Step::Sampled,
                false => Step::Dropped,
            },
            Effect::DropFields(fields) if !may_remove(message, fields) => Step::Removed(Vec::new()),
            Effect::DropFields(fields) => Step::Removed(remove(message.to_mut(), fields, false)),
            Effect::AllowFields(fields) => Step::Removed(remove(message.to_mut(), fields, true)),
        }
    }

    /// Whether a sample of `percent` keeps `message`: a hash of its messageId (or user), the destination and the
    /// filter, so that every node and every replay decides alike.
    fn kept_by_sample(&self, position: usize, percent: f64, by: SampleBy, message: &Message) -> bool {
        let key = match by {
            SampleBy::Message => message.message_id().unwrap_or_default().to_owned(),
            SampleBy::User => message.user_key().unwrap_or_default().into_owned(),
        };
        let digest = sha2::Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update([0])
            .chain_update(position.to_le_bytes())
            .chain_update(key.as_bytes())
            .finalize();
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % 1_000_000;
        (draw as f64) < percent * 10_000.0
    }
}

/// Whether one of `fields` may be in `message` (a byte test of the objects they are in): when none can be, dropping
/// them changes nothing and the message is not copied.
fn may_remove(message: &Message, fields: &[Field]) -> bool {
    fields.iter().any(|(top, path)| match path.as_slice() {
        [key] => message.object_member(top, key).is_some(),
        _ => {
            let last = path.last().map_or(top.as_str(), String::as_str);
            message.raw(top).is_some_and(|raw| crate::raw::may_have(raw.get(), last))
        }
    })
}

/// Removes `fields` from `message` (or, with `allow`, everything but them from each object they name), writing back
/// only the objects that changed; returns the paths removed, dotted.
fn remove(message: &mut Message, fields: &[Field], allow: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for top in ["properties", "traits", "context"] {
        let wanted: Vec<&Vec<String>> = fields.iter().filter(|(t, _)| t == top).map(|(_, p)| p).collect();
        if wanted.is_empty() {
            continue;
        }
        // Members of the object itself: its text is rewritten without them, in one pass and without a tree.
        if wanted.iter().all(|path| path.len() == 1) {
            let Some(raw) = message.raw(top) else { continue };
            let mut gone: Vec<String> = Vec::new();
            let rebuilt = crate::raw::rebuild(raw.get(), |key, _| {
                let named = wanted.iter().any(|path| path[0] == key);
                match named != allow {
                    false => crate::raw::Edit::Keep,
                    true => {
                        let dotted = format!("{top}.{key}");
                        if !gone.contains(&dotted) {
                            gone.push(dotted);
                        }
                        crate::raw::Edit::Drop
                    }
                }
            });
            if let Some(rebuilt) = rebuilt
                && message.replace_object_json(top, rebuilt)
            {
                removed.extend(gone);
            }
            continue;
        }
        let Some(Value::Object(mut object)) = message.get(top) else { continue };
        let before = removed.len();
        match allow {
            false => {
                for path in &wanted {
                    if remove_path(&mut object, path) {
                        removed.push(format!("{top}.{}", path.join(".")));
                    }
                }
            }
            true => keep_only(&mut object, &wanted, top, &mut removed),
        }
        if removed.len() > before {
            message.replace_object(top, &Value::Object(object));
        }
    }
    removed
}

fn remove_path(object: &mut serde_json::Map<String, Value>, path: &[String]) -> bool {
    match path {
        [last] => object.shift_remove(last).is_some(),
        [first, rest @ ..] => match object.get_mut(first) {
            Some(Value::Object(inner)) => remove_path(inner, rest),
            _ => false,
        },
        [] => false,
    }
}

/// Keeps in `object` only what one of `paths` names (a path names a member whole, or leads into it); notes what went.
fn keep_only(object: &mut serde_json::Map<String, Value>, paths: &[&Vec<String>], at: &str, removed: &mut Vec<String>) {
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let deeper: Vec<Vec<String>> = paths.iter().filter(|p| p[0] == key).map(|p| p[1..].to_vec()).collect();
        let here = format!("{at}.{key}");
        if deeper.is_empty() {
            object.shift_remove(&key);
            removed.push(here);
        } else if deeper.iter().all(|rest| !rest.is_empty())
            && let Some(Value::Object(inner)) = object.get_mut(&key)
        {
            let refs: Vec<&Vec<String>> = deeper.iter().collect();
            keep_only(inner, &refs, &here, removed);
        }
    }
}
