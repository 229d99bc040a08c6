//! Reading the current members from a warehouse export.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Identity;
use crate::definition::{Kind, SnapshotConfig};
use crate::diff::Member;

/// A row that could not be used; the rest of the file still is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file.
    pub file: PathBuf,
    /// The row's line number (1 is the first line, the CSV header).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The members of an export, sorted by storage key with each identity once.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The members.
    pub members: Vec<Member>,
    /// Rows that could not be used.
    pub errors: Vec<RowError>,
    /// Rows that repeated an identity already seen; the last one's value counts.
    pub duplicates: u64,
}

/// Why an export could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The CSV could not be read.
    #[error("reading {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV error.
        source: csv::Error,
    },
    /// The CSV header lacks a column the config names.
    #[error("{path}: the header has no column {column:?} (source.{key} in the audience file); it has: {found}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The config key.
        key: &'static str,
        /// The column.
        column: String,
        /// The header's columns.
        found: String,
    },
}

/// What one row gave.
fn member(user: Option<&str>, anonymous: Option<&str>, value: Option<Value>, kind: Kind) -> Result<Member, String> {
    let identity = match (user.filter(|s| !s.is_empty()), anonymous.filter(|s| !s.is_empty())) {
        (Some(user), _) => Identity::User(user.to_owned()),
        (None, Some(anonymous)) => Identity::Anonymous(anonymous.to_owned()),
        (None, None) => return Err("the row has neither a user ID nor an anonymous ID".to_owned()),
    };
    let value = match kind {
        Kind::Audience => "true".to_owned(),
        Kind::Trait => match value {
            None | Some(Value::Null) => return Err("the row has no value for the trait".to_owned()),
            Some(Value::String(s)) if s.is_empty() => return Err("the row has no value for the trait".to_owned()),
            Some(value) => value.to_string(),
        },
    };
    Ok(Member { key: identity.storage_key().into(), value: value.into() })
}

/// A CSV cell as a trait value: JSON when it parses as a number, boolean or JSON document, else the text.
fn cell_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Reads the export at `path` (resolved by the caller) for a computation of `kind`: CSV by its extension, else
/// NDJSON. Rows that cannot be read are reported with their line and skipped; members come out sorted by identity,
/// once each (the last row of an identity wins).
pub fn read(path: &Path, config: &SnapshotConfig, kind: Kind) -> Result<Snapshot, SnapshotError> {
    let mut snapshot = Snapshot::default();
    let mut fail = |line: u64, message: String| snapshot.errors.push(RowError { file: path.to_owned(), line, message });
    let mut members = match path.extension().is_some_and(|e| e == "csv") {
        true => read_csv(path, config, kind, &mut fail)?,
        false => read_ndjson(path, config, kind, &mut fail)?,
    };
    // A stable sort keeps file order among equal keys, so the dedup below keeps the last row's value.
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let before = members.len();
    members.dedup_by(|later, earlier| {
        if later.key == earlier.key {
            std::mem::swap(&mut earlier.value, &mut later.value);
            true
        } else {
            false
        }
    });
    snapshot.duplicates = (before - members.len()) as u64;
    snapshot.members = members;
    Ok(snapshot)
}

/// The members of a CSV export. The file is read twice: counting its rows first sizes the vector exactly, since
/// growing it by doubling would briefly hold two copies, which is what decides the peak memory of a
/// ten-million-member sync.
fn read_csv(
    path: &Path,
    config: &SnapshotConfig,
    kind: Kind,
    fail: &mut dyn FnMut(u64, String),
) -> Result<Vec<Member>, SnapshotError> {
    let csv_error = |source| SnapshotError::Csv { path: path.to_owned(), source };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(csv_error)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0usize;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => rows += 1,
            Ok(false) => break,
            // An IO error would repeat; the reading pass reports it.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => break,
            // The reading pass reports bad rows; here they only need counting.
            Err(_) => rows += 1,
        }
    }
    let mut members = Vec::with_capacity(rows);
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |key: &'static str, name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| SnapshotError::MissingColumn {
            path: path.to_owned(),
            key,
            column: name.to_owned(),
            found: headers.iter().collect::<Vec<_>>().join(", "),
        })
    };
    let user = column("user_id_column", &config.user_id_column).ok();
    let anonymous = column("anonymous_id_column", &config.anonymous_id_column).ok();
    if user.is_none() && anonymous.is_none() {
        return Err(column("user_id_column", &config.user_id_column).unwrap_err());
    }
    let value = match (&config.value_column, kind) {
        (Some(name), Kind::Trait) => Some(column("value_column", name)?),
        _ => None,
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let cell = |index: Option<usize>| index.and_then(|i| record.get(i));
                match member(cell(user), cell(anonymous), cell(value).map(cell_value), kind) {
                    Ok(m) => members.push(m),
                    Err(message) => fail(line, message),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                fail(line, format!("not a CSV row: {e}"));
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    Ok(members)
}

/// The members of an NDJSON export, read once: the line count of the text in memory sizes the vector.
fn read_ndjson(
    path: &Path,
    config: &SnapshotConfig,
    kind: Kind,
    fail: &mut dyn FnMut(u64, String),
) -> Result<Vec<Member>, SnapshotError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Io { path: path.to_owned(), source })?;
    let rows = text.lines().filter(|l| !l.trim().is_empty()).count();
    let mut members = Vec::with_capacity(rows);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let number = index as u64 + 1;
        let row: Value = match serde_json::from_str(line) {
            Ok(Value::Object(row)) => Value::Object(row),
            Ok(_) => {
                fail(number, "the line is not a JSON object".to_owned());
                continue;
            }
            Err(e) => {
                fail(number, format!("invalid JSON: {e}"));
                continue;
            }
        };
        let text_of = |name: &str| match &row[name] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let value = config.value_column.as_deref().map(|name| row[name].clone());
        match member(
            text_of(&config.user_id_column).as_deref(),
            text_of(&config.anonymous_id_column).as_deref(),
            value,
            kind,
        ) {
            Ok(m) => members.push(m),
            Err(message) => fail(number, message),
        }
    }
    Ok(members)
}
