//! Firehose destinations through `tributary`, read back from the S3 bucket the emulator's delivery streams write:
//! the six call types mapped by name, by type, without regard to case and by `*`, each record exactly the message
//! and a newline; per-record failures retried alone; a role allowed only PutRecord on IAM-enforcing moto; the
//! setup commands; and `validate`'s checks of the mapping.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use tests::firehose::{At, FailingFirehose, bucket, objects, records};
use tests::iam::{ACCOUNT, caller, role};
use tests::stream::unique_name;

use crate::{scratch, tributary, write_files};

const WRITE_KEY: &str = "firehose-suite-write-key";

/// The role Firehose itself would assume to write the bucket (the emulators do not check it).
const DELIVERY_ROLE: &str = "arn:aws:iam::123456789012:role/firehose-writes-bucket";

fn env_of(credentials: &tests::firehose::At) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", credentials.credentials.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", credentials.credentials.secret_access_key().to_owned()),
        ("WK", WRITE_KEY.to_owned()),
    ]
}

fn run(dir: &Path, args: &[&str], env: &[(&'static str, String)]) -> (bool, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["--config", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    tributary(&all, &env, None)
}

/// A Firehose destination file.
fn firehose_destination(name: &str, endpoint: &str, mapping: &[(&str, &str)], extra: &str) -> String {
    let rows: Vec<String> =
        mapping.iter().map(|(event, stream)| format!("  {{ event = {event:?}, stream = {stream:?} }},")).collect();
    format!(
        "name = {name:?}\ntype = \"firehose\"\n[firehose]\nregion = \"us-east-1\"\nendpoint = {endpoint:?}\n{extra}\
         mapping = [\n{}\n]\n[firehose.delivery]\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n",
        rows.join("\n")
    )
}

fn source(id: &str, destinations: &[&str]) -> String {
    let names: Vec<String> = destinations.iter().map(|d| format!("{d:?}")).collect();
    format!("id = {id:?}\nname = {id:?}\nwrite_key = {{ env = \"WK\" }}\ndestinations = [{}]\n", names.join(", "))
}

/// Creates each delivery stream with `tributary streams create`, writing under its own name in `bucket`.
fn create_streams(dir: &Path, destination: &str, streams: &[&str], bucket: &str, env: &[(&'static str, String)]) {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    for stream in streams {
        let prefix = format!("{stream}/");
        let (ok, stdout, stderr) = run(
            dir,
            &[
                "streams",
                "create",
                "--destination",
                destination,
                "--stream",
                stream,
                "--bucket-arn",
                &bucket_arn,
                "--delivery-role",
                DELIVERY_ROLE,
                "--prefix",
                &prefix,
                "--buffer-seconds",
                "0",
            ],
            env,
        );
        assert!(ok, "streams create {stream}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("delivery stream {stream} (Direct PUT)")) && stdout.contains("ACTIVE"),
            "{stdout}"
        );
    }
}

/// The `userId` of each record, in order.
fn users(records: &[String]) -> Vec<String> {
    let mut users: Vec<String> = records
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap()["userId"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

/// The lines of a file destination's output, each with its newline: the exact bytes every sink was given.
fn lines_of(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_inclusive('\n')
        .map(|line| {
            (serde_json::from_str::<Value>(line).unwrap()["userId"].as_str().unwrap().to_owned(), line.to_owned())
        })
        .collect()
}

const SIX_CALL_TYPES: &str = r#"{"type":"track","userId":"u1","event":"Order Completed","properties":{"total":10,"note":"é ✓"}}
{"type":"track","userId":"u2","event":"ORDER COMPLETED"}
{"type":"track","userId":"u3","event":"Product Viewed"}
{"type":"page","userId":"u4","name":"Home"}
{"type":"screen","userId":"u5","name":"Main"}
{"type":"identify","userId":"u6","traits":{"plan":"pro"}}
{"type":"group","userId":"u7","groupId":"g1"}
{"type":"alias","userId":"u8","previousId":"old"}
"#;

#[tokio::test]
async fn the_six_call_types_land_in_s3_by_name_type_case_and_star_as_json_lines() {
    let at = At::shared();
    let env = env_of(&at);
    let bucket = bucket(&at, "fh-six").await;
    let names: Vec<String> =
        ["orders", "tracks", "pages", "apps", "people", "everything"].iter().map(|s| unique_name(s)).collect();
    let [orders, tracks, pages, apps, people, everything] = [0, 1, 2, 3, 4, 5].map(|i| names[i].as_str());
    let mapping = [
        ("Order Completed", orders),
        ("track", tracks),
        ("PAGE", pages),
        ("screen", apps),
        ("Identify", people),
        ("group", people),
        ("alias", people),
        ("*", everything),
    ];
    let dir = scratch("firehose-six");
    let copy = dir.join("copy.ndjson");
    let file = format!("name = \"copy\"\ntype = \"file\"\n[file]\npath = {:?}\n", copy.display().to_string());
    write_files(
        &dir,
        &[
            ("destinations/fh.toml", &firehose_destination("fh", &tests::firehose::url(), &mapping, "")),
            ("destinations/copy.toml", &file),
            ("sources/web.toml", &source("src_web", &["fh", "copy"])),
            ("events.ndjson", SIX_CALL_TYPES),
        ],
    );
    let (ok, stdout, stderr) = run(&dir, &["validate"], &env);
    assert!(ok, "{stdout}{stderr}");
    create_streams(&dir, "fh", &names.iter().map(String::as_str).collect::<Vec<_>>(), &bucket, &env);

    let (ok, stdout, stderr) = run(&dir, &["check", "--destination", "fh"], &env);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{orders} to s3://{bucket}/{orders}/")), "{stdout}");

    let (ok, _, stderr) =
        run(&dir, &["send", "--source", "src_web", dir.join("events.ndjson").to_str().unwrap()], &env);
    assert!(ok && stderr.contains("fh: 8 delivered, 0 failed"), "{stderr}");

    // Each record in S3 is byte for byte what the file destination got: the message's JSON and one newline.
    let given = lines_of(&copy);
    assert_eq!(given.len(), 8);
    let expected = [
        (orders, vec!["u1", "u2"]),
        (tracks, vec!["u1", "u2", "u3"]),
        (pages, vec!["u4"]),
        (apps, vec!["u5"]),
        (people, vec!["u6", "u7", "u8"]),
        (everything, vec!["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]),
    ];
    for (stream, wanted) in expected {
        let landed = records(&at, &bucket, &format!("{stream}/")).await;
        assert_eq!(users(&landed), wanted, "{stream}");
        for record in &landed {
            let user = serde_json::from_str::<Value>(record).unwrap()["userId"].as_str().unwrap().to_owned();
            assert_eq!(record, &given[&user], "{stream}: the record is not the message's JSON and a newline");
        }
    }

    // `tail` reads the same objects back, one line per record.
    let (ok, stdout, stderr) = run(&dir, &["tail", "--destination", "fh", "--stream", orders], &env);
    assert!(ok && stderr.contains("2 records"), "{stdout}{stderr}");
    let tailed: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = tailed.iter().map(|l| l["data"]["event"].as_str().unwrap()).collect();
    assert_eq!(events.len(), 2);
    assert!(events.contains(&"Order Completed") && events.contains(&"ORDER COMPLETED"), "{stdout}");
    assert!(tailed[0]["s3_key"].as_str().unwrap().starts_with(&format!("{orders}/")), "{stdout}");
    // A destination mapping several streams needs the one to read named.
    let (ok, _, stderr) = run(&dir, &["tail", "--destination", "fh"], &env);
    assert!(!ok && stderr.contains("name one with --stream"), "{stderr}");

    let (ok, stdout, stderr) = run(&dir, &["streams", "describe", "--destination", "fh", "--stream", pages], &env);
    assert!(ok, "{stdout}{stderr}");
    for line in ["status:          ACTIVE", "source:          DirectPut", &format!("s3 prefix:       {pages}/")] {
        assert!(stdout.contains(line), "{line:?} not in {stdout}");
    }
}

// The proxy runs on this runtime while `tributary` runs blocking beside it: it needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_batch_answer_fails_are_sent_again_alone_and_land_once() {
    let at = At::shared();
    let env = env_of(&at);
    let bucket = bucket(&at, "fh-retry").await;
    let stream = unique_name("retried");
    let proxy = FailingFirehose::start(&tests::firehose::url(), 2).await;
    let dir = scratch("firehose-retry");
    let copy = dir.join("copy.ndjson");
    let file = format!("name = \"copy\"\ntype = \"file\"\n[file]\npath = {:?}\n", copy.display().to_string());
    let events: String = (0..10)
        .map(|n| format!("{}\n", json!({"type": "track", "userId": format!("u{n}"), "event": "Viewed"})))
        .collect();
    write_files(
        &dir,
        &[
            ("destinations/fh.toml", &firehose_destination("fh", &proxy.url, &[("*", &stream)], "")),
            ("destinations/copy.toml", &file),
            ("sources/web.toml", &source("src_web", &["fh", "copy"])),
            ("events.ndjson", &events),
        ],
    );
    create_streams(&dir, "fh", &[&stream], &bucket, &env);
    let (ok, _, stderr) =
        run(&dir, &["send", "--source", "src_web", dir.join("events.ndjson").to_str().unwrap()], &env);
    assert!(ok && stderr.contains("fh: 10 delivered, 0 failed"), "{stderr}");

    let calls = proxy.calls();
    assert_eq!(calls.len(), 2, "one call, then one for the failed records: {calls:#?}");
    let failed: Vec<&String> = calls[0].records.iter().filter(|(_, f)| *f).map(|(data, _)| data).collect();
    assert_eq!((calls[0].records.len(), failed.len()), (10, 5));
    let resent: Vec<&String> = calls[1].records.iter().map(|(data, _)| data).collect();
    assert_eq!(resent, failed, "the second call carries exactly the failed records, in order");
    let landed = records(&at, &bucket, &format!("{stream}/")).await;
    assert_eq!(landed.len(), 10, "each message once: {landed:#?}");
    let given = lines_of(&copy);
    let mut landed_sorted = landed.clone();
    landed_sorted.sort();
    let mut given_sorted: Vec<String> = given.into_values().collect();
    given_sorted.sort();
    assert_eq!(landed_sorted, given_sorted);
}

#[tokio::test]
async fn a_role_allowed_only_put_record_delivers_one_record_per_call_and_check_says_what_it_lacks() {
    let admin = At::enforcing();
    let bucket = bucket(&admin, "fh-iam").await;
    let (caller_arn, credentials) =
        caller("fh-caller", &["sts:AssumeRole", "sts:GetCallerIdentity", "iam:GetRole"]).await;
    let as_caller = env_of(&At { url: admin.url.clone(), credentials });
    let source_id = unique_name("src_fh");
    let role_name = unique_name("fh-put-only");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": caller_arn},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": [source_id]}}}]});
    // Segment's own template: firehose:PutRecord and nothing else.
    let put_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["firehose:PutRecord"], "Resource": "*"}]});
    let role_arn = role(&role_name, &trust, Some(&put_only)).await;
    assert_eq!(role_arn, format!("arn:aws:iam::{ACCOUNT}:role/{role_name}"));
    let stream = unique_name("put-only");
    let dir = scratch("firehose-iam");
    let role_line = format!("role_address = {role_arn:?}\n");
    write_files(
        &dir,
        &[
            ("destinations/fh.toml", &firehose_destination("fh", &admin.url, &[("*", &stream)], &role_line)),
            ("sources/app.toml", &source(&source_id, &["fh"])),
            (
                "first.ndjson",
                &(0..4).map(|n| format!("{{\"type\":\"identify\",\"userId\":\"u{n}\"}}\n")).collect::<String>(),
            ),
            (
                "then.ndjson",
                &(4..7).map(|n| format!("{{\"type\":\"identify\",\"userId\":\"u{n}\"}}\n")).collect::<String>(),
            ),
        ],
    );
    // The delivery stream is made with the operator's own credentials, not the sending role's.
    create_streams(&dir, "fh", &[&stream], &bucket, &env_of(&admin));

    let (ok, stdout, stderr) = run(&dir, &["check"], &as_caller);
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("FAIL  fh ({source_id})"))
            && stdout.contains("lacks firehose:DescribeDeliveryStream")
            && stdout.contains("tributary iam policy --destination fh"),
        "{stdout}"
    );

    let (ok, _, stderr) =
        run(&dir, &["send", "--source", &source_id, dir.join("first.ndjson").to_str().unwrap()], &as_caller);
    assert!(ok && stderr.contains("fh: 4 delivered, 0 failed"), "{stderr}");
    let first = objects(&admin, &bucket, &format!("{stream}/")).await;
    assert_eq!(first.len(), 4, "PutRecordBatch was denied, so each record went in a PutRecord of its own");
    assert_eq!(users(&records(&admin, &bucket, &format!("{stream}/")).await), ["u0", "u1", "u2", "u3"]);

    // The printed policy grants what batching and check need; with it, check passes and records go in batches.
    let (ok, stdout, stderr) = run(&dir, &["iam", "policy", "--destination", "fh"], &as_caller);
    assert!(ok, "{stderr}");
    let mut policy: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!(["firehose:PutRecord", "firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"])
    );
    assert_eq!(
        policy["Statement"][0]["Resource"],
        json!(format!("arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/{stream}"))
    );
    // moto matches these actions only against "*".
    policy["Statement"][0]["Resource"] = json!("*");
    tests::iam::put_role_policy(&role_name, "kinesis", &policy).await;
    let (ok, stdout, stderr) = run(&dir, &["check"], &as_caller);
    assert!(ok && stdout.contains(&format!("ok    fh ({source_id}): assumed {role_arn}")), "{stdout}{stderr}");
    let (ok, _, stderr) =
        run(&dir, &["send", "--source", &source_id, dir.join("then.ndjson").to_str().unwrap()], &as_caller);
    assert!(ok && stderr.contains("fh: 3 delivered, 0 failed"), "{stderr}");
    let all = objects(&admin, &bucket, &format!("{stream}/")).await;
    assert_eq!(all.len(), 5, "the three later records went in one PutRecordBatch");

    let (ok, stdout, stderr) = run(&dir, &["iam", "trust", "--destination", "fh"], &as_caller);
    assert!(ok, "{stderr}");
    let trust: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"], json!([source_id]), "{stdout}");
}

#[test]
fn validate_names_each_mapping_problem_with_its_file_and_row() {
    let dir = scratch("firehose-validate");
    write_files(
        &dir,
        &[
            ("destinations/empty.toml", &firehose_destination("empty", "http://127.0.0.1:9", &[], "")),
            (
                "destinations/bad.toml",
                &firehose_destination(
                    "bad",
                    "http://127.0.0.1:9",
                    &[("*", "has space"), ("page", &"x".repeat(65))],
                    "",
                ),
            ),
            (
                "destinations/nostream.toml",
                "name = \"nostream\"\ntype = \"firehose\"\n[firehose]\nregion = \"us-east-1\"\nmapping = [{ event = \"page\" }]\n",
            ),
            (
                "destinations/kinesis.toml",
                "name = \"k\"\ntype = \"kinesis\"\n[firehose]\nregion = \"us-east-1\"\nmapping = []\n",
            ),
        ],
    );
    let (ok, stdout, stderr) = run(&dir, &["validate"], &[]);
    assert!(!ok, "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    for expected in [
        "empty.toml: firehose.mapping: maps no event to a delivery stream",
        "bad.toml: firehose.mapping: row 1 ({ event = \"*\", stream = \"has space\" }): the stream \"has space\" holds ' '",
        "bad.toml: firehose.mapping: row 2",
        "is not 1 to 64 characters long",
        "nostream.toml",
        "nostream.toml: firehose.mapping.0.stream: is required",
        "kinesis.toml: firehose: is only for firehose destinations",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
}

#[tokio::test]
async fn serve_delivers_to_firehose_and_honours_its_catalog_name_in_integrations() {
    let at = At::shared();
    let bucket = bucket(&at, "fh-serve").await;
    let stream = unique_name("served");
    let destination = firehose_destination("fh", &tests::firehose::url(), &[("*", &stream)], "");
    let dir = crate::server::folder("firehose-serve", &[("fh", &destination)]);
    create_streams(&dir, "fh", &[&stream], &bucket, &env_of(&at));
    let server = crate::server::Server::start(&dir, &scratch("firehose-serve-spool"), &[]).await;
    let http = reqwest::Client::new();
    let batch = json!({"batch": [
        {"type": "track", "userId": "off", "event": "A", "integrations": {"Amazon Kinesis Firehose": false}},
        {"type": "track", "userId": "only", "event": "B", "integrations": {"All": false, "Amazon Kinesis Firehose": true}},
        {"type": "identify", "userId": "plain"},
    ]});
    assert_eq!(server.post(&http, "/v1/batch", &batch).await, (200, json!({"success": true})));
    let prefix = format!("{stream}/");
    let mut landed = Vec::new();
    for _ in 0..100 {
        landed = records(&at, &bucket, &prefix).await;
        if landed.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(users(&landed), ["only", "plain"]);
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let line = format!("tributary_firehose_records_total{{destination=\"fh\",stream=\"{stream}\"}} 2");
    assert!(metrics.contains(&line), "{line:?} not in {metrics}");
}

/// A message over Firehose's 1,000 KiB cannot come through ingest (Segment's 32 KB limit), but a computed trait's
/// value can make one: the sync sends the rest, and its log names the record's failure.
#[tokio::test]
async fn a_record_over_1000_kib_is_failed_with_the_reason_and_the_rest_delivered() {
    let at = At::shared();
    let env = env_of(&at);
    let bucket = bucket(&at, "fh-large").await;
    let stream = unique_name("large");
    let dir = scratch("firehose-large");
    let state = dir.join("state");
    let trait_file = "name = \"Bio\"\nkind = \"trait\"\nkey = \"bio\"\ncomputation_id = \"trt_bio\"\nspace_id = \"spa_1\"\n\
                      namespace = \"spa_1\"\ndestinations = [\"fh\"]\nmax_rate = 100000\n[source]\npath = \"bios.csv\"\n\
                      value_column = \"bio\"\n";
    let huge = "x".repeat(1_100 * 1024);
    write_files(
        &dir,
        &[
            (
                "destinations/fh.toml",
                &firehose_destination("fh", &tests::firehose::url(), &[("identify", &stream)], ""),
            ),
            ("audiences/bio.toml", trait_file),
            ("bios.csv", &format!("user_id,bio\nsmall,hello\nlarge,{huge}\n")),
        ],
    );
    create_streams(&dir, "fh", &[&stream], &bucket, &env);
    let state_dir = state.to_str().unwrap();
    let (ok, stdout, stderr) = run(&dir, &["personas", "sync", "--state-dir", state_dir], &env);
    assert!(!ok && stderr.contains("1 failed"), "{stdout}{stderr}");
    assert_eq!(users(&records(&at, &bucket, &format!("{stream}/")).await), ["small"]);
    let (ok, stdout, stderr) = run(&dir, &["personas", "log", "--state-dir", state_dir, "--user", "large"], &env);
    assert!(ok, "{stderr}");
    let entry: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(entry["outcome"], "failed", "{entry}");
    let error = entry["error"].as_str().unwrap();
    assert!(error.contains("as a Firehose record") && error.contains("Firehose takes at most 1024000"), "{error}");
}
