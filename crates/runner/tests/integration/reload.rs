//! Reloading the config of a running server, under load: `tributary reload` (SIGHUP) and `serve --watch-config`
//! with a Kubernetes-style mounted Secret.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::server::{Server, file_destination, free_port, kinesis_destination, metric_value};
use crate::{scratch, write_files};

/// The messageIds in an NDJSON file destination's output, each with how many times it is there.
fn delivered(path: &Path) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let message: Value = serde_json::from_str(line).unwrap();
        *ids.entry(message["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    ids
}

/// `tributary reload --spool-dir SPOOL`: its exit code, standard output and standard error.
fn reload(spool: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["reload", "--spool-dir", spool.to_str().unwrap(), "--wait", "20s"])
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn source(id: &str, key: &str, destinations: &[&str]) -> String {
    let names: Vec<String> = destinations.iter().map(|d| format!("{d:?}")).collect();
    format!("id = {id:?}\nname = {id:?}\nwrite_key = {key}\ndestinations = [{}]\n", names.join(", "))
}

/// What the load saw: every acknowledged messageId by write key, and every answer that was not a 200.
#[derive(Default)]
struct Seen {
    acknowledged: HashMap<&'static str, Vec<String>>,
    failures: Vec<String>,
}

/// Posts batches of 10 with `key` until `stop`, recording what was acknowledged and what failed.
async fn load(
    url: String,
    key: &'static str,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    counter: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<String> = (0..10).map(|i| format!("{key}-{n}-{i}")).collect();
        let batch: Vec<Value> =
            ids.iter().map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id})).collect();
        let answer = client
            .post(format!("{url}/v1/batch"))
            .basic_auth(key, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .await;
        let mut seen = seen.lock().await;
        match answer {
            Ok(r) if r.status() == 200 => seen.acknowledged.entry(key).or_default().extend(ids),
            Ok(r) => {
                let status = r.status();
                seen.failures.push(format!("{key}: {status} {}", r.text().await.unwrap_or_default()));
            }
            Err(e) => seen.failures.push(format!("{key}: {e}")),
        }
        drop(seen);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn health(client: &reqwest::Client, admin: &str) -> Value {
    client.get(format!("http://{admin}/health")).send().await.unwrap().json().await.unwrap()
}

/// Long on purpose: one scenario, step by step, under one load.
#[tokio::test]
async fn reloads_under_load_add_a_key_and_destinations_remove_one_and_refuse_a_broken_file() {
    let out = scratch("reload-out");
    let (a, b, c) = (out.join("a.ndjson"), out.join("b.ndjson"), out.join("c.ndjson"));
    let config = scratch("reload-config");
    // b is a stream nobody listens on: its messages wait in the spool, retried, when it is removed.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    write_files(
        &config,
        &[
            ("sources/test.toml", &source("src_test", "{ env = \"TEST_WRITE_KEY\" }", &["a", "b"])),
            ("destinations/a.toml", &file_destination("a", &a)),
            ("destinations/b.toml", &kinesis_destination("b", "nowhere", &nowhere, "")),
            ("keys/new", "new-source-key\n"),
        ],
    );
    let spool = scratch("reload-spool");
    let admin = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(&config, &spool, &["--admin-listen", &admin, "--max-lag", "0"]).await;
    let client = reqwest::Client::new();

    let (stop, seen, counter) =
        (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Seen::default())), Arc::default());
    let mut clients = Vec::new();
    for _ in 0..3 {
        let args = (server.url.clone(), server.key, stop.clone(), seen.clone(), Arc::clone(&counter));
        clients.push(tokio::spawn(load(args.0, args.1, args.2, args.3, args.4)));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // A new source and its key, from a file.
    let unknown = client.post(format!("{}/v1/track", server.url)).basic_auth("new-source-key", Some(""));
    let unknown = unknown.json(&json!({"userId": "u", "event": "E"})).send().await.unwrap();
    assert_eq!(unknown.status(), 401, "the key is not known before the reload");
    write_files(&config, &[("sources/new.toml", &source("src_new", "{ file = \"keys/new\" }", &["b"]))]);
    let (code, stdout, stderr) = reload(&spool);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", server.log());
    assert!(stdout.starts_with("reloaded: 2 sources, 2 destinations delivered; no destination changed"), "{stdout}");
    let args = (server.url.clone(), "new-source-key", stop.clone(), seen.clone(), Arc::clone(&counter));
    clients.push(tokio::spawn(load(args.0, args.1, args.2, args.3, args.4)));
    tokio::time::sleep(Duration::from_millis(800)).await;

    // c is added, b removed with messages waiting for it, and a changed: its worker is replaced mid-load, and
    // none of its messages may be delivered twice or not at all.
    write_files(
        &config,
        &[
            ("sources/test.toml", &source("src_test", "{ env = \"TEST_WRITE_KEY\" }", &["a", "c"])),
            ("sources/new.toml", &source("src_new", "{ file = \"keys/new\" }", &["c"])),
            ("destinations/c.toml", &file_destination("c", &c)),
            ("destinations/a.toml", &format!("max_retry_duration = \"2h\"\n{}", file_destination("a", &a))),
        ],
    );
    std::fs::remove_file(config.join("destinations/b.toml")).unwrap();
    let (code, stdout, stderr) = reload(&spool);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", server.log());
    assert!(stdout.contains("added c; removed b; changed a"), "{stdout}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let removed = health(&client, &admin).await;
    let b_waiting = removed["destinations"]["b"]["waiting"].as_u64().unwrap_or(0);
    assert_eq!(removed["destinations"]["b"]["state"], "removed", "{removed}");
    assert!(b_waiting > 0, "b's messages wait for it: {removed}");
    assert_ne!(removed["status"], "unhealthy", "a removed destination does not fail the server: {removed}");

    // A broken file is refused whole: nothing of it applies, and the problem names the file and the key.
    write_files(
        &config,
        &[
            ("destinations/broken.toml", "name = \"broken\"\ntype = \"file\"\npaht = \"x\"\n"),
            ("sources/test.toml", &source("src_test", "{ env = \"TEST_WRITE_KEY\" }", &["a", "c", "broken"])),
        ],
    );
    let (code, stdout, stderr) = reload(&spool);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("destinations/broken.toml: paht: is not a known key"), "{stderr}");
    assert!(server.log().contains("broken.toml: paht"), "the server logs each problem:\n{}", server.log());
    let page = client.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric_value(&page, "tributary_config_reloads_total{outcome=\"refused\"}"), Some(1.0), "{page}");
    assert_eq!(metric_value(&page, "tributary_config_reloads_total{outcome=\"applied\"}"), Some(2.0), "{page}");
    let still = health(&client, &admin).await;
    assert!(still["destinations"].get("broken").is_none(), "{still}");

    // b comes back (as a file now): the messages it kept are delivered to it.
    std::fs::remove_file(config.join("destinations/broken.toml")).unwrap();
    write_files(
        &config,
        &[
            ("sources/test.toml", &source("src_test", "{ env = \"TEST_WRITE_KEY\" }", &["a", "c"])),
            ("destinations/b.toml", &file_destination("b", &b)),
        ],
    );
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(30)).await, Some(Some(0)), "{}", server.log());

    let seen = seen.lock().await;
    assert!(
        seen.failures.is_empty(),
        "requests failed across reloads: {:?}",
        &seen.failures[..seen.failures.len().min(5)]
    );
    let (in_a, in_b, in_c) = (delivered(&a), delivered(&b), delivered(&c));
    assert_eq!(in_b.len() as u64, b_waiting, "b got what it kept, and nothing after it was removed");
    let old = &seen.acknowledged[server.key];
    let new = &seen.acknowledged["new-source-key"];
    assert!(old.len() > 100 && new.len() > 50, "the load ran: {} and {}", old.len(), new.len());
    for id in old {
        assert_eq!(in_a.get(id), Some(&1), "{id} reached a once");
    }
    for id in old.iter().chain(new) {
        let copies = in_b.get(id).unwrap_or(&0) + in_c.get(id).unwrap_or(&0);
        assert_eq!(copies, 1, "{id} reached b or c, once");
    }
    let acknowledged: HashSet<&String> = old.iter().chain(new).collect();
    assert!(in_c.keys().chain(in_b.keys()).all(|id| acknowledged.contains(id)), "nothing unacknowledged was delivered");
    assert!(!in_b.is_empty() && !in_c.is_empty(), "both b and c got messages");
}

/// Points the symbolic link `link` at `target`, atomically, as the kubelet updates a mounted ConfigMap or Secret.
fn swap_link(link: &Path, target: &str) {
    let staged = link.with_file_name("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(target, &staged).unwrap();
    std::fs::rename(&staged, link).unwrap();
}

async fn status_with_key(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    let request = client.post(format!("{url}/v1/track")).basic_auth(key, Some(""));
    request.json(&json!({"userId": "u", "event": "E"})).send().await.unwrap().status().as_u16()
}

/// Waits up to ten seconds for a request with `key` to be answered `status`.
async fn answered_within_ten_seconds(client: &reqwest::Client, url: &str, key: &str, status: u16) -> bool {
    for _ in 0..100 {
        if status_with_key(client, url, key).await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn watch_config_follows_a_mounted_config_map_and_secret() {
    let out = scratch("watch-out").join("out.ndjson");
    let config = scratch("watch-config");
    // The Secret, mounted as the kubelet mounts one: files that are links through `..data` to a versioned folder.
    let secrets = scratch("watch-secrets");
    write_files(&secrets, &[("..v1/web-key", "first-key\n"), ("..v2/web-key", "second-key\n")]);
    std::os::unix::fs::symlink("..v1", secrets.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/web-key", secrets.join("web-key")).unwrap();
    let key_file = format!("{{ file = {:?} }}", secrets.join("web-key").display().to_string());
    write_files(
        &config,
        &[
            ("sources/test.toml", &source("src_test", "{ env = \"TEST_WRITE_KEY\" }", &["main"])),
            ("destinations/main.toml", &file_destination("main", &out)),
        ],
    );
    let spool = scratch("watch-spool");
    let mut server = Server::start(&config, &spool, &["--watch-config"]).await;
    let client = reqwest::Client::new();
    assert_eq!(status_with_key(&client, &server.url, "first-key").await, 401);

    // A file added to the config folder.
    write_files(&config, &[("sources/web.toml", &source("src_web", &key_file, &["main"]))]);
    assert!(answered_within_ten_seconds(&client, &server.url, "first-key", 200).await, "{}", server.log());

    // The Secret's new version: the key rotates without a restart.
    swap_link(&secrets.join("..data"), "..v2");
    assert!(answered_within_ten_seconds(&client, &server.url, "second-key", 200).await, "{}", server.log());
    assert_eq!(status_with_key(&client, &server.url, "first-key").await, 401);

    // A broken edit is refused, and the running config keeps serving.
    write_files(&config, &[("sources/web.toml", "id = \"src_web\"\n")]);
    for _ in 0..100 {
        if server.metric(&client, "tributary_config_reloads_total{outcome=\"refused\"}").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.metric(&client, "tributary_config_reloads_total{outcome=\"refused\"}").await, 1.0);
    assert!(server.log().contains("sources/web.toml: name: is required"), "{}", server.log());
    assert_eq!(status_with_key(&client, &server.url, "second-key").await, 200);
    assert_eq!(server.metric(&client, "tributary_config_reloads_total{outcome=\"applied\"}").await, 2.0);

    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(15)).await, Some(Some(0)), "{}", server.log());
    assert_eq!(delivered(&out).len(), 3, "the three acknowledged messages were delivered");
}

#[test]
fn reload_says_when_no_server_owns_the_spool() {
    let spool = scratch("reload-nobody");
    let (code, stdout, stderr) = reload(&spool);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("no server owns the spool in") && stderr.contains("--spool-dir"), "{stderr}");
}
