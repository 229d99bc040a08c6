//! `GET /v1/projects/{writeKey}/settings`: the settings analytics.js 2.0 loads from its CDN, pointing it at this
//! server, so that a web app changes only its `cdnURL` to send here.

use serde_json::{Value, json};

/// Where clients reach this server, as `serve --public-url` gives it: the scheme, and the host with any port and
/// path prefix (`events.example.com`, `127.0.0.1:8080`, `example.com/segment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Host, port and path prefix, without a trailing slash.
    pub host: String,
}

impl std::str::FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicUrl, String> {
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['?', '#', ' ']) {
            return Err(format!("{text:?} is not a URL this server can be reached at (scheme://host[:port][/path])"));
        }
        Ok(PublicUrl { scheme: scheme.to_owned(), host: host.to_owned() })
    }
}

impl PublicUrl {
    /// The `apiHost` analytics.js sends to: the host and prefix, then `/v1` (it appends `/t`, `/b` and so on).
    pub fn api_host(&self) -> String {
        format!("{}/v1", self.host)
    }
}

/// The settings document for `write_key`: Segment.io as the only destination, sending to this server; nothing
/// else for the library to load, and its own telemetry off (it would go to Segment's servers).
pub fn document(write_key: &str, public: &PublicUrl) -> Value {
    json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": public.api_host(),
                "protocol": public.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]}
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}}
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let url: PublicUrl = "https://events.example.com/segment/".parse().unwrap();
        assert_eq!((url.scheme.as_str(), url.api_host()), ("https", "events.example.com/segment/v1".to_owned()));
        let local: PublicUrl = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(document("wk", &local)["integrations"]["Segment.io"]["apiHost"], "127.0.0.1:8080/v1");
        for bad in ["127.0.0.1:8080", "ftp://x", "https://", "https://x?y"] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }
}
