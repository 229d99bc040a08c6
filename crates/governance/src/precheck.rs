//! A tracking plan's schemas checked on a message's raw JSON, without building a tree of it: the common keywords
//! of Segment's plans (`type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, the numeric
//! bounds, and the string and number keywords, given to `jsonschema` one value at a time).
//!
//! A precheck answers only "certainly valid". Anything else, a value it finds broken as much as one it cannot
//! judge, sends the message to the full validator, which finds and describes the violations: so the answer it
//! gives must always be the full validator's, and the one it withholds costs only time. Traffic that keeps to its
//! plan, as most does, never builds the validator's instance.

use segment_model::Message;
use serde_json::{Map, Value};

/// The keywords that validate nothing (annotations, and `definitions`, which only a `$ref` reaches): what a schema
/// reads does not depend on them, for a precheck or for the plan's instance (`plan::Need`).
pub(crate) const ANNOTATIONS: [&str; 9] =
    ["$schema", "$id", "id", "$comment", "title", "description", "default", "examples", "definitions"];

/// The keywords a precheck reads nothing of: [`ANNOTATIONS`], and these, which only a `$ref` (which sends a schema
/// to the full validator) would reach, or which annotate.
const INERT: [&str; 2] = ["$defs", "readOnly"];

/// The keywords of one value that `jsonschema` checks for a precheck, on that value alone.
const LEAF: [&str; 5] = ["pattern", "format", "minLength", "maxLength", "multipleOf"];

/// The drafts whose `type`, bounds and `items` this module reads as draft-07 does: draft 4 (where
/// `exclusiveMinimum` is a flag and `1.0` is no integer) and drafts it does not know go to the full validator.
const DRAFTS: [&str; 4] = [
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
];

/// A JSON type, as a bit of [`Check::types`].
const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const NUMBER: u8 = 16;
const STRING: u8 = 32;
const INTEGER: u8 = 64;

/// A schema, compiled for prechecks.
pub(crate) enum Node {
    /// `true` or `{}`: anything is valid.
    Any,
    /// `false`: nothing is.
    Never,
    /// The keywords to check.
    Check(Box<Check>),
}

#[derive(Default)]
pub(crate) struct Check {
    /// The types allowed, as bits; every type when `type` is absent.
    types: Option<u8>,
    /// The members read: `properties` (with their schemas) and `required` (with none unless `properties` names
    /// them), in one list so that an object is scanned once for all of them.
    members: Vec<Member>,
    /// `additionalProperties`, when it is not `true`.
    additional: Option<Node>,
    /// `items`, a schema for every element.
    items: Option<Node>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    /// `enum` (and `const`, as a list of one).
    choices: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    /// The [`LEAF`] keywords, compiled on their own.
    leaf: Option<jsonschema::Validator>,
}

struct Member {
    name: String,
    required: bool,
    schema: Option<Node>,
}

/// Compiles a rule's schema with the draft it names, or draft-07. Patterns (`pattern`, `patternProperties`) are the
/// `regex` crate's, which matches in time linear in the text: a client's string never meets a backtracking engine,
/// and a pattern that needs one (a backreference, a lookaround) is refused when the plan loads.
pub(crate) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    let mut options = jsonschema::options().with_pattern_options(jsonschema::PatternOptions::regex());
    if schema.get("$schema").is_none() {
        options = options.with_draft(jsonschema::Draft::Draft7);
    }
    options.build(schema).map_err(|e| e.to_string())
}

/// The root schema's draft, as `$schema` names it (draft-07 when it names none), if prechecks read it as they
/// must; `None` sends every message to the full validator.
fn draft_of(root: &Value) -> Option<Option<&str>> {
    match root.get("$schema") {
        None => Some(None),
        Some(Value::String(uri)) => {
            let bare = uri.trim_end_matches('#');
            DRAFTS.contains(&bare).then_some(Some(uri.as_str()))
        }
        Some(_) => None,
    }
}

/// Compiles `root` (a rule's whole schema) for prechecks, or `None` when it uses a keyword they do not read.
pub(crate) fn compile(root: &Value) -> Option<Node> {
    let draft = draft_of(root)?;
    node(root, draft)
}

fn node(schema: &Value, draft: Option<&str>) -> Option<Node> {
    let keywords = match schema {
        Value::Bool(true) => return Some(Node::Any),
        Value::Bool(false) => return Some(Node::Never),
        Value::Object(keywords) => keywords,
        _ => return None,
    };
    let mut check = Check::default();
    let mut leaf = Map::new();
    for (keyword, value) in keywords {
        match keyword.as_str() {
            k if ANNOTATIONS.contains(&k) || INERT.contains(&k) => {}
            k if LEAF.contains(&k) => {
                leaf.insert(k.to_owned(), value.clone());
            }
            "type" => check.types = Some(types(value)?),
            "properties" => {
                for (name, sub) in value.as_object()? {
                    let schema = node(sub, draft)?;
                    match check.members.iter_mut().find(|m| m.name == *name) {
                        Some(member) => member.schema = Some(schema),
                        None => {
                            check.members.push(Member { name: name.clone(), required: false, schema: Some(schema) })
                        }
                    }
                }
            }
            "required" => {
                for name in value.as_array()? {
                    let name = name.as_str()?;
                    match check.members.iter_mut().find(|m| m.name == name) {
                        Some(member) => member.required = true,
                        None => check.members.push(Member { name: name.to_owned(), required: true, schema: None }),
                    }
                }
            }
            "additionalProperties" => match node(value, draft)? {
                Node::Any => {}
                other => check.additional = Some(other),
            },
            // An object: a schema for every element (a list of schemas is draft-07's tuples).
            "items" if !value.is_array() => check.items = Some(node(value, draft)?),
            "minItems" => check.min_items = Some(usize::try_from(value.as_u64()?).ok()?),
            "maxItems" => check.max_items = Some(usize::try_from(value.as_u64()?).ok()?),
            "enum" => check.choices = Some(value.as_array()?.clone()),
            "const" => check.choices = Some(vec![value.clone()]),
            "minimum" => check.minimum = Some(value.as_f64()?),
            "maximum" => check.maximum = Some(value.as_f64()?),
            "exclusiveMinimum" => check.exclusive_minimum = Some(value.as_f64()?),
            "exclusiveMaximum" => check.exclusive_maximum = Some(value.as_f64()?),
            _ => return None,
        }
    }
    if !leaf.is_empty() {
        if let Some(uri) = draft {
            leaf.insert("$schema".to_owned(), Value::String(uri.to_owned()));
        }
        check.leaf = Some(compile_schema(&Value::Object(leaf)).ok()?);
    }
    Some(Node::Check(Box::new(check)))
}

/// `type`: a name or a list of names.
fn types(value: &Value) -> Option<u8> {
    let bit = |name: &Value| match name.as_str()? {
        "null" => Some(NULL),
        "boolean" => Some(BOOLEAN),
        "object" => Some(OBJECT),
        "array" => Some(ARRAY),
        "number" => Some(NUMBER),
        "string" => Some(STRING),
        "integer" => Some(INTEGER),
        _ => None,
    };
    match value {
        Value::Array(names) => names.iter().try_fold(0, |bits, name| Some(bits | bit(name)?)),
        name => bit(name),
    }
}

/// The type of the raw value `json`, by its first byte; a number with a fraction or an exponent is not
/// [`INTEGER`] here (`1.0` is an integer to draft-07: the full validator decides it).
fn type_of(json: &str) -> u8 {
    match json.as_bytes().first() {
        Some(b'"') => STRING,
        Some(b'{') => OBJECT,
        Some(b'[') => ARRAY,
        Some(b't' | b'f') => BOOLEAN,
        Some(b'n') => NULL,
        _ if json.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => NUMBER,
        _ => NUMBER | INTEGER,
    }
}

impl Node {
    /// Whether the raw value `json` (as the raw scan finds it: no space around it) is certainly valid.
    pub(crate) fn holds(&self, json: &str) -> bool {
        match self {
            Node::Any => true,
            Node::Never => false,
            Node::Check(check) => check.holds(json),
        }
    }

    /// Whether `message` is certainly valid. Its `context`, `properties` and `traits` are read from the members
    /// the message keeps ([`Message::object_members`]), which the filters and privacy controls read too.
    pub(crate) fn holds_message<'m>(&self, message: &'m Message) -> bool {
        let check = match self {
            Node::Any => return true,
            Node::Never => return false,
            Node::Check(check) => check,
        };
        if check.types.is_some_and(|t| t & OBJECT == 0) || check.choices.is_some() || check.leaf.is_some() {
            return false;
        }
        let each =
            |visit: &mut dyn FnMut(&str, &'m str) -> bool| message.fields().all(|(name, v)| visit(name, v.get()));
        check.members_hold(each, |check, name, value| match self_object(check, name) {
            Some(Node::Check(inner)) if type_of(value) == OBJECT => match message.object_members(name) {
                Some(mut members) => {
                    inner.types.is_none_or(|t| t & OBJECT != 0)
                        && inner.choices.is_none()
                        && inner.members_hold(|visit| members.all(|(k, v)| visit(k, v)), Check::member_holds)
                }
                None => inner.holds(value),
            },
            _ => check.member_holds(name, value),
        })
    }
}

/// The schema `check` gives its member `name`, if `properties` names it.
fn self_object<'c>(check: &'c Check, name: &str) -> Option<&'c Node> {
    check.members.iter().find(|m| m.name == name).and_then(|m| m.schema.as_ref())
}

impl Check {
    fn holds(&self, json: &str) -> bool {
        let kind = type_of(json);
        let type_holds = match self.types {
            None => true,
            Some(allowed) if allowed & kind != 0 => true,
            // `1.5` is no integer; `1.0` is, to draft-07: only the full validator knows.
            Some(_) => false,
        };
        if !type_holds {
            return false;
        }
        if let Some(choices) = &self.choices
            && !is_one_of(json, kind, choices)
        {
            return false;
        }
        match kind {
            OBJECT => self.object_holds(json),
            ARRAY => self.list_holds(json),
            STRING => self.leaf_holds(json),
            NULL | BOOLEAN => true,
            _ => self.number_holds(json),
        }
    }

    fn object_holds(&self, json: &str) -> bool {
        self.members_hold(|visit| crate::raw::each_member(json, visit), Check::member_holds)
    }

    /// Whether the member `name` holding `value` is certainly valid to this object's schema: to its own, when
    /// `properties` names it, else to `additionalProperties`.
    fn member_holds(&self, name: &str, value: &str) -> bool {
        match self_object(self, name) {
            Some(schema) => schema.holds(value),
            None => self.additional.as_ref().is_none_or(|additional| additional.holds(value)),
        }
    }

    /// Whether the object whose members `each` visits (answering whether it read them all) is certainly valid,
    /// each member checked by `holds`.
    fn members_hold<'a>(
        &self,
        each: impl FnOnce(&mut dyn FnMut(&str, &'a str) -> bool) -> bool,
        holds: impl Fn(&Check, &str, &'a str) -> bool,
    ) -> bool {
        if self.members.is_empty() && self.additional.is_none() {
            return true;
        }
        let mut seen = vec![false; self.members.len()];
        let read = each(&mut |name, value| {
            if let Some(at) = self.members.iter().position(|m| m.name == name) {
                seen[at] = true;
            }
            holds(self, name, value)
        });
        // A member named twice: the last counts, as when the object is parsed; checking every one is stricter.
        read && self.members.iter().zip(&seen).all(|(member, seen)| *seen || !member.required)
    }

    fn list_holds(&self, json: &str) -> bool {
        let mut count = 0usize;
        let read = crate::raw::each_element(json, |element| {
            count += 1;
            self.items.as_ref().is_none_or(|items| items.holds(element))
        });
        read && self.min_items.is_none_or(|min| count >= min) && self.max_items.is_none_or(|max| count <= max)
    }

    fn number_holds(&self, json: &str) -> bool {
        let has_bounds = self.minimum.is_some()
            || self.maximum.is_some()
            || self.exclusive_minimum.is_some()
            || self.exclusive_maximum.is_some();
        if has_bounds {
            // Beyond 2^53 an f64 is not the number written: the full validator compares it exactly.
            let Some(n) = json.parse::<f64>().ok().filter(|n| n.abs() < 9_007_199_254_740_992.0) else { return false };
            let within = self.minimum.is_none_or(|min| n >= min)
                && self.maximum.is_none_or(|max| n <= max)
                && self.exclusive_minimum.is_none_or(|min| n > min)
                && self.exclusive_maximum.is_none_or(|max| n < max);
            if !within {
                return false;
            }
        }
        self.leaf_holds(json)
    }

    /// The [`LEAF`] keywords, given the value alone (a string or a number: a copy of a few bytes).
    fn leaf_holds(&self, json: &str) -> bool {
        match &self.leaf {
            None => true,
            Some(leaf) => serde_json::from_str::<Value>(json).is_ok_and(|value| leaf.is_valid(&value)),
        }
    }
}

/// Whether the raw value `json` (of type `kind`) is certainly one of `choices`: a string, `true`, `false` or
/// `null` compared as written; anything else is left to the full validator.
fn is_one_of(json: &str, kind: u8, choices: &[Value]) -> bool {
    match kind {
        STRING => crate::raw::plain_str(json).is_some_and(|text| choices.iter().any(|c| c.as_str() == Some(text))),
        NULL => choices.iter().any(Value::is_null),
        BOOLEAN => {
            let flag = json == "true";
            choices.iter().any(|c| c.as_bool() == Some(flag))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every answer a precheck gives is the full validator's, on values of every kind and shape.
    #[test]
    fn a_precheck_never_calls_valid_what_the_validator_does_not() {
        let schemas = [
            json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"},
                   "n": {"type": "integer", "minimum": 1, "maximum": 9}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                   "kind": {"enum": ["a", "b", null, true]}, "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5}},
                   "additionalProperties": {"type": ["string", "null"], "maxLength": 3}}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"x": {"const": "k"}},
                   "additionalProperties": false}),
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                   "properties": {"e": {"type": "string", "format": "email"}, "l": {"type": "array", "minItems": 1}}}),
        ];
        let instances = [
            r#"{"id": "abc"}"#,
            r#"{"id": "ABC"}"#,
            r#"{}"#,
            r#"{"id": "a\u0062c"}"#,
            r#"{"id": "abc", "n": 1.0}"#,
            r#"{"id": "abc", "n": 10}"#,
            r#"{"id": "abc", "n": 5}"#,
            r#"{"id": "a", "tags": ["x", "y"]}"#,
            r#"{"id": "a", "tags": ["x", "y", "z"]}"#,
            r#"{"id": "a", "tags": ["x", 1]}"#,
            r#"{"id": "a", "kind": "b"}"#,
            r#"{"id": "a", "kind": "c"}"#,
            r#"{"id": "a", "kind": null}"#,
            r#"{"id": "a", "kind": false}"#,
            r#"{"id": "a", "price": 1.5}"#,
            r#"{"id": "a", "price": 1.25}"#,
            r#"{"id": "a", "price": 0}"#,
            r#"{"id": "a", "other": "abc"}"#,
            r#"{"id": "a", "other": "abcd"}"#,
            r#"{"id": "a", "other": null}"#,
            r#"{"id": "a", "other": 1}"#,
            r#"{"x": "k"}"#,
            r#"{"x": "j"}"#,
            r#"{"x": "k", "y": 1}"#,
            r#"{"e": "a@b.co"}"#,
            r#"{"e": "not an email"}"#,
            r#"{"l": []}"#,
            r#"{"l": [1]}"#,
            r#"[]"#,
            r#""text""#,
            r#"{"id": "a", "id": 1}"#,
            r#"{"id": 1, "id": "a"}"#,
            r#"{"id": "abc", "n": 99999999999999999999}"#,
        ];
        for schema in &schemas {
            let full = compile_schema(schema).unwrap();
            let pre = compile(schema).expect("a schema of keywords prechecks read");
            for instance in instances {
                let value: Value = serde_json::from_str(instance).unwrap();
                if pre.holds(instance) {
                    assert!(full.is_valid(&value), "{schema} called {instance} valid");
                }
            }
        }
        // And the precheck answers valid for what is plainly so, or it saves nothing.
        let pre = compile(&schemas[0]).unwrap();
        assert!(pre.holds(r#"{"id": "abc", "n": 5, "tags": ["x"], "kind": "a", "price": 2.5, "other": "ab"}"#));
        assert!(!pre.holds(r#"{"id": "ABC"}"#));
    }

    #[test]
    fn schemas_with_keywords_it_does_not_read_go_to_the_full_validator() {
        for schema in [
            json!({"allOf": [{"type": "object"}]}),
            json!({"$ref": "#/definitions/x", "definitions": {"x": {}}}),
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}),
            json!({"type": "object", "properties": {"a": {"patternProperties": {"x": {}}}}}),
            json!({"type": "array", "items": [{"type": "string"}]}),
        ] {
            assert!(compile(&schema).is_none(), "{schema}");
        }
    }
}
