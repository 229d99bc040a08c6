//! Destination filters as a team uses them: reviewed with `filters test`, enforced by `serve`, `send` and
//! `personas sync`, and checked by `validate`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder};
use crate::{scratch, tributary, write_files};

/// Filters of every action: a test-event drop for every source, a drop scoped to another source, a 0% sample of
/// pages, PII removed from every message, and only the plan's traits kept on identify calls.
const FILTERS: &str = r#"
[[filters]]
if = "type = 'track' and match(event, 'Test *')"
action = "drop"

[[filters]]
source = "src_other"
action = "drop"

[[filters]]
if = "type = 'page'"
action = "sample"
percent = 0

[[filters]]
action = "drop_properties"
fields = ["properties.email", "context.ip"]

[[filters]]
if = "type = 'identify'"
action = "allow_properties"
fields = ["traits.plan", "traits.name"]

[[filters]]
if = "number(properties.total) > 100"
action = "drop"
"#;

/// A destination `filtered` with [`FILTERS`] writing to `path`.
fn filtered_destination(path: &std::path::Path) -> String {
    format!("{}{FILTERS}", file_destination("filtered", path))
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The messages every test sends, with what the filtered destination must make of each.
fn messages() -> Vec<Value> {
    vec![
        json!({"type": "track", "messageId": "m1", "userId": "u1", "event": "Test Event"}),
        json!({"type": "track", "messageId": "m2", "userId": "u1", "event": "Order Completed",
               "properties": {"total": 30, "email": "a@example.com", "sku": "X"}, "context": {"ip": "10.0.0.1", "locale": "en"}}),
        json!({"type": "page", "messageId": "m3", "anonymousId": "a1", "name": "Home"}),
        json!({"type": "identify", "messageId": "m4", "userId": "u1",
               "traits": {"plan": "pro", "name": "Ada", "email": "a@example.com"}}),
        json!({"type": "track", "messageId": "m5", "userId": "u2", "event": "Order Completed",
               "properties": {"total": "not a number"}}),
        json!({"type": "track", "messageId": "m6", "userId": "u2", "event": "Big Order", "properties": {"total": 500}}),
    ]
}

/// What the filtered destination receives of [`messages`]: m2 without its email and IP, m4 with only plan and name.
fn assert_received(received: &[Value]) {
    let ids: Vec<&str> = received.iter().map(|m| m["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m2", "m4"], "{received:#?}");
    assert_eq!(received[0]["properties"], json!({"total": 30, "sku": "X"}));
    assert_eq!(received[0]["context"]["locale"], "en");
    assert!(received[0]["context"].get("ip").is_none(), "{}", received[0]);
    assert_eq!(received[1]["traits"], json!({"plan": "pro", "name": "Ada"}));
}

fn ndjson(messages: &[Value]) -> String {
    messages.iter().map(|m| format!("{m}\n")).collect()
}

/// A config folder: `src_web` connected to the destination `filtered` (writing to the path returned), and
/// `src_other`, connected to nothing.
fn filtered_folder(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    let out = dir.join("out.ndjson");
    write_files(
        &dir,
        &[
            ("destinations/filtered.toml", &filtered_destination(&out)),
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"filtered\"]\n",
            ),
            ("sources/other.toml", "id = \"src_other\"\nname = \"Other\"\nwrite_key = { env = \"O\" }\n"),
        ],
    );
    (dir, out)
}

#[test]
fn filters_test_shows_what_each_filter_did_and_what_the_destination_receives() {
    let (dir, _) = filtered_folder("filters-test");
    write_files(&dir, &[("events.ndjson", &format!("{}not json\n", ndjson(&messages())))]);
    let config = dir.to_str().unwrap();
    let file = dir.join("events.ndjson");
    let args = ["--config", config, "filters", "test", "--destination", "filtered", "--source", "src_web"];
    let (ok, stdout, stderr) = tributary(&[&args[..], &[file.to_str().unwrap()]].concat(), &[], None);
    assert!(!ok, "a malformed line fails the review");
    assert!(stderr.contains("events.ndjson:7: invalid JSON"), "{stderr}");
    assert!(stderr.contains("filtered: 2 delivered, 4 dropped, 1 malformed lines"), "{stderr}");
    let reports: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 6, "{stdout}");
    let received: Vec<Value> =
        reports.iter().filter(|r| r["delivered"] == true).map(|r| r["receives"].clone()).collect();
    assert_received(&received);
    // Each report says which filter decided, in Segment's order whatever the file's: sample, drop, drop
    // properties, allow properties; the filter scoped to src_other never runs for src_web.
    let steps = |n: usize| -> Vec<(String, String)> {
        reports[n]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["filter"].as_str().unwrap().to_owned(), s["result"].as_str().unwrap().to_owned()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    };
    assert_eq!(reports[0]["line"], 1);
    assert_eq!(reports[0]["messageId"], "m1");
    assert_eq!(steps(0), pairs(&[("filters[2]", "skipped"), ("filters[0]", "dropped")]));
    assert_eq!(reports[0]["receives"], Value::Null);
    assert_eq!(
        steps(1),
        pairs(&[
            ("filters[2]", "skipped"),
            ("filters[0]", "skipped"),
            ("filters[5]", "skipped"),
            ("filters[3]", "removed"),
            ("filters[4]", "skipped"),
        ])
    );
    assert_eq!(reports[1]["filters"][3]["fields"], json!(["properties.email", "context.ip"]));
    assert_eq!(steps(2), pairs(&[("filters[2]", "dropped")]));
    // A condition that fails on a message (number() of a word) drops it, as Segment does, and says why.
    let failed = reports[4]["filters"].as_array().unwrap().last().unwrap();
    assert_eq!(failed["filter"], "filters[5]");
    assert_eq!(failed["result"], "failed, so dropped");
    assert!(failed["error"].as_str().unwrap().contains("as a number"), "{failed}");
    assert_eq!(steps(5).last().unwrap(), &("filters[5]".to_owned(), "dropped".to_owned()));

    // From the other source, its own filter drops everything.
    let args = ["--config", config, "filters", "test", "--destination", "filtered", "--source", "src_other"];
    let one = dir.join("one.ndjson");
    std::fs::write(&one, ndjson(&messages()[1..2])).unwrap();
    let (ok, stdout, stderr) = tributary(&[&args[..], &[one.to_str().unwrap()]].concat(), &[], None);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["delivered"], false, "{report}");
    assert!(stderr.contains("filtered: 0 delivered, 1 dropped, 0 malformed lines"), "{stderr}");

    // An unknown destination or source is named.
    let (ok, _, stderr) = tributary(&["--config", config, "filters", "test", "--destination", "nope", "x"], &[], None);
    assert!(!ok && stderr.contains("no destination is named \"nope\""), "{stderr}");
    let args = ["--config", config, "filters", "test", "--destination", "filtered", "--source", "src_nope", "x"];
    let (ok, _, stderr) = tributary(&args, &[], None);
    assert!(!ok && stderr.contains("no source has the ID \"src_nope\""), "{stderr}");
}

#[tokio::test]
async fn serve_filters_before_storing_and_counts_what_filters_did() {
    let dir = scratch("filters-serve-out");
    let (filtered, plain) = (dir.join("filtered.ndjson"), dir.join("plain.ndjson"));
    let config = folder(
        "filters-serve",
        &[("filtered", &filtered_destination(&filtered)), ("plain", &file_destination("plain", &plain))],
    );
    write_files(
        &config,
        &[("sources/other.toml", "id = \"src_other\"\nname = \"Other\"\nwrite_key = { env = \"O\" }\n")],
    );
    let server = Server::start_with_env(&config, &scratch("filters-serve-spool"), &[], &[("O", "other-key")]).await;
    let client = reqwest::Client::new();
    let (status, body) = server.post(&client, "/v1/batch", &json!({"batch": messages()})).await;
    assert_eq!(status, 200, "{body}");
    let mut waited = 0;
    while lines(&plain).len() < 6 || lines(&filtered).len() < 2 {
        assert!(waited < 100, "not delivered: {:?} {:?}\n{}", lines(&plain), lines(&filtered), server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // The destination without filters gets every message as sent; the filtered one only what its filters leave.
    let mut all: Vec<String> = lines(&plain).iter().map(|m| m["messageId"].as_str().unwrap().to_owned()).collect();
    all.sort();
    assert_eq!(all, ["m1", "m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(lines(&plain).iter().find(|m| m["messageId"] == "m2").unwrap()["properties"]["email"], "a@example.com");
    let mut received = lines(&filtered);
    received.sort_by_key(|m| m["messageId"].as_str().unwrap().to_owned());
    assert_received(&received);
    for (action, count) in
        [("drop", 2.0), ("sample", 1.0), ("error", 1.0), ("drop_properties", 1.0), ("allow_properties", 1.0)]
    {
        let series = format!("tributary_messages_filtered_total{{destination=\"filtered\",action=\"{action}\"}}");
        assert_eq!(server.metric(&client, &series).await, count, "{series}");
    }
}

#[test]
fn send_filters_and_says_how_many_were_filtered_out() {
    let (dir, out) = filtered_folder("filters-send");
    let args = ["--config", dir.to_str().unwrap(), "send", "--source", "src_web", "-"];
    let (ok, _, stderr) = tributary(&args, &[], Some(&ndjson(&messages())));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("filtered: 2 delivered, 0 failed, 4 filtered out"), "{stderr}");
    assert_received(&lines(&out));
}

#[test]
fn personas_calls_pass_through_the_destinations_filters() {
    let dir = scratch("filters-personas");
    let out = dir.join("out.ndjson");
    // Only joins reach this destination: Engage's exits are dropped by a filter on the audience's source.
    let destination = format!(
        "{}\n[[filters]]\nsource = \"spa_1\"\nif = \"traits.vip = false\"\naction = \"drop\"\n\n[[filters]]\naction = \"drop_properties\"\nfields = [\"context.personas\"]\n",
        file_destination("out", &out)
    );
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &destination),
            (
                "audiences/vip.toml",
                "name = \"VIP\"\nkind = \"audience\"\ncomputation_id = \"aud_1\"\nspace_id = \"spa_1\"\nnamespace = \"spa_1\"\ndestinations = [\"out\"]\n[source]\npath = \"members.csv\"\n",
            ),
            ("members.csv", "user_id\nu1\nu2\n"),
        ],
    );
    let state = dir.join("state");
    let sync = || {
        let args = ["--config", dir.to_str().unwrap(), "personas", "sync", "--state-dir", state.to_str().unwrap()];
        let (ok, _, stderr) = tributary(&args, &[], None);
        assert!(ok, "{stderr}");
    };
    sync();
    std::fs::write(dir.join("members.csv"), "user_id\nu2\nu3\n").unwrap();
    sync();
    let sent = lines(&out);
    let joined: Vec<(&str, &Value)> =
        sent.iter().map(|m| (m["userId"].as_str().unwrap(), &m["traits"]["vip"])).collect();
    assert_eq!(joined, [("u1", &json!(true)), ("u2", &json!(true)), ("u3", &json!(true))], "{sent:#?}");
    assert!(sent.iter().all(|m| m["context"].get("personas").is_none()), "{sent:#?}");
}

#[test]
fn validate_names_the_filter_the_key_and_the_column() {
    let dir = scratch("filters-validate");
    let destination = format!(
        "{}\n[[filters]]\nif = \"type = 'track' and\"\naction = \"drop\"\n\n[[filters]]\nsource = \"src_typo\"\naction = \"sample\"\n\n[[filters]]\naction = \"allow_properties\"\nfields = [\"userId\"]\n\n[[filters]]\naction = \"drop\"\nif = \"match(event, 'a'\"\n",
        file_destination("out", &dir.join("out.ndjson"))
    );
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &destination),
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"out\"]\n",
            ),
        ],
    );
    let (ok, _, stderr) = tributary(&["--config", dir.to_str().unwrap(), "validate"], &[("K", "k")], None);
    assert!(!ok);
    for expected in [
        "destinations/out.toml: filters[0].if: column 19: expected a value, a path or a function at the end",
        "destinations/out.toml: filters[1].source: no source is named \"src_typo\"",
        "destinations/out.toml: filters[1].percent: sample needs percent = 0 to 100",
        "destinations/out.toml: filters[2].fields: \"userId\" is not a path under properties, traits or context",
        "destinations/out.toml: filters[3].if: column 17: expected ',' or ')' at the end",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

/// The README's example loads as written, on a file destination, and does what the README says of it.
#[test]
fn the_readmes_example_filters_load_and_run() {
    let readme = std::fs::read_to_string(crate::configs().join("../README.md")).unwrap();
    let section = &readme[readme.find("## Destination filters").expect("the README has the section")..];
    let block = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let dir = scratch("filters-readme");
    let out = dir.join("out.ndjson");
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &format!("{}{block}", file_destination("out", &out))),
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"out\"]\n",
            ),
        ],
    );
    let input = ndjson(&[
        json!({"type": "track", "messageId": "r1", "userId": "u", "event": "Test Signup"}),
        json!({"type": "track", "messageId": "r2", "userId": "u", "event": "Signup", "properties": {"email": "e@x.io", "plan": "pro"}}),
    ]);
    let args = ["--config", dir.to_str().unwrap(), "send", "--source", "src_web", "-"];
    let (ok, _, stderr) = tributary(&args, &[], Some(&input));
    assert!(ok, "{stderr}");
    let sent = lines(&out);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["properties"], json!({"plan": "pro"}));
}
