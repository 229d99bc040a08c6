//! Dropping resends on one node: `serve --dedupe-window`, `--dedupe-max-bytes` and a source's `dedupe_scope`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder, free_port};
use crate::{scratch, write_files};

/// How many times each messageId is in an NDJSON file destination's output, once `expected` lines are there (or
/// after ten seconds).
async fn delivered(path: &Path, expected: usize) -> HashMap<String, usize> {
    for _ in 0..200 {
        if std::fs::read_to_string(path).unwrap_or_default().lines().count() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more, so that a copy that should not be there has the time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let message: Value = serde_json::from_str(line).unwrap();
        *ids.entry(message["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    ids
}

fn batch(ids: &[&str]) -> Value {
    let messages: Vec<Value> =
        ids.iter().map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id})).collect();
    json!({ "batch": messages })
}

#[tokio::test]
async fn a_batch_posted_twice_lands_once_and_each_duplicate_is_counted() {
    let out = scratch("dedupe-twice-out").join("out.ndjson");
    let config = folder("dedupe-twice", &[("main", &file_destination("main", &out))]);
    let server = Server::start(&config, &scratch("dedupe-twice-spool"), &[]).await;
    let client = reqwest::Client::new();
    let ids = ["a-1", "a-2", "a-3", "a-4", "a-5"];
    assert_eq!(server.post(&client, "/v1/batch", &batch(&ids)).await, (200, json!({"success": true})));
    assert_eq!(server.post(&client, "/v1/batch", &batch(&ids)).await, (200, json!({"success": true})));
    // The same ID twice in one request: the second copy is a duplicate of the first.
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["b-1", "b-1"])).await.0, 200);
    // Without a messageId of its own, a message is never a duplicate: its ID is made on receipt.
    let anonymous = json!({"userId": "u", "event": "No ID"});
    for _ in 0..2 {
        assert_eq!(server.post(&client, "/v1/track", &anonymous).await.0, 200);
    }
    let copies = delivered(&out, 8).await;
    assert_eq!(copies.values().sum::<usize>(), 8, "{copies:?}");
    assert!(ids.iter().chain(&["b-1"]).all(|id| copies[*id] == 1), "{copies:?}");
    assert_eq!(server.metric(&client, "tributary_duplicates_total{source=\"src_test\"}").await, 6.0);
    assert_eq!(server.metric(&client, "tributary_messages_accepted_total").await, 8.0, "duplicates are not stored");
}

#[tokio::test]
async fn a_resend_after_a_refused_request_is_stored_and_one_after_a_restart_is_dropped() {
    let out = scratch("dedupe-restart-out").join("out.ndjson");
    let config = folder("dedupe-restart", &[("main", &file_destination("main", &out))]);
    let spool = scratch("dedupe-restart-spool");
    let mut server = Server::start(&config, &spool, &["--spool-max", "1"]).await;
    let client = reqwest::Client::new();
    // Refused whole (two messages, room for one): nothing of it was stored, so its IDs do not count.
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["r-1", "r-2"])).await.0, 429);
    for id in ["r-1", "r-2"] {
        assert_eq!(server.post(&client, "/v1/batch", &batch(&[id])).await.0, 200);
        delivered(&out, if id == "r-1" { 1 } else { 2 }).await;
    }
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(15)).await, Some(Some(0)), "{}", server.log());

    let server = Server::start(&config, &spool, &[]).await;
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["r-1", "r-2", "r-3"])).await.0, 200);
    let copies = delivered(&out, 3).await;
    assert_eq!(copies, HashMap::from([("r-1".into(), 1), ("r-2".into(), 1), ("r-3".into(), 1)]));
}

#[tokio::test]
async fn keys_are_global_across_sources_unless_a_source_keeps_its_own() {
    let out = scratch("dedupe-scope-out").join("out.ndjson");
    let config = scratch("dedupe-scope");
    let source = |id: &str, env: &str, extra: &str| {
        format!("id = {id:?}\nname = {id:?}\nwrite_key = {{ env = {env:?} }}\ndestinations = [\"main\"]\n{extra}")
    };
    write_files(
        &config,
        &[
            ("sources/a.toml", &source("src_a", "TEST_WRITE_KEY", "")),
            ("sources/b.toml", &source("src_b", "KEY_B", "")),
            ("sources/c.toml", &source("src_c", "KEY_C", "dedupe_scope = \"source\"\n")),
            ("destinations/main.toml", &file_destination("main", &out)),
        ],
    );
    let env = [("KEY_B", "key-of-b"), ("KEY_C", "key-of-c")];
    let server = Server::start_with_env(&config, &scratch("dedupe-scope-spool"), &[], &env).await;
    let client = reqwest::Client::new();
    let post = |key: &'static str| {
        let request = client.post(format!("{}/v1/batch", server.url)).basic_auth(key, Some(""));
        async move { request.json(&batch(&["shared-id"])).send().await.unwrap().status().as_u16() }
    };
    for key in [crate::server::WRITE_KEY, "key-of-b", "key-of-c", "key-of-c"] {
        assert_eq!(post(key).await, 200);
    }
    // src_a's copy lands, src_b's is its duplicate (global), src_c's lands (its own scope) and its resend does not.
    let copies = delivered(&out, 2).await;
    assert_eq!(copies["shared-id"], 2, "{copies:?}");
    assert_eq!(server.metric(&client, "tributary_duplicates_total{source=\"src_b\"}").await, 1.0);
    assert_eq!(server.metric(&client, "tributary_duplicates_total{source=\"src_c\"}").await, 1.0);
}

#[tokio::test]
async fn a_full_key_budget_lets_the_oldest_keys_go_and_says_the_window_shrank() {
    let out = scratch("dedupe-budget-out").join("out.ndjson");
    let config = folder("dedupe-budget", &[("main", &file_destination("main", &out))]);
    let admin = format!("127.0.0.1:{}", free_port());
    // Two blocks of 50 keys' worth of bytes (50 x 8 bytes and 24 for the block's row, each).
    let args = ["--dedupe-max-bytes", "900", "--admin-listen", &admin];
    let server = Server::start(&config, &scratch("dedupe-budget-spool"), &args).await;
    let client = reqwest::Client::new();
    let health =
        || async { client.get(format!("http://{admin}/health")).send().await.unwrap().json::<Value>().await.unwrap() };
    assert_eq!(health().await["dedupe"]["state"], "ok");
    let ids: Vec<Vec<String>> = (0..3).map(|b| (0..50).map(|i| format!("k-{b}-{i}")).collect()).collect();
    for batch_ids in &ids {
        let refs: Vec<&str> = batch_ids.iter().map(String::as_str).collect();
        assert_eq!(server.post(&client, "/v1/batch", &batch(&refs)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let dedupe = health().await["dedupe"].clone();
    assert_eq!(dedupe["state"], "shrunk", "{dedupe}");
    assert_eq!(dedupe["keys"], 100, "{dedupe}");
    assert!(dedupe["window_held_seconds"].as_i64().unwrap() < 86_400, "{dedupe}");
    let page = client.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let window = crate::server::metric_value(&page, "tributary_dedupe_window_seconds").unwrap();
    assert!(window < 60.0, "{page}");
    // The oldest batch's keys went: its resend is stored again; the newest batch's is still dropped.
    for batch_ids in [&ids[0], &ids[2]] {
        let refs: Vec<&str> = batch_ids.iter().map(String::as_str).collect();
        assert_eq!(server.post(&client, "/v1/batch", &batch(&refs)).await.0, 200);
    }
    let copies = delivered(&out, 200).await;
    assert!(ids[0].iter().all(|id| copies[id] == 2), "{copies:?}");
    assert!(ids[1].iter().chain(&ids[2]).all(|id| copies[id] == 1), "{copies:?}");
    let said = server.log().matches("the dedupe keys fill --dedupe-max-bytes").count();
    assert_eq!(said, 1, "logged once when the window shrank:\n{}", server.log());
}

#[tokio::test]
async fn a_window_of_zero_turns_dedupe_off() {
    let out = scratch("dedupe-off-out").join("out.ndjson");
    let config = folder("dedupe-off", &[("main", &file_destination("main", &out))]);
    let admin = format!("127.0.0.1:{}", free_port());
    let args = ["--dedupe-window", "0", "--admin-listen", &admin];
    let server = Server::start(&config, &scratch("dedupe-off-spool"), &args).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(server.post(&client, "/v1/batch", &batch(&["o-1"])).await.0, 200);
    }
    assert_eq!(delivered(&out, 2).await["o-1"], 2);
    let health: Value = client.get(format!("http://{admin}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["dedupe"]["state"], "off");
}

#[tokio::test]
async fn a_key_older_than_the_window_no_longer_counts() {
    let out = scratch("dedupe-window-out").join("out.ndjson");
    let config = folder("dedupe-window", &[("main", &file_destination("main", &out))]);
    let server = Server::start(&config, &scratch("dedupe-window-spool"), &["--dedupe-window", "2s"]).await;
    let client = reqwest::Client::new();
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["w-1"])).await.0, 200);
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["w-1"])).await.0, 200);
    assert_eq!(delivered(&out, 1).await["w-1"], 1);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(server.post(&client, "/v1/batch", &batch(&["w-1"])).await.0, 200);
    assert_eq!(delivered(&out, 2).await["w-1"], 2);
}
