//! Where an export's rows come from: its parts (a file, a folder, a glob), their format, and the rows in them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::config::SnapshotConfig;
use super::error::SnapshotError;
use crate::Identity;
use crate::diff::Member;
use crate::kind::Kind;

/// How a part is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet, as Snowflake, BigQuery, Redshift and Spark unload it.
    Parquet,
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Whether it is gzip-compressed (`.gz`).
    pub gzip: bool,
}

impl Format {
    /// The format of a file name (`members.csv`, `part-0001.ndjson.gz`), or why it has none.
    pub fn of_name(name: &str) -> Result<(Format, bool), String> {
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        match stem.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).as_deref() {
            Some("csv") => Ok((Format::Csv, gzip)),
            Some("ndjson" | "jsonl" | "json") => Ok((Format::Ndjson, gzip)),
            // Parquet compresses inside the file, by column.
            Some("parquet") if !gzip => Ok((Format::Parquet, false)),
            Some("parquet") => Err(format!("{name:?}: a Parquet file compresses itself; give it without .gz")),
            _ => Err(format!("{name:?} is neither .csv, .ndjson (either optionally .gz) nor .parquet")),
        }
    }

    /// Whether `path` (from an audience file) names something an export can be read from: a file of a known
    /// format, a glob of them, or a folder (a last component without an extension).
    pub fn of(path: &Path) -> Result<(), String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.is_empty() || !name.contains('.') {
            return Ok(());
        }
        Format::of_name(name).map(|_| ()).map_err(|e| format!("{e}; or give a folder or a glob of such parts"))
    }
}

/// Whether `name` matches the glob `pattern` of `*` (any run of characters) and `?` (one character): the one
/// matcher for local parts and (through `s3-export`, which is handed it) S3 keys.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    matches(&pattern, &name.chars().collect::<Vec<_>>())
}

fn matches(pattern: &[char], name: &[char]) -> bool {
    // Only the last `*` seen ever takes more characters, so the work is at most the product of the lengths, never
    // exponential in the number of stars.
    let (mut p, mut n, mut star, mut resume) = (0, 0, None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            resume = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            resume += 1;
            n = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The parts of the export at `path`: the file itself; every file of a folder (except hidden ones and markers
/// such as Spark's `_SUCCESS`); or the files a glob in the last component matches. In name order, which is the
/// order warehouses number their parts.
pub fn locate(path: &Path) -> Result<Vec<Part>, SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SnapshotError::Io { path, source }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (dir, pattern): (&Path, Option<Vec<char>>) = if name.contains(['*', '?']) {
        (path.parent().unwrap_or(Path::new(".")), Some(name.chars().collect()))
    } else if path.is_dir() {
        (path, None)
    } else {
        let (format, gzip) =
            Format::of_name(name).map_err(|message| SnapshotError::Parts { path: path.into(), message })?;
        return Ok(vec![Part { path: path.to_owned(), format, gzip }]);
    };
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let wanted = match &pattern {
            Some(pattern) => matches(pattern, &file_name.chars().collect::<Vec<_>>()),
            None => !file_name.starts_with(['.', '_']),
        };
        if !wanted || !entry.file_type().map_err(io(&entry.path()))?.is_file() {
            continue;
        }
        let (format, gzip) =
            Format::of_name(&file_name).map_err(|message| SnapshotError::Parts { path: entry.path(), message })?;
        parts.push(Part { path: entry.path(), format, gzip });
    }
    if parts.is_empty() {
        return Err(SnapshotError::Parts { path: path.to_owned(), message: "matches no export file".to_owned() });
    }
    parts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(parts)
}

/// The member a row makes, or why it makes none.
fn member(
    user: Option<&str>,
    anonymous: Option<&str>,
    group: Option<&str>,
    value: Option<Value>,
    kind: Kind,
) -> Result<Member, String> {
    let mut identity = match (user.filter(|s| !s.is_empty()), anonymous.filter(|s| !s.is_empty())) {
        (Some(user), _) => Identity::User(user.to_owned()),
        (None, Some(anonymous)) => Identity::Anonymous(anonymous.to_owned()),
        (None, None) => return Err("the row has neither a user ID nor an anonymous ID".to_owned()),
    };
    if kind == Kind::AccountTrait {
        match group.filter(|g| !g.is_empty()) {
            Some(group) => identity = Identity::Account { group: group.to_owned(), user: Box::new(identity) },
            None => return Err("the row has no account ID (group_id_column)".to_owned()),
        }
    }
    let value = match kind {
        Kind::Audience => "true".to_owned(),
        Kind::Trait | Kind::AccountTrait => match value {
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

/// What a reader of rows is handed: each member, and each unusable row (its line and what is wrong).
pub struct Rows<'a> {
    /// Called with each member, in file order.
    pub member: &'a mut dyn FnMut(Member),
    /// Called with each row that makes no member.
    pub fail: &'a mut dyn FnMut(&Path, u64, String),
}

/// Opens a part, through gzip when it is compressed (concatenated members too, as `gzip` and warehouses write).
fn open(part: &Part) -> Result<Box<dyn Read + Send>, SnapshotError> {
    let file =
        std::fs::File::open(&part.path).map_err(|source| SnapshotError::Io { path: part.path.clone(), source })?;
    let file = BufReader::with_capacity(256 * 1024, file);
    Ok(match part.gzip {
        true => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        false => Box::new(file),
    })
}

/// Reads every row of `part`, streaming: memory does not grow with the part.
pub fn read(part: &Part, config: &SnapshotConfig, kind: Kind, rows: &mut Rows<'_>) -> Result<(), SnapshotError> {
    match part.format {
        Format::Csv => read_csv(part, open(part)?, config, kind, rows),
        Format::Ndjson => read_ndjson(part, open(part)?, config, kind, rows),
        Format::Parquet => read_parquet(part, config, kind, rows),
    }
}

/// The columns of a row that make a member.
struct Columns<'a> {
    user: &'a str,
    anonymous: &'a str,
    group: Option<&'a str>,
    value: Option<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(config: &'a SnapshotConfig, kind: Kind) -> Columns<'a> {
        Columns {
            user: &config.user_id_column,
            anonymous: &config.anonymous_id_column,
            group: config.group_id_column.as_deref().filter(|_| kind == Kind::AccountTrait),
            value: config.value_column.as_deref().filter(|_| kind.has_value()),
        }
    }
}

/// An identity cell's text: strings as they are, numbers as written (a warehouse's integer user ID).
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The member a row of named cells makes (an NDJSON object, a Parquet row), or why it makes none.
fn member_of_cells(cells: &Map<String, Value>, columns: &Columns<'_>, kind: Kind) -> Result<Member, String> {
    let text = |column: Option<&str>| id_text(column.and_then(|c| cells.get(c)));
    let value = columns.value.map(|c| cells.get(c).cloned().unwrap_or(Value::Null));
    member(
        text(Some(columns.user)).as_deref(),
        text(Some(columns.anonymous)).as_deref(),
        text(columns.group).as_deref(),
        value,
        kind,
    )
}

/// Without the `parquet` feature, a Parquet part is an error that says how to read it.
#[cfg(not(feature = "parquet"))]
fn read_parquet(part: &Part, _: &SnapshotConfig, _: Kind, _: &mut Rows<'_>) -> Result<(), SnapshotError> {
    Err(SnapshotError::Parquet {
        path: part.path.clone(),
        message: "this tributary was built without Parquet support (the `parquet` feature, on by default)".to_owned(),
    })
}

/// Reads a Parquet file's rows, one row group at a time, through only the columns the config names.
#[cfg(feature = "parquet")]
fn read_parquet(part: &Part, config: &SnapshotConfig, kind: Kind, rows: &mut Rows<'_>) -> Result<(), SnapshotError> {
    use parquet::file::reader::FileReader as _;
    let path = &part.path;
    let parquet_error =
        |e: parquet::errors::ParquetError| SnapshotError::Parquet { path: path.to_owned(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(|source| SnapshotError::Io { path: path.to_owned(), source })?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(parquet_error)?;
    let schema = reader.metadata().file_metadata().schema();
    let present: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    let missing = |key: &'static str, column: &str| SnapshotError::MissingColumn {
        path: path.to_owned(),
        key,
        column: column.to_owned(),
        found: present.join(", "),
    };
    let columns = Columns::of(config, kind);
    if !present.contains(&columns.user) && !present.contains(&columns.anonymous) {
        return Err(missing("user_id_column", columns.user));
    }
    for (key, column) in [("group_id_column", columns.group), ("value_column", columns.value)] {
        if let Some(column) = column.filter(|c| !present.contains(c)) {
            return Err(missing(key, column));
        }
    }
    let wanted = [Some(columns.user), Some(columns.anonymous), columns.group, columns.value];
    let fields = schema.get_fields().iter().filter(|f| wanted.contains(&Some(f.name()))).cloned().collect();
    let projection = parquet::schema::types::Type::group_type_builder(schema.name())
        .with_fields(fields)
        .build()
        .map_err(parquet_error)?;
    let mut number = 0u64;
    for row in reader.get_row_iter(Some(projection)).map_err(parquet_error)? {
        number += 1;
        let row = row.map_err(parquet_error)?;
        let mut cells = Map::new();
        for (name, field) in row.get_column_iter() {
            let value = match field {
                // A decimal (Snowflake's NUMBER(38,2), Redshift's DECIMAL) is a number, as a CSV cell of it is.
                parquet::record::Field::Decimal(_) => cell_value(field.to_json_value().as_str().unwrap_or_default()),
                _ => field.to_json_value(),
            };
            cells.insert(name.clone(), value);
        }
        match member_of_cells(&cells, &columns, kind) {
            Ok(m) => (rows.member)(m),
            Err(message) => (rows.fail)(path, number, message),
        }
    }
    Ok(())
}

fn read_csv(
    part: &Part,
    reader: Box<dyn Read + Send>,
    config: &SnapshotConfig,
    kind: Kind,
    rows: &mut Rows<'_>,
) -> Result<(), SnapshotError> {
    let path = &part.path;
    let csv_error = |source| SnapshotError::Csv { path: path.to_owned(), source };
    let mut reader = csv::ReaderBuilder::new().from_reader(reader);
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |key: &'static str, name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| SnapshotError::MissingColumn {
            path: path.to_owned(),
            key,
            column: name.to_owned(),
            found: headers.iter().collect::<Vec<_>>().join(", "),
        })
    };
    let columns = Columns::of(config, kind);
    let user = column("user_id_column", columns.user).ok();
    let anonymous = column("anonymous_id_column", columns.anonymous).ok();
    if user.is_none() && anonymous.is_none() {
        return Err(column("user_id_column", columns.user).unwrap_err());
    }
    let value = columns.value.map(|name| column("value_column", name)).transpose()?;
    let group = columns.group.map(|name| column("group_id_column", name)).transpose()?;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let cell = |index: Option<usize>| index.and_then(|i| record.get(i));
                match member(cell(user), cell(anonymous), cell(group), cell(value).map(cell_value), kind) {
                    Ok(m) => (rows.member)(m),
                    Err(message) => (rows.fail)(path, line, message),
                }
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(csv_error(e)),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                (rows.fail)(path, line, format!("not a CSV row: {e}"));
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }) {
                    return Ok(());
                }
            }
        }
    }
}

fn read_ndjson(
    part: &Part,
    reader: Box<dyn Read + Send>,
    config: &SnapshotConfig,
    kind: Kind,
    rows: &mut Rows<'_>,
) -> Result<(), SnapshotError> {
    let path = &part.path;
    let columns = Columns::of(config, kind);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                (rows.fail)(path, number, "the line is not UTF-8".to_owned());
                // read_line keeps what it read; skip to the next line break.
                let mut rest = Vec::new();
                reader
                    .read_until(b'\n', &mut rest)
                    .map_err(|source| SnapshotError::Io { path: path.clone(), source })?;
                continue;
            }
            Err(source) => return Err(SnapshotError::Io { path: path.clone(), source }),
        }
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(row)) => row,
            Ok(_) => {
                (rows.fail)(path, number, "the line is not a JSON object".to_owned());
                continue;
            }
            Err(e) => {
                (rows.fail)(path, number, format!("invalid JSON: {e}"));
                continue;
            }
        };
        match member_of_cells(&row, &columns, kind) {
            Ok(m) => (rows.member)(m),
            Err(message) => (rows.fail)(path, number, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        let m = glob_matches;
        assert!(m("part-*.csv.gz", "part-0001.csv.gz"));
        assert!(m("data_*.csv.gz", "data_0_1_0.csv.gz"));
        assert!(!m("data_*.csv.gz", "data_0.csv"));
        assert!(m("*", "anything"));
        assert!(m("data_?_*.csv", "data_0_12.csv"));
        assert!(!m("part-*.csv", "part-1.csv.gz"));
        assert!(!m("a?c", "ac"));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        // Polynomial, not exponential, on a pattern of many stars.
        let long = "a".repeat(10_000);
        assert!(!m(&"*a".repeat(50), &format!("{long}b")));
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::of_name("x.csv"), Ok((Format::Csv, false)));
        assert_eq!(Format::of_name("x.NDJSON.gz"), Ok((Format::Ndjson, true)));
        assert!(Format::of_name("x.parquet2").is_err());
        assert_eq!(Format::of_name("000000_0.parquet"), Ok((Format::Parquet, false)));
        assert!(Format::of_name("x.parquet.gz").is_err());
        assert!(Format::of(Path::new("exports/members")).is_ok());
        assert!(Format::of(Path::new("exports/part-*.csv.gz")).is_ok());
        assert!(Format::of(Path::new("exports/members.xlsx")).is_err());
        assert!(Format::of(Path::new("exports/part-*.parquet")).is_ok());
    }
}
