//! Faults an operator fixes in minutes, and faults of the server itself: messages wait instead of being
//! dead-lettered, workers are restarted, `/health` tells, and the spool has one owner.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder, kinesis_destination};
use crate::{scratch, tributary};

/// 500 track calls in five batches of 100, with message IDs `{prefix}-0` to `{prefix}-499`.
async fn post_500(server: &Server, prefix: &str) {
    let client = reqwest::Client::new();
    for b in 0..5 {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "Late", "messageId": format!("{prefix}-{}", b * 100 + i)}))
            .collect();
        let (status, body) = server.post(&client, "/v1/batch", &json!({ "batch": batch })).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn health(server: &Server) -> (u16, Value) {
    let response = reqwest::get(format!("{}/health", server.url)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/health` until `check` holds for it, for up to `limit`.
async fn health_until(server: &Server, limit: Duration, check: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let give_up = tokio::time::Instant::now() + limit;
    loop {
        let (status, body) = health(server).await;
        if check(status, &body) {
            return (status, body);
        }
        assert!(tokio::time::Instant::now() < give_up, "/health never got there: {status} {body}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dead_letters(config: &Path, spool: &Path) -> Vec<Value> {
    let (ok, stdout, stderr) = tributary(
        &["--config", config.to_str().unwrap(), "dlq", "list", "--spool-dir", spool.to_str().unwrap()],
        &[],
        None,
    );
    assert!(ok, "{stderr}");
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ids(records: &[kinesis_sink::admin::ReadRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap()["messageId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn expected(prefix: &str) -> Vec<String> {
    let mut ids: Vec<String> = (0..500).map(|i| format!("{prefix}-{i}")).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_stream_created_twenty_seconds_late_gets_every_message() {
    let runs = tests::env::kinesis_endpoints().into_iter().map(|(emulator, url)| async move {
        let stream = tests::stream::unique_name("late");
        let spool = scratch(&format!("late-{emulator}-spool"));
        let config = folder(&format!("late-{emulator}"), &[("main", &kinesis_destination("main", &stream, &url, ""))]);
        let server = Server::start(&config, &spool, &[]).await;
        post_500(&server, "late").await;
        let (status, body) =
            health_until(&server, Duration::from_secs(15), |_, b| b["destinations"]["main"]["state"] == "degraded")
                .await;
        assert_eq!(status, 200, "{emulator}: a degraded destination is not down: {body}");
        let error = body["destinations"]["main"]["last_error"].as_str().unwrap();
        assert!(error.contains(&stream), "{emulator}: the error does not name the stream: {error}");
        assert_eq!(body["destinations"]["main"]["waiting"], 500, "{emulator}: {body}");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let admin = tests::stream::client(&url, tests::env::dummy_credentials()).await;
        tests::stream::create(&admin, &stream, 1).await;
        let read = tests::stream::read_at_least(&admin, &stream, 500).await;
        assert_eq!(ids(&read), expected("late"), "{emulator}");
        health_until(&server, Duration::from_secs(10), |_, b| b["destinations"]["main"]["state"] == "ok").await;
        assert!(dead_letters(&config, &spool).is_empty(), "{emulator}");
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_trust_policy_fixed_later_lets_every_message_through() {
    let (url, admin) = tests::env::iam();
    let (caller_arn, caller) = tests::iam::caller("late-trust-caller", &["sts:AssumeRole"]).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords"], "Resource": "*"}]});
    let role_name = tests::stream::unique_name("late-trust-role");
    let untrusting = kinesis_sink::iam::trust_policy(&caller_arn, &["src_other".to_owned()]);
    let role = tests::iam::role(&role_name, &untrusting, Some(&policy)).await;
    let stream = tests::stream::unique_name("late-trust");
    let kinesis = tests::stream::client(&url, admin.clone()).await;
    tests::stream::create(&kinesis, &stream, 1).await;

    let destination = kinesis_destination("main", &stream, &url, "")
        .replace("[kinesis.delivery]", &format!("role_address = {role:?}\n[kinesis.delivery]"));
    let spool = scratch("late-trust-spool");
    let config = folder("late-trust", &[("main", &destination)]);
    let key = caller.access_key_id().to_owned();
    let secret = caller.secret_access_key().to_owned();
    let env = [("AWS_ACCESS_KEY_ID", key.as_str()), ("AWS_SECRET_ACCESS_KEY", secret.as_str())];
    let server = Server::start_with_env(&config, &spool, &[], &env).await;
    post_500(&server, "trust").await;
    let (_, body) =
        health_until(&server, Duration::from_secs(15), |_, b| b["destinations"]["main"]["state"] == "degraded").await;
    let error = body["destinations"]["main"]["last_error"].as_str().unwrap();
    assert!(error.contains(&role) && error.contains("src_test"), "{error}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let trusting = kinesis_sink::iam::trust_policy(&caller_arn, &["src_test".to_owned()]);
    tests::iam::update_trust(&role_name, &trusting).await;
    let read = tests::stream::read_at_least(&kinesis, &stream, 500).await;
    assert_eq!(ids(&read), expected("trust"));
    assert!(dead_letters(&config, &spool).is_empty());
}

#[tokio::test]
async fn messages_are_dead_lettered_after_max_retry_duration_with_the_last_reason() {
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let destination =
        kinesis_destination("main", "s", &dead, "").replace("[kinesis]", "max_retry_duration = \"3s\"\n[kinesis]");
    let spool = scratch("max-retry-spool");
    let config = folder("max-retry", &[("main", &destination)]);
    let server = Server::start(&config, &spool, &["--health-max-age", "2s"]).await;
    let client = reqwest::Client::new();
    let (status, _) =
        server.post(&client, "/v1/track", &json!({"userId": "u", "event": "E", "messageId": "gives-up"})).await;
    assert_eq!(status, 200);
    // Older than --health-max-age while it waits: the server is unhealthy, and says why.
    let (status, body) = health_until(&server, Duration::from_secs(10), |s, _| s == 503).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert!(body["destinations"]["main"]["oldest_waiting_seconds"].as_f64().unwrap() > 2.0, "{body}");
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_destination_state{destination=\"main\",state=\"degraded\"} 1"), "{metrics}");
    assert!(metrics.contains("tributary_oldest_waiting_seconds{destination=\"main\"}"), "{metrics}");
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = dead_letters(&config, &spool);
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), 1, "{}", server.log());
    assert_eq!(letters[0]["message"]["messageId"], "gives-up");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("gave up after 3s of retries: "), "{reason}");
    health_until(&server, Duration::from_secs(5), |s, b| s == 200 && b["destinations"]["main"]["waiting"] == 0).await;
}

#[tokio::test]
async fn a_panicking_worker_is_restarted_and_loses_nothing() {
    let out = scratch("panic-sink-out").join("out.ndjson");
    let spool = scratch("panic-sink-spool");
    let config = folder("panic-sink", &[("archive", &file_destination("archive", &out))]);
    let env = [("TRIBUTARY_TEST_FAULTS", "sink-panic=POISON")];
    let server = Server::start_with_env(&config, &spool, &[], &env).await;
    let client = reqwest::Client::new();
    let batch: Vec<Value> = (0..50)
        .map(|i| {
            let event = if i == 25 { "POISON" } else { "Fine" };
            json!({"type": "track", "userId": "u", "event": event, "messageId": format!("p-{i}")})
        })
        .collect();
    let (status, _) = server.post(&client, "/v1/batch", &json!({ "batch": batch })).await;
    assert_eq!(status, 200);
    let (_, body) =
        health_until(&server, Duration::from_secs(10), |_, b| b["destinations"]["archive"]["restarts"] == 1).await;
    let error = body["destinations"]["archive"]["last_error"].as_str().unwrap();
    assert!(error.contains("panicked"), "{body}");
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["messageId"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "{}", server.log());
    health_until(&server, Duration::from_secs(5), |s, b| s == 200 && b["destinations"]["archive"]["state"] == "ok")
        .await;
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_worker_restarts_total{destination=\"archive\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_second_server_on_a_locked_spool_is_refused_with_the_owner_named() {
    let out = scratch("locked-out").join("out.ndjson");
    let spool = scratch("locked-spool");
    let config = folder("locked", &[("archive", &file_destination("archive", &out))]);
    let first = Server::start(&config, &spool, &[]).await;
    let (ok, _, stderr) = tributary(
        &[
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
        &[("TEST_WRITE_KEY", crate::server::WRITE_KEY)],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains(&spool.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("PID {}", first.pid())), "{stderr}");
}

#[tokio::test]
async fn dlq_list_during_a_backoff_leaves_the_schedule_alone() {
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let spool = scratch("schedule-spool");
    let config = folder("schedule", &[("main", &kinesis_destination("main", "s", &dead, ""))]);
    let server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    server.post(&client, "/v1/track", &json!({"userId": "u", "event": "E"})).await;
    health_until(&server, Duration::from_secs(10), |_, b| b["destinations"]["main"]["state"] == "degraded").await;
    let schedule = || {
        let db = rusqlite::Connection::open_with_flags(
            spool.join(spool::FILE_NAME),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT next_attempt_at FROM spool", [], |row| row.get::<_, i64>(0)).unwrap()
    };
    let before = schedule();
    assert!(before > 0, "no retry was scheduled");
    assert!(dead_letters(&config, &spool).is_empty());
    let after = schedule();
    assert!(after >= before, "dlq list made the retry due: {before} -> {after}");
}
