//! `tributary serve` without AWS: the tracking API's answers, the spool's limits, dead letters and shutdown.

use std::io::Write as _;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder, folder_with, kinesis_destination};
use crate::{scratch, tributary};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A request for the bad-input table: method, path, headers, body.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, path: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        path,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        status,
        code,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
}

fn bad_inputs() -> Vec<Case> {
    let big_property = "x".repeat(33 * 1024);
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let many: Vec<Value> = (0..2501).map(|i| json!({"type": "identify", "userId": i})).collect();
    let bomb = gzip(&vec![b' '; 4 * 1024 * 1024]);
    vec![
        case("broken JSON", "/v1/track", r#"{"userId":"u","event":"#, 400, "invalid_json"),
        case("empty body", "/v1/track", "", 400, "invalid_json"),
        case("array body", "/v1/track", "[1,2]", 400, "invalid_json"),
        case("string body", "/v1/identify", r#""hello""#, 400, "invalid_json"),
        case("invalid UTF-8", "/v1/track", b"{\"userId\":\"\xff\xfe\",\"event\":\"E\"}".to_vec(), 400, "invalid_json"),
        case(
            "deeply nested JSON",
            "/v1/track",
            format!(r#"{{"userId":"u","event":"E","properties":{{"p":{nested}}}}}"#),
            400,
            "invalid_json",
        ),
        case("missing identity", "/v1/track", r#"{"event":"E"}"#, 400, "invalid_message"),
        case("userId of the wrong type", "/v1/identify", r#"{"userId":true}"#, 400, "invalid_message"),
        case("track without event", "/v1/track", r#"{"userId":"u"}"#, 400, "invalid_message"),
        case("event of the wrong type", "/v1/track", r#"{"userId":"u","event":["E"]}"#, 400, "invalid_message"),
        case("group without groupId", "/v1/group", r#"{"userId":"u"}"#, 400, "invalid_message"),
        case("alias without previousId", "/v1/alias", r#"{"userId":"u"}"#, 400, "invalid_message"),
        case("alias without userId", "/v1/alias", r#"{"anonymousId":"a","previousId":"p"}"#, 400, "invalid_message"),
        case(
            "messageId over 100 characters",
            "/v1/identify",
            format!(r#"{{"userId":"u","messageId":"{}"}}"#, "m".repeat(101)),
            400,
            "invalid_message",
        ),
        case(
            "timestamp of the wrong type",
            "/v1/identify",
            r#"{"userId":"u","timestamp":{"at":"soon"}}"#,
            400,
            "invalid_message",
        ),
        case(
            "properties that are no object",
            "/v1/track",
            r#"{"userId":"u","event":"E","properties":"p"}"#,
            400,
            "invalid_message",
        ),
        case(
            "type that disagrees with the path",
            "/v1/track",
            r#"{"type":"identify","userId":"u"}"#,
            400,
            "invalid_message",
        ),
        case(
            "oversize message",
            "/v1/track",
            format!(r#"{{"userId":"u","event":"E","properties":{{"p":"{big_property}"}}}}"#),
            400,
            "body_too_large",
        ),
        case("empty batch", "/v1/batch", r#"{"batch":[]}"#, 400, "empty_batch"),
        case("batch missing", "/v1/batch", r#"{"context":{}}"#, 400, "invalid_batch"),
        case("batch that is no array", "/v1/batch", r#"{"batch":{"type":"identify"}}"#, 400, "invalid_batch"),
        case(
            "batch context that is no object",
            "/v1/batch",
            r#"{"batch":[{"type":"identify","userId":"u"}],"context":7}"#,
            400,
            "invalid_batch",
        ),
        case(
            "invalid item in a batch",
            "/v1/batch",
            r#"{"batch":[{"type":"identify","userId":"u"},{"type":"identify","userId":"v"},{"type":"track","userId":"w"}]}"#,
            400,
            "invalid_message",
        ),
        case("item without a type in a batch", "/v1/import", r#"{"batch":[{"userId":"u"}]}"#, 400, "invalid_message"),
        case(
            "more than 2,500 messages",
            "/v1/batch",
            serde_json::to_vec(&json!({"batch": many})).unwrap(),
            400,
            "too_many_messages",
        ),
        case(
            "oversize message in a batch",
            "/v1/batch",
            format!(
                r#"{{"batch":[{{"type":"track","userId":"u","event":"E","properties":{{"p":"{big_property}"}}}}]}}"#
            ),
            400,
            "invalid_message",
        ),
        case(
            "oversize body",
            "/v1/batch",
            format!(
                r#"{{"batch":[{{"type":"identify","userId":"u","traits":{{"t":"{}"}}}}]}}"#,
                "y".repeat(600 * 1024)
            ),
            400,
            "body_too_large",
        ),
        case("gzip bomb", "/v1/batch", bomb, 400, "body_too_large").header("content-encoding", "gzip"),
        case("gzip header on a plain body", "/v1/track", r#"{"userId":"u","event":"E"}"#, 400, "invalid_gzip")
            .header("content-encoding", "gzip"),
        case("unsupported encoding", "/v1/track", r#"{"userId":"u","event":"E"}"#, 415, "unsupported_encoding")
            .header("content-encoding", "br"),
        case("wrong content type", "/v1/track", r#"{"userId":"u","event":"E"}"#, 415, "unsupported_media_type")
            .header("content-type", "text/html"),
        case("form content type", "/v1/track", "userId=u&event=E", 415, "unsupported_media_type")
            .header("content-type", "application/x-www-form-urlencoded"),
        case("unknown path", "/v1/click", r#"{"userId":"u"}"#, 404, "not_found"),
        case("unknown version", "/v2/track", r#"{"userId":"u","event":"E"}"#, 404, "not_found"),
        Case { method: "GET", ..case("wrong method", "/v1/track", "", 405, "method_not_allowed") },
        Case { method: "PUT", ..case("PUT to batch", "/v1/batch", r#"{"batch":[]}"#, 405, "method_not_allowed") },
        case("bad Basic header", "/v1/track", r#"{"userId":"u","event":"E"}"#, 401, "invalid_authorization")
            .header("authorization", "Basic %%%not-base64%%%"),
        case("Bearer instead of Basic", "/v1/track", r#"{"userId":"u","event":"E"}"#, 401, "invalid_authorization")
            .header("authorization", "Bearer abc"),
        case("no write key", "/v1/track", r#"{"userId":"u","event":"E"}"#, 401, "missing_write_key")
            .header("authorization", ""),
        case("unknown write key", "/v1/track", r#"{"userId":"u","event":"E"}"#, 401, "invalid_write_key")
            .header("authorization", "Basic bm9wZTo="),
        case(
            "unknown writeKey in the body",
            "/v1/batch",
            r#"{"batch":[{"type":"identify","userId":"u"}],"writeKey":"nope"}"#,
            401,
            "invalid_write_key",
        )
        .header("authorization", ""),
        case(
            "writeKey of the wrong type",
            "/v1/batch",
            r#"{"batch":[{"type":"identify","userId":"u"}],"writeKey":5}"#,
            400,
            "invalid_batch",
        )
        .header("authorization", ""),
    ]
}

/// Every case, on a `strict` source, where an invalid message refuses its whole request as it did before Segment's
/// acceptance semantics became the default; `lenient_sources_answer_as_segment_does` covers the default.
#[tokio::test]
async fn bad_input_gets_the_right_status_and_code_and_the_server_keeps_serving() {
    let out = scratch("bad-input-out").join("out.ndjson");
    let config = folder_with("bad-input", &[("archive", &file_destination("archive", &out))], "strict = true");
    let server = Server::start(&config, &scratch("bad-input-spool"), &[]).await;
    // A server that refuses a body without reading it closes the connection; a fresh one per case keeps a
    // pooled, closed connection from failing the next case.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let basic = format!("Basic {}", base64_key(server.key));
    let cases = bad_inputs();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for case in cases {
        let mut request =
            client.request(case.method.parse().unwrap(), format!("{}{}", server.url, case.path)).body(case.body);
        let mut authorization = Some(basic.clone());
        for (name, value) in &case.headers {
            if *name == "authorization" {
                authorization = Some(value.clone()).filter(|v| !v.is_empty());
            } else {
                request = request.header(*name, value);
            }
        }
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{}: the server did not answer: {e}", case.name));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!((status, body["code"].as_str().unwrap_or("")), (case.status, case.code), "{}: {body}", case.name);
        assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{}: no message", case.name);
    }
    // Still serving, and nothing from the bad requests was stored.
    let (status, _) = server.post(&client, "/v1/track", &json!({"userId": "u", "event": "After"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = lines(&out);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["event"], "After");
}

fn base64_key(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}

#[tokio::test]
async fn error_messages_name_the_field_and_the_batch_index() {
    let config = folder_with(
        "error-messages",
        &[("archive", &file_destination("archive", &scratch("error-messages-out").join("o")))],
        "strict = true",
    );
    let server = Server::start(&config, &scratch("error-messages-spool"), &[]).await;
    let client = reqwest::Client::new();
    let batch = json!({"batch": [{"type": "identify", "userId": "u"}, {"type": "group", "userId": "u"}]});
    let (status, body) = server.post(&client, "/v1/batch", &batch).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "batch[1]: groupId: is required");
    let (_, body) = server.post(&client, "/v1/alias", &json!({"userId": "u"})).await;
    assert_eq!(body["message"], "previousId: is required");
}

#[tokio::test]
async fn every_call_type_and_both_key_styles_are_stored_enriched() {
    let out = scratch("all-calls-out").join("out.ndjson");
    let config = folder("all-calls", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("all-calls-spool"), &[]).await;
    let client = reqwest::Client::new();
    let calls = [
        ("/v1/identify", json!({"userId": "u1", "traits": {"plan": "pro"}})),
        ("/v1/track", json!({"userId": "u1", "event": "Signed Up"})),
        ("/v1/page", json!({"anonymousId": "a1", "name": "Home"})),
        ("/v1/screen", json!({"userId": "u1", "name": "Main"})),
        ("/v1/group", json!({"userId": "u1", "groupId": "g1"})),
        ("/v1/alias", json!({"userId": "u1", "previousId": "a1"})),
    ];
    for (path, body) in &calls {
        let (status, answer) = server.post(&client, path, body).await;
        assert_eq!((status, answer), (200, json!({"success": true})), "{path}");
    }
    // The write key in the body, gzip, /v1/import, and the batch context merged into its items.
    let batch = json!({
        "batch": [{"type": "track", "userId": "u2", "event": "Imported", "writeKey": crate::server::WRITE_KEY}],
        "context": {"library": {"name": "test"}},
        "writeKey": crate::server::WRITE_KEY,
        "sentAt": "2026-11-25T12:00:00Z"
    });
    let response = client
        .post(format!("{}/v1/import", server.url))
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_ENCODING, "gzip")
        .body(gzip(&serde_json::to_vec(&batch).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = lines(&out);
        if stored.len() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut kinds: Vec<&str> = stored.iter().map(|m| m["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["alias", "group", "identify", "page", "screen", "track", "track"]);
    for message in &stored {
        assert!(message["messageId"].is_string() && message["receivedAt"].is_string(), "{message}");
        assert!(message.get("writeKey").is_none(), "the write key was stored: {message}");
    }
    let imported = stored.iter().find(|m| m["event"] == "Imported").unwrap();
    assert_eq!(imported["context"]["library"]["name"], "test");
}

#[tokio::test]
async fn integrations_choose_destinations_and_disabled_ones_get_nothing() {
    let dir = scratch("integrations-out");
    let (a, b, off) = (dir.join("a.ndjson"), dir.join("b.ndjson"), dir.join("off.ndjson"));
    let disabled =
        format!("name = \"off\"\ntype = \"file\"\nenabled = false\n[file]\npath = {:?}\n", off.display().to_string());
    let config = folder(
        "integrations",
        &[("a", &file_destination("a", &a)), ("b", &file_destination("b", &b)), ("off", &disabled)],
    );
    let server = Server::start(&config, &scratch("integrations-spool"), &[]).await;
    let client = reqwest::Client::new();
    server.post(&client, "/v1/track", &json!({"userId": "u", "event": "Everywhere"})).await;
    server
        .post(
            &client,
            "/v1/track",
            &json!({"userId": "u", "event": "Only B", "integrations": {"All": false, "b": true}}),
        )
        .await;
    server.post(&client, "/v1/track", &json!({"userId": "u", "event": "Not A", "integrations": {"a": false}})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let events = |path| lines(path).iter().map(|m| m["event"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(events(&a), ["Everywhere"]);
    let mut in_b = events(&b);
    in_b.sort();
    assert_eq!(in_b, ["Everywhere", "Not A", "Only B"]);
    assert!(!off.exists(), "a disabled destination was written to");
}

#[tokio::test]
async fn a_full_spool_answers_429_with_retry_after() {
    // Nothing listens on the endpoint, so nothing leaves the spool.
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let config = folder("full", &[("main", &kinesis_destination("main", "s", &dead, ""))]);
    let server = Server::start(&config, &scratch("full-spool"), &["--spool-max", "3"]).await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        let (status, _) = server.post(&client, "/v1/identify", &json!({"userId": format!("u{i}")})).await;
        assert_eq!(status, 200);
    }
    let response = client
        .post(format!("{}/v1/identify", server.url))
        .basic_auth(server.key, Some(""))
        .json(&json!({"userId": "u3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "spool_full");
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_spool_depth 3"), "{metrics}");
    assert!(metrics.contains("tributary_messages_rejected_total{reason=\"spool_full\"} 1"), "{metrics}");
    assert!(metrics.contains("tributary_messages_accepted_total 3"), "{metrics}");
}

#[tokio::test]
async fn permanent_failures_go_to_the_dead_letter_table_and_replay_after_a_fix() {
    let spool = scratch("dlq-spool");
    // A record limit no message fits: every delivery fails permanently, before any network call.
    let broken = kinesis_destination("main", "s", "http://127.0.0.1:9", "max_record_bytes = 10");
    let config = folder("dlq", &[("main", &broken)]);
    let mut server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    server.post(&client, "/v1/track", &json!({"userId": "u", "event": "Doomed", "messageId": "doomed-1"})).await;
    let spool_arg = spool.to_str().unwrap();
    let mut listed = String::new();
    for _ in 0..50 {
        let (_, stdout, _) =
            tributary(&["--config", config.to_str().unwrap(), "dlq", "list", "--spool-dir", spool_arg], &[], None);
        listed = stdout;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letter: Value = serde_json::from_str(listed.lines().next().expect("a dead letter")).unwrap();
    assert_eq!(letter["destination"], "main");
    assert_eq!(letter["source_id"], "src_test");
    assert_eq!(letter["message"]["messageId"], "doomed-1");
    assert!(letter["reason"].as_str().unwrap().contains("more than the stream's 10-byte record limit"), "{letter}");
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(Some(0)), "{}", server.log());

    // The operator fixes the destination (here: it becomes a file) and replays.
    let out = scratch("dlq-out").join("out.ndjson");
    crate::write_files(&config, &[("destinations/main.toml", &file_destination("main", &out))]);
    let env = [("TEST_WRITE_KEY", crate::server::WRITE_KEY)];
    let (ok, _, stderr) =
        tributary(&["--config", config.to_str().unwrap(), "dlq", "replay", "--spool-dir", spool_arg], &env, None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 moved back to the queue, 1 delivered; 0 skipped"), "{stderr}");
    assert_eq!(lines(&out)[0]["messageId"], "doomed-1");
    let (_, stdout, _) =
        tributary(&["--config", config.to_str().unwrap(), "dlq", "list", "--spool-dir", spool_arg], &[], None);
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once_and_loses_nothing() {
    let spool = scratch("sigterm-spool");
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let config = folder("sigterm", &[("main", &kinesis_destination("main", "s", &dead, ""))]);
    let mut server = Server::start(&config, &spool, &["--flush-timeout", "120"]).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        let (status, _) = server
            .post(&client, "/v1/track", &json!({"userId": "u", "event": "Kept", "messageId": format!("kept-{i}")}))
            .await;
        assert_eq!(status, 200);
    }
    server.signal("TERM");
    // The first signal waits to flush to an unreachable stream; it must still be running.
    assert_eq!(server.wait(Duration::from_secs(2)).await, None, "{}", server.log());
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(5)).await, Some(Some(130)), "{}", server.log());

    // Restarted with a working destination of the same name, it delivers everything that was acknowledged.
    let out = scratch("sigterm-out").join("out.ndjson");
    crate::write_files(&config, &[("destinations/main.toml", &file_destination("main", &out))]);
    let _server = Server::start(&config, &spool, &[]).await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids = lines(&out).iter().map(|m| m["messageId"].as_str().unwrap().to_owned()).collect();
        if ids.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids.sort();
    assert_eq!(ids, (0..5).map(|i| format!("kept-{i}")).collect::<Vec<_>>());
}
