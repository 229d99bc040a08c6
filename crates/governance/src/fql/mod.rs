//! Segment's Destination Filter Query Language: a condition parsed once ([`Condition::parse`]), then evaluated on
//! each message ([`Condition::eval`]) in time linear in the message.
//!
//! As its reference defines it: dotted paths (other characters escaped with `\`), `=`, `!=`, `<`, `<=`, `>`, `>=`,
//! `in` a list, `and`, `or`, `!`, parentheses, single-quoted strings, numbers, `true`, `false`, `null`, and the
//! functions `contains`, `match`, `length`, `lowercase`, `uppercase`, `snakecase`, `kebabcase`, `titlecase`,
//! `typeof`, `bool`, `string` and `number`, with the reference's null defaults. Where the reference is silent this
//! module decides, and says so at the place: a JSON object (FQL has no object type) is `typeof` `"object"` and equal
//! only to an equal object; ordering operators on anything but two numbers are false; `!null` is true.

mod ast;
mod glob;
mod parse;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub use ast::{Expr, Func, Op, Val};
pub use glob::Glob;
pub use parse::{ParseError, field_path};

/// Why a condition could not be evaluated on a message: the message is dropped, as Segment drops it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Where paths are looked up: a message's fields.
pub trait Fields {
    /// The value at `path` (a top-level field and the members below it), if there is one.
    fn value_at(&self, path: &[String]) -> Option<Cow<'_, Val>>;

    /// The value at the path bound to `slot` (by [`Condition::bind`] to the tree these fields were read for), or
    /// `None` when these fields know no slots and the path must be looked up.
    fn slot(&self, _slot: usize) -> Option<Option<Cow<'_, Val>>> {
        None
    }
}

impl Fields for segment_model::Message {
    /// Read from the message's raw JSON: only the value found is parsed, the objects on the way are scanned.
    fn value_at(&self, path: &[String]) -> Option<Cow<'_, Val>> {
        let (top, rest) = path.split_first()?;
        let raw = match rest.split_first() {
            None => self.raw(top)?.get(),
            Some((first, deeper)) => crate::raw::at_path(self.object_member(top, first)?, deeper)?,
        };
        Some(Cow::Owned(Val::of_raw(raw)))
    }
}

impl Fields for serde_json::Map<String, Value> {
    fn value_at(&self, path: &[String]) -> Option<Cow<'_, Val>> {
        tree_at(self.get(path.first()?)?, &path[1..]).map(|value| Cow::Owned(Val::of(value)))
    }
}

/// The value at `path` below `value`.
fn tree_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = value;
    for segment in path {
        at = at.as_object()?.get(segment)?;
    }
    Some(at)
}

/// The paths some conditions read, as a tree of their segments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathTree {
    /// Every path, once; a node where one ends holds its position here.
    paths: Vec<Vec<String>>,
    root: PathNode,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct PathNode {
    children: BTreeMap<String, PathNode>,
    /// The path that ends here, if one does: the value here is read whole.
    ends: Option<usize>,
}

impl PathTree {
    /// The tree of `paths`.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a [String]>) -> PathTree {
        let mut tree = PathTree::default();
        for path in paths {
            let mut at = &mut tree.root;
            for segment in path {
                at = at.children.entry(segment.clone()).or_default();
            }
            if at.ends.is_none() {
                at.ends = Some(tree.paths.len());
                tree.paths.push(path.to_vec());
            }
        }
        tree
    }
}

/// The values at the paths of a [`PathTree`] in one message, each object on the way scanned once for all the
/// members read from it: conditions that read several fields of `context` cost one pass over it, not one a field.
#[derive(Debug)]
pub struct Prefetched<'t> {
    tree: &'t PathTree,
    values: Vec<Option<Val>>,
}

impl<'t> Prefetched<'t> {
    /// Reads the values at `tree`'s paths in `message`.
    pub fn read(message: &segment_model::Message, tree: &'t PathTree) -> Prefetched<'t> {
        let mut fetched = Prefetched { tree, values: vec![None; tree.paths.len()] };
        for (name, node) in &tree.root.children {
            // The members of `context`, `properties` and `traits` the message keeps, when only members are read.
            let members = if node.ends.is_none() { message.object_members(name) } else { None };
            if let Some(members) = members {
                // One walk over the members, from the last: a member sent twice counts once, the last, as a
                // parser takes it.
                let mut read = vec![false; node.children.len()];
                for (key, raw) in members.rev() {
                    if let Some(at) = node.children.keys().position(|k| k == key)
                        && !std::mem::replace(&mut read[at], true)
                    {
                        let child = node.children.values().nth(at).expect("a child at a found position");
                        fetched.read_raw(raw, child);
                    }
                }
            } else if let Some(raw) = message.raw(name) {
                fetched.read_raw(raw.get(), node);
            }
        }
        fetched
    }

    fn read_raw(&mut self, raw: &str, node: &PathNode) {
        if let (Some(at), true) = (node.ends, node.children.is_empty()) {
            self.values[at] = Some(Val::of_raw(raw));
            return;
        }
        if let Some(at) = node.ends {
            let value = crate::raw::parse(raw);
            self.read_tree(&value, node);
            self.values[at] = Some(Val::of(&value));
            return;
        }
        let names: Vec<&str> = node.children.keys().map(String::as_str).collect();
        for (child, found) in node.children.values().zip(crate::raw::members(raw, &names)) {
            if let Some(found) = found {
                self.read_raw(found, child);
            }
        }
    }

    /// The paths below a value read whole, from the tree already built.
    fn read_tree(&mut self, value: &Value, node: &PathNode) {
        for (name, child) in &node.children {
            if let Some(found) = value.as_object().and_then(|object| object.get(name)) {
                self.read_tree(found, child);
                if let Some(at) = child.ends {
                    self.values[at] = Some(Val::of(found));
                }
            }
        }
    }
}

impl Fields for Prefetched<'_> {
    fn slot(&self, slot: usize) -> Option<Option<Cow<'_, Val>>> {
        self.values.get(slot).map(|value| value.as_ref().map(Cow::Borrowed))
    }

    fn value_at(&self, path: &[String]) -> Option<Cow<'_, Val>> {
        let at = self.tree.paths.iter().position(|p| p == path)?;
        self.values[at].as_ref().map(Cow::Borrowed)
    }
}

/// A condition, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    expr: Expr,
}

impl Condition {
    /// Parses `text`, or says where it is wrong.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        parse::parse(text).map(|expr| Condition { expr })
    }

    /// Whether the condition holds for `message`: `null` is false; anything but a boolean or `null` is an error.
    pub fn eval(&self, message: &dyn Fields) -> Result<bool, EvalError> {
        match eval(&self.expr, message)? {
            Val::Bool(b) => Ok(b),
            Val::Null => Ok(false),
            other => Err(EvalError(format!("the condition gives a {}, not true or false", other.type_name()))),
        }
    }

    /// Binds each path the condition reads to its place in `tree` (which must hold them all), so that values
    /// read for the tree ([`Prefetched`]) are found without comparing paths.
    pub fn bind(&mut self, tree: &PathTree) {
        bind(&mut self.expr, tree);
    }

    /// Every path the condition reads.
    pub fn paths(&self) -> Vec<&[String]> {
        let mut paths = Vec::new();
        paths_of(&self.expr, &mut paths);
        paths
    }

    /// The value of the condition for `message`, whatever its type (for tests and `filters test`).
    pub fn value(&self, message: &dyn Fields) -> Result<Val, EvalError> {
        eval(&self.expr, message)
    }
}

/// The value at `path` in `message`, `Null` where it has none.
fn lookup(path: &[String], message: &dyn Fields) -> Val {
    message.value_at(path).map_or(Val::Null, Cow::into_owned)
}

/// An operand's value, borrowed where it can be (a literal, a value already read): comparing `type = 'track'` copies
/// neither side.
fn operand<'e>(expr: &'e Expr, message: &'e dyn Fields) -> Result<Cow<'e, Val>, EvalError> {
    Ok(match expr {
        Expr::Literal(value) => Cow::Borrowed(value),
        Expr::Path(path) => message.value_at(path).unwrap_or(Cow::Owned(Val::Null)),
        Expr::Slot(at, path) => slot(*at, path, message).unwrap_or(Cow::Owned(Val::Null)),
        other => Cow::Owned(eval(other, message)?),
    })
}

fn bind(expr: &mut Expr, tree: &PathTree) {
    match expr {
        Expr::Path(path) => {
            if let Some(slot) = tree.paths.iter().position(|p| p == path) {
                *expr = Expr::Slot(slot, std::mem::take(path));
            }
        }
        Expr::Literal(_) | Expr::Slot(..) => {}
        Expr::List(items) | Expr::Call(_, items) => items.iter_mut().for_each(|e| bind(e, tree)),
        Expr::Not(inner) | Expr::Match(inner, _) | Expr::Contains(inner, _) => bind(inner, tree),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) | Expr::In(a, b) => {
            bind(a, tree);
            bind(b, tree);
        }
    }
}

/// The value at a bound path.
fn slot<'e>(slot: usize, path: &[String], message: &'e dyn Fields) -> Option<Cow<'e, Val>> {
    match message.slot(slot) {
        Some(value) => value,
        None => message.value_at(path),
    }
}

/// Adds the paths `expr` reads to `paths`.
fn paths_of<'a>(expr: &'a Expr, paths: &mut Vec<&'a [String]>) {
    match expr {
        Expr::Literal(_) => {}
        Expr::Path(path) | Expr::Slot(_, path) => paths.push(path),
        Expr::List(items) | Expr::Call(_, items) => items.iter().for_each(|e| paths_of(e, paths)),
        Expr::Not(inner) | Expr::Match(inner, _) | Expr::Contains(inner, _) => paths_of(inner, paths),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) | Expr::In(a, b) => {
            paths_of(a, paths);
            paths_of(b, paths);
        }
    }
}

/// `and` and `or` take booleans and `null` (as false).
fn truth(value: Val, operator: &str) -> Result<bool, EvalError> {
    match value {
        Val::Bool(b) => Ok(b),
        Val::Null => Ok(false),
        other => Err(EvalError(format!("{operator} takes true, false or null, not a {}", other.type_name()))),
    }
}

fn eval(expr: &Expr, message: &dyn Fields) -> Result<Val, EvalError> {
    Ok(match expr {
        Expr::Literal(value) => value.clone(),
        Expr::Path(path) => lookup(path, message),
        Expr::Slot(at, path) => slot(*at, path, message).map_or(Val::Null, Cow::into_owned),
        Expr::List(items) => Val::List(items.iter().map(|e| eval(e, message)).collect::<Result<_, _>>()?),
        Expr::Not(inner) => match eval(inner, message)? {
            Val::Bool(b) => Val::Bool(!b),
            // The reference is silent: a missing value negated is true, as `!` of a false-like value.
            Val::Null => Val::Bool(true),
            other => return Err(EvalError(format!("! takes true or false, not a {}", other.type_name()))),
        },
        Expr::And(left, right) => {
            Val::Bool(truth(eval(left, message)?, "and")? && truth(eval(right, message)?, "and")?)
        }
        Expr::Or(left, right) => Val::Bool(truth(eval(left, message)?, "or")? || truth(eval(right, message)?, "or")?),
        Expr::Compare(op, left, right) => {
            let (left, right) = (operand(left, message)?, operand(right, message)?);
            Val::Bool(compare(*op, &left, &right))
        }
        Expr::In(needle, list) => match &*operand(list, message)? {
            Val::List(items) => {
                let needle = operand(needle, message)?;
                Val::Bool(items.contains(&needle))
            }
            // A missing list holds nothing.
            Val::Null => Val::Bool(false),
            other => return Err(EvalError(format!("in takes a list on its right, not a {}", other.type_name()))),
        },
        Expr::Contains(subject, needle) => match &*operand(subject, message)? {
            Val::Str(s) => Val::Bool(needle.is_in(s)),
            Val::Null => Val::Bool(false),
            other => {
                return Err(EvalError(format!(
                    "contains() takes two strings, not a {} and a string",
                    other.type_name()
                )));
            }
        },
        Expr::Match(subject, glob) => match &*operand(subject, message)? {
            Val::Str(s) => Val::Bool(glob.is_match(s)),
            Val::Null => Val::Bool(false),
            other => return Err(EvalError(format!("match() takes a string, not a {}", other.type_name()))),
        },
        Expr::Call(func, args) => {
            let first = operand(&args[0], message)?;
            let second = args.get(1).map(|arg| operand(arg, message)).transpose()?;
            call(*func, &first, second.as_deref())?
        }
    })
}

/// `=` is true when both sides are the same type and strictly equal; the ordering operators compare two numbers,
/// and are false for anything else.
fn compare(op: Op, left: &Val, right: &Val) -> bool {
    match op {
        Op::Eq => left == right,
        Op::Ne => left != right,
        _ => match (left, right) {
            (Val::Num(a), Val::Num(b)) => match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a >= b,
            },
            _ => false,
        },
    }
}

/// A string function's argument: `null` stays `null`.
fn text(func: &str, value: &Val, apply: impl FnOnce(&str) -> String) -> Result<Val, EvalError> {
    match value {
        Val::Str(s) => Ok(Val::Str(apply(s))),
        Val::Null => Ok(Val::Null),
        other => Err(EvalError(format!("{func}() takes a string, not a {}", other.type_name()))),
    }
}

/// A function of one argument (`second` is `None`) or two (the parser checked the count).
fn call(func: Func, first: &Val, second: Option<&Val>) -> Result<Val, EvalError> {
    let second = || second.unwrap_or(&Val::Null);
    Ok(match func {
        Func::Contains => match (first, second()) {
            (Val::Str(s), Val::Str(sub)) => Val::Bool(s.contains(sub.as_str())),
            (Val::Null, _) => Val::Bool(false),
            (s, sub) => {
                return Err(EvalError(format!(
                    "contains() takes two strings, not a {} and a {}",
                    s.type_name(),
                    sub.type_name()
                )));
            }
        },
        Func::Match => match (first, second()) {
            (Val::Str(s), Val::Str(pattern)) => Val::Bool(Glob::new(pattern).map_err(EvalError)?.is_match(s)),
            (Val::Null, _) => Val::Bool(false),
            (s, p) => {
                return Err(EvalError(format!(
                    "match() takes two strings, not a {} and a {}",
                    s.type_name(),
                    p.type_name()
                )));
            }
        },
        Func::Length => match first {
            Val::Str(s) => Val::Num(s.len() as f64),
            Val::List(items) => Val::Num(items.len() as f64),
            Val::Null => Val::Num(0.0),
            other => return Err(EvalError(format!("length() takes a list or a string, not a {}", other.type_name()))),
        },
        Func::Lowercase => text("lowercase", first, str::to_lowercase)?,
        Func::Uppercase => text("uppercase", first, str::to_uppercase)?,
        Func::Snakecase => text("snakecase", first, |s| s.replace(' ', "_"))?,
        Func::Kebabcase => text("kebabcase", first, |s| s.replace(' ', "-"))?,
        Func::Titlecase => text("titlecase", first, titlecase)?,
        Func::Typeof => Val::Str(first.type_name().to_owned()),
        Func::Bool => Val::Bool(to_bool(first)),
        Func::String => Val::Str(to_string(first)),
        Func::Number => to_number(first)?,
    })
}

fn titlecase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        match start {
            true => out.extend(c.to_uppercase()),
            false => out.push(c),
        }
        start = c == ' ';
    }
    out
}

/// `bool()`: a string is `true` or `false` as written (any case), else true when not empty; a number when not 0;
/// a list when not empty; `null` is false.
fn to_bool(value: &Val) -> bool {
    match value {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Num(n) => *n != 0.0,
        Val::Str(s) if s.eq_ignore_ascii_case("false") => false,
        Val::Str(s) => !s.is_empty(),
        Val::List(items) => !items.is_empty(),
        Val::Object(map) => !map.is_empty(),
    }
}

/// `string()`: a number as written without a needless `.0`, a list or an object as JSON, `null` as `""`.
fn to_string(value: &Val) -> String {
    match value {
        Val::Null => String::new(),
        Val::Bool(b) => b.to_string(),
        Val::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        Val::Num(n) => n.to_string(),
        Val::Str(s) => s.clone(),
        Val::List(_) | Val::Object(_) => to_json(value).to_string(),
    }
}

fn to_json(value: &Val) -> Value {
    match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Val::Str(s) => Value::String(s.clone()),
        Val::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Val::Object(map) => Value::Object(map.clone()),
    }
}

/// `number()`: a number as it is, a string parsed (surrounding spaces allowed), `null` stays `null`.
fn to_number(value: &Val) -> Result<Val, EvalError> {
    match value {
        Val::Num(n) => Ok(Val::Num(*n)),
        Val::Null => Ok(Val::Null),
        Val::Str(s) => s
            .trim()
            .parse::<f64>()
            .map(Val::Num)
            .map_err(|_| EvalError(format!("number() cannot read {s:?} as a number"))),
        other => Err(EvalError(format!("number() takes a number or a string, not a {}", other.type_name()))),
    }
}
