//! Segment's acceptance semantics end to end: a request is answered 200 with its valid messages delivered and its
//! invalid ones kept in the rejected table, unless the source is strict; single calls keep the client's bytes; and
//! `integrations` written for Segment route the same way here.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tests::env::dummy_credentials;
use tests::stream::{KinesisClient, client, create, read_all, read_at_least, unique_name};

use crate::server::{Server, WRITE_KEY, file_destination, folder, folder_with, kinesis_destination};
use crate::{scratch, tributary};

/// Reads the stream until it holds `count` records (or some seconds pass), as parsed JSON and bytes.
async fn read_messages(admin: &KinesisClient, stream: &str, count: usize) -> Vec<(Value, Vec<u8>)> {
    let records = read_at_least(admin, stream, count).await;
    records.into_iter().map(|r| (serde_json::from_slice(&r.data).unwrap(), r.data)).collect()
}

/// The rejected messages of the spool in `spool`, as `tributary rejected list` prints them.
pub fn rejected_list(spool: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["rejected", "list", "--spool-dir", spool.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = tributary(&args, &[], None);
    assert!(ok, "{stderr}");
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn mixed_batch() -> Value {
    json!({
        "batch": [
            {"type": "track", "userId": "good_1", "event": "Kept", "messageId": "good-1"},
            {"type": "track", "event": "No identity", "messageId": "bad-identity", "writeKey": WRITE_KEY},
            {"type": "identify", "userId": "good_2", "messageId": "good-2"},
            {"type": "track", "userId": "u", "messageId": "bad-event"},
            {"type": "identify", "userId": "u", "messageId": "m".repeat(101)},
            {"type": "identify", "userId": true, "messageId": "bad-type"},
            "not a message",
            {"type": "page", "anonymousId": "good_3", "name": "Home", "messageId": "good-3", "timestamp": "2015-2-02T00:30:08.276Z"}
        ],
        "sentAt": "2026-11-25T12:00:00Z"
    })
}

#[tokio::test]
async fn a_mixed_batch_delivers_the_valid_messages_and_keeps_the_invalid_ones() {
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let admin = client(&url, dummy_credentials()).await;
    let stream = unique_name("mixed");
    create(&admin, &stream, 1).await;
    let destination = kinesis_destination("main", &stream, &url, "max_in_flight = 1");
    let spool = scratch("mixed-spool");
    let config = folder("mixed", &[("main", &destination)]);
    let server = Server::start(&config, &spool, &[]).await;
    let http = reqwest::Client::new();
    let (status, body) = server.post(&http, "/v1/batch", &mixed_batch()).await;
    assert_eq!((status, body), (200, json!({"success": true})));

    let delivered = read_messages(&admin, &stream, 3).await;
    let mut ids: Vec<&str> = delivered.iter().map(|(m, _)| m["messageId"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["good-1", "good-2", "good-3"], "server log:\n{}", server.log());
    // A client time that is no date-time is kept as sent; the timestamp is the time of receipt.
    let page = &delivered.iter().find(|(m, _)| m["messageId"] == "good-3").unwrap().0;
    assert_eq!(page["originalTimestamp"], "2015-2-02T00:30:08.276Z");
    assert_eq!(page["timestamp"], page["receivedAt"]);

    let rejected = rejected_list(&spool, &[]);
    let mut by_index: Vec<(u64, &str, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap_or("-"), r["reason"].as_str().unwrap()))
        .collect();
    by_index.sort();
    assert_eq!(
        by_index,
        [
            (1, "userId or anonymousId", "userId or anonymousId: is required"),
            (3, "event", "event: is required"),
            (4, "messageId", "messageId: is 101 characters long, more than the 100 allowed"),
            (5, "userId", "userId: must be a string or a number, found a boolean"),
            (6, "-", "a message must be a JSON object, found a string"),
        ]
    );
    for r in &rejected {
        assert_eq!(r["source_id"], "src_test");
        assert!(r["rejected_at"].as_str().unwrap().ends_with('Z'), "{r}");
        assert!(r["message"].get("writeKey").is_none(), "a rejected message kept its write key: {r}");
    }
    let identity = rejected.iter().find(|r| r["index"] == 1).unwrap();
    assert_eq!(identity["message"]["event"], "No identity");
    assert_eq!(rejected.iter().find(|r| r["index"] == 6).unwrap()["message"], Value::Null);
    // Filters.
    assert_eq!(rejected_list(&spool, &["--limit", "2"]).len(), 2);
    assert_eq!(rejected_list(&spool, &["--source", "src_other"]).len(), 0);
    assert_eq!(rejected_list(&spool, &["--since", "1h"]).len(), 5);

    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        "tributary_messages_invalid_total{field=\"event\",problem=\"missing\"} 1",
        "tributary_messages_invalid_total{field=\"message\",problem=\"not_an_object\"} 1",
        "tributary_messages_accepted_total 3",
        "tributary_messages_received_total 8",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // The same batch from a strict source: refused whole, naming the first invalid message, and nothing kept.
    let strict_spool = scratch("mixed-strict-spool");
    let strict_stream = unique_name("mixed-strict");
    create(&admin, &strict_stream, 1).await;
    let strict_config = folder_with(
        "mixed-strict",
        &[("main", &kinesis_destination("main", &strict_stream, &url, "max_in_flight = 1"))],
        "strict = true",
    );
    let strict = Server::start(&strict_config, &strict_spool, &[]).await;
    let (status, body) = strict.post(&http, "/v1/batch", &mixed_batch()).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_message");
    assert_eq!(body["message"], "batch[1]: userId or anonymousId: is required");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(read_all(&admin, &strict_stream).await.is_empty());
    assert!(rejected_list(&strict_spool, &[]).is_empty());
}

#[tokio::test]
async fn the_rejected_table_keeps_the_newest_within_its_bound() {
    let out = scratch("rejected-bound-out").join("out.ndjson");
    let spool = scratch("rejected-bound-spool");
    let config = folder("rejected-bound", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &spool, &["--rejected-max", "3"]).await;
    let http = reqwest::Client::new();
    for i in 0..5 {
        let (status, _) =
            server.post(&http, "/v1/track", &json!({"userId": "u", "messageId": format!("no-event-{i}")})).await;
        assert_eq!(status, 200);
    }
    let kept: Vec<Value> = rejected_list(&spool, &[]).iter().map(|r| r["message"]["messageId"].clone()).collect();
    assert_eq!(kept, [json!("no-event-4"), json!("no-event-3"), json!("no-event-2")]);
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_rejected_evicted_total 2"), "{metrics}");
}

#[tokio::test]
async fn a_single_call_lands_with_the_clients_bytes() {
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let admin = client(&url, dummy_credentials()).await;
    let stream = unique_name("bytes");
    create(&admin, &stream, 1).await;
    let config = folder("bytes", &[("main", &kinesis_destination("main", &stream, &url, "max_in_flight = 1"))]);
    let server = Server::start(&config, &scratch("bytes-spool"), &[]).await;
    let sent = r#"{"userId":"u_bytes","event":"Big","properties":{"n":12345678901234567890123,"f":1.50E+2,"s":"\u00e9\ud83d\ude00\/\"","z":-0.0},"context":{"k":[1,  2]}}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/track", server.url))
        .basic_auth(WRITE_KEY, Some(""))
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let records = read_messages(&admin, &stream, 1).await;
    assert_eq!(records.len(), 1);
    let data = String::from_utf8(records[0].1.clone()).unwrap();
    // The client's fields, in its order and spelling, then the type the endpoint names and enrichment.
    let kept = r#"{"userId":"u_bytes","event":"Big","properties":{"n":12345678901234567890123,"f":1.50E+2,"s":"\u00e9\ud83d\ude00\/\"","z":-0.0},"context":{"k":[1,  2]},"type":"track","#;
    assert!(data.starts_with(kept), "{data}");
}

#[tokio::test]
async fn integrations_under_segments_catalog_name_route_as_in_segment() {
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let admin = client(&url, dummy_credentials()).await;
    let stream = unique_name("catalog");
    create(&admin, &stream, 1).await;
    let out = scratch("catalog-out").join("out.ndjson");
    let config = folder(
        "catalog",
        &[
            ("kinesis-main", &kinesis_destination("kinesis-main", &stream, &url, "max_in_flight = 1")),
            ("archive", &file_destination("archive", &out)),
        ],
    );
    let server = Server::start(&config, &scratch("catalog-spool"), &[]).await;
    let http = reqwest::Client::new();
    let cases = [
        ("everywhere", json!({})),
        ("not kinesis", json!({"Amazon Kinesis": false})),
        ("only kinesis", json!({"All": false, "Amazon Kinesis": true})),
        ("nowhere", json!({"All": false})),
        ("both named", json!({"All": false, "Amazon Kinesis": true, "archive": true})),
        ("config name wins", json!({"Amazon Kinesis": false, "kinesis-main": true})),
    ];
    for (event, integrations) in &cases {
        let body = json!({"userId": "u", "event": event, "integrations": integrations});
        assert_eq!(server.post(&http, "/v1/track", &body).await.0, 200);
    }
    let mut in_stream: Vec<String> =
        read_messages(&admin, &stream, 4).await.iter().map(|(m, _)| m["event"].as_str().unwrap().to_owned()).collect();
    in_stream.sort();
    assert_eq!(in_stream, ["both named", "config name wins", "everywhere", "only kinesis"]);
    let mut in_file = Vec::new();
    for _ in 0..50 {
        in_file = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        if in_file.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    in_file.sort();
    assert_eq!(in_file, ["both named", "config name wins", "everywhere", "not kinesis"]);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_is_counted() {
    let out = scratch("panic-out").join("out.ndjson");
    let config = folder("panic", &[("archive", &file_destination("archive", &out))]);
    let server =
        Server::start_with_env(&config, &scratch("panic-spool"), &[], &[("TRIBUTARY_TEST_FAULTS", "panic")]).await;
    let http = reqwest::Client::new();
    let response =
        http.post(format!("{}/test/panic", server.url)).send().await.expect("an answer, not a dropped connection");
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "internal");
    // The same connection pool, and the server, go on.
    assert_eq!(server.post(&http, "/v1/track", &json!({"userId": "u", "event": "After"})).await.0, 200);
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_handler_panics_total 1"), "{metrics}");
    // Without the switch, the route does not exist.
    let plain = Server::start(&config, &scratch("panic-plain-spool"), &[]).await;
    let response = http.post(format!("{}/test/panic", plain.url)).header(AUTHORIZATION, "x").send().await.unwrap();
    assert_eq!(response.status(), 404);
}
