//! Tracking plans as a team uses them: a Protocols-style plan in the config folder, a source that allows, omits or
//! blocks what violates it, violations forwarded as `Violation Generated`, `plan check` for CI, `validate` naming
//! the rule at fault.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder_with};
use crate::{scratch, tributary, write_files};

/// The plan of the governance suite: Order Completed and its friends, unplanned events blocked.
const PLAN: &str = include_str!("../../../governance/tests/integration/plans/ecommerce.json");

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn wait_for(path: &Path, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        if lines(path).len() >= n {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return lines(path);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} lines did not arrive in {}: {:?}", path.display(), lines(path));
}

/// A config folder whose source checks the plan with `table` (the `[tracking_plan]` lines), delivering to `out`
/// and forwarding violations to `violations`.
fn folder(name: &str, out: &Path, violations: &Path, table: &str) -> std::path::PathBuf {
    let destinations =
        [("out", file_destination("out", out)), ("violations", file_destination("violations", violations))];
    // Only `out` is connected: the violations destination gets only what the plan forwards.
    let config = folder_with(name, &[("out", &destinations[0].1)], table);
    write_files(
        &config,
        &[("destinations/violations.toml", &destinations[1].1), ("tracking-plans/ecommerce.json", PLAN)],
    );
    config
}

fn batch() -> Value {
    json!({"batch": [
        {"type": "track", "messageId": "good", "userId": "u1", "event": "Order Completed",
         "properties": {"order_id": "o1", "total": 27.5, "products": [{"product_id": "p1"}]}},
        {"type": "track", "messageId": "bad", "userId": "u1", "event": "Order Completed",
         "properties": {"order_id": "o2", "total": "30", "gift_note": "hi", "products": []}},
        {"type": "track", "messageId": "unplanned", "userId": "u1", "event": "Order Refunded"},
        {"type": "identify", "messageId": "who", "userId": "u1", "traits": {"email": "jane@example.com", "plan": "pro"}},
    ]})
}

#[tokio::test]
async fn serve_omits_what_violates_blocks_unplanned_events_and_forwards_each_violation() {
    let dir = scratch("plan-omit");
    let (out, violations) = (dir.join("out.ndjson"), dir.join("violations.ndjson"));
    // The source's privacy controls run after the plan: the plan sees the email as sent and finds it valid.
    let table = "[tracking_plan]\nname = \"ecommerce\"\non_violation = \"omit_properties\"\nforward_violations_to = \"violations\"\n\n[privacy]\nhash = [\"traits.email\"]\nprivacy_key = { env = \"PLAN_PRIVACY_KEY\" }\n";
    let config = folder("plan-omit", &out, &violations, table);
    let spool = scratch("plan-omit-spool");
    let env = [("PLAN_PRIVACY_KEY", "plan-privacy-key-0123456789")];
    let server = Server::start_with_env(&config, &spool, &[], &env).await;
    let client = reqwest::Client::new();
    let (status, body) = server.post(&client, "/v1/batch", &batch()).await;
    assert_eq!(status, 200, "{body}");

    let delivered = wait_for(&out, 3).await;
    let ids: Vec<&str> = delivered.iter().map(|m| m["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["good", "bad", "who"], "the unplanned event is kept out");
    assert_eq!(delivered[0]["properties"]["total"], 27.5);
    assert_eq!(delivered[1]["properties"], json!({"order_id": "o2", "products": []}), "total and gift_note omitted");
    assert_ne!(delivered[2]["traits"]["email"], "jane@example.com", "hashed after the plan passed it");

    let forwarded = wait_for(&violations, 3).await;
    let mut seen: Vec<(String, String)> = forwarded
        .iter()
        .map(|v| {
            assert_eq!(v["event"], "Violation Generated");
            assert_eq!(v["userId"], "schema-violations");
            assert!(v["messageId"].as_str().unwrap().starts_with("sch-"), "{v}");
            let p = &v["properties"];
            assert_eq!(
                (p["sourceID"].as_str(), p["trackingPlanName"].as_str()),
                (Some("src_test"), Some("Acme Ecommerce TP"))
            );
            (p["violationType"].as_str().unwrap().to_owned(), p["violationField"].as_str().unwrap().to_owned())
        })
        .collect();
    seen.sort();
    let expected =
        [("Additional Properties", "properties.gift_note"), ("Type", "properties.total"), ("Unplanned Event", "event")];
    assert_eq!(seen, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let bad = forwarded.iter().find(|v| v["properties"]["violationType"] == "Type").unwrap();
    assert_eq!(bad["properties"]["eventMessageID"], "bad");
    assert_eq!(bad["properties"]["eventName"], "Order Completed");
    assert!(!bad.to_string().contains("\"30\""), "a forwarded violation never holds the value: {bad}");

    for (kind, count) in [("type", 1.0), ("additional_properties", 1.0), ("unplanned", 1.0)] {
        let series = format!("tributary_plan_violations_total{{source=\"src_test\",kind=\"{kind}\"}}");
        assert_eq!(server.metric(&client, &series).await, count, "{series}");
    }
    let (ok, rejected, stderr) = tributary(&["rejected", "--spool-dir", spool.to_str().unwrap(), "list"], &[], None);
    assert!(ok, "{stderr}");
    let rejected: Vec<Value> = rejected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["message"]["messageId"], "unplanned");
    assert_eq!(rejected[0]["field"], "event");
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(reason.contains("Acme Ecommerce TP") && reason.contains("not in the tracking plan"), "{reason}");
}

#[tokio::test]
async fn a_blocking_source_keeps_violating_messages_in_the_rejected_table_with_the_schema_path() {
    let dir = scratch("plan-block");
    let (out, violations) = (dir.join("out.ndjson"), dir.join("violations.ndjson"));
    let config =
        folder("plan-block", &out, &violations, "[tracking_plan]\nname = \"ecommerce\"\non_violation = \"block\"\n");
    let spool = scratch("plan-block-spool");
    let server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    let missing = json!({"type": "track", "messageId": "missing", "userId": "u", "event": "Order Completed",
                         "properties": {"total": 3, "products": []}});
    let (status, _) = server.post(&client, "/v1/batch", &json!({"batch": [batch()["batch"][0], missing]})).await;
    assert_eq!(status, 200);
    let delivered = wait_for(&out, 1).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["messageId"], "good");
    let (_, rejected, _) = tributary(&["rejected", "--spool-dir", spool.to_str().unwrap(), "list"], &[], None);
    let rejected: Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(rejected["field"], "properties.order_id");
    let reason = rejected["reason"].as_str().unwrap();
    assert!(reason.contains("properties.order_id is required (#/properties/properties/required"), "{reason}");
    assert!(!violations.exists() || lines(&violations).is_empty(), "nothing forwarded unless asked");
}

#[test]
fn plan_check_reports_each_messages_violations_and_fails_ci_on_any() {
    let dir = scratch("plan-check");
    let config = folder(
        "plan-check",
        &dir.join("out.ndjson"),
        &dir.join("v.ndjson"),
        "[tracking_plan]\nname = \"ecommerce\"\non_violation = \"omit_properties\"\n",
    );
    let file = dir.join("events.ndjson");
    let events: Vec<String> = batch()["batch"].as_array().unwrap().iter().map(Value::to_string).collect();
    std::fs::write(&file, events.join("\n")).unwrap();
    let check = |file: &Path| {
        tributary(
            &["--config", config.to_str().unwrap(), "plan", "check", "--source", "src_test", file.to_str().unwrap()],
            &[],
            None,
        )
    };
    let (ok, stdout, stderr) = check(&file);
    assert!(!ok, "violations fail the check: {stderr}");
    let reports: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 4);
    assert_eq!(reports[0]["violations"], json!([]));
    assert_eq!(reports[0]["outcome"], "delivered");
    assert_eq!(reports[1]["outcome"], "delivered without the properties that violate");
    let fields: Vec<&str> =
        reports[1]["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["properties.total", "properties.gift_note"]);
    assert_eq!(reports[1]["violations"][0]["schema_path"], "#/properties/properties/properties/total/type");
    assert_eq!(reports[2]["outcome"], "kept out");
    assert!(stderr.contains("2 keep to the plan, 2 violate it"), "{stderr}");

    let clean = dir.join("clean.ndjson");
    std::fs::write(&clean, format!("{}\n{}\n", events[0], events[3])).unwrap();
    let (ok, _, stderr) = check(&clean);
    assert!(ok, "{stderr}");
}

#[test]
fn send_applies_the_plan_and_names_each_line_it_keeps_out() {
    let dir = scratch("plan-send");
    let out = dir.join("out.ndjson");
    let config = folder("plan-send", &out, &dir.join("v.ndjson"), "[tracking_plan]\nname = \"ecommerce\"\n");
    let events: Vec<String> = batch()["batch"].as_array().unwrap().iter().map(Value::to_string).collect();
    let input = events.join("\n") + "\n";
    let env = [("TEST_WRITE_KEY", "k")];
    let (ok, _, stderr) =
        tributary(&["--config", config.to_str().unwrap(), "send", "--source", "src_test", "-"], &env, Some(&input));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("-:3: not sent (event)") || stderr.contains("<stdin>:3: not sent (event)"), "{stderr}");
    let ids: Vec<String> = lines(&out).iter().map(|m| m["messageId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["good", "bad", "who"], "allow: the violating order is delivered as sent");
    assert_eq!(lines(&out)[1]["properties"]["total"], "30");
}

#[test]
fn validate_names_the_plan_file_and_rule_at_fault() {
    let dir = scratch("plan-validate");
    let validate = |config: &Path| tributary(&["--config", config.to_str().unwrap(), "validate"], &[], None);
    let config = folder(
        "plan-missing",
        &dir.join("o"),
        &dir.join("v"),
        "[tracking_plan]\nname = \"nope\"\nforward_violations_to = \"elsewhere\"\n",
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    assert!(stderr.contains("tracking_plan.name") && stderr.contains("tracking-plans/nope.json"), "{stderr}");
    assert!(stderr.contains("tracking_plan.forward_violations_to") && stderr.contains("\"elsewhere\""), "{stderr}");

    let config = folder("plan-broken", &dir.join("o"), &dir.join("v"), "[tracking_plan]\nname = \"ecommerce\"\n");
    let broken = PLAN.replace("\"type\": \"number\", \"minimum\": 0", "\"type\": 12");
    assert_ne!(broken, PLAN);
    write_files(
        &config,
        &[
            ("tracking-plans/ecommerce.json", &broken),
            ("tracking-plans/torn.json", "{\"rules\": [\n  {\"type\": \"TRACK\",,}]}"),
        ],
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    assert!(stderr.contains("ecommerce.json") && stderr.contains("rules[1].jsonSchema"), "{stderr}");
    assert!(stderr.contains("torn.json") && stderr.contains("line 2 column"), "{stderr}");
}

#[tokio::test]
async fn a_message_of_many_violations_costs_ten_forwarded_calls_and_a_bounded_reason() {
    let dir = scratch("plan-many");
    let (out, violations) = (dir.join("out.ndjson"), dir.join("violations.ndjson"));
    let table =
        "[tracking_plan]\nname = \"ecommerce\"\non_violation = \"block\"\nforward_violations_to = \"violations\"\n";
    let config = folder("plan-many", &out, &violations, table);
    let spool = scratch("plan-many-spool");
    let server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    let mut properties = json!({"order_id": "o", "total": 1, "products": []});
    for i in 0..50 {
        properties[format!("extra_{i}")] = json!(i);
    }
    let order = json!({"type": "track", "messageId": "many", "userId": "u", "event": "Order Completed", "properties": properties});
    let (status, _) = server.post(&client, "/v1/track", &order).await;
    assert_eq!(status, 200);
    let forwarded = wait_for(&violations, 10).await;
    assert_eq!(forwarded.len(), 10, "one message, ten calls");
    let series = "tributary_plan_violations_total{source=\"src_test\",kind=\"additional_properties\"}";
    assert_eq!(server.metric(&client, series).await, 50.0, "every violation is counted");
    let (_, rejected, _) = tributary(&["rejected", "--spool-dir", spool.to_str().unwrap(), "list"], &[], None);
    let reason =
        serde_json::from_str::<Value>(rejected.lines().next().unwrap()).unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.ends_with("; and 40 more"), "{reason}");
    assert_eq!(reason.matches("is not allowed by the tracking plan").count(), 10, "{reason}");
}
