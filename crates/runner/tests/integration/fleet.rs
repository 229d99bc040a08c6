//! A fleet: nodes sharing their dedupe keys in Redis (Debian's `redis-server`, started here as the emulators are),
//! side by side, and under load behind HAProxy delivering to kinesis-local while a node is killed and while Redis
//! stops.
//!
//! The tests under load run in `cargo xtask test`'s last phase, one at a time, as the latency comparisons do: a
//! shared two-core machine answering Redis late would make resends look like a dedupe failure.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::redis::Redis;

use crate::scratch;
use crate::server::{Server, file_destination, folder, free_port, kinesis_destination, metric_value, start_haproxy};

/// The secret every node of a fleet hashes messageIds with.
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("dedupe-secret");
    std::fs::write(&path, "a dedupe secret the whole fleet shares\n").unwrap();
    path
}

fn batch(ids: &[String]) -> Value {
    let messages: Vec<Value> =
        ids.iter().map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id})).collect();
    json!({ "batch": messages })
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

async fn health(client: &reqwest::Client, server: &Server) -> Value {
    client.get(format!("{}/health", server.url)).send().await.unwrap().json().await.unwrap()
}

/// How many times each messageId is in the NDJSON outputs `paths`, once `expected` lines are there (or after ten
/// seconds), and a moment more so that a copy that should not be there has the time to show.
async fn copies(paths: &[PathBuf], expected: usize) -> HashMap<String, usize> {
    let lines = || {
        paths
            .iter()
            .flat_map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    for _ in 0..200 {
        if lines().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = HashMap::new();
    for line in lines() {
        let message: Value = serde_json::from_str(&line).unwrap();
        *ids.entry(message["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    ids
}

#[tokio::test]
async fn a_batch_posted_to_each_of_two_nodes_sharing_redis_lands_once() {
    let dir = scratch("fleet-pair");
    let redis = Redis::start_with(&dir.join("redis"), &["--requirepass", "hunter2-of-the-fleet"]);
    // From the environment, as a Kubernetes Secret would give it, so that the password is not on a command line.
    let store = format!("redis://:hunter2-of-the-fleet@127.0.0.1:{}", redis.port);
    let secret = secret_file(&dir);
    let (mut nodes, mut outputs) = (Vec::new(), Vec::new());
    for name in ["a", "b"] {
        let out = dir.join(format!("{name}.ndjson"));
        let config = folder(&format!("fleet-pair-{name}"), &[("main", &file_destination("main", &out))]);
        let spool = scratch(&format!("fleet-pair-spool-{name}"));
        let args = ["--dedupe-secret-file", secret.to_str().unwrap()];
        nodes.push(Server::start_with_env(&config, &spool, &args, &[("TRIBUTARY_DEDUPE_STORE", &store)]).await);
        outputs.push(out);
    }
    let client = reqwest::Client::new();
    let sent = ids("pair", 5);
    for node in [&nodes[0], &nodes[1], &nodes[0]] {
        assert_eq!(node.post(&client, "/v1/batch", &batch(&sent)).await, (200, json!({"success": true})));
    }
    let delivered = copies(&outputs, 5).await;
    assert_eq!(delivered.len(), 5, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    for node in &nodes {
        assert_eq!(node.metric(&client, "tributary_duplicates_total{source=\"src_test\"}").await, 5.0);
        assert_eq!(node.metric(&client, "tributary_dedupe_unavailable_total").await, 0.0);
    }
    // Redis holds one stream, named by the window, with one entry: the first node's five keys. The other posts
    // found nothing new to share. The stream expires a window after its last entry.
    assert_eq!(redis.cli(&["KEYS", "trd:*"]), "trd:s:86400");
    assert_eq!(redis.cli(&["XLEN", "trd:s:86400"]), "1");
    let ttl: u64 = redis.cli(&["PTTL", "trd:s:86400"]).parse().unwrap();
    assert!((86_000_000..=86_400_000).contains(&ttl), "expires in {ttl} ms");
    // Each node holds the five keys: the first its own, the second those it read from the stream.
    let held = [health(&client, &nodes[0]).await, health(&client, &nodes[1]).await];
    assert_eq!(held.each_ref().map(|h| h["dedupe"]["keys"].as_u64()), [Some(5), Some(5)], "{held:?}");
    assert_eq!(held.each_ref().map(|h| h["dedupe"]["adopted"].as_u64()), [Some(0), Some(5)], "{held:?}");

    // A node started later reads the window's keys from the stream, and drops a resend it never saw.
    let late_out = dir.join("late.ndjson");
    let config = folder("fleet-pair-late", &[("main", &file_destination("main", &late_out))]);
    let args = ["--dedupe-secret-file", secret.to_str().unwrap()];
    let late = Server::start_with_env(
        &config,
        &scratch("fleet-pair-spool-late"),
        &args,
        &[("TRIBUTARY_DEDUPE_STORE", &store)],
    )
    .await;
    let mut caught_up = false;
    for _ in 0..50 {
        if health(&client, &late).await["dedupe"]["caught_up"] == true {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "{}", health(&client, &late).await);
    assert_eq!(late.post(&client, "/v1/batch", &batch(&sent)).await.0, 200);
    assert_eq!(late.metric(&client, "tributary_duplicates_total{source=\"src_test\"}").await, 5.0);
    assert_eq!(health(&client, &late).await["dedupe"]["adopted"], 5);
    assert!(copies(&[late_out], 1).await.is_empty(), "the late node stored a resend");

    let health = health(&client, &nodes[1]).await;
    assert_eq!(health["dedupe"]["state"], "ok", "{health}");
    assert_eq!(health["dedupe"]["store"], format!("redis://127.0.0.1:{}", redis.port), "no password in it");
    assert_eq!(health["dedupe"]["window_seconds"], 86_400);
    for node in &nodes {
        assert!(!node.log().contains("hunter2"), "the password was logged:\n{}", node.log());
    }
}

#[tokio::test]
async fn a_fleet_node_needs_the_shared_secret_and_a_window() {
    let dir = scratch("fleet-refused");
    let config = folder("fleet-refused-config", &[("main", &file_destination("main", &dir.join("out.ndjson")))]);
    let spool = scratch("fleet-refused-spool");
    let (config, spool) = (config.to_str().unwrap(), spool.to_str().unwrap());
    let serve = ["--config", config, "serve", "--spool-dir", spool, "--dedupe-store", "redis://127.0.0.1:1"];
    let key = [("TEST_WRITE_KEY", crate::server::WRITE_KEY)];
    let (ok, _, err) = crate::tributary(&serve, &key, None);
    assert!(!ok && err.contains("--dedupe-store needs --dedupe-secret-file"), "{err}");
    let secret = secret_file(&dir);
    let zero = [&serve[..], &["--dedupe-secret-file", secret.to_str().unwrap(), "--dedupe-window", "0"]].concat();
    let (ok, _, err) = crate::tributary(&zero, &key, None);
    assert!(!ok && err.contains("--dedupe-window, which is 0"), "{err}");
    let (ok, _, err) =
        crate::tributary(&["--config", config, "serve", "--spool-dir", spool, "--dedupe-required"], &key, None);
    assert!(!ok && err.contains("--dedupe-store"), "--dedupe-required means nothing without a store: {err}");
}

#[tokio::test]
async fn without_redis_requests_are_checked_against_the_nodes_own_keys_or_refused_when_required() {
    let dir = scratch("fleet-down");
    let mut redis = Redis::start(&dir.join("redis"));
    let secret = secret_file(&dir);
    let store = redis.url();
    let mut nodes = Vec::new();
    let mut outputs = Vec::new();
    for (name, required) in [("taker", false), ("required", true)] {
        let out = dir.join(format!("{name}.ndjson"));
        let config = folder(&format!("fleet-down-{name}"), &[("main", &file_destination("main", &out))]);
        let mut args = vec!["--dedupe-store", &store, "--dedupe-secret-file", secret.to_str().unwrap()];
        if required {
            args.push("--dedupe-required");
        }
        nodes.push(Server::start(&config, &scratch(&format!("fleet-down-spool-{name}")), &args).await);
        outputs.push(out);
    }
    let (taker, required) = (&nodes[0], &nodes[1]);
    let client = reqwest::Client::new();
    assert_eq!(required.post(&client, "/v1/batch", &batch(&ids("before", 2))).await.0, 200);

    redis.kill();
    // Availability first: taken, and checked against the keys the node holds, so a resend to the same node is
    // still dropped; a resend to another node would be stored again (the price of Redis being away).
    let down = ids("down", 3);
    for _ in 0..2 {
        assert_eq!(taker.post(&client, "/v1/batch", &batch(&down)).await, (200, json!({"success": true})));
    }
    let (status, body) = required.post(&client, "/v1/batch", &batch(&down)).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("dedupe_unavailable")), "{body}");
    let (status, body) = required.post(&client, "/v1/batch", &batch(&ids("refused", 2))).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("dedupe_unavailable")), "{body}");
    assert!(taker.metric(&client, "tributary_dedupe_unavailable_total").await >= 2.0);
    assert!(required.metric(&client, "tributary_dedupe_unavailable_total").await >= 1.0);
    let degraded = health(&client, taker).await;
    assert_eq!(degraded["dedupe"]["state"], "degraded", "{degraded}");
    assert!(degraded["dedupe"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{degraded}");
    assert!(degraded["dedupe"]["unavailable"].as_u64() >= Some(2), "{degraded}");

    // Redis back, without its data: within seconds requests are checked again, and a resend is dropped.
    redis.restart();
    let mut back = false;
    for n in 0..100 {
        assert_eq!(taker.post(&client, "/v1/batch", &batch(&[format!("probe-{n}")])).await.0, 200);
        if health_state(&client, taker).await == "ok" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the dedupe store never came back: {}", health(&client, taker).await);
    // What the taker committed while Redis was away is shared now: the required node drops it.
    let mut shared = false;
    for _ in 0..50 {
        if health(&client, required).await["dedupe"]["adopted"].as_u64() >= Some(3) {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shared, "the keys committed while Redis was away were not shared: {}", health(&client, required).await);
    assert_eq!(health(&client, taker).await["dedupe"]["unshared"], 0);
    assert_eq!(required.post(&client, "/v1/batch", &batch(&down)).await.0, 200);
    let resent = ids("back", 2);
    for _ in 0..2 {
        assert_eq!(taker.post(&client, "/v1/batch", &batch(&resent)).await.0, 200);
    }
    let mut taken = false;
    for _ in 0..100 {
        if required.post(&client, "/v1/batch", &batch(&ids("refused", 2))).await.0 == 200 {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the --dedupe-required node kept refusing once Redis was back");
    // The `down` batch stored once: the taker's own keys dropped its resend, and the required node refused it.
    let delivered = copies(&outputs, 2 + 3 + 2 + 2).await;
    assert!(down.iter().all(|id| delivered[id] == 1), "{delivered:?}");
    assert!(resent.iter().all(|id| delivered[id] == 1), "{delivered:?}");
    assert!(["refused-0", "refused-1", "before-0", "before-1"].iter().all(|id| delivered[*id] == 1), "{delivered:?}");
    assert_eq!(health_state(&client, taker).await, "ok");
}

async fn health_state(client: &reqwest::Client, server: &Server) -> String {
    health(client, server).await["dedupe"]["state"].as_str().unwrap_or_default().to_owned()
}

/// A certificate authority and a certificate for `localhost` and 127.0.0.1 that it signed, made with `openssl`:
/// (CA file, certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir).output();
        let output = output.expect("this suite needs openssl (`apt-get install openssl`; `.ci/run` installs it)");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
            .iter()
            .copied()
            .chain(["-subj", "/CN=Tributary test CA"])
            .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("ca.pem"), dir.join("redis.pem"), dir.join("redis.key"))
}

#[tokio::test]
async fn rediss_speaks_tls_and_trusts_only_what_the_system_trusts() {
    let dir = scratch("fleet-tls");
    let (ca, certificate, key) = certificates(&dir.join("tls"));
    let tls_port = free_port().to_string();
    let (ca, certificate, key) = (ca.to_str().unwrap(), certificate.to_str().unwrap(), key.to_str().unwrap());
    let redis = Redis::start_with(
        &dir.join("redis"),
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            certificate,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    let secret = secret_file(&dir);
    let store = format!("rediss://localhost:{tls_port}");
    let args = ["--dedupe-store", &store, "--dedupe-secret-file", secret.to_str().unwrap()];
    let out = dir.join("out.ndjson");
    let config = folder("fleet-tls-config", &[("main", &file_destination("main", &out))]);
    // The system's trust store, pointed at the test CA as an operator would add a private CA.
    let trusting =
        Server::start_with_env(&config, &scratch("fleet-tls-trusting"), &args, &[("SSL_CERT_FILE", ca)]).await;
    let client = reqwest::Client::new();
    let sent = ids("tls", 3);
    for _ in 0..2 {
        assert_eq!(trusting.post(&client, "/v1/batch", &batch(&sent)).await.0, 200);
    }
    assert_eq!(trusting.metric(&client, "tributary_duplicates_total{source=\"src_test\"}").await, 3.0);
    assert_eq!(health_state(&client, &trusting).await, "ok");
    assert_eq!(redis.cli(&["KEYS", "trd:*"]), "trd:s:86400", "the keys went through TLS");

    // A node that does not trust the certificate does not talk to that Redis: it takes requests with its own keys
    // only (the trusting node's are not shared with it), and says why.
    let other = dir.join("other.ndjson");
    let config = folder("fleet-tls-other", &[("main", &file_destination("main", &other))]);
    let doubting = Server::start(&config, &scratch("fleet-tls-doubting"), &args).await;
    for _ in 0..2 {
        assert_eq!(doubting.post(&client, "/v1/batch", &batch(&sent)).await.0, 200);
    }
    let health = health(&client, &doubting).await;
    assert_eq!(health["dedupe"]["state"], "degraded", "{health}");
    assert!(health["dedupe"]["last_error"].as_str().unwrap_or_default().contains("certificate"), "{health}");
    let delivered = copies(&[out, other], 6).await;
    assert!(sent.iter().all(|id| delivered[id] == 2), "once through each node: {delivered:?}");
}

/// One node of the fleet under load, kept across a restart: its ports and its spool.
struct Node {
    server: Option<Server>,
    port: u16,
    admin: String,
    spool: PathBuf,
}

/// Two nodes sharing a Redis behind HAProxy, delivering to a stream of two shards on kinesis-local.
struct Fleet {
    nodes: Vec<Node>,
    config: PathBuf,
    args: Vec<String>,
    url: String,
    balancer: Child,
    redis: Redis,
    kinesis: String,
    stream: String,
}

impl Fleet {
    async fn start(name: &str) -> Fleet {
        let kinesis = tests::env::kinesis_endpoints()
            .into_iter()
            .find(|(engine, _)| engine == "kinesis-local")
            .expect("this suite reads back from kinesis-local, which `cargo xtask test` starts")
            .1;
        let stream = tests::stream::unique_name(name);
        let admin = tests::stream::client(&kinesis, tests::env::dummy_credentials()).await;
        tests::stream::create(&admin, &stream, 2).await;
        let dir = scratch(name);
        let redis = Redis::start(&dir.join("redis"));
        let secret = secret_file(&dir);
        let config =
            folder(&format!("{name}-config"), &[("main", &kinesis_destination("main", &stream, &kinesis, ""))]);
        // A timeout above the default: this suite checks what dedupe drops, and a machine running the whole test
        // suite answers loopback Redis later than 50 ms now and then.
        let args: Vec<String> = ["--dedupe-store", &redis.url(), "--dedupe-secret-file", secret.to_str().unwrap()]
            .into_iter()
            .chain(["--dedupe-timeout", "250ms"])
            .map(str::to_owned)
            .collect();
        let mut fleet = Fleet {
            nodes: Vec::new(),
            config,
            args,
            url: String::new(),
            balancer: Command::new("true").spawn().unwrap(),
            redis,
            kinesis,
            stream,
        };
        for i in 0..2 {
            let node = Node {
                server: None,
                port: free_port(),
                admin: format!("127.0.0.1:{}", free_port()),
                spool: scratch(&format!("{name}-spool-{i}")),
            };
            fleet.nodes.push(node);
            fleet.nodes[i].server = Some(fleet.start_node(i).await);
        }
        let port = free_port();
        let addresses: Vec<(String, String)> =
            fleet.nodes.iter().map(|n| (format!("127.0.0.1:{}", n.port), n.admin.clone())).collect();
        fleet.balancer = start_haproxy(&dir, port, &addresses);
        fleet.url = format!("http://127.0.0.1:{port}/v1/batch");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let answer =
                client.post(&fleet.url).basic_auth(crate::server::WRITE_KEY, Some("")).json(&json!({"batch": []}));
            if answer.send().await.is_ok_and(|r| r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fleet
    }

    async fn start_node(&self, i: usize) -> Server {
        let node = &self.nodes[i];
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--admin-listen", &node.admin]);
        Server::start_on(node.port, &self.config, &node.spool, &args, &[]).await
    }

    /// The sum over the nodes of a series on their `/metrics`.
    async fn metric(&self, client: &reqwest::Client, series: &str) -> f64 {
        let mut sum = 0.0;
        for node in &self.nodes {
            let page = client.get(format!("http://{}/metrics", node.admin)).send().await.unwrap().text().await.unwrap();
            sum += metric_value(&page, series).unwrap_or_else(|| panic!("no {series} on\n{page}"));
        }
        sum
    }

    /// How many records carry each messageId, once every one of `acknowledged` is in the stream. The stream is
    /// read once the nodes have nothing waiting: reading it whole every second would keep kinesis-local (one Node
    /// process) too busy to take the deliveries.
    async fn read_back(&self, acknowledged: &HashSet<String>) -> HashMap<String, usize> {
        let admin = tests::stream::client(&self.kinesis, tests::env::dummy_credentials()).await;
        let client = reqwest::Client::new();
        let give_up = Instant::now() + Duration::from_secs(240);
        while self.metric(&client, "tributary_backlog_messages{destination=\"main\"}").await > 0.0 {
            assert!(Instant::now() < give_up, "the nodes never delivered what they hold");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        loop {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for record in tests::stream::read_all(&admin, &self.stream).await {
                let data: Value = serde_json::from_slice(&record.data).unwrap();
                *seen.entry(data["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
            }
            let missing = acknowledged.iter().filter(|id| !seen.contains_key(*id)).count();
            if missing == 0 {
                return seen;
            }
            assert!(Instant::now() < give_up, "{missing} acknowledged messages never reached the stream");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

impl Fleet {
    /// Stops the clients, and reads back what they saw and what the stream holds.
    async fn stop(
        &self,
        running: Arc<AtomicBool>,
        clients: Vec<tokio::task::JoinHandle<()>>,
        ledger: Arc<Mutex<Ledger>>,
    ) -> (Ledger, HashMap<String, usize>) {
        running.store(false, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
        let ledger = std::mem::take(&mut *ledger.lock().unwrap());
        let acknowledged: HashSet<String> = ledger.acknowledged.keys().cloned().collect();
        let seen = self.read_back(&acknowledged).await;
        (ledger, seen)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.balancer.kill();
        let _ = self.balancer.wait();
    }
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// Every acknowledged messageId, with the node that acknowledged it and when (milliseconds into the run).
    acknowledged: HashMap<String, (String, u64)>,
    /// Messages whose request failed at least once, and that their client sent again until one was acknowledged.
    retried: HashSet<String>,
    /// Deliberate resends answered 200: when the first copy was acknowledged and when the resend was.
    resent: HashMap<String, (u64, u64)>,
    /// How many resent batches went to the node that had acknowledged them, and how many to the other.
    resent_same: usize,
    resent_other: usize,
}

/// Four clients, each sending a batch of 20 through HAProxy every 200 ms (about 400 messages a second in all: what
/// kinesis-local, one Node process that every suite shares, takes without falling behind), until one is
/// acknowledged, as Segment's libraries retry; every tenth acknowledged batch is sent again straight to a node: the
/// same one every other time, the other node otherwise. Runs until `running` turns false.
fn clients(
    fleet: &Fleet,
    tag: &str,
    start: Instant,
    running: Arc<AtomicBool>,
) -> (Arc<Mutex<Ledger>>, Vec<tokio::task::JoinHandle<()>>) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let nodes: Vec<String> = fleet.nodes.iter().map(|n| format!("http://127.0.0.1:{}/v1/batch", n.port)).collect();
    let mut handles = Vec::new();
    for c in 0..4 {
        let (ledger, running, url, nodes, tag) =
            (ledger.clone(), running.clone(), fleet.url.clone(), nodes.clone(), tag.to_owned());
        handles.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let post = |url: &str, body: &Value| {
                client.post(url).basic_auth(crate::server::WRITE_KEY, Some("")).json(body).send()
            };
            let millis = || start.elapsed().as_millis() as u64;
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                let sent = ids(&format!("{tag}-c{c}-{n}"), 20);
                let body = batch(&sent);
                n += 1;
                let node = loop {
                    match post(&url, &body).await {
                        Ok(answer) if answer.status() == 200 => {
                            let node = answer.headers().get("x-node").and_then(|v| v.to_str().ok());
                            break node.expect("HAProxy names the node").to_owned();
                        }
                        _ => {
                            ledger.lock().unwrap().retried.extend(sent.iter().cloned());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                let at = millis();
                ledger.lock().unwrap().acknowledged.extend(sent.iter().map(|id| (id.clone(), (node.clone(), at))));
                if n % 10 == 0 {
                    let same = (n / 10) % 2 == 0;
                    let acknowledged_by = usize::from(node == "node1");
                    let target = if same { acknowledged_by } else { 1 - acknowledged_by };
                    if let Ok(answer) = post(&nodes[target], &body).await
                        && answer.status() == 200
                    {
                        let mut ledger = ledger.lock().unwrap();
                        let resent_at = millis();
                        ledger.resent.extend(sent.iter().map(|id| (id.clone(), (at, resent_at))));
                        if same { ledger.resent_same += 1 } else { ledger.resent_other += 1 }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    (ledger, handles)
}

/// Checks what the stream holds against what the clients saw: every acknowledged message at least once, nothing
/// else; of the deliberate resends that `counts`, at least 99% dropped; every other duplicate `excused`. Returns a
/// summary.
fn judge(
    ledger: &Ledger,
    seen: &HashMap<String, usize>,
    counts: impl Fn(&str, (u64, u64)) -> bool,
    excused: impl Fn(&str) -> bool,
) -> String {
    let unknown: Vec<&String> = seen.keys().filter(|id| !ledger.acknowledged.contains_key(*id)).take(5).collect();
    assert!(unknown.is_empty(), "records with IDs no client had acknowledged: {unknown:?}");
    let judged: Vec<&String> = ledger.resent.iter().filter(|(id, at)| counts(id, **at)).map(|(id, _)| id).collect();
    let through = judged.iter().filter(|id| seen[**id] > 1).count();
    let dropped = 1.0 - through as f64 / judged.len().max(1) as f64;
    assert!(judged.len() >= 200, "too few resends to judge: {} (of {})", judged.len(), ledger.resent.len());
    assert!(ledger.resent_same > 0 && ledger.resent_other > 0, "resends went to both nodes");
    let again: Vec<(&String, &(u64, u64))> =
        judged.iter().filter(|id| seen[**id] > 1).map(|id| (*id, &ledger.resent[*id])).take(5).collect();
    assert!(
        dropped >= 0.99,
        "{through} of {} deliberate resends were delivered again (first acknowledged, resent, in ms): {again:?}",
        judged.len()
    );
    let other: Vec<(&String, &usize)> =
        seen.iter().filter(|(id, n)| **n > 1 && !ledger.resent.contains_key(*id) && !excused(id)).take(10).collect();
    assert!(other.is_empty(), "duplicates neither resent nor in flight when a node died: {other:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    format!(
        "{} acknowledged, {} resent ({} batches to the same node, {} to the other), {} judged, {:.2}% of them dropped, {duplicates} duplicates in the stream",
        ledger.acknowledged.len(),
        ledger.resent.len(),
        ledger.resent_same,
        ledger.resent_other,
        judged.len(),
        dropped * 100.0
    )
}

#[tokio::test]
async fn load_behind_haproxy_resends_to_either_node_are_dropped_and_a_killed_node_loses_nothing() {
    let started = Instant::now();
    let mut fleet = Fleet::start("fleet-kill").await;
    let running = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let (ledger, clients) = clients(&fleet, "kill", start, running.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let killed = fleet.nodes[0].server.as_ref().unwrap();
    killed.signal("KILL");
    let killed_at = start.elapsed().as_millis() as u64;
    fleet.nodes[0].server.as_mut().unwrap().wait(Duration::from_secs(5)).await.expect("SIGKILL ends it");
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.nodes[0].server = Some(fleet.start_node(0).await);
    tokio::time::sleep(Duration::from_secs(14)).await;
    let (ledger, seen) = fleet.stop(running, clients, ledger).await;
    // What the killed node had taken in the seconds before it died may still have been on its way to Kinesis, and
    // is delivered again by its restart; a request it died answering was sent again by its client.
    let in_flight = |id: &str| {
        ledger.retried.contains(id)
            || ledger
                .acknowledged
                .get(id)
                .is_some_and(|(node, at)| node == "node0" && *at + 3_000 >= killed_at && *at <= killed_at)
    };
    let summary = judge(&ledger, &seen, |id, _| !in_flight(id), in_flight);
    let client = reqwest::Client::new();
    println!(
        "fleet with a node killed: {summary}; {} messages sent again after a failed request; {} requests counted as dedupe unavailable; {:.1} s",
        ledger.retried.len(),
        fleet.metric(&client, "tributary_dedupe_unavailable_total").await,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn load_behind_haproxy_with_redis_stopped_for_ten_seconds_loses_nothing() {
    let started = Instant::now();
    let fleet = Fleet::start("fleet-redis-stop").await;
    let running = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let (ledger, clients) = clients(&fleet, "stop", start, running.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Stopped, not killed: connections stay open and nothing answers them, the hardest way for a store to fail.
    fleet.redis.signal("STOP");
    let stopped_at = start.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let health: Value =
        client.get(format!("http://{}/health", fleet.nodes[1].admin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["dedupe"]["state"], "degraded", "{health}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    fleet.redis.signal("CONT");
    let resumed_at = start.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (ledger, seen) = fleet.stop(running, clients, ledger).await;
    // The 99% applies to resends whose first copy and resend both met a Redis that answered (with a second's
    // margin after it came back, the time requests skip a store that failed).
    let away = |at: u64| at + 500 >= stopped_at && at <= resumed_at + 2_000;
    println!("Redis stopped at {stopped_at} ms, resumed at {resumed_at} ms");
    let summary =
        judge(&ledger, &seen, |_, (first, resent)| !away(first) && !away(resent), |id| ledger.retried.contains(id));
    let unavailable = fleet.metric(&client, "tributary_dedupe_unavailable_total").await;
    assert!(unavailable > 0.0, "Redis was stopped for 10 s and no request was counted as dedupe unavailable");
    let health: Value =
        client.get(format!("http://{}/health", fleet.nodes[1].admin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["dedupe"]["state"], "ok", "Redis answers again: {health}");
    println!(
        "fleet with Redis stopped 10 s: {summary}; {unavailable} requests counted as dedupe unavailable; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
