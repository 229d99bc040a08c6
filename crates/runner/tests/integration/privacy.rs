//! Privacy controls as a team uses them: a source's controls before any destination sees a message, a destination's
//! after its filters, in `serve` and `send`; the values never in a log; `validate` naming the key at fault.

use std::time::Duration;

use governance::privacy::hmac_hex;
use serde_json::{Value, json};

use crate::server::{Server, file_destination, folder_with};
use crate::{scratch, tributary, write_files};

const SOURCE_KEY: &str = "source-privacy-key-0123456789";
const DESTINATION_KEY: &str = "destination-privacy-key-9876543210";

/// The source's controls: the email hashed, the IP and any card number dropped.
const SOURCE_PRIVACY: &str = r#"
[privacy]
hash = ["traits.email", "properties.email"]
drop = ["context.ip", "matcher:credit_card"]
privacy_key = { env = "SOURCE_PRIVACY_KEY" }
"#;

/// The destination's controls: phone numbers hashed under its own key, after its filter dropped `notes`.
const DESTINATION_PRIVACY: &str = r#"
[[filters]]
action = "drop_properties"
fields = ["properties.notes"]

[privacy]
hash = ["matcher:phone"]
privacy_key = { env = "DESTINATION_PRIVACY_KEY" }
"#;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn messages() -> Vec<Value> {
    vec![
        json!({"type": "identify", "messageId": "p1", "userId": "u1",
               "traits": {"email": "jane@example.com", "phone": "+14155550123", "plan": "pro"},
               "context": {"ip": "203.0.113.9", "locale": "en-GB"}}),
        json!({"type": "track", "messageId": "p2", "userId": "u1", "event": "Order Completed",
               "properties": {"email": "jane@example.com", "card": "4111 1111 1111 1111", "order": "4111111111111112",
                              "notes": "call (415) 555-0123", "contact": "(415) 555-0123", "total": 30}}),
    ]
}

fn hashed(key: &str, value: &str) -> Value {
    json!(hmac_hex(key.as_bytes(), value.as_bytes()))
}

/// What every destination receives after the source's controls.
fn assert_source_controls(received: &[Value]) {
    let email = hashed(SOURCE_KEY, "jane@example.com");
    assert_eq!(received[0]["traits"]["email"], email, "{:#}", received[0]);
    assert_eq!(received[1]["properties"]["email"], email, "the same value joins across messages");
    assert_eq!(received[0]["context"], json!({"locale": "en-GB"}));
    assert!(received[1]["properties"].get("card").is_none(), "{:#}", received[1]);
    assert_eq!(received[1]["properties"]["order"], "4111111111111112", "fails Luhn: not a card");
    assert_eq!(received[0]["userId"], "u1");
}

fn env() -> [(&'static str, &'static str); 2] {
    [("SOURCE_PRIVACY_KEY", SOURCE_KEY), ("DESTINATION_PRIVACY_KEY", DESTINATION_KEY)]
}

#[tokio::test]
async fn serve_applies_the_sources_controls_then_each_destinations_and_counts_them_without_logging_values() {
    let dir = scratch("privacy-serve-out");
    let (plain, guarded) = (dir.join("plain.ndjson"), dir.join("guarded.ndjson"));
    let config = folder_with(
        "privacy-serve",
        &[
            ("plain", &file_destination("plain", &plain)),
            ("guarded", &format!("{}{DESTINATION_PRIVACY}", file_destination("guarded", &guarded))),
        ],
        SOURCE_PRIVACY,
    );
    let mut env = env().to_vec();
    env.push(("TRIBUTARY_LOG", "debug"));
    let server = Server::start_with_env(&config, &scratch("privacy-serve-spool"), &[], &env).await;
    let client = reqwest::Client::new();
    let (status, body) = server.post(&client, "/v1/batch", &json!({"batch": messages()})).await;
    assert_eq!(status, 200, "{body}");
    let mut waited = 0;
    while lines(&plain).len() < 2 || lines(&guarded).len() < 2 {
        assert!(waited < 100, "not delivered: {:?} {:?}\n{}", lines(&plain), lines(&guarded), server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let by_id = |path| {
        let mut all = lines(path);
        all.sort_by_key(|m| m["messageId"].as_str().unwrap().to_owned());
        all
    };
    let (plain, guarded) = (by_id(&plain), by_id(&guarded));
    assert_source_controls(&plain);
    assert_source_controls(&guarded);
    // The plain destination has no controls of its own: phones and notes as sent.
    assert_eq!(plain[0]["traits"]["phone"], "+14155550123");
    assert_eq!(plain[1]["properties"]["notes"], "call (415) 555-0123");
    // The guarded one hashes phones under its own key, after its filter removed the notes.
    assert_eq!(guarded[0]["traits"]["phone"], hashed(DESTINATION_KEY, "+14155550123"));
    assert_eq!(guarded[1]["properties"]["contact"], hashed(DESTINATION_KEY, "(415) 555-0123"));
    assert!(guarded[1]["properties"].get("notes").is_none());
    assert_eq!(guarded[0]["traits"]["plan"], "pro");

    let metric = |matcher: &str, action: &str| {
        format!("tributary_privacy_changes_total{{matcher=\"{matcher}\",action=\"{action}\"}}")
    };
    // Source: two emails hashed and one IP dropped (paths), one card dropped; destination: two phones hashed.
    assert_eq!(server.metric(&client, &metric("field", "hash")).await, 2.0);
    assert_eq!(server.metric(&client, &metric("field", "drop")).await, 1.0);
    assert_eq!(server.metric(&client, &metric("credit_card", "drop")).await, 1.0);
    assert_eq!(server.metric(&client, &metric("phone", "hash")).await, 2.0);
    let log = server.log();
    for secret in
        ["jane@example.com", "4111 1111 1111 1111", "203.0.113.9", "+14155550123", SOURCE_KEY, DESTINATION_KEY]
    {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

#[test]
fn send_applies_the_sources_controls_and_needs_the_key() {
    let dir = scratch("privacy-send");
    let out = dir.join("out.ndjson");
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &file_destination("out", &out)),
            (
                "sources/web.toml",
                &format!(
                    "id = \"src_web\"\nname = \"Web\"\nwrite_key = {{ env = \"K\" }}\ndestinations = [\"out\"]\n{SOURCE_PRIVACY}"
                ),
            ),
        ],
    );
    let input: String = messages().iter().map(|m| format!("{m}\n")).collect();
    let args = ["--config", dir.to_str().unwrap(), "send", "--source", "src_web", "-"];
    let (ok, _, stderr) = tributary(&args, &[], Some(&input));
    assert!(!ok, "no key, no hashing: nothing is sent");
    assert!(stderr.contains("sources/web.toml: privacy.privacy_key"), "{stderr}");
    assert!(lines(&out).is_empty());
    let (ok, _, stderr) = tributary(&args, &env(), Some(&input));
    assert!(ok, "{stderr}");
    assert_source_controls(&lines(&out));
    let (ok, _, stderr) = tributary(&args, &[("SOURCE_PRIVACY_KEY", "short")], Some(&input));
    assert!(!ok && stderr.contains("privacy.privacy_key: is 5 bytes; use at least 16"), "{stderr}");
    assert!(!stderr.contains("short"), "the key's value is never printed: {stderr}");
}

#[test]
fn validate_names_the_key_at_fault() {
    let dir = scratch("privacy-validate");
    let destination = format!(
        "{}\n[privacy]\nhash = [\"matcher:emial\", \"userId\"]\ndrop = [\"context.ip\"]\n[privacy.matchers.loyalty]\nvalue = \"[\"\n",
        file_destination("out", &dir.join("out.ndjson"))
    );
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &destination),
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"K\" }\ndestinations = [\"out\"]\n[privacy]\nhash = [\"traits.email\"]\nprivacy_key = \"inline-key-0123456789\"\nsalt = 1\n",
            ),
        ],
    );
    let (ok, _, stderr) = tributary(&["--config", dir.to_str().unwrap(), "validate"], &[("K", "k")], None);
    assert!(!ok);
    for expected in [
        "destinations/out.toml: privacy.matchers.loyalty.value: \"[\" is not a regular expression",
        "destinations/out.toml: privacy.hash[0]: no matcher is named \"emial\" (known: email, phone, credit_card, ssn, ip_address, street_address)",
        "destinations/out.toml: privacy.hash[1]: \"userId\" is not a path under properties, traits or context",
        "destinations/out.toml: privacy.privacy_key: hash needs a key",
        "sources/web.toml: privacy.salt: is not a known key",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("inline-key-0123456789"), "{stderr}");
}

/// Waits until `path` has `n` lines, and a moment more for any that should not come.
async fn wait_for_lines(path: &std::path::Path, n: usize) {
    for _ in 0..100 {
        if lines(path).len() >= n {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} messages were not delivered: {:?}", lines(path));
}

fn suppressed_metric() -> &'static str {
    "tributary_suppressed_total{source=\"src_test\"}"
}

/// Runs `tributary privacy ARGS` on `spool`; returns its standard output.
fn privacy_command(config: &std::path::Path, spool: &std::path::Path, args: &[&str]) -> String {
    let base = ["--config", config.to_str().unwrap(), "privacy", "--spool-dir", spool.to_str().unwrap()];
    let (ok, stdout, stderr) = tributary(&[&base[..], args].concat(), &[], None);
    assert!(ok, "privacy {args:?}: {stderr}");
    stdout
}

#[tokio::test]
async fn a_suppression_beside_a_running_server_is_in_force_within_a_second_and_across_a_restart() {
    let dir = scratch("suppress-out");
    let out = dir.join("out.ndjson");
    let config = folder_with("suppress", &[("out", &file_destination("out", &out))], "");
    let spool = scratch("suppress-spool");
    let server = Server::start_with_env(&config, &spool, &[], &[]).await;
    let client = reqwest::Client::new();
    let batch = |tag: &str| {
        json!({"batch": [
            {"type": "track", "messageId": format!("{tag}-gone"), "userId": "u_gone", "event": "Viewed"},
            {"type": "track", "messageId": format!("{tag}-anon"), "userId": "u_new", "anonymousId": "a_gone", "event": "Viewed"},
            {"type": "track", "messageId": format!("{tag}-bad"), "userId": "u_gone"},
            {"type": "track", "messageId": format!("{tag}-kept"), "userId": "u_kept", "event": "Viewed"},
        ]})
    };
    let ids = || -> Vec<String> { lines(&out).iter().map(|m| m["messageId"].as_str().unwrap().to_owned()).collect() };
    let wait_for = |n: usize| wait_for_lines(&out, n);

    privacy_command(&config, &spool, &["suppress", "--user-id", "u_gone", "--anonymous-id", "a_gone"]);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (status, body) = server.post(&client, "/v1/batch", &batch("first")).await;
    assert_eq!(status, 200, "{body}");
    wait_for(1).await;
    assert_eq!(ids(), ["first-kept"], "a message is dropped if its userId or its anonymousId is listed");
    assert_eq!(server.metric(&client, suppressed_metric()).await, 3.0);
    // Not even the invalid one is stored for the operator.
    let (ok, rejected, stderr) = tributary(&["rejected", "--spool-dir", spool.to_str().unwrap(), "list"], &[], None);
    assert!(ok, "{stderr}");
    assert!(!rejected.contains("u_gone"), "{rejected}");

    // The list is in the spool: a restarted server has it in force from its first request.
    drop(server);
    let server = Server::start_with_env(&config, &spool, &[], &[]).await;
    let (status, _) = server.post(&client, "/v1/batch", &batch("second")).await;
    assert_eq!(status, 200);
    wait_for(2).await;
    assert_eq!(ids(), ["first-kept", "second-kept"]);

    let listed: Vec<Value> =
        privacy_command(&config, &spool, &["list"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|l| l["user_id"] == "u_gone"), "{listed:?}");
    assert!(listed.iter().any(|l| l["anonymous_id"] == "a_gone"), "{listed:?}");
    assert!(listed.iter().all(|l| l["in"] == "spool" && l["since"].as_str().unwrap().ends_with('Z')), "{listed:?}");

    privacy_command(&config, &spool, &["unsuppress", "--user-id", "u_gone", "--anonymous-id", "a_gone"]);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (status, _) = server.post(&client, "/v1/batch", &batch("third")).await;
    assert_eq!(status, 200);
    wait_for(5).await;
    let mut after = ids();
    after.sort();
    assert_eq!(after, ["first-kept", "second-kept", "third-anon", "third-gone", "third-kept"]);
}

#[tokio::test]
async fn the_config_folders_list_suppresses_in_serve_send_and_a_reload_and_fails_closed_with_the_spools() {
    let dir = scratch("suppress-config-out");
    let out = dir.join("out.ndjson");
    let config = folder_with("suppress-config", &[("out", &file_destination("out", &out))], "");
    write_files(&config, &[("suppressions/gdpr-118.toml", "reason = \"GDPR 118\"\nuser_ids = [\"u_file\"]\n")]);
    let spool = scratch("suppress-config-spool");
    privacy_command(&config, &spool, &["suppress", "--user-id", "u_spool"]);
    let listed = privacy_command(&config, &spool, &["list"]);
    assert!(listed.contains("\"in\":\"suppressions/gdpr-118.toml\"") && listed.contains("u_file"), "{listed}");
    assert!(listed.contains("u_spool"), "{listed}");

    // send honours the folder's list.
    let input = "{\"type\":\"track\",\"userId\":\"u_file\",\"event\":\"E\"}\n{\"type\":\"track\",\"userId\":\"u_ok\",\"event\":\"E\"}\n";
    let args = ["--config", config.to_str().unwrap(), "send", "--source", "src_test", "-"];
    let (ok, _, stderr) = tributary(&args, &[("TEST_WRITE_KEY", "k")], Some(input));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 messages not sent: their users are suppressed"), "{stderr}");
    assert_eq!(lines(&out).len(), 1);
    std::fs::remove_file(&out).unwrap();

    let server = Server::start_with_env(&config, &spool, &[], &[]).await;
    let client = reqwest::Client::new();
    let batch = |tag: &str| {
        let items: Vec<Value> = ["u_file", "u_spool", "u_ok"]
            .iter()
            .map(|u| json!({"type": "identify", "userId": u, "messageId": format!("{tag}-{u}")}))
            .collect();
        json!({ "batch": items })
    };
    let (status, _) = server.post(&client, "/v1/batch", &batch("a")).await;
    assert_eq!(status, 200);
    // Both lists are in force at once.
    wait_for_lines(&out, 1).await;
    let ids: Vec<Value> = lines(&out).iter().map(|m| m["messageId"].clone()).collect();
    assert_eq!(ids, [json!("a-u_ok")]);
    assert_eq!(server.metric(&client, suppressed_metric()).await, 2.0);

    // Taking a user off the folder's list takes a reload; the spool's list still holds u_spool.
    write_files(&config, &[("suppressions/gdpr-118.toml", "user_ids = []\n")]);
    let (ok, _, stderr) = tributary(&["reload", "--spool-dir", spool.to_str().unwrap()], &[], None);
    assert!(ok, "{stderr}");
    let (status, _) = server.post(&client, "/v1/batch", &batch("b")).await;
    assert_eq!(status, 200);
    wait_for_lines(&out, 3).await;
    let mut ids: Vec<String> = lines(&out).iter().map(|m| m["messageId"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["a-u_ok", "b-u_file", "b-u_ok"]);

    // An empty ID in a file is named.
    write_files(&config, &[("suppressions/gdpr-118.toml", "user_ids = [\"u1\", \" \"]\n")]);
    let (ok, _, stderr) = tributary(&["--config", config.to_str().unwrap(), "validate"], &[], None);
    assert!(!ok && stderr.contains("suppressions/gdpr-118.toml: user_ids[1]: must not be empty"), "{stderr}");
}

/// A batch of `users`' track calls tagged `tag`, each with a property that marks it as `marker`, and an invalid call
/// (no event) of each, kept in the rejected table.
fn tagged_batch(tag: &str, users: &[&str], marker: &str) -> Value {
    let mut batch: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({"type": "track", "messageId": format!("{tag}-{u}"), "userId": u, "event": "Viewed",
                        "properties": {"marker": format!("{marker}-{u}")}})
        })
        .collect();
    batch.extend(users.iter().map(|u| {
        json!({"type": "track", "messageId": format!("{tag}-{u}-bad"), "userId": u,
               "properties": {"marker": format!("{marker}-{u}")}})
    }));
    json!({ "batch": batch })
}

/// The number written just before `words` in `text`.
fn count_before(text: &str, words: &str) -> u64 {
    let before = &text[..text.find(words).unwrap_or_else(|| panic!("no {words:?} in {text}"))];
    let digits: String = before.chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().unwrap_or_else(|_| panic!("no count before {words:?} in {text}"))
}

fn spool_files_hold(spool: &std::path::Path, text: &str) -> bool {
    std::fs::read_dir(spool)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("spool.sqlite3"))
        .any(|f| std::fs::read(f.path()).unwrap().windows(text.len()).any(|w| w == text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_beside_a_running_server_under_load_erases_the_user_everywhere_and_loses_nothing_else() {
    // `held` waits (its stream does not exist yet), `doomed` gives up after a second (dead letters), `archive`
    // delivers at once.
    let standin = tests::standin::StandIn::start().await;
    let archive = scratch("erase-out").join("out.ndjson");
    let held = crate::server::kinesis_destination("held", "held", &standin.url, "");
    let doomed = crate::server::kinesis_destination("doomed", "doomed", &standin.url, "")
        .replace("[kinesis]", "max_retry_duration = \"1s\"\n[kinesis]");
    let destinations =
        [("held", held.as_str()), ("doomed", &doomed), ("archive", &file_destination("archive", &archive))];
    let config = folder_with("erase", &destinations, "");
    let spool = scratch("erase-spool");
    let server = Server::start(&config, &spool, &[]).await;
    let client = reqwest::Client::new();
    let users = ["gone", "bob", "carol"];
    for i in 0..20 {
        let (status, body) =
            server.post(&client, "/v1/batch", &tagged_batch(&format!("before{i}"), &users, "secret-before")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (ok, letters, stderr) = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            tributary(&["dlq", "list", "--spool-dir", spool.to_str().unwrap()], &[], None)
        })
        .find(|(_, stdout, _)| stdout.lines().count() >= 60)
        .expect("the doomed destination's dead letters");
    assert!(ok && letters.contains("before0-gone"), "{stderr}");

    // Load from every user, the erased one too, while the erasure runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, key, stop) = (client.clone(), server.url.clone(), server.key, stop.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = tagged_batch(&format!("during{i}"), &["gone", "bob", "carol"], "during");
                let response = client.post(format!("{url}/v1/batch")).basic_auth(key, Some("")).json(&batch);
                if response.send().await.is_ok_and(|r| r.status() == 200) {
                    acknowledged.push(i);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (config_arg, spool_arg) = (config.to_str().unwrap().to_owned(), spool.to_str().unwrap().to_owned());
    let deleted = tokio::task::spawn_blocking(move || {
        let args = ["--config", &config_arg, "privacy", "--spool-dir", &spool_arg, "delete", "--user-id", "gone"];
        tributary(&args, &[], None)
    });
    let (ok, said, stderr) = deleted.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = load.await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("the server (process"), "the running server carried it out: {stderr}");
    assert!(acknowledged.len() >= 20, "the load ran beside the erasure: {}", acknowledged.len());
    // The twenty from before waited for `held` (and more from the load, stored before the erasure began); `doomed`
    // had dead-lettered its twenty.
    assert!(count_before(&said, " for held") >= 20, "{said}");
    assert!(count_before(&said, " dead letters") >= 20, "{said}");
    assert!(count_before(&said, " rejected messages") >= 20, "{said}");
    assert!(said.contains("WAL checkpointed"), "{said}");

    // The stream appears: everything else that waited is delivered, and nothing of the user from before.
    standin.create("held", 1, false);
    let mut wanted: Vec<String> = (0..20).flat_map(|i| ["bob", "carol"].map(|u| format!("before{i}-{u}"))).collect();
    wanted.extend(acknowledged.iter().flat_map(|i| ["bob", "carol"].map(|u| format!("during{i}-{u}"))));
    let delivered = || -> std::collections::HashSet<String> {
        standin
            .records("held")
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap()["messageId"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..200 {
        if wanted.iter().all(|id| delivered().contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = delivered();
    let missing: Vec<&String> = wanted.iter().filter(|id| !got.contains(*id)).collect();
    assert!(missing.is_empty(), "lost beside the erasure: {missing:?}\n{}", server.log());
    let erased_but_delivered: Vec<&String> =
        got.iter().filter(|id| id.starts_with("before") && id.ends_with("-gone")).collect();
    assert!(erased_but_delivered.is_empty(), "{erased_but_delivered:?}");

    let (_, letters, _) = tributary(&["dlq", "list", "--spool-dir", spool.to_str().unwrap()], &[], None);
    assert!(!letters.contains("secret-before-gone") && letters.contains("secret-before-bob"));
    let listing = ["rejected", "--spool-dir", spool.to_str().unwrap(), "list", "--limit", "100000"];
    let (_, rejected, _) = tributary(&listing, &[], None);
    assert!(!rejected.contains("secret-before-gone") && rejected.contains("secret-before-carol"), "{rejected}");
    drop(server);
    assert!(!spool_files_hold(&spool, "secret-before-gone"), "the erased messages' bytes linger in the spool's files");
    assert!(spool_files_hold(&spool, "secret-before-bob"), "the scan must see what is there");
}

#[test]
fn a_deletion_with_no_server_is_carried_out_by_the_command_and_erases_the_personas_state() {
    let spool = scratch("erase-alone-spool");
    let config =
        folder_with("erase-alone", &[("out", &file_destination("out", &scratch("erase-alone-out").join("o")))], "");
    spool::suppress(&spool, spool::IdKind::UserId, &["someone-else".to_owned()], 1).unwrap();
    let state = scratch("erase-alone-state");
    {
        let mut store = personas::state::StateStore::open(&state).unwrap();
        let change = |key: &str| personas::diff::Change {
            kind: personas::diff::ChangeKind::Added,
            key: key.to_owned(),
            value: "true".to_owned(),
            version: 1,
        };
        let account = personas::Identity::Account {
            group: "acme".into(),
            user: Box::new(personas::Identity::User("gone".into())),
        };
        store
            .record("vip", &[change("u:gone"), change("u:kept"), change(&account.storage_key()), change("u:xu:gone")])
            .unwrap();
    }
    let args = ["--config", config.to_str().unwrap(), "privacy", "--spool-dir", spool.to_str().unwrap()];
    let (ok, said, stderr) = tributary(
        &[&args[..], &["delete", "--user-id", "gone", "--personas-state-dir", state.to_str().unwrap()]].concat(),
        &[],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(said.contains("removed 0 waiting messages"), "{said}");
    assert!(said.contains("removed 2 memberships"), "the user's and their account's: {said}");
    let store = personas::state::StateStore::open(&state).unwrap();
    assert_eq!(store.members("vip").unwrap(), 2, "u:kept and u:xu:gone (a user whose ID ends in u:gone) stay");
    assert_eq!(spool::suppressions(&spool).unwrap().len(), 1, "the spool is otherwise untouched");
}
