//! Which stream a record goes to: the configured stream, or a template of message fields (`"segment-{type}"`)
//! with a default stream for messages the template cannot name a stream for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_common::iam::is_region;
use segment_model::ConfigProblem;

use crate::partition::{Path, lookup, split};

/// One piece of a stream template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Path),
}

/// Where a destination's records go.
#[derive(Debug, Clone)]
pub struct StreamRoute {
    /// The stream as configured (a name, an ARN, or a template).
    configured: Arc<str>,
    /// The template's pieces; empty for a fixed stream.
    pieces: Vec<Piece>,
    /// The stream of messages the template cannot name one for.
    default: Option<Arc<str>>,
    /// Records sent to the default stream because the template did not resolve.
    pub defaulted: Arc<AtomicU64>,
}

/// Splits a stream setting into text and `{path}` fields; a setting without braces is one text piece.
fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("{template:?} has a '}}' without its '{{'"));
        }
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            return Err(format!("{template:?} has a '{{' without its '}}'"));
        };
        let path = &rest[open + 1..close];
        if path.contains('{') {
            return Err(format!("{template:?} nests a '{{' inside a field"));
        }
        crate::partition::check_path(path).map_err(|e| format!("in {template:?}: {e}"))?;
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        pieces.push(Piece::Field(split(path)));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// The problems of `stream` and `default_stream` as a route, by key: a fixed stream must be a stream name or ARN;
/// a template needs a default stream, names only (not ARNs), and text that is valid in a stream name.
fn problems(stream: &str, default_stream: Option<&str>, pieces: &Result<Vec<Piece>, String>) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut add = |key, message| problems.push(ConfigProblem { key, message });
    match pieces {
        Err(message) => add("stream", message.clone()),
        Ok(pieces) if pieces.iter().any(|p| matches!(p, Piece::Field(_))) => {
            if stream.starts_with("arn:") {
                add("stream", format!("{stream:?}: a template names streams, not ARNs"));
            }
            for piece in pieces {
                if let Piece::Text(text) = piece
                    && !text.bytes().all(is_name_byte)
                {
                    add(
                        "stream",
                        format!("{stream:?}: {text:?} is not valid in a stream name (letters, digits, '_', '.', '-')"),
                    );
                }
            }
            if default_stream.is_none() {
                add(
                    "default_stream",
                    format!(
                        "is required with the template {stream:?}: it takes the messages whose fields are missing \
                         or make no valid stream name"
                    ),
                );
            }
        }
        Ok(_) => {
            if let Err(message) = check_stream(stream) {
                add("stream", message);
            }
            if default_stream.is_some() {
                add("default_stream", format!("is set but stream {stream:?} is not a template"));
            }
        }
    }
    if let Some(Err(message)) = default_stream.map(check_stream) {
        add("default_stream", message);
    }
    problems
}

/// A stream name (1 to 128 of `[a-zA-Z0-9_.-]`) or a stream ARN.
fn check_stream(stream: &str) -> Result<(), String> {
    if let Some(rest) = stream.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = parts.len() == 5
            && parts[0].starts_with("aws")
            && parts[1] == "kinesis"
            && is_region(parts[2])
            && parts[3].len() == 12
            && parts[4].strip_prefix("stream/").is_some_and(is_stream_name);
        return if ok {
            Ok(())
        } else {
            Err(format!("{stream:?} is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"))
        };
    }
    if is_stream_name(stream) {
        Ok(())
    } else {
        Err(format!("{stream:?} is not a stream name (1 to 128 letters, digits, '_', '.' or '-')"))
    }
}

fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(is_name_byte)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-".contains(&b)
}

impl StreamRoute {
    /// The route of a destination's `stream` and `default_stream`, or every problem with them, keyed as in the
    /// `[kinesis]` table.
    pub fn new(stream: &str, default_stream: Option<&str>) -> Result<StreamRoute, Vec<ConfigProblem>> {
        let parsed = parse(stream);
        let problems = problems(stream, default_stream, &parsed);
        let Ok(pieces) = parsed else { return Err(problems) };
        if !problems.is_empty() {
            return Err(problems);
        }
        let is_template = pieces.iter().any(|p| matches!(p, Piece::Field(_)));
        Ok(StreamRoute {
            configured: Arc::from(stream),
            pieces: if is_template { pieces } else { Vec::new() },
            default: default_stream.map(Arc::from),
            defaulted: Arc::default(),
        })
    }

    /// Whether the stream is a template.
    pub fn is_template(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// The one stream named without a message: the configured stream, or a template's default stream.
    pub fn fixed(&self) -> &str {
        match &self.default {
            Some(default) if self.is_template() => default,
            _ => &self.configured,
        }
    }

    /// The stream of a message. A field's value (a string, or a number or boolean as written) has each
    /// character that a stream name cannot hold replaced by `-`; a missing field, or a result that is not 1 to
    /// 128 characters, sends the message to the default stream, counted.
    pub fn resolve(&self, payload: &[u8]) -> Arc<str> {
        if !self.is_template() {
            return self.configured.clone();
        }
        let mut name = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => name.push_str(text),
                Piece::Field(path) => match lookup(payload, path) {
                    Some(value) => name.extend(value.chars().map(|c| match c {
                        c if c.is_ascii() && is_name_byte(c as u8) => c,
                        _ => '-',
                    })),
                    None => return self.defaulted(),
                },
            }
            if name.len() > 128 {
                return self.defaulted();
            }
        }
        if name.is_empty() {
            return self.defaulted();
        }
        Arc::from(name)
    }

    fn defaulted(&self) -> Arc<str> {
        self.defaulted.fetch_add(1, Ordering::Relaxed);
        self.default.clone().unwrap_or_else(|| self.configured.clone())
    }

    /// The stream names the route can produce, as an IAM resource pattern: each field becomes `*`.
    pub fn pattern(&self) -> String {
        if !self.is_template() {
            return self.configured.to_string();
        }
        let mut pattern = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => pattern.push_str(text),
                Piece::Field(_) if pattern.ends_with('*') => {}
                Piece::Field(_) => pattern.push('*'),
            }
        }
        pattern
    }

    /// Whether `name` is a stream this route can send to: the default stream, or a name the template matches.
    pub fn can_name(&self, name: &str) -> bool {
        if !self.is_template() {
            return name == &*self.configured;
        }
        self.default.as_deref() == Some(name)
            || (name.len() <= 128 && name.bytes().all(is_name_byte) && wildcard_matches(&self.pattern(), name))
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of characters (at least one, as a field must resolve to
/// something). Each literal is matched at its earliest place, which is exact for stars that take any run.
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        // The star before this literal takes at least one character; the earliest match leaves the most for the
        // rest, so no backtracking is needed.
        let Some(at) = rest.get(1..).and_then(|r| r.find(middle)) else { return false };
        rest = &rest[1 + at + middle.len()..];
    }
    !rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_resolve_fields_sanitized() {
        let route = StreamRoute::new("segment-{type}", Some("segment-other")).unwrap();
        assert!(route.is_template());
        assert_eq!(&*route.resolve(br#"{"type":"track"}"#), "segment-track");
        let apps = StreamRoute::new("events-{context.app.name}-v{context.app.version}", Some("events")).unwrap();
        let body = br#"{"context":{"app":{"name":"My App/\u00e9","version":2}}}"#;
        assert_eq!(&*apps.resolve(body), "events-My-App---v2");
        assert_eq!(&*apps.resolve(br#"{"context":{}}"#), "events", "a missing field takes the default");
        assert_eq!(
            &*apps
                .resolve(format!(r#"{{"context":{{"app":{{"name":"{}","version":1}}}}}}"#, "x".repeat(130)).as_bytes()),
            "events"
        );
        assert_eq!(apps.defaulted.load(Ordering::Relaxed), 2);
        assert_eq!(apps.pattern(), "events-*-v*");
        assert_eq!(apps.fixed(), "events");
    }

    #[test]
    fn fixed_streams_are_not_templates() {
        let route = StreamRoute::new("arn:aws:kinesis:us-west-2:123456789012:stream/events", None).unwrap();
        assert!(!route.is_template());
        assert_eq!(&*route.resolve(b"{}"), "arn:aws:kinesis:us-west-2:123456789012:stream/events");
        assert!(StreamRoute::new("events", None).is_ok());
        assert_eq!(StreamRoute::new("events", Some("x")).unwrap_err()[0].key, "default_stream");
    }

    #[test]
    fn bad_templates_are_named() {
        for (stream, default, want) in [
            ("segment-{type", Some("d"), "without its '}'"),
            ("segment-type}", Some("d"), "without its '{'"),
            ("segment-{}", Some("d"), "dotted path"),
            ("segment-{type}", None, "is required"),
            ("seg ment-{type}", Some("d"), "not valid in a stream name"),
            ("arn:aws:kinesis:us-west-2:123456789012:stream/s-{type}", Some("d"), "not ARNs"),
        ] {
            // An invalid template never becomes a route, fixed or not.
            let problems = StreamRoute::new(stream, default).unwrap_err();
            assert!(problems.iter().any(|p| p.message.contains(want)), "{stream}: {problems:?}");
        }
    }

    #[test]
    fn streams() {
        assert!(check_stream("segment-events_v1.2").is_ok());
        assert!(check_stream("arn:aws:kinesis:us-west-2:123456789012:stream/events").is_ok());
        assert!(check_stream("").is_err());
        assert!(check_stream("has space").is_err());
        assert!(check_stream(&"x".repeat(129)).is_err());
        assert!(check_stream("arn:aws:kinesis:us-west-2:1234:stream/events").is_err());
        assert!(StreamRoute::new("events", Some("bad name")).is_err());
    }

    #[test]
    fn the_template_names_what_it_can_send_to() {
        let route = StreamRoute::new("segment-{type}-{context.app.name}", Some("fallback")).unwrap();
        assert!(route.can_name("segment-track-ios"));
        assert!(route.can_name("fallback"));
        assert!(!route.can_name("segment-track"));
        assert!(!route.can_name("other-track-ios"));
        assert!(!route.can_name("segment--"));
        assert!(wildcard_matches("a*", "ab"));
        assert!(!wildcard_matches("a*", "a"));
    }
}
