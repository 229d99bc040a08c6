//! `tributary send`, `tail` and `streams`, run as a user runs them.

use serde_json::Value;

use crate::{scratch, tributary, write_files};

fn file_folder(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    let out = dir.join("out.ndjson");
    write_files(
        &dir,
        &[
            (
                "destinations/archive.toml",
                &format!("name = \"archive\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string()),
            ),
            (
                "destinations/off.toml",
                "name = \"off\"\ntype = \"file\"\nenabled = false\n[file]\npath = \"/nonexistent/off.ndjson\"\n",
            ),
            (
                "sources/app.toml",
                "id = \"src_app\"\nname = \"App\"\nwrite_key = { env = \"K\" }\ndestinations = [\"archive\", \"off\"]\n",
            ),
        ],
    );
    (dir, out)
}

#[test]
fn send_reports_malformed_lines_and_delivers_the_rest() {
    let (dir, out) = file_folder("send-malformed");
    let input = concat!(
        "{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"A\"}\n",
        "{\"type\":\"track\",\"userId\":\"u1\"}\n",
        "\n",
        "not json\n",
        "{\"type\":\"identify\",\"anonymousId\":\"a1\",\"integrations\":{\"All\":false}}\n",
        "{\"type\":\"identify\",\"anonymousId\":\"a2\",\"integrations\":{\"All\":false,\"archive\":true}}\n",
    );
    let (ok, _, stderr) =
        tributary(&["--config", dir.to_str().unwrap(), "send", "--source", "src_app", "-"], &[], Some(input));
    assert!(!ok, "malformed lines must fail the run");
    assert!(stderr.contains("<stdin>:2: event: is required"), "{stderr}");
    assert!(stderr.contains("<stdin>:4: invalid JSON at line 1, column 2: expected ident"), "{stderr}");
    assert!(stderr.contains("read 3 messages, 2 malformed lines"), "{stderr}");
    // The disabled destination is not delivered to, and the message that opted out of all is skipped.
    assert!(stderr.contains("archive: 2 delivered, 0 failed"), "{stderr}");
    assert!(!stderr.contains("off:"), "{stderr}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["userId"], "u1");
    assert_eq!(lines[1]["anonymousId"], "a2");
    for line in &lines {
        assert!(line["messageId"].is_string() && line["receivedAt"].is_string(), "not enriched: {line}");
    }
}

#[test]
fn send_to_an_unknown_source_is_an_error() {
    let (dir, _) = file_folder("send-unknown");
    let (ok, _, stderr) =
        tributary(&["--config", dir.to_str().unwrap(), "send", "--source", "src_nope", "-"], &[], Some(""));
    assert!(!ok);
    assert!(stderr.contains("no source has the ID \"src_nope\" (known: src_app)"), "{stderr}");
}

/// `streams create`, `send` and `tail --from-start` against every Kinesis emulator, through the binary.
#[test]
fn send_then_tail_against_the_emulators() {
    for (emulator, url) in tests::env::kinesis_endpoints() {
        let dir = scratch(&format!("tail-{emulator}"));
        let stream = tests::stream::unique_name("cli");
        write_files(
            &dir,
            &[
                (
                    "destinations/kinesis.toml",
                    &format!(
                        "name = \"kinesis\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"{stream}\"\nendpoint = \"{url}\"\n"
                    ),
                ),
                (
                    "sources/web.toml",
                    "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"kinesis\"]\n",
                ),
            ],
        );
        let env = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];
        let config = dir.to_str().unwrap();
        let (ok, stdout, stderr) = tributary(
            &["--config", config, "streams", "create", "--destination", "kinesis", "--shards", "2"],
            &env,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert!(stdout.contains(&format!("created stream {stream} with 2 shards")), "{emulator}: {stdout}");
        let (ok, stdout, stderr) = tributary(
            &["--config", config, "streams", "create", "--destination", "kinesis", "--shards", "2"],
            &env,
            None,
        );
        assert!(ok, "{emulator}: {stderr}");
        assert!(stdout.contains(&format!("stream {stream} already exists; it is ACTIVE")), "{emulator}: {stdout}");
        let (ok, stdout, stderr) =
            tributary(&["--config", config, "streams", "describe", "--destination", "kinesis"], &env, None);
        assert!(ok, "{emulator}: {stderr}");
        assert!(
            stdout.contains("status:          ACTIVE") && stdout.contains("open shards:     2"),
            "{emulator}: {stdout}"
        );

        let events = std::fs::read_to_string(crate::configs().join("demo-events.ndjson")).unwrap();
        let (ok, _, stderr) = tributary(&["--config", config, "send", "--source", "src_web", "-"], &env, Some(&events));
        assert!(ok, "{emulator}: {stderr}");
        assert!(stderr.contains("kinesis: 6 delivered, 0 failed"), "{emulator}: {stderr}");

        let (ok, stdout, stderr) =
            tributary(&["--config", config, "tail", "--destination", "kinesis", "--from-start"], &env, None);
        assert!(ok, "{emulator}: {stderr}");
        let mut records: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 6, "{emulator}: {stdout}");
        records.sort_by_key(|r| r["data"]["type"].as_str().unwrap().to_owned());
        let summary: Vec<(String, String)> = records
            .iter()
            .map(|r| (r["data"]["type"].as_str().unwrap().to_owned(), r["partition_key"].as_str().unwrap().to_owned()))
            .collect();
        let expected = [
            ("alias", "user_1"),
            ("group", "user_1"),
            ("identify", "user_1"),
            ("page", "anon_7"),
            ("screen", "user_2"),
            ("track", "user_1"),
        ];
        assert_eq!(summary, expected.map(|(a, b)| (a.to_owned(), b.to_owned())), "{emulator}");
        for record in &records {
            assert!(record["shard_id"].as_str().unwrap().starts_with("shardId-"), "{emulator}: {record}");
            assert!(!record["sequence_number"].as_str().unwrap().is_empty(), "{emulator}: {record}");
        }
        // The screen call carried a client clock two seconds behind sentAt: the stored timestamp is corrected.
        let screen = &records[4]["data"];
        assert_eq!(screen["originalTimestamp"], "2026-11-25T09:59:58.000Z", "{emulator}");
        assert_ne!(screen["timestamp"], screen["originalTimestamp"], "{emulator}");
    }
}

#[test]
fn send_needs_only_the_secrets_of_the_destinations_it_uses() {
    let (dir, out) = file_folder("send-secrets");
    // Another destination whose secret is not in this environment, connected to no source of this run.
    write_files(
        &dir,
        &[(
            "destinations/elsewhere.toml",
            "name = \"elsewhere\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"s\"\nrole_address = \"arn:aws:iam::123456789012:role/r\"\nsecret_id = { env = \"TRIBUTARY_TEST_UNSET_SECRET\" }\n",
        )],
    );
    let (ok, _, stderr) = tributary(
        &["--config", dir.to_str().unwrap(), "send", "--source", "src_app", "-"],
        &[],
        Some("{\"type\":\"identify\",\"userId\":\"u\"}\n"),
    );
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);
}

#[test]
fn a_memory_budget_below_the_floor_is_refused_naming_the_flag() {
    let (dir, _) = file_folder("memory-budget-floor");
    let config = dir.to_str().unwrap();
    for budget in ["64", "4000000", "1MiB"] {
        let (ok, _, stderr) = tributary(
            &["--config", config, "personas", "sync", "--dry-run", "--memory-budget", budget],
            &[("K", "k")],
            None,
        );
        assert!(!ok, "--memory-budget {budget} was taken");
        assert!(stderr.contains("--memory-budget") && stderr.contains("floor of 4MiB"), "{stderr}");
    }
    // The floor itself is a budget: the flag is taken, and the run goes on to find this folder has no audiences.
    let (_, _, stderr) = tributary(
        &["--config", config, "personas", "sync", "--dry-run", "--memory-budget", "4MiB"],
        &[("K", "k")],
        None,
    );
    assert!(!stderr.contains("--memory-budget") && stderr.contains("defines no audiences"), "{stderr}");
}
