//! Origins: which web sites a browser may send a source's events from, and the CORS headers browsers need.
//!
//! A browser's write key is public, so the origin check is about keeping other sites from filling a source with
//! events, not about secrecy. Preflights are answered for any origin, because a preflight carries no write key
//! to tell the source by; the request itself is then refused with 403 when its origin is not allowed for its
//! source, and that answer carries the CORS headers too, so the browser library reads a 4xx and drops the batch
//! instead of retrying a network error forever.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::Refusal;

/// A source's allowed origins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origins {
    /// Any origin (the default: a browser write key is public anyway).
    #[default]
    Any,
    /// Only these: exact origins (`https://www.example.com`) or a wildcard for subdomains
    /// (`https://*.example.com`).
    Only(Vec<String>),
}

impl Origins {
    /// The origins of a source's `allowed_origins`: absent, empty or containing `*` means any.
    pub fn from_config(patterns: Option<&[String]>) -> Origins {
        match patterns {
            None => Origins::Any,
            Some(list) if list.is_empty() || list.iter().any(|p| p == "*") => Origins::Any,
            Some(list) => Origins::Only(list.iter().map(|p| p.trim_end_matches('/').to_ascii_lowercase()).collect()),
        }
    }

    /// Refuses (403) a request whose `Origin` is not allowed; requests without one (servers, phones) pass.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match of(headers) {
            Some(origin) if !self.allows(origin) => Err(refused(origin)),
            _ => Ok(()),
        }
    }

    /// Whether a request with this `Origin` header may send events.
    pub fn allows(&self, origin: &str) -> bool {
        let Origins::Only(patterns) = self else { return true };
        let origin = origin.to_ascii_lowercase();
        patterns.iter().any(|pattern| match pattern.split_once("://*.") {
            None => *pattern == origin,
            Some((scheme, domain)) => origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|host| host.ends_with(&format!(".{domain}")) && host.len() > domain.len() + 1),
        })
    }
}

/// The 403 for an origin the source does not allow.
pub fn refused(origin: &str) -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!("the origin {origin:?} is not in this source's allowed_origins"),
    )
}

/// The request's `Origin`, when a browser sent one. `null` (a sandboxed frame, a `file:` page) is an origin too: it
/// matches no `allowed_origins` entry, so such pages cannot get round the list.
pub fn of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null")).filter(|o| !o.is_empty())
}

/// Answers preflights, and adds the CORS headers to every answer to a request that has an `Origin`.
pub async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    if request.method() == Method::OPTIONS {
        let requested = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested
                .unwrap_or(HeaderValue::from_static("content-type, authorization, content-encoding, x-retry-count")),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        decorate(headers, origin);
        return response;
    }
    let mut response = next.run(request).await;
    decorate(response.headers_mut(), origin);
    response
}

fn decorate(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    let Some(origin) = origin else { return };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after, x-ratelimit-reset"));
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let only = Origins::from_config(Some(&["https://www.example.com".into(), "https://*.shop.example".into()]));
        for (origin, allowed) in [
            ("https://www.example.com", true),
            ("HTTPS://WWW.EXAMPLE.COM", true),
            ("http://www.example.com", false),
            ("https://www.example.com:8443", false),
            ("https://a.shop.example", true),
            ("https://a.b.shop.example", true),
            ("https://shop.example", false),
            ("https://evilshop.example", false),
            ("https://www.example.com.evil.test", false),
        ] {
            assert_eq!(only.allows(origin), allowed, "{origin}");
        }
        assert!(!only.allows("null"));
        assert!(Origins::from_config(None).allows("https://anything.test"));
        assert!(Origins::from_config(Some(&["*".into()])).allows("https://anything.test"));
    }
}
