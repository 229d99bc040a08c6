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

fn ids(records: &[kinesis_sink::setup::admin::ReadRecord]) -> Vec<String> {
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
    let untrusting = kinesis_sink::setup::iam::trust_policy(&caller_arn, &["src_other".to_owned()]);
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
    let trusting = kinesis_sink::setup::iam::trust_policy(&caller_arn, &["src_test".to_owned()]);
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

fn count(spool: &Path, table: &str) -> i64 {
    let db =
        rusqlite::Connection::open_with_flags(spool.join(spool::FILE_NAME), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).unwrap()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn dlq_replay_of_twenty_thousand_letters_resumes_after_a_kill_and_beside_a_server() {
    // Every message is over a 10-byte record limit: 20,000 dead letters at once.
    let spool = scratch("replay-spool");
    let broken = kinesis_destination("main", "s", "http://127.0.0.1:9", "max_record_bytes = 10");
    let config = folder("replay", &[("main", &broken)]);
    let mut server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    for b in 0..200 {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E", "messageId": format!("r-{}", b * 100 + i)}))
            .collect();
        assert_eq!(server.post(&client, "/v1/batch", &json!({ "batch": batch })).await.0, 200);
    }
    for _ in 0..200 {
        if count(&spool, "dead_letters") == 20_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&spool, "dead_letters"), 20_000, "{}", server.log());
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(Some(0)));

    // Fixed (the destination becomes a file), then replayed and killed midway.
    let out = scratch("replay-out").join("out.ndjson");
    crate::write_files(&config, &[("destinations/main.toml", &file_destination("main", &out))]);
    let replay = |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"));
        command
            .args(["--config", config.to_str().unwrap(), "dlq", "replay", "--spool-dir", spool.to_str().unwrap()])
            .args(extra)
            .env("TEST_WRITE_KEY", crate::server::WRITE_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };
    let mut child = replay(&[]).spawn().unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while lines_of(&out).len() < 4_000 {
        assert!(std::time::Instant::now() < give_up, "the replay delivered nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let letters_after_kill = count(&spool, "dead_letters");
    assert!(letters_after_kill > 0, "the replay finished before it was killed; kill it sooner");

    // Rerun for part of the rest only.
    let output = replay(&["--limit", "5000"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("5000 moved back to the queue"), "{stderr}");
    assert_eq!(count(&spool, "dead_letters"), (letters_after_kill - 5_000).max(0));

    // The rest, while a server runs on the spool: the server delivers them.
    let server = Server::start(&config, &spool, &[]).await;
    let output = replay(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("(PID {})", server.pid())), "{stderr}");
    assert_eq!(count(&spool, "dead_letters"), 0);
    let mut delivered = Vec::new();
    for _ in 0..200 {
        delivered = lines_of(&out);
        let mut unique = delivered.clone();
        unique.sort();
        unique.dedup();
        if unique.len() == 20_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = delivered.len();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 20_000, "{}", server.log());
    // Only what was in flight when the replay was killed (one page) may have gone twice.
    assert!(total - 20_000 <= 5_000, "{} delivered twice", total - 20_000);
}

/// A tmpfs of `megabytes` mounted at `dir`, unmounted when dropped. Mounting needs root (CI runs as root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, megabytes: u32) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {megabytes} MiB tmpfs at {} failed: this suite needs root",
            dir.display()
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_never_gets_a_200_without_a_commit_and_the_server_recovers() {
    let (_, upstream) =
        tests::env::kinesis_endpoints().into_iter().find(|(name, _)| name != "moto").expect("kinesis-local");
    let proxy = tests::proxy::FaultProxy::start(&upstream).await;
    proxy.set_up(false);
    let stream = tests::stream::unique_name("full-disk");
    let admin = tests::stream::client(&upstream, tests::env::dummy_credentials()).await;
    tests::stream::create(&admin, &stream, 1).await;
    let disk = SmallDisk::mount(&scratch("full-disk-mount"), 12);
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 3 << 20]).unwrap();
    let spool = disk.0.join("spool");
    let config = folder("full-disk", &[("main", &kinesis_destination("main", &stream, &proxy.url, ""))]);
    let server = Server::start(&config, &spool, &["--spool-max-bytes", "1GB"]).await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    let send = async |n: &mut usize| {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"type": "track", "userId": "u", "event": "Fill", "messageId": format!("f-{}-{i}", *n), "properties": {"pad": tests::incompressible(400, (*n * 100 + i) as u64)}}))
            .collect();
        *n += 1;
        let (status, body) = server.post(&client, "/v1/batch", &json!({ "batch": batch })).await;
        (status, body, batch)
    };
    while refused < 5 {
        assert!(n < 2_000, "the disk never filled");
        let (status, body, batch) = send(&mut n).await;
        match status {
            200 => acknowledged.extend(batch.iter().map(|m| m["messageId"].as_str().unwrap().to_owned())),
            429 | 503 => refused += 1,
            other => panic!("a full disk answered {other}: {body}\n{}", server.log()),
        }
    }
    assert!(!acknowledged.is_empty());
    // Space frees; the server takes requests again by itself.
    std::fs::remove_file(&filler).unwrap();
    let mut taken_again = false;
    for _ in 0..50 {
        let (status, _, batch) = send(&mut n).await;
        if status == 200 {
            acknowledged.extend(batch.iter().map(|m| m["messageId"].as_str().unwrap().to_owned()));
            taken_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken_again, "the server did not take requests again after space freed:\n{}", server.log());
    proxy.set_up(true);
    // The retries have backed off while the stream was unreachable: up to a minute.
    let mut got = Vec::new();
    for _ in 0..90 {
        got = ids(&tests::stream::read_all(&admin, &stream).await);
        if got.len() >= acknowledged.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    acknowledged.sort();
    let missing: Vec<&String> = acknowledged.iter().filter(|id| got.binary_search(id).is_err()).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not delivered: {missing:?} ({} acknowledged)\n{}",
        acknowledged.len(),
        server.log()
    );
    drop(server);
}
