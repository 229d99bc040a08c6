//! Write keys: HTTP Basic with the key as username, or `writeKey` in the body.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sink::Secret;
use subtle::ConstantTimeEq as _;

use super::error::Refusal;

fn unauthorized(code: &'static str, message: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The write key of an `Authorization: Basic` header, if there is one.
pub fn basic_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let malformed = || {
        unauthorized("invalid_authorization", "the Authorization header must be Basic with the write key as username")
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    Ok(Some(user.to_owned()).filter(|u| !u.is_empty()))
}

/// What ingest needs to know of a source.
#[derive(Debug)]
pub struct Source {
    /// Its ID.
    pub id: String,
    /// Whether one invalid message refuses the whole request.
    pub strict: bool,
    /// The web origins browsers may send its events from.
    pub origins: super::origin::Origins,
    /// Its rate limit, if it has one; a reload that keeps the rate keeps the bucket.
    pub rate: Option<std::sync::Arc<super::limit::RateLimit>>,
    /// Whether every message gets the client's address as `context.ip` when it has none.
    pub collect_ip: bool,
    /// Whether its messages are checked for duplicates among its own only (`dedupe_scope = "source"`).
    pub dedupe_by_source: bool,
    /// The lags of the destinations it feeds: its requests are refused while one of them is further behind than
    /// `--max-lag`.
    pub destinations: Vec<std::sync::Arc<crate::serve::lag::Lagging>>,
    /// Its privacy controls, with their key.
    pub privacy: std::sync::Arc<governance::Privacy>,
    /// Its tracking plan, if it has one.
    pub plan: Option<std::sync::Arc<crate::plans::SourcePlan>>,
}

/// Every source's write key, kept as its SHA-256 digest.
pub struct WriteKeys {
    keys: Vec<([u8; 32], Source)>,
}

/// The SHA-256 digest of a key: every key compares as 32 bytes, so the comparison's time says nothing of its length.
fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl WriteKeys {
    /// Keys and the sources they open.
    pub fn new(keys: Vec<(Secret, Source)>) -> WriteKeys {
        WriteKeys { keys: keys.into_iter().map(|(secret, source)| (digest(secret.expose()), source)).collect() }
    }

    /// The source whose ID is `id`.
    pub fn by_id(&self, id: &str) -> Option<&Source> {
        self.keys.iter().map(|(_, source)| source).find(|source| source.id == id)
    }

    /// The source whose key is `key`. Every key's digest is compared in full, in constant time, so timing tells
    /// nothing of which key matched, how much of it, or how long it is.
    pub fn source(&self, key: Option<&str>) -> Result<&Source, Refusal> {
        let key = key.ok_or_else(|| {
            unauthorized("missing_write_key", "no write key: send it as the Basic username or as writeKey")
        })?;
        let candidate = digest(key);
        let mut found = None;
        for (known, source) in &self.keys {
            if bool::from(known.ct_eq(&candidate)) {
                found = Some(source);
            }
        }
        found.ok_or_else(|| unauthorized("invalid_write_key", "the write key matches no source"))
    }
}
