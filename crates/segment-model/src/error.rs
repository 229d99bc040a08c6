//! Errors: each names the field that is wrong and what is wrong with it.

use std::fmt;

/// What is wrong with one field of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The field is required and absent (or `null`).
    Missing,
    /// The field is present but an empty string.
    Empty,
    /// The field has the wrong JSON type.
    WrongType {
        /// What Segment expects here, for example "a string or a number".
        expected: &'static str,
        /// The JSON type that was found.
        found: &'static str,
    },
    /// The field is longer than Segment allows.
    TooLong {
        /// The limit in characters.
        max: usize,
        /// The length that was found, in characters.
        actual: usize,
    },
    /// The field is not an ISO-8601 date-time.
    NotATimestamp(String),
    /// `type` names no Segment call.
    UnknownType(String),
    /// `type` disagrees with the endpoint the message was posted to.
    TypeMismatch {
        /// The type the endpoint implies.
        expected: &'static str,
        /// The type the body names.
        found: String,
    },
}

impl Problem {
    /// A short, stable name of the kind of problem, for metric labels: `missing`, `wrong_type`.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::Empty => "empty",
            Problem::WrongType { .. } => "wrong_type",
            Problem::TooLong { .. } => "too_long",
            Problem::NotATimestamp(_) => "not_a_timestamp",
            Problem::UnknownType(_) => "unknown_type",
            Problem::TypeMismatch { .. } => "type_mismatch",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("is required"),
            Problem::Empty => f.write_str("must not be empty"),
            Problem::WrongType { expected, found } => write!(f, "must be {expected}, found {found}"),
            Problem::TooLong { max, actual } => {
                write!(f, "is {actual} characters long, more than the {max} allowed")
            }
            Problem::NotATimestamp(value) => write!(f, "{value:?} is not an ISO-8601 date-time"),
            Problem::UnknownType(value) => {
                write!(f, "{value:?} is not a Segment call type (track, identify, page, screen, group, alias)")
            }
            Problem::TypeMismatch { expected, found } => {
                write!(f, "is {found:?} but the endpoint takes {expected:?}")
            }
        }
    }
}

/// A message that is well-formed JSON but breaks one of Segment's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field at fault, as a JSON path relative to the message (`userId`, `context.traits`).
    /// For a rule that involves two fields it names both (`userId or anonymousId`).
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, problem: Problem) -> Self {
        ValidationError { field: field.into(), problem }
    }
}

/// Why bytes could not be turned into a [`crate::Message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes are larger than Segment's per-message limit.
    #[error("message is {size} bytes, more than the {max} bytes Segment allows")]
    TooLarge {
        /// The size that was found, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The bytes are not valid JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        /// One-based line of the first error.
        line: usize,
        /// One-based column of the first error.
        column: usize,
        /// serde_json's description of the error.
        message: String,
    },
    /// Arrays and objects nest deeper than [`crate::MAX_DEPTH`] levels.
    #[error("invalid JSON: arrays and objects nest more than {max} levels deep")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The JSON is valid but not an object.
    #[error("a message must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// The object breaks one of Segment's rules.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl ParseError {
    /// A short, stable name of the kind of error, for metric labels: the problem's code for an invalid message.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::TooLarge { .. } => "too_large",
            ParseError::InvalidJson { .. } => "invalid_json",
            ParseError::TooDeep { .. } => "too_deep",
            ParseError::NotAnObject(_) => "not_an_object",
            ParseError::Invalid(invalid) => invalid.problem.code(),
        }
    }

    /// The error for bytes serde_json could not parse, with its line and column.
    pub fn from_serde(error: &serde_json::Error) -> Self {
        ParseError::from_json(error)
    }

    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; we report the position in fields instead.
        let full = error.to_string();
        let message = match full.rfind(" at line ") {
            Some(cut) => full[..cut].to_owned(),
            None => full,
        };
        ParseError::InvalidJson { line: error.line(), column: error.column(), message }
    }
}
