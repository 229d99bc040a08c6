//! The syntax tree of a parsed FQL condition, and the values it works on.

use serde_json::Value;

use super::glob::Glob;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// The functions of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `contains(s, sub)`
    Contains,
    /// `match(s, pattern)`
    Match,
    /// `length(list or string)`: elements, or bytes.
    Length,
    /// `lowercase(s)`
    Lowercase,
    /// `uppercase(s)`
    Uppercase,
    /// `snakecase(s)`: spaces to `_`.
    Snakecase,
    /// `kebabcase(s)`: spaces to `-`.
    Kebabcase,
    /// `titlecase(s)`: each space-separated word's first letter upper-cased.
    Titlecase,
    /// `typeof(v)`
    Typeof,
    /// `bool(v)`
    Bool,
    /// `string(v)`
    String,
    /// `number(v)`
    Number,
}

impl Func {
    pub(super) fn named(name: &str) -> Option<Func> {
        Some(match name {
            "contains" => Func::Contains,
            "match" => Func::Match,
            "length" => Func::Length,
            "lowercase" => Func::Lowercase,
            "uppercase" => Func::Uppercase,
            "snakecase" => Func::Snakecase,
            "kebabcase" => Func::Kebabcase,
            "titlecase" => Func::Titlecase,
            "typeof" => Func::Typeof,
            "bool" => Func::Bool,
            "string" => Func::String,
            "number" => Func::Number,
            _ => return None,
        })
    }

    pub(super) fn arity(self) -> usize {
        match self {
            Func::Contains | Func::Match => 2,
            _ => 1,
        }
    }
}

/// An FQL value: what a path, a literal or a function gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `null`, and any path the message does not have.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Val>),
    /// A JSON object, which FQL has no type for: only compared whole.
    Object(serde_json::Map<String, Value>),
}

impl Val {
    /// The value of some JSON.
    pub fn of(value: &Value) -> Val {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Val::Str(s.clone()),
            Value::Array(items) => Val::List(items.iter().map(Val::of).collect()),
            Value::Object(map) => Val::Object(map.clone()),
        }
    }

    /// The value of the raw JSON `json` (as a message holds it): a string, number, boolean or `null` read straight
    /// from its text; a list or an object parsed.
    pub fn of_raw(json: &str) -> Val {
        match json.as_bytes().first() {
            Some(b'"') => match crate::raw::plain_str(json) {
                Some(text) => Val::Str(text.to_owned()),
                None => serde_json::from_str(json).map_or(Val::Null, Val::Str),
            },
            Some(b't') => Val::Bool(true),
            Some(b'f') => Val::Bool(false),
            Some(b'n') => Val::Null,
            Some(b'{' | b'[') => Val::of(&crate::raw::parse(json)),
            _ => json.parse::<f64>().map_or(Val::Null, Val::Num),
        }
    }

    /// `typeof`'s answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "bool",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Object(_) => "object",
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Literal(Val),
    /// A dotted path into the message.
    Path(Vec<String>),
    /// A path bound to a place in the values read for a set of conditions ([`super::Condition::bind`]).
    Slot(usize, Vec<String>),
    /// `[a, b]`
    List(Vec<Expr>),
    /// `!x`
    Not(Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `a OP b`
    Compare(Op, Box<Expr>, Box<Expr>),
    /// `a in b`
    In(Box<Expr>, Box<Expr>),
    /// A function call.
    Call(Func, Vec<Expr>),
    /// `match(s, 'literal pattern')`, its pattern compiled when parsed.
    Match(Box<Expr>, Glob),
    /// `contains(s, 'literal')`, its substring prepared for searching when parsed.
    Contains(Box<Expr>, Box<Needle>),
}

/// A substring `contains()` looks for, prepared once for searching.
#[derive(Debug, Clone)]
pub struct Needle {
    text: String,
    finder: memchr::memmem::Finder<'static>,
}

impl Needle {
    /// Prepares `text`.
    pub fn new(text: &str) -> Needle {
        Needle { text: text.to_owned(), finder: memchr::memmem::Finder::new(text.as_bytes()).into_owned() }
    }

    /// Whether `haystack` holds it.
    pub fn is_in(&self, haystack: &str) -> bool {
        self.finder.find(haystack.as_bytes()).is_some()
    }

    /// The substring.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Needle {
    fn eq(&self, other: &Needle) -> bool {
        self.text == other.text
    }
}
