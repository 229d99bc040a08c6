//! Tracking plans, as Segment Protocols keeps them: a JSON Schema per track event, page and screen name, one for
//! identify's and group's payloads, and a common one for every message; each validated with the draft its
//! `$schema` names (draft-07, Segment's, when it names none). A message's violations say what is wrong and where,
//! never the value, and say which properties `omit_properties` takes out.

use std::collections::HashMap;

use segment_model::{Message, MessageType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A plan file, `configs/tracking-plans/NAME.json`: the rules of a Segment tracking plan as its Public API lists
/// them, and what happens to an event the plan does not name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The plan's name, as `Violation Generated` names it (`trackingPlanName`); the file's name when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The plan's ID, for `trackingPlanID` (Segment's `tp_…` when the plan came from Segment).
    #[serde(default)]
    pub id: Option<String>,
    /// What happens to an unplanned event (a track event no `TRACK` rule names, a page or screen name no rule of
    /// its type names when the plan has such rules): `allow` (delivered, counted as an `unplanned` violation) or
    /// `block` (kept out, in the rejected table).
    #[serde(default)]
    pub unplanned: Unplanned,
    /// The rules.
    pub rules: Vec<RuleFile>,
}

/// One rule of a plan file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `COMMON` (every message), `TRACK` (the event `key`), `PAGE` and `SCREEN` (the name `key`), `IDENTIFY`,
    /// `GROUP`.
    #[serde(rename = "type")]
    pub kind: RuleKind,
    /// The event or page name a `TRACK`, `PAGE` or `SCREEN` rule is for.
    #[serde(default)]
    pub key: Option<String>,
    /// The rule's version, as Segment numbers them; informative.
    #[serde(default)]
    pub version: Option<u64>,
    /// The JSON Schema of the whole message (`properties.properties` for a track event's properties, as Segment
    /// writes them).
    #[serde(rename = "jsonSchema")]
    pub json_schema: Value,
}

/// A rule's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleKind {
    /// Every message.
    Common,
    /// A track event.
    Track,
    /// A page name.
    Page,
    /// A screen name.
    Screen,
    /// Identify calls.
    Identify,
    /// Group calls.
    Group,
}

/// What a plan does to an event it does not name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unplanned {
    /// Delivered, counted as a violation.
    #[default]
    Allow,
    /// Kept out.
    Block,
}

/// What a source does with a message that violates its plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// Delivered as it is; the violations are counted and listed.
    #[default]
    Allow,
    /// Delivered without the properties (or traits) that violate.
    OmitProperties,
    /// Kept out, in the rejected table with the schema path and reason.
    Block,
}

/// A source's `[tracking_plan]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePlanConfig {
    /// The plan: `configs/tracking-plans/NAME.json`.
    pub name: String,
    /// What happens to a message that violates it: `allow`, `omit_properties` or `block`.
    #[serde(default)]
    pub on_violation: OnViolation,
    /// A destination that receives a `Violation Generated` track call per violation, as Segment forwards them to
    /// a source of their own.
    #[serde(default)]
    pub forward_violations_to: Option<String>,
}

/// A problem with a plan file, naming its key (`rules[3].jsonSchema`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// The key at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// One violation of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Its kind, for `/metrics`: `unplanned`, or the JSON Schema keyword that failed in snake case (`required`,
    /// `type`, `additional_properties`, `enum`, `pattern`…).
    pub kind: String,
    /// The field, dotted (`properties.total`; the missing one for `required`); empty for the message itself.
    pub field: String,
    /// What is wrong, without the value.
    pub description: String,
    /// Where in the rule's schema (`#/properties/properties/required`), empty for an unplanned event.
    pub schema_path: String,
}

impl Violation {
    /// The `violationType` Segment forwards: the kind in title case (`Required`, `Type`, `Unplanned Event`).
    pub fn segment_type(&self) -> String {
        if self.kind == "unplanned" {
            return "Unplanned Event".to_owned();
        }
        self.kind
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A compiled rule.
struct Rule {
    validator: jsonschema::Validator,
    /// The schema compiled for prechecks on the message's raw JSON, when it uses only keywords they read.
    precheck: Option<crate::precheck::Node>,
    /// What of a message its schema reads (with the common rule's, for an event's rule): the message is read as
    /// far as that and no further.
    need: Need,
}

/// What of a value a schema reads: all of it, or only some members of an object (and what of each).
#[derive(Debug, Clone, PartialEq)]
enum Need {
    All,
    Members(std::collections::BTreeMap<String, Need>),
}

/// The keywords a schema may use and still read only the members it names, besides those that validate nothing
/// ([`crate::precheck::ANNOTATIONS`]): with any other (`additionalProperties`, `patternProperties`, `enum`, `allOf`,
/// `$ref`…) it reads the whole value.
const MEMBERS_ONLY: [&str; 3] = ["type", "properties", "required"];

impl Need {
    /// What `schema` reads of the value it validates.
    fn of(schema: &Value) -> Need {
        let Value::Object(keywords) = schema else { return Need::All };
        let reads_members_only = |k: &str| MEMBERS_ONLY.contains(&k) || crate::precheck::ANNOTATIONS.contains(&k);
        if keywords.keys().any(|k| !reads_members_only(k)) {
            return Need::All;
        }
        let mut members = std::collections::BTreeMap::new();
        if let Some(Value::Object(properties)) = keywords.get("properties") {
            for (name, sub) in properties {
                members.insert(name.clone(), Need::of(sub));
            }
        }
        // A required member is read for its presence: nothing of it is validated unless `properties` names it.
        if let Some(Value::Array(required)) = keywords.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                members.entry(name.to_owned()).or_insert_with(|| Need::Members(Default::default()));
            }
        }
        Need::Members(members)
    }

    /// What two schemas read together.
    fn and(self, other: &Need) -> Need {
        match (self, other) {
            (Need::Members(mut mine), Need::Members(theirs)) => {
                for (name, need) in theirs {
                    let merged = match mine.remove(name) {
                        Some(own) => own.and(need),
                        None => need.clone(),
                    };
                    mine.insert(name.clone(), merged);
                }
                Need::Members(mine)
            }
            _ => Need::All,
        }
    }

    /// The part of `raw` this reads, as a tree: the same answer from a schema that reads only this part as from the
    /// whole value.
    fn project(&self, raw: &str) -> Value {
        match self {
            Need::Members(members) if raw.trim_start().starts_with('{') => {
                let names: Vec<&str> = members.keys().map(String::as_str).collect();
                let found = crate::raw::members(raw, &names);
                let mut object = Map::with_capacity(members.len());
                for ((name, need), value) in members.iter().zip(found) {
                    if let Some(value) = value {
                        object.insert(name.clone(), need.project(value));
                    }
                }
                Value::Object(object)
            }
            _ => crate::raw::parse(raw),
        }
    }

    /// The part of `message` this reads.
    fn instance(&self, message: &Message) -> Value {
        match self {
            Need::Members(members) => Value::Object(
                members
                    .iter()
                    .filter_map(|(name, need)| Some((name.clone(), need.project(message.raw(name)?.get()))))
                    .collect(),
            ),
            Need::All => Value::Object(message.to_map().into_iter().collect()),
        }
    }
}

/// A compiled plan.
pub struct Plan {
    /// Its name.
    pub name: String,
    /// Its ID, if it has one.
    pub id: Option<String>,
    /// What happens to an unplanned event.
    pub unplanned: Unplanned,
    common: Option<Rule>,
    identify: Option<Rule>,
    group: Option<Rule>,
    /// The rules of `TRACK`, `PAGE` and `SCREEN`, by their key.
    keyed: HashMap<RuleKind, HashMap<String, Rule>>,
    has_pages: bool,
    has_screens: bool,
    /// How many rules it has.
    pub rules: usize,
    /// The file it was compiled from: two plans are the same plan when their files are.
    file: PlanFile,
}

impl PartialEq for Plan {
    fn eq(&self, other: &Plan) -> bool {
        self.name == other.name && self.file == other.file
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("name", &self.name).field("rules", &self.rules).finish_non_exhaustive()
    }
}

/// What a plan found in one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Every violation, in the order of the rules (common first).
    pub violations: Vec<Violation>,
    /// Whether the event is unplanned.
    pub unplanned: bool,
    /// The dotted paths under `properties` or `traits` whose values violate (or that the schema does not allow):
    /// what `omit_properties` removes.
    pub omit: Vec<(String, String)>,
}

impl Plan {
    /// Compiles `file` (named `name` when it names no plan itself), reporting every problem by its key.
    pub fn compile(name: &str, file: &PlanFile) -> Result<Plan, Vec<PlanProblem>> {
        let mut problems = Vec::new();
        let mut plan = Plan {
            name: file.name.clone().unwrap_or_else(|| name.to_owned()),
            id: file.id.clone(),
            unplanned: file.unplanned,
            common: None,
            identify: None,
            group: None,
            keyed: HashMap::new(),
            has_pages: false,
            has_screens: false,
            rules: file.rules.len(),
            file: file.clone(),
        };
        for (i, rule) in file.rules.iter().enumerate() {
            let problem = |key: &str, message: String| PlanProblem { key: format!("rules[{i}].{key}"), message };
            let validator = match crate::precheck::compile_schema(&rule.json_schema) {
                Ok(validator) => Rule {
                    validator,
                    precheck: crate::precheck::compile(&rule.json_schema),
                    need: Need::of(&rule.json_schema),
                },
                Err(message) => {
                    problems.push(problem("jsonSchema", message));
                    continue;
                }
            };
            let keyed = matches!(rule.kind, RuleKind::Track | RuleKind::Page | RuleKind::Screen);
            match (&rule.key, keyed) {
                (None, true) => {
                    problems.push(problem("key", "is required: the event or name this rule is for".to_owned()));
                    continue;
                }
                (Some(_), false) => {
                    problems.push(problem("key", "only TRACK, PAGE and SCREEN rules name a key".to_owned()));
                    continue;
                }
                _ => {}
            }
            let twice = match (rule.kind, &rule.key) {
                (RuleKind::Common, _) => plan.common.replace(validator).is_some(),
                (RuleKind::Identify, _) => plan.identify.replace(validator).is_some(),
                (RuleKind::Group, _) => plan.group.replace(validator).is_some(),
                (kind, Some(key)) => {
                    plan.has_pages |= kind == RuleKind::Page;
                    plan.has_screens |= kind == RuleKind::Screen;
                    plan.keyed.entry(kind).or_default().insert(key.clone(), validator).is_some()
                }
                (_, None) => false,
            };
            if twice {
                problems.push(problem("type", "a rule of this type and key comes earlier in the plan".to_owned()));
            }
        }
        if let Some(common) = plan.common.as_ref().map(|c| c.need.clone()) {
            let rules = plan
                .identify
                .iter_mut()
                .chain(plan.group.iter_mut())
                .chain(plan.keyed.values_mut().flat_map(HashMap::values_mut));
            for rule in rules {
                rule.need = std::mem::replace(&mut rule.need, Need::All).and(&common);
            }
        }
        match problems.is_empty() {
            true => Ok(plan),
            false => Err(problems),
        }
    }

    /// The rule for `message` beside the common one, and whether the event is unplanned.
    fn rule_for(&self, message: &Message) -> (Option<&Rule>, bool) {
        let keyed = |kind: RuleKind, field: &str, planned_kind: bool| {
            let Some(raw) = message.raw(field) else { return (None, planned_kind) };
            // The name as sent, unescaped only when it has escapes.
            let name: std::borrow::Cow<'_, str> = match crate::raw::plain_str(raw.get()) {
                Some(name) => name.into(),
                None => match serde_json::from_str::<String>(raw.get()) {
                    Ok(name) => name.into(),
                    Err(_) => return (None, planned_kind),
                },
            };
            match self.keyed.get(&kind).and_then(|rules| rules.get(&*name)) {
                Some(rule) => (Some(rule), false),
                None => (None, planned_kind),
            }
        };
        match message.kind() {
            MessageType::Track => keyed(RuleKind::Track, "event", true),
            MessageType::Page => keyed(RuleKind::Page, "name", self.has_pages),
            MessageType::Screen => keyed(RuleKind::Screen, "name", self.has_screens),
            MessageType::Identify => (self.identify.as_ref(), false),
            MessageType::Group => (self.group.as_ref(), false),
            MessageType::Alias => (None, false),
        }
    }

    /// Checks `message` against the common rule and its own. Linear in the message (the schemas are compiled);
    /// the message is read as JSON once, and only when a rule applies.
    pub fn check(&self, message: &Message) -> Checked {
        let (rule, unplanned) = self.rule_for(message);
        let mut checked = Checked { unplanned, ..Checked::default() };
        if unplanned {
            let what = match message.kind() {
                MessageType::Track => "the event is not in the tracking plan",
                _ => "the name is not in the tracking plan",
            };
            checked.violations.push(Violation {
                kind: "unplanned".to_owned(),
                field: match message.kind() {
                    MessageType::Track => "event".to_owned(),
                    _ => "name".to_owned(),
                },
                description: what.to_owned(),
                schema_path: String::new(),
            });
        }
        let rules = || self.common.iter().chain(rule);
        if rules().all(|rule| rule.precheck.as_ref().is_some_and(|node| node.holds_message(message))) {
            return checked;
        }
        // The event's rule reads what the common one does too.
        let Some(need) = rule.or(self.common.as_ref()).map(|r| &r.need) else { return checked };
        let instance = need.instance(message);
        for rule in rules() {
            if rule.validator.is_valid(&instance) {
                continue;
            }
            for error in rule.validator.iter_errors(&instance) {
                violation(&error, &mut checked);
            }
        }
        checked
    }

    /// Takes the properties and traits `checked` says violate out of `message`; returns how many it took.
    pub fn omit(message: &mut Message, checked: &Checked) -> usize {
        let mut omitted = 0;
        for top in ["properties", "traits"] {
            let keys: Vec<&str> = checked.omit.iter().filter(|(t, _)| t == top).map(|(_, key)| key.as_str()).collect();
            if keys.is_empty() {
                continue;
            }
            let Some(Value::Object(mut object)) = message.get(top) else { continue };
            let before = object.len();
            object.retain(|key, _| !keys.contains(&key.as_str()));
            if object.len() < before {
                omitted += before - object.len();
                message.replace_object(top, &Value::Object(object));
            }
        }
        omitted
    }
}

/// The dotted form of a JSON pointer (`/properties/total` → `properties.total`).
fn dotted(pointer: &str) -> String {
    pointer.split('/').skip(1).map(|token| token.replace("~1", "/").replace("~0", "~")).collect::<Vec<_>>().join(".")
}

/// A keyword in snake case (`additionalProperties` → `additional_properties`).
fn snake(keyword: &str) -> String {
    let mut out = String::with_capacity(keyword.len() + 4);
    for c in keyword.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// Records one schema error as violations (one per property an `additionalProperties` error names), and what
/// `omit_properties` would take out for it.
fn violation(error: &jsonschema::ValidationError<'_>, checked: &mut Checked) {
    use jsonschema::error::ValidationErrorKind;
    let at = dotted(error.instance_path().as_str());
    let kind = snake(error.kind().keyword());
    let schema_path = format!("#{}", error.schema_path().as_str());
    let join = |name: &str| if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
    let mut omit = |field: &str| {
        let mut parts = field.splitn(3, '.');
        if let (Some(top @ ("properties" | "traits")), Some(key)) = (parts.next(), parts.next()) {
            checked.omit.push((top.to_owned(), key.to_owned()));
        }
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            let field = join(&name);
            checked.violations.push(Violation {
                kind,
                description: format!("{field} is required"),
                field,
                schema_path,
            });
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for name in unexpected {
                let field = join(name);
                omit(&field);
                checked.violations.push(Violation {
                    kind: kind.clone(),
                    description: format!("{field} is not allowed by the tracking plan"),
                    field,
                    schema_path: schema_path.clone(),
                });
            }
        }
        _ => {
            omit(&at);
            let field = if at.is_empty() { "message".to_owned() } else { at.clone() };
            let description = format!("{field}: {}", error.masked());
            checked.violations.push(Violation { kind, field: at, description, schema_path });
        }
    }
}
