//! Segment's own client libraries, unchanged, against `tributary serve`, read back from the stream.

use std::process::Command;

use serde_json::Value;
use tests::env::dummy_credentials;
use tests::stream::{client, create, read_at_least, unique_name};

use crate::scratch;
use crate::server::{Server, WRITE_KEY, folder, kinesis_destination};

const PYTHON: &str = r#"
import sys
import segment.analytics as analytics

failures = []
analytics.write_key = sys.argv[1]
analytics.host = sys.argv[2]
analytics.gzip = True
analytics.on_error = lambda error, items: failures.append(error)
user = "py_user"
analytics.identify(user_id=user, traits={"plan": "pro"})
analytics.track(user_id=user, event="Python Event", properties={"n": 1})
analytics.page(user_id=user, name="Home", properties={"path": "/"})
analytics.screen(user_id=user, name="Main")
analytics.group(user_id=user, group_id="py_group", traits={"name": "Py Inc"})
analytics.alias(previous_id="py_previous", user_id=user)
analytics.flush()
analytics.shutdown()
if failures:
    print("failures:", failures, file=sys.stderr)
    sys.exit(1)
"#;

const NODE: &str = r#"
const { Analytics } = require('@segment/analytics-node');
const [writeKey, host] = process.argv.slice(1);
const analytics = new Analytics({ writeKey, host, maxRetries: 2 });
analytics.on('error', (error) => { console.error(error); process.exitCode = 1; });
const userId = 'node_user';
analytics.identify({ userId, traits: { plan: 'pro' } });
analytics.track({ userId, event: 'Node Event', properties: { n: 1 } });
analytics.page({ userId, name: 'Home', properties: { path: '/' } });
analytics.screen({ userId, name: 'Main' });
analytics.group({ userId, groupId: 'node_group', traits: { name: 'Node Inc' } });
analytics.alias({ userId, previousId: 'node_previous' });
analytics.closeAndFlush().then(() => {});
"#;

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn analytics_python_and_analytics_node_deliver_all_six_calls() {
    let (python, node_modules) = tests::env::clients();
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let stream = unique_name("clients");
    let admin = client(&url, dummy_credentials()).await;
    create(&admin, &stream, 2).await;
    let config = folder("clients", &[("main", &kinesis_destination("main", &stream, &url, "max_in_flight = 1"))]);
    let server = Server::start(&config, &scratch("clients-spool"), &[]).await;

    run(Command::new(&python).args(["-c", PYTHON, WRITE_KEY, &server.url]), "analytics-python");
    run(
        Command::new("node").args(["-e", NODE, WRITE_KEY, &server.url]).env("NODE_PATH", &node_modules),
        "analytics-node",
    );

    let records = read_at_least(&admin, &stream, 12).await;
    assert_eq!(records.len(), 12, "records: {records:?}\nserver log:\n{}", server.log());
    for (user, library) in [("py_user", "analytics-python"), ("node_user", "@segment/analytics-node")] {
        let mine: Vec<(Value, String)> = records
            .iter()
            .map(|r| (serde_json::from_slice::<Value>(&r.data).unwrap(), r.partition_key.clone()))
            .filter(|(m, _)| m["userId"] == user)
            .collect();
        let mut kinds: Vec<&str> = mine.iter().map(|(m, _)| m["type"].as_str().unwrap()).collect();
        kinds.sort();
        assert_eq!(kinds, ["alias", "group", "identify", "page", "screen", "track"], "{user}");
        for (message, key) in &mine {
            assert_eq!(key, user, "{message}");
            assert_eq!(message["context"]["library"]["name"], library, "{message}");
            assert!(message["messageId"].as_str().is_some_and(|id| !id.is_empty()), "{message}");
            assert!(message["receivedAt"].is_string() && message["originalTimestamp"].is_string(), "{message}");
            assert!(message.get("writeKey").is_none(), "{message}");
        }
    }
}

const PYTHON_MIXED: &str = r#"
import sys
import segment.analytics as analytics

failures = []
analytics.write_key = sys.argv[1]
analytics.host = sys.argv[2]
analytics.on_error = lambda error, items: failures.append(error)
analytics.track(user_id="py_mixed", event="Before", message_id="py-before")
# The library lets this through; Segment (and Tributary) refuse a messageId over 100 characters.
analytics.track(user_id="py_mixed", event="Refused", message_id="x" * 150)
analytics.track(user_id="py_mixed", event="After", message_id="py-after")
analytics.flush()
analytics.shutdown()
if failures:
    print("failures:", failures, file=sys.stderr)
    sys.exit(1)
"#;

const NODE_MIXED: &str = r#"
const { Analytics } = require('@segment/analytics-node');
const [writeKey, host] = process.argv.slice(1);
const analytics = new Analytics({ writeKey, host, maxRetries: 0, flushAt: 10 });
analytics.on('error', (error) => { console.error(error); process.exitCode = 1; });
analytics.track({ userId: 'node_mixed', event: 'Before' });
// The library counts groupId as an identity; Segment (and Tributary) need userId or anonymousId.
analytics.group({ groupId: 'node_orphan', traits: { name: 'Orphan' } });
analytics.track({ userId: 'node_mixed', event: 'After' });
analytics.closeAndFlush().then(() => {});
"#;

#[tokio::test]
async fn a_library_batch_with_one_refused_message_still_delivers_the_others() {
    let (python, node_modules) = tests::env::clients();
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let stream = unique_name("clients-mixed");
    let admin = client(&url, dummy_credentials()).await;
    create(&admin, &stream, 1).await;
    let spool = scratch("clients-mixed-spool");
    let config = folder("clients-mixed", &[("main", &kinesis_destination("main", &stream, &url, "max_in_flight = 1"))]);
    let server = Server::start(&config, &spool, &[]).await;

    run(Command::new(&python).args(["-c", PYTHON_MIXED, WRITE_KEY, &server.url]), "analytics-python");
    run(
        Command::new("node").args(["-e", NODE_MIXED, WRITE_KEY, &server.url]).env("NODE_PATH", &node_modules),
        "analytics-node",
    );

    let records = read_at_least(&admin, &stream, 4).await;
    let mut landed: Vec<String> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap())
        .map(|m| format!("{} {}", m["userId"].as_str().unwrap(), m["event"].as_str().unwrap()))
        .collect();
    landed.sort();
    assert_eq!(
        landed,
        ["node_mixed After", "node_mixed Before", "py_mixed After", "py_mixed Before"],
        "server log:\n{}",
        server.log()
    );
    let mut refused: Vec<String> = crate::acceptance::rejected_list(&spool, &[])
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        ["messageId: is 150 characters long, more than the 100 allowed", "userId or anonymousId: is required"]
    );
}
