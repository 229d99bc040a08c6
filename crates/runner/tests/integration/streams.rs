//! Stream routing by template, KPL aggregation read back by AWS's reference deaggregator, and on-demand streams
//! encrypted with a KMS key, through `tributary` against the Kinesis emulators.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{Value, json};
use tests::env::dummy_credentials;
use tests::stream::{client, create, read_all, read_at_least, unique_name};

use crate::server::{Server, folder};
use crate::{scratch, tributary};

const AWS_ENV: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];

#[tokio::test]
async fn a_templated_stream_routes_each_message_and_the_rest_to_the_default_stream() {
    for (emulator, url) in tests::env::kinesis_endpoints() {
        let prefix = unique_name("app");
        let admin = client(&url, dummy_credentials()).await;
        for app in ["ios", "web-v2", "other"] {
            create(&admin, &format!("{prefix}-{app}"), 1).await;
        }
        let destination = format!(
            "name = \"routed\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\n\
             stream = \"{prefix}-{{context.app.name}}\"\ndefault_stream = \"{prefix}-other\"\nendpoint = {url:?}\n\
             [kinesis.delivery]\nlinger_ms = 5\n"
        );
        let config = folder(&format!("routed-{emulator}"), &[("routed", &destination)]);
        let server = Server::start(&config, &scratch(&format!("routed-{emulator}-spool")), &[]).await;
        let http = reqwest::Client::new();
        let batch = json!({"batch": [
            {"type": "track", "userId": "u1", "event": "A", "context": {"app": {"name": "ios"}}},
            {"type": "track", "userId": "u2", "event": "B", "context": {"app": {"name": "web v2"}}},
            {"type": "track", "userId": "u3", "event": "C"},
            {"type": "identify", "userId": "u4", "context": {"app": {"name": "ios"}}},
        ]});
        let (status, answer) = server.post(&http, "/v1/batch", &batch).await;
        assert_eq!((status, answer), (200, json!({"success": true})), "{emulator}");
        assert_eq!(events(&admin, &format!("{prefix}-ios"), 2).await, ["A", "identify"], "{emulator}");
        assert_eq!(events(&admin, &format!("{prefix}-web-v2"), 1).await, ["B"], "{emulator}: the space became '-'");
        let other = events(&admin, &format!("{prefix}-other"), 1).await;
        assert_eq!(other, ["C"], "{emulator}: no app name: the default stream");

        let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("tributary_stream_defaults_total{destination=\"routed\"} 1"), "{emulator}: {metrics}");
        let shard_line =
            format!("tributary_kinesis_shard_records_total{{destination=\"routed\",stream=\"{prefix}-ios\"");
        assert!(metrics.contains(&shard_line), "{emulator}: no {shard_line:?} in {metrics}");

        // The commands take a resolved stream, and refuse one the template cannot make.
        let dir = config.to_str().unwrap();
        let ios = format!("{prefix}-ios");
        let (ok, stdout, stderr) =
            tributary(&["--config", dir, "check", "--destination", "routed", "--stream", &ios], &AWS_ENV, None);
        assert!(ok && stdout.contains(&format!("stream {ios} is ACTIVE")), "{emulator}: {stdout}{stderr}");
        let (ok, stdout, stderr) = tributary(
            &["--config", dir, "tail", "--destination", "routed", "--stream", &ios, "--from-start"],
            &AWS_ENV,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert_eq!(stdout.lines().count(), 2, "{emulator}: {stdout}");
        let (ok, _, stderr) = tributary(
            &["--config", dir, "streams", "describe", "--destination", "routed", "--stream", "elsewhere"],
            &AWS_ENV,
            None,
        );
        assert!(!ok && stderr.contains("stream \"elsewhere\" is not one this destination sends to"), "{stderr}");
        let (ok, stdout, stderr) = tributary(
            &["--config", dir, "iam", "policy", "--destination", "routed", "--account-id", "123456789012"],
            &[],
            None,
        );
        assert!(ok, "{stderr}");
        let policy: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            policy["Statement"][0]["Resource"],
            json!([
                format!("arn:aws:kinesis:us-east-1:123456789012:stream/{prefix}-*"),
                format!("arn:aws:kinesis:us-east-1:123456789012:stream/{prefix}-other"),
            ])
        );
        assert!(policy["Statement"][0]["Action"].as_array().unwrap().contains(&json!("kinesis:ListShards")));
    }
}

/// The events (`identify` for an identify call) of the records of `stream`, sorted, once there are `count`.
async fn events(admin: &tests::stream::KinesisClient, stream: &str, count: usize) -> Vec<String> {
    let records = read_at_least(admin, stream, count).await;
    let mut seen: Vec<String> = records
        .iter()
        .map(|r| {
            let data: Value = serde_json::from_slice(&r.data).unwrap();
            data["event"].as_str().unwrap_or("identify").to_owned()
        })
        .collect();
    seen.sort();
    seen
}

async fn admin_for(url: &str) -> tests::stream::KinesisClient {
    client(url, dummy_credentials()).await
}

/// Deaggregates records with AWS's `aws_kinesis_agg` (the reference Python deaggregator): each input line is a
/// record as Lambda hands it over, each output line a user record (partition key, base64 data, whether it came
/// out of an aggregate).
const DEAGGREGATE: &str = r#"
import json, sys
from aws_kinesis_agg.deaggregator import deaggregate_records
records = [json.loads(line) for line in sys.stdin]
for user in deaggregate_records(records):
    k = user["kinesis"]
    data = k["data"].decode() if isinstance(k["data"], bytes) else k["data"]
    print(json.dumps({"key": k["partitionKey"], "data": data, "aggregated": k.get("aggregated", False)}))
"#;

#[tokio::test]
async fn kpl_aggregated_records_read_back_through_the_reference_deaggregator() {
    const MESSAGES: usize = 1000;
    let (python, _) = tests::env::clients();
    for (emulator, url) in tests::env::kinesis_endpoints() {
        let stream = unique_name("kpl");
        let admin = client(&url, dummy_credentials()).await;
        create(&admin, &stream, 2).await;
        let destination = format!(
            "name = \"packed\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\n\
             endpoint = {url:?}\naggregation = \"kpl\"\n[kinesis.delivery]\nlinger_ms = 200\n"
        );
        let config = folder(&format!("kpl-{emulator}"), &[("packed", &destination)]);
        let server = Server::start(&config, &scratch(&format!("kpl-{emulator}-spool")), &[]).await;
        let http = reqwest::Client::new();
        // About 600 bytes each once enriched, from 50 users.
        let sent: Vec<Value> = (0..MESSAGES)
            .map(|i| {
                json!({"type": "track", "userId": format!("user-{}", i % 50), "event": "Packed",
                       "messageId": format!("kpl-{i}"), "properties": {"n": i, "pad": "p".repeat(380)}})
            })
            .collect();
        for chunk in sent.chunks(250) {
            let (status, _) = server.post(&http, "/v1/batch", &json!({"batch": chunk})).await;
            assert_eq!(status, 200, "{emulator}");
        }
        // Read until every message is in, counting those inside aggregates.
        let mut records = Vec::new();
        let mut users = Vec::new();
        for _ in 0..100 {
            records = read_all(&admin, &stream).await;
            users = deaggregate(&python, &records);
            if users.len() >= MESSAGES {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        eprintln!("{emulator}: {MESSAGES} messages in {} Kinesis records", records.len());
        assert!(records.len() * 50 <= MESSAGES, "{emulator}: {} records for {MESSAGES} messages", records.len());
        assert_eq!(users.len(), MESSAGES, "{emulator}");
        let mut seen = BTreeSet::new();
        for (key, data, aggregated) in &users {
            assert!(aggregated, "{emulator}: a record the deaggregator did not unpack");
            let message: Value = serde_json::from_slice(data).unwrap();
            let n = message["properties"]["n"].as_u64().unwrap() as usize;
            assert_eq!(key, &format!("user-{}", n % 50), "{emulator}: the partition key of message {n}");
            assert_eq!(message["messageId"], sent[n]["messageId"], "{emulator}");
            assert_eq!(message["properties"], sent[n]["properties"], "{emulator}");
            assert!(seen.insert(n), "{emulator}: message {n} twice");
        }

        // `tail` prints the messages, not the aggregates.
        let (ok, stdout, stderr) = tributary(
            &["--config", config.to_str().unwrap(), "tail", "--destination", "packed", "--from-start"],
            &AWS_ENV,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert_eq!(stdout.lines().count(), MESSAGES, "{emulator}");
        let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        assert_eq!(first["data"]["event"], "Packed", "{emulator}: {first}");
        assert!(first["sub_sequence_number"].is_u64(), "{emulator}: {first}");
        drop(server);
    }
}

/// The user records of `records`, through the reference deaggregator: (partition key, data, aggregated).
fn deaggregate(python: &str, records: &[kinesis_sink::setup::admin::ReadRecord]) -> Vec<(String, Vec<u8>, bool)> {
    use std::io::Write as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut input = String::new();
    for record in records {
        let lambda = json!({"kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number,
            "approximateArrivalTimestamp": 0,
            "data": base64.encode(&record.data),
        }});
        input.push_str(&lambda.to_string());
        input.push('\n');
    }
    let mut child = std::process::Command::new(python)
        .args(["-c", DEAGGREGATE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the deaggregator's Python");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "deaggregator: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let user: Value = serde_json::from_str(line).unwrap();
            (
                user["key"].as_str().unwrap().to_owned(),
                base64.decode(user["data"].as_str().unwrap()).unwrap(),
                user["aggregated"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn on_demand_streams_encrypted_with_a_kms_key() {
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for (emulator, url) in tests::env::kinesis_endpoints() {
        let stream = unique_name("on-demand");
        let dir = scratch(&format!("kms-{emulator}"));
        crate::write_files(
            &dir,
            &[
                (
                    "destinations/sealed.toml",
                    &format!(
                        "name = \"sealed\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\n\
                         endpoint = {url:?}\nkms_key = {KEY:?}\n"
                    ),
                ),
                (
                    "sources/web.toml",
                    "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"sealed\"]\n",
                ),
            ],
        );
        let config = dir.to_str().unwrap();
        let (ok, stdout, stderr) = tributary(
            &["--config", config, "streams", "create", "--destination", "sealed", "--on-demand"],
            &AWS_ENV,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert!(
            stdout.contains(&format!("created stream {stream} on demand, encrypted with {KEY}; it is ACTIVE")),
            "{emulator}: {stdout}"
        );
        let (ok, stdout, stderr) =
            tributary(&["--config", config, "streams", "describe", "--destination", "sealed"], &AWS_ENV, None);
        assert!(ok, "{emulator}: {stderr}");
        assert!(stdout.contains("mode:            on-demand"), "{emulator}: {stdout}");
        assert!(stdout.contains(&format!("encryption:      KMS {KEY}")), "{emulator}: {stdout}");
        let (ok, stdout, stderr) = tributary(&["--config", config, "check"], &AWS_ENV, None);
        assert!(ok, "{emulator}: {stdout}{stderr}");
        assert!(stdout.contains(&format!("(on-demand), encrypted with {KEY}")), "{emulator}: {stdout}");

        let event = "{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"Sealed\"}\n";
        let (ok, _, stderr) =
            tributary(&["--config", config, "send", "--source", "src_web", "-"], &AWS_ENV, Some(event));
        assert!(ok && stderr.contains("sealed: 1 delivered"), "{emulator}: {stderr}");
        let records = read_at_least(&admin_for(&url).await, &stream, 1).await;
        assert_eq!(records.len(), 1, "{emulator}");
        let (ok, stdout, stderr) = tributary(
            &["--config", config, "streams", "describe", "--destination", "sealed", "--hot-keys"],
            &AWS_ENV,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert!(stdout.contains("hot keys (last minute, by records):"), "{emulator}: {stdout}");
        let line = stdout.lines().find(|l| l.ends_with("\"u1\"")).unwrap_or_else(|| panic!("{emulator}: {stdout}"));
        assert!(line.trim_start().starts_with("1 records"), "{emulator}: {line}");

        let (ok, stdout, stderr) = tributary(
            &["--config", config, "iam", "policy", "--destination", "sealed", "--account-id", "123456789012"],
            &[],
            None,
        );
        assert!(ok, "{stderr}");
        let policy: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            policy["Statement"][1],
            json!({"Sid": "TributaryKinesisEncryption", "Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": KEY})
        );
    }
}
