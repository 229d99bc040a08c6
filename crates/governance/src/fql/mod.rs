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

use serde_json::Value;

pub use ast::{Expr, Func, Op, Val};
pub use glob::Glob;
pub use parse::{ParseError, field_path};

/// Why a condition could not be evaluated on a message: the message is dropped, as Segment drops it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Where paths are looked up: the top-level fields of a message.
pub trait Fields {
    /// The top-level field `name`, parsed, if the message has it.
    fn field(&self, name: &str) -> Option<Value>;
}

impl Fields for segment_model::Message {
    fn field(&self, name: &str) -> Option<Value> {
        self.get(name)
    }
}

impl Fields for serde_json::Map<String, Value> {
    fn field(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
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

    /// The value of the condition for `message`, whatever its type (for tests and `filters test`).
    pub fn value(&self, message: &dyn Fields) -> Result<Val, EvalError> {
        eval(&self.expr, message)
    }
}

/// The value at `path` in `message`, `Null` where it has none.
fn lookup(path: &[String], message: &dyn Fields) -> Val {
    let Some(top) = message.field(&path[0]) else { return Val::Null };
    let mut at = &top;
    for segment in &path[1..] {
        match at {
            Value::Object(map) => match map.get(segment) {
                Some(next) => at = next,
                None => return Val::Null,
            },
            _ => return Val::Null,
        }
    }
    Val::of(at)
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
        Expr::Compare(op, left, right) => Val::Bool(compare(*op, &eval(left, message)?, &eval(right, message)?)),
        Expr::In(needle, list) => match eval(list, message)? {
            Val::List(items) => {
                let needle = eval(needle, message)?;
                Val::Bool(items.contains(&needle))
            }
            // A missing list holds nothing.
            Val::Null => Val::Bool(false),
            other => return Err(EvalError(format!("in takes a list on its right, not a {}", other.type_name()))),
        },
        Expr::Match(subject, glob) => match eval(subject, message)? {
            Val::Str(s) => Val::Bool(glob.is_match(&s)),
            Val::Null => Val::Bool(false),
            other => return Err(EvalError(format!("match() takes a string, not a {}", other.type_name()))),
        },
        Expr::Call(func, args) => {
            let values = args.iter().map(|a| eval(a, message)).collect::<Result<Vec<_>, _>>()?;
            call(*func, values)?
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
fn text(func: &str, value: Val, apply: impl FnOnce(String) -> String) -> Result<Val, EvalError> {
    match value {
        Val::Str(s) => Ok(Val::Str(apply(s))),
        Val::Null => Ok(Val::Null),
        other => Err(EvalError(format!("{func}() takes a string, not a {}", other.type_name()))),
    }
}

fn call(func: Func, mut args: Vec<Val>) -> Result<Val, EvalError> {
    let first = args.remove(0);
    Ok(match func {
        Func::Contains => match (first, args.remove(0)) {
            (Val::Str(s), Val::Str(sub)) => Val::Bool(s.contains(&sub)),
            (Val::Null, _) => Val::Bool(false),
            (s, sub) => {
                return Err(EvalError(format!(
                    "contains() takes two strings, not a {} and a {}",
                    s.type_name(),
                    sub.type_name()
                )));
            }
        },
        Func::Match => match (first, args.remove(0)) {
            (Val::Str(s), Val::Str(pattern)) => Val::Bool(Glob::new(&pattern).map_err(EvalError)?.is_match(&s)),
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
        Func::Lowercase => text("lowercase", first, |s| s.to_lowercase())?,
        Func::Uppercase => text("uppercase", first, |s| s.to_uppercase())?,
        Func::Snakecase => text("snakecase", first, |s| s.replace(' ', "_"))?,
        Func::Kebabcase => text("kebabcase", first, |s| s.replace(' ', "-"))?,
        Func::Titlecase => text("titlecase", first, |s| titlecase(&s))?,
        Func::Typeof => Val::Str(first.type_name().to_owned()),
        Func::Bool => Val::Bool(to_bool(&first)),
        Func::String => Val::Str(to_string(&first)),
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
fn to_number(value: Val) -> Result<Val, EvalError> {
    match value {
        Val::Num(n) => Ok(Val::Num(n)),
        Val::Null => Ok(Val::Null),
        Val::Str(s) => s
            .trim()
            .parse::<f64>()
            .map(Val::Num)
            .map_err(|_| EvalError(format!("number() cannot read {s:?} as a number"))),
        other => Err(EvalError(format!("number() takes a number or a string, not a {}", other.type_name()))),
    }
}
