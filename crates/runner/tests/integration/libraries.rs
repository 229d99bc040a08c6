//! What browsers and phones need from `serve`: the mobile libraries' upload, CORS, analytics.js settings, rate
//! limits, slow and idle connections, and `context.ip`. The latency comparisons are in `timing.rs`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, ORIGIN};
use serde_json::{Value, json};

use crate::scratch;
use crate::server::{Server, WRITE_KEY, file_destination, folder, folder_with};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn basic(key: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// The messages in an NDJSON file, once there are at least `count` (or after a few seconds).
async fn stored(path: &std::path::Path, count: usize) -> Vec<Value> {
    let mut messages = Vec::new();
    for _ in 0..100 {
        messages = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<Value>>();
        if messages.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    messages
}

/// A batch file as analytics-kotlin and analytics-swift write it.
fn mobile_batch(library: &str, user: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "batch": [
            {"type": "track", "event": "Screen Tapped", "userId": user, "anonymousId": "a-1", "messageId": format!("{library}-1"),
             "timestamp": "2026-11-25T12:00:00.000Z", "properties": {"n": 1},
             "context": {"library": {"name": library, "version": "1.19.0"}, "device": {"model": "Pixel"}}},
            {"type": "screen", "name": "Home", "userId": user, "anonymousId": "a-1", "messageId": format!("{library}-2"),
             "timestamp": "2026-11-25T12:00:01.000Z", "context": {"library": {"name": library, "version": "1.19.0"}}}
        ],
        "sentAt": "2026-11-25T12:00:02.000Z",
        "writeKey": WRITE_KEY
    }))
    .unwrap()
}

#[tokio::test]
async fn the_mobile_libraries_upload_lands_and_a_429_carries_both_headers() {
    let out = scratch("mobile-out").join("out.ndjson");
    let config = folder("mobile", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("mobile-spool"), &[]).await;
    let http = reqwest::Client::new();
    // analytics-kotlin: text/plain, gzip, streamed in chunks (no Content-Length), the key as Basic auth.
    let kotlin = gzip(&mobile_batch("analytics-kotlin", "kotlin_user"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = kotlin.chunks(64).map(|c| Ok(c.to_vec())).collect();
    let response = http
        .post(format!("{}/v1/b", server.url))
        .header(CONTENT_TYPE, "text/plain")
        .header(CONTENT_ENCODING, "gzip")
        .header(AUTHORIZATION, basic(WRITE_KEY))
        .header("user-agent", "analytics-kotlin/1.19.0")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // analytics-swift: JSON with a charset, Accept-Encoding gzip, the key as Basic auth.
    let response = http
        .post(format!("{}/v1/b", server.url))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .header("accept-encoding", "gzip")
        .header(AUTHORIZATION, basic(WRITE_KEY))
        .header("user-agent", "analytics-ios/1.7.0")
        .body(mobile_batch("analytics-ios", "swift_user"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let messages = stored(&out, 4).await;
    let mut ids: Vec<&str> = messages.iter().map(|m| m["messageId"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["analytics-ios-1", "analytics-ios-2", "analytics-kotlin-1", "analytics-kotlin-2"]);
    assert!(messages.iter().all(|m| m.get("writeKey").is_none()));

    // Over its rate, the same upload gets a 429 that both kinds of library understand.
    let limited = folder_with(
        "mobile-limited",
        &[("archive", &file_destination("archive", &scratch("mobile-limited-out").join("o")))],
        "max_messages_per_second = 1",
    );
    let server = Server::start(&limited, &scratch("mobile-limited-spool"), &[]).await;
    let upload = || {
        http.post(format!("{}/v1/b", server.url))
            .header(CONTENT_TYPE, "text/plain")
            .header(AUTHORIZATION, basic(WRITE_KEY))
            .body(mobile_batch("analytics-kotlin", "kotlin_user"))
            .send()
    };
    assert_eq!(upload().await.unwrap().status(), 200);
    let response = upload().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let reset: u64 = response.headers()["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after) && reset == retry_after, "{retry_after} {reset}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn cors_preflights_origins_and_the_settings_analytics_js_loads() {
    let out = scratch("cors-out").join("out.ndjson");
    let spool = scratch("cors-spool");
    let config = folder_with(
        "cors",
        &[("archive", &file_destination("archive", &out))],
        "allowed_origins = [\"https://shop.example\", \"https://*.brand.example\"]",
    );
    let server = Server::start(&config, &spool, &["--public-url", "https://events.example.com/segment/"]).await;
    let http = reqwest::Client::new();

    // A preflight, as Chromium sends one for analytics.js's Authorization header.
    let response = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", server.url))
        .header(ORIGIN, "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-retry-count")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://shop.example");
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert_eq!(headers["access-control-allow-headers"], "authorization,content-type,x-retry-count");

    // analytics.js's request: text/plain, the key in the body, from an allowed origin.
    let track = json!({"userId": "u", "event": "From the shop", "writeKey": WRITE_KEY}).to_string();
    for origin in ["https://shop.example", "https://www.brand.example"] {
        let response = http
            .post(format!("{}/v1/t", server.url))
            .header(ORIGIN, origin)
            .header(CONTENT_TYPE, "text/plain")
            .body(track.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        assert!(response.headers()["access-control-expose-headers"].to_str().unwrap().contains("retry-after"));
    }
    // From another site: 403, readable by the page (so the library drops it), counted, and nothing stored.
    for (name, body) in [("body key", track.clone()), ("Basic key", json!({"userId": "u", "event": "E"}).to_string())] {
        let mut request = http
            .post(format!("{}/v1/t", server.url))
            .header(ORIGIN, "https://evil.example")
            .header(CONTENT_TYPE, "text/plain")
            .body(body);
        if name == "Basic key" {
            request = request.header(AUTHORIZATION, basic(WRITE_KEY));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{name}");
        assert_eq!(response.headers()["access-control-allow-origin"], "https://evil.example");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "origin_not_allowed", "{name}");
    }
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_messages_rejected_total{reason=\"origin_not_allowed\"} 2"), "{metrics}");
    // Servers and phones send no Origin and are not affected.
    assert_eq!(server.post(&http, "/v1/track", &json!({"userId": "u", "event": "From a server"})).await.0, 200);
    let events: Vec<String> = stored(&out, 3).await.iter().map(|m| m["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!events.iter().any(|e| e == "E"), "{events:?}");

    // The settings analytics.js loads from cdnURL point it here.
    let response = http
        .get(format!("{}/v1/projects/{WRITE_KEY}/settings", server.url))
        .header(ORIGIN, "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://shop.example");
    let settings: Value = response.json().await.unwrap();
    let segmentio = &settings["integrations"]["Segment.io"];
    assert_eq!(segmentio["apiKey"], WRITE_KEY);
    assert_eq!(segmentio["apiHost"], "events.example.com/segment/v1");
    assert_eq!(segmentio["protocol"], "https");
    let unknown = http.get(format!("{}/v1/projects/nope/settings", server.url)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let foreign = http
        .get(format!("{}/v1/projects/{WRITE_KEY}/settings", server.url))
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

#[tokio::test]
async fn idle_connections_are_closed_and_the_cap_makes_others_wait() {
    use tokio::io::AsyncReadExt as _;
    let out = scratch("slow-out").join("out.ndjson");
    let config = folder("slow", &[("archive", &file_destination("archive", &out))]);
    let server =
        Server::start(&config, &scratch("slow-spool"), &["--read-timeout", "1", "--max-connections", "2"]).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // Two clients that connect and send nothing hold both places...
    let mut first = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a third waits until the read timeout frees one, then is served.
    let started = Instant::now();
    let http = reqwest::Client::new();
    let (status, _) = server.post(&http, "/v1/track", &json!({"userId": "u", "event": "After the wait"})).await;
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(5), "waited {waited:?}");
    // The idle connection was closed by the server.
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buffer)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "the idle connection is still open: {read:?}");
}

/// Each stored message's event and `context.ip`, once `count` are stored.
async fn event_ips(out: &std::path::Path, count: usize) -> Vec<(String, Value)> {
    let messages = stored(out, count).await;
    messages.iter().map(|m| (m["event"].as_str().unwrap().to_owned(), m["context"]["ip"].clone())).collect()
}

#[tokio::test]
async fn context_ip_comes_from_the_connection_or_a_trusted_proxy() {
    let http = reqwest::Client::new();
    let send = |url: String, body: Value, forwarded: Option<&'static str>| {
        let mut request = http.post(format!("{url}/v1/track")).header(AUTHORIZATION, basic(WRITE_KEY)).json(&body);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.send()
    };
    let direct = |event: &str| json!({"userId": "u", "event": event, "context": {"direct": true}});

    // No trusted proxy: the connection's address, whatever X-Forwarded-For claims.
    let out = scratch("ip-plain-out").join("out.ndjson");
    let config = folder("ip-plain", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("ip-plain-spool"), &[]).await;
    send(server.url.clone(), direct("plain"), None).await.unwrap();
    send(server.url.clone(), direct("forged"), Some("6.6.6.6")).await.unwrap();
    send(server.url.clone(), json!({"userId": "u", "event": "not direct"}), None).await.unwrap();
    send(
        server.url.clone(),
        json!({"userId": "u", "event": "own", "context": {"direct": true, "ip": "198.51.100.7"}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        event_ips(&out, 4).await,
        [
            ("plain".to_owned(), json!("127.0.0.1")),
            ("forged".to_owned(), json!("127.0.0.1")),
            ("not direct".to_owned(), Value::Null),
            ("own".to_owned(), json!("198.51.100.7")),
        ]
    );

    // Behind a trusted proxy: the client it forwarded for, never an entry a client could have forged before it;
    // and a collect_ip source fills every message.
    let out = scratch("ip-proxy-out").join("out.ndjson");
    let config = folder_with("ip-proxy", &[("archive", &file_destination("archive", &out))], "collect_ip = true");
    let server = Server::start(&config, &scratch("ip-proxy-spool"), &["--trusted-proxy", "127.0.0.0/8"]).await;
    send(server.url.clone(), json!({"userId": "u", "event": "forwarded"}), Some("203.0.113.9")).await.unwrap();
    send(server.url.clone(), json!({"userId": "u", "event": "chain"}), Some("6.6.6.6, 203.0.113.10")).await.unwrap();
    send(server.url.clone(), json!({"userId": "u", "event": "no header"}), None).await.unwrap();
    assert_eq!(
        event_ips(&out, 3).await,
        [
            ("forwarded".to_owned(), json!("203.0.113.9")),
            ("chain".to_owned(), json!("203.0.113.10")),
            ("no header".to_owned(), json!("127.0.0.1")),
        ]
    );
}
