//! Write keys: HTTP Basic with the key as username, or `writeKey` in the body.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use sink::Secret;
use subtle::ConstantTimeEq as _;

use super::ApiError;

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The write key of an `Authorization: Basic` header, if there is one.
pub fn basic_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

/// Every source's write key.
pub struct WriteKeys {
    keys: Vec<(Secret, String)>,
}

impl WriteKeys {
    /// Keys and the IDs of their sources.
    pub fn new(keys: Vec<(Secret, String)>) -> WriteKeys {
        WriteKeys { keys }
    }

    /// The source whose key is `key`. Every key is compared, in constant time, so timing tells nothing.
    pub fn source(&self, key: Option<&str>) -> Result<&str, ApiError> {
        let key = key.ok_or_else(|| {
            unauthorized("missing_write_key", "no write key: send it as the Basic username or as writeKey")
        })?;
        let mut found = None;
        for (secret, source) in &self.keys {
            if bool::from(secret.expose().as_bytes().ct_eq(key.as_bytes())) {
                found = Some(source.as_str());
            }
        }
        found.ok_or_else(|| unauthorized("invalid_write_key", "the write key matches no source"))
    }
}
