//! Running as a service: the admin listener and its probes, and draining on SIGTERM, alone and behind a real load
//! balancer (Debian's HAProxy) in front of two nodes.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::scratch;
use crate::server::{Server, file_destination, folder, free_port, metric_value, sbin, start_haproxy};

/// The messageIds in an NDJSON file destination's output.
fn delivered(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `/readyz` on the admin address `admin` answers 200 within ten seconds.
async fn ready_within_ten_seconds(client: &reqwest::Client, admin: &str) -> bool {
    for _ in 0..100 {
        if client.get(format!("http://{admin}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_admin_port_answers_probes_apart_from_clients() {
    let out = scratch("admin-out").join("out.ndjson");
    let config = folder("admin", &[("main", &file_destination("main", &out))]);
    let admin = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &config,
        &scratch("admin-spool"),
        &["--admin-listen", &admin, "--max-connections", "1", "--read-timeout", "1"],
    )
    .await;
    let admin = format!("http://{admin}");
    let client = reqwest::Client::new();

    assert_eq!(get(&client, &format!("{admin}/livez")).await.0, 200);
    let (status, body) = get(&client, &format!("{admin}/readyz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    assert_eq!(get(&client, &format!("{admin}/health")).await.0, 200);
    // The status pages left the ingest port, and the admin port serves no ingest API.
    assert_eq!(get(&client, &format!("{}/health", server.url)).await.0, 404);
    let ingest_on_admin = client
        .post(format!("{admin}/v1/track"))
        .basic_auth(server.key, Some(""))
        .json(&json!({"userId": "u", "event": "E"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ingest_on_admin.status(), 404);

    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let (status, _) = server.post(&fresh, "/v1/track", &json!({"userId": "u", "event": "E", "messageId": "m-1"})).await;
    assert_eq!(status, 200);
    let page = get(&client, &format!("{admin}/metrics")).await.1;
    assert!(metric_value(&page, "tributary_http_responses_total{code=\"200\"}").is_some_and(|n| n >= 1.0), "{page}");
    assert!(metric_value(&page, "tributary_spool_budget_bytes").is_some_and(|n| n > 0.0), "{page}");
    assert!(metric_value(&page, "tributary_spool_bytes").is_some(), "{page}");

    // The one client connection the ingest port allows is taken and idle; the probes do not wait behind it.
    let _held = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = tokio::time::timeout(Duration::from_secs(2), get(&client, &format!("{admin}/readyz"))).await;
    assert_eq!(probe.expect("the admin port answers while the ingest port is full").0, 200);

    // A connection to the admin port that sends nothing is closed after --read-timeout, as on the ingest port.
    let mut idle = tokio::net::TcpStream::connect(admin.trim_start_matches("http://")).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut idle, &mut byte));
    assert!(matches!(closed.await, Ok(Ok(0) | Err(_))), "an idle admin connection stayed open past --read-timeout");
}

#[tokio::test]
async fn sigterm_turns_readiness_off_keeps_taking_requests_then_drains() {
    let out = scratch("drain-out").join("out.ndjson");
    let config = folder("drain", &[("main", &file_destination("main", &out))]);
    let admin = format!("127.0.0.1:{}", free_port());
    let mut server =
        Server::start(&config, &scratch("drain-spool"), &["--admin-listen", &admin, "--drain-delay", "3s"]).await;
    let admin = format!("http://{admin}");
    let client = reqwest::Client::new();
    let track = |id: &str| json!({"userId": "u", "event": "E", "messageId": id});
    assert_eq!(server.post(&client, "/v1/track", &track("before")).await.0, 200);

    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(&client, &format!("{admin}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert_eq!(get(&client, &format!("{admin}/livez")).await.0, 200, "liveness never fails while it serves");
    let (status, body) = get(&client, &format!("{admin}/health")).await;
    assert_eq!(status, 503);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "draining");

    // Still taken during the delay, each answer asking the client to reconnect elsewhere.
    let during = client
        .post(format!("{}/v1/track", server.url))
        .basic_auth(server.key, Some(""))
        .json(&track("during"))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));

    assert_eq!(server.wait(Duration::from_secs(15)).await, Some(Some(0)), "{}", server.log());
    let log = server.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("stopped (drained)") && last.contains("0 messages left"), "{log}");
    let mut ids = delivered(&out);
    ids.sort();
    assert_eq!(ids, ["before", "during"]);
}

#[tokio::test]
async fn a_node_drained_behind_haproxy_costs_its_clients_nothing() {
    let dir = scratch("lb");
    let mut nodes = Vec::new();
    let mut outputs = Vec::new();
    for name in ["a", "b"] {
        let out = dir.join(format!("{name}.ndjson"));
        let config = folder(&format!("lb-{name}"), &[("main", &file_destination("main", &out))]);
        let admin = format!("127.0.0.1:{}", free_port());
        let spool = scratch(&format!("lb-spool-{name}"));
        let server = Server::start(&config, &spool, &["--admin-listen", &admin, "--drain-delay", "5s"]).await;
        nodes.push((server, admin));
        outputs.push(out);
    }
    let port = free_port();
    let addresses: Vec<(String, String)> =
        nodes.iter().map(|(s, admin)| (s.url.trim_start_matches("http://").to_owned(), admin.clone())).collect();
    let mut balancer = start_haproxy(&dir, port, &addresses);
    let url = format!("http://127.0.0.1:{port}/v1/batch");
    let client = reqwest::Client::new();
    // HAProxy starts its checks at once; wait until both nodes take requests.
    for _ in 0..100 {
        if client
            .post(&url)
            .basic_auth(crate::server::WRITE_KEY, Some(""))
            .json(&json!({"batch": []}))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Eight clients, each a batch of 20 every 20 ms (about 8,000 messages a second in all), for 10 seconds; the
    // first node is told to stop after 3.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (client, url) = (reqwest::Client::new(), url.clone());
        let (acknowledged, failures, sent, running) =
            (acknowledged.clone(), failures.clone(), sent.clone(), running.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..20).map(|i| format!("c{c}-{n}-{i}")).collect();
                let batch: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"type": "track", "userId": "u", "event": "E", "messageId": id}))
                    .collect();
                n += 1;
                sent.fetch_add(ids.len(), Ordering::Relaxed);
                let answer = client
                    .post(&url)
                    .basic_auth(crate::server::WRITE_KEY, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == 200 => acknowledged.lock().await.extend(ids),
                    Ok(response) => failures.lock().await.push(format!("HTTP {}", response.status())),
                    Err(e) => failures.lock().await.push(format!("connection: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[0].0.signal("TERM");
    tokio::time::sleep(Duration::from_secs(7)).await;
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let drained = nodes[0].0.wait(Duration::from_secs(30)).await;
    let _ = balancer.kill();
    let _ = balancer.wait();
    assert_eq!(drained, Some(Some(0)), "{}", nodes[0].0.log());
    let failures = failures.lock().await.clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed) / 20,
        &failures[..failures.len().min(10)]
    );

    // Every acknowledged message was delivered, by one node or the other, and the drained node took its share.
    let acknowledged: HashSet<String> = acknowledged.lock().await.iter().cloned().collect();
    let mut arrived = HashSet::new();
    for _ in 0..100 {
        arrived = outputs.iter().flat_map(|out| delivered(out)).collect();
        if acknowledged.is_subset(&arrived) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing = acknowledged.difference(&arrived).count();
    assert_eq!(missing, 0, "{missing} of {} acknowledged messages were not delivered", acknowledged.len());
    assert!(acknowledged.len() > 10_000, "the load was too light to mean anything: {}", acknowledged.len());
    assert!(!delivered(&outputs[0]).is_empty() && !delivered(&outputs[1]).is_empty(), "both nodes took traffic");
}

/// Debian's promtool, or a failure that says how to get it.
fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "this suite needs promtool: `apt-get install prometheus` (`.ci/run` installs it)");
    "promtool"
}

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_alert_rules_check_and_pass_their_tests() {
    let rules = deploy().join("prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]] {
        let run = Command::new(promtool()).args(args).current_dir(&rules).output().unwrap();
        assert!(
            run.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

/// The `tributary_*` metric names a file mentions, as queries write them (`_total`, `_bucket` included).
fn metric_names(text: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tributary_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_on_a_live_page() {
    let standin = tests::standin::StandIn::start().await;
    standin.create("events", 2, false);
    let config =
        folder("live-metrics", &[("main", &crate::server::kinesis_destination("main", "events", &standin.url, ""))]);
    let admin = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&config, &scratch("live-metrics-spool"), &["--admin-listen", &admin]).await;
    let client = reqwest::Client::new();
    // A valid message, an invalid one kept aside, and a request with a wrong key: every family gets a series.
    let batch = json!({"batch": [
        {"type": "track", "userId": "u", "event": "E", "messageId": "live-1"},
        {"type": "track", "userId": "u", "messageId": "live-2"}
    ]});
    assert_eq!(server.post(&client, "/v1/batch", &batch).await.0, 200);
    let wrong = client.post(format!("{}/v1/track", server.url)).basic_auth("wrong", Some("")).json(&json!({})).send();
    assert_eq!(wrong.await.unwrap().status(), 401);

    let mut wanted = metric_names(&std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap());
    wanted.extend(metric_names(&std::fs::read_to_string(deploy().join("grafana/tributary.json")).unwrap()));
    assert!(wanted.len() >= 15, "the reader of rules and dashboard must see their metrics: {wanted:?}");
    let mut missing = Vec::new();
    for _ in 0..50 {
        let page = get(&client, &format!("http://{admin}/metrics")).await.1;
        let present = |name: &String| {
            page.lines().any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        };
        missing = wanted.iter().filter(|name| !present(name)).cloned().collect();
        if missing.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    missing.sort();
    panic!(
        "metrics named by deploy/prometheus/alerts.yml or deploy/grafana/tributary.json are not on /metrics: {missing:?}"
    );
}

#[test]
fn the_kubernetes_manifests_are_valid_against_kubernetes_schemas() {
    let validate = tests::env::kubernetes_validate();
    let manifest = deploy().join("kubernetes/tributary.yaml");
    let run = Command::new(&validate).arg("--strict").arg(&manifest).output().unwrap_or_else(|e| {
        panic!("{} did not run ({e}): `cargo xtask test` installs kubernetes-validate", validate.display())
    });
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{said}");
    for kind in
        ["statefulset/tributary", "service/tributary", "service/tributary-pods", "poddisruptionbudget/tributary"]
    {
        assert!(said.contains(&format!("passed for resource {kind}")), "{kind} was not checked: {said}");
    }
    // What the issue asks of the StatefulSet, read from the file (the schemas check shapes, not these choices).
    let text = std::fs::read_to_string(&manifest).unwrap();
    for wanted in [
        "volumeClaimTemplates",
        "terminationGracePeriodSeconds: 90",
        "path: /livez, port: admin",
        "path: /readyz, port: admin",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "--admin-listen",
        "--public-url",
        "--watch-config",
        "configMap: {name: tributary-sources}",
        "configMap: {name: tributary-destinations}",
        "kind: PodDisruptionBudget",
        "clusterIP: None",
    ] {
        assert!(text.contains(wanted), "the manifest lacks {wanted:?}");
    }
}

#[tokio::test]
async fn the_systemd_unit_verifies_and_its_command_line_serves() {
    let unit = std::fs::read_to_string(deploy().join("systemd/tributary.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_tributary");
    let dir = scratch("systemd");
    let copy = dir.join("tributary.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tributary", binary)).unwrap();
    let verify = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap_or_else(|e| {
        panic!("systemd-analyze did not run ({e}): `apt-get install systemd` (`.ci/run` installs it)")
    });
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    // It exits 0 on an unknown key or a bad value and only says so: anything it says is a failure.
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    // The unit's command line, on this machine's paths and free ports, serves and drains.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let (listen, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let out = dir.join("out.ndjson");
    let config = folder("systemd-config", &[("main", &file_destination("main", &out))]);
    let spool = scratch("systemd-spool");
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|arg| match arg {
            "/etc/tributary" => config.display().to_string(),
            "/var/lib/tributary" => spool.display().to_string(),
            "0.0.0.0:8080" => listen.clone(),
            "127.0.0.1:9090" => admin.clone(),
            other => other.to_owned(),
        })
        .collect();
    let mut child = Command::new(binary)
        .args(&args)
        .env("TEST_WRITE_KEY", crate::server::WRITE_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let ready = ready_within_ten_seconds(&client, &admin).await;
    let log = || std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    assert!(ready, "the unit's command line did not serve: {args:?}\n{}", log());
    // Its log lines are JSON, as the unit asks.
    let first = log().lines().next().unwrap_or_default().to_owned();
    assert!(serde_json::from_str::<Value>(&first).is_ok_and(|v| v["level"] == "INFO"), "{first}");
    // `systemctl reload` runs the unit's ExecReload with the server's PID.
    let reload = unit.lines().find_map(|l| l.strip_prefix("ExecReload=")).expect("an ExecReload line");
    let reload: Vec<String> =
        reload.replace("$MAINPID", &child.id().to_string()).split_whitespace().map(String::from).collect();
    assert!(Command::new(&reload[0]).args(&reload[1..]).status().unwrap().success(), "{reload:?}");
    let mut reloaded = false;
    for _ in 0..100 {
        reloaded = log().contains("config reloaded");
        if reloaded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "ExecReload did not reload the config: {}", log());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut exited = None;
    for _ in 0..150 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(exited.is_some_and(|s| s.success()), "it did not drain and exit: {}", log());
}

/// A container made from the image under test, removed when dropped.
struct Container {
    name: String,
    root: std::path::PathBuf,
}

impl Container {
    fn from_archive(archive: &str) -> Container {
        let name = format!("tributary-suite-{}", std::process::id());
        let _ = Command::new("buildah").args(["rm", &name]).output();
        let made = Command::new("buildah").args(["from", "--name", &name, &format!("oci-archive:{archive}")]).output();
        let made = made.unwrap_or_else(|e| panic!("buildah did not run ({e}): `apt-get install buildah`"));
        assert!(made.status.success(), "buildah from {archive}: {}", String::from_utf8_lossy(&made.stderr));
        let mounted = Command::new("buildah").args(["mount", &name]).output().unwrap();
        assert!(mounted.status.success(), "buildah mount: {}", String::from_utf8_lossy(&mounted.stderr));
        let root = String::from_utf8(mounted.stdout).unwrap().trim().into();
        Container { name, root }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["umount", &self.name]).output();
        let _ = Command::new("buildah").args(["rm", &self.name]).output();
    }
}

#[tokio::test]
async fn the_image_runs_its_binary_on_its_own_paths_as_its_own_user() {
    let archive = tests::env::image();
    let container = Container::from_archive(&archive);
    let root = &container.root;
    // Run as the image runs, as its user: `podman run` does not work in this sandbox, so chroot stands in for it.
    let in_image = |args: &[&str]| {
        let mut command = Command::new(sbin("chroot"));
        command.arg("--userspec=65532:65532").arg(root).arg("/usr/local/bin/tributary").args(args);
        command
    };
    let version = in_image(&["--version"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), "tributary 0.1.0", "{version:?}");

    let (emulator, url) = tests::env::kinesis_endpoints().remove(0);
    let admin_client = tests::stream::client(&url, tests::env::dummy_credentials()).await;
    let stream = tests::stream::unique_name("image");
    tests::stream::create(&admin_client, &stream, 1).await;
    let config = root.join("etc/tributary");
    crate::write_files(
        &config,
        &[
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"TEST_WRITE_KEY\" }\ndestinations = [\"main\"]\n",
            ),
            ("destinations/main.toml", &crate::server::kinesis_destination("main", &stream, &url, "")),
        ],
    );
    let (listen, admin) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let log = scratch("image-log").join("serve.log");
    let mut serving = in_image(&[
        "--config",
        "/etc/tributary",
        "serve",
        "--listen",
        &listen,
        "--admin-listen",
        &admin,
        "--spool-dir",
        "/var/lib/tributary",
        "--drain-delay",
        "0",
    ])
    .env("TEST_WRITE_KEY", crate::server::WRITE_KEY)
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let client = reqwest::Client::new();
    let ready = ready_within_ten_seconds(&client, &admin).await;
    assert!(ready, "serve in the image did not get ready: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let sent = client
        .post(format!("http://{listen}/v1/track"))
        .basic_auth(crate::server::WRITE_KEY, Some(""))
        .json(&json!({"userId": "u", "event": "From the image", "messageId": "image-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let records = tests::stream::read_at_least(&admin_client, &stream, 1).await;
    let _ = Command::new("kill").args(["-TERM", &serving.id().to_string()]).status();
    let _ = serving.wait();
    assert_eq!(records.len(), 1, "{emulator}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let data: Value = serde_json::from_slice(&records[0].data).unwrap();
    assert_eq!(data["messageId"], "image-1");
    // The spool was written on the image's own volume path, by its own user.
    let spool = root.join("var/lib/tributary/spool.sqlite3");
    assert!(spool.exists(), "no spool at /var/lib/tributary in the image");
}

/// The instructions of the last stage of a Containerfile, continuation lines joined, comments left out.
fn last_stage(containerfile: &str) -> Vec<(String, String)> {
    let joined = containerfile.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(i, rest)| (i.to_uppercase(), rest.trim().to_owned())))
        .collect();
    let from = instructions.iter().rposition(|(i, _)| i == "FROM").expect("a FROM");
    instructions[from..].to_vec()
}

#[test]
fn the_containerfile_declares_what_the_built_image_has() {
    let archive = tests::env::image();
    let inspected = Command::new("skopeo").args(["inspect", "--config", &format!("oci-archive:{archive}")]).output();
    let inspected = inspected.unwrap_or_else(|e| panic!("skopeo did not run ({e}): `apt-get install skopeo`"));
    assert!(inspected.status.success(), "{}", String::from_utf8_lossy(&inspected.stderr));
    let image: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let image = &image["config"];
    let text = std::fs::read_to_string(deploy().join("Containerfile")).unwrap();
    let stage = last_stage(&text);
    let one = |name: &str| {
        let found: Vec<&String> = stage.iter().filter(|(i, _)| i == name).map(|(_, v)| v).collect();
        assert_eq!(found.len(), 1, "the Containerfile's last stage has one {name}: {stage:?}");
        found[0].clone()
    };
    assert_eq!(one("USER"), image["User"].as_str().unwrap());
    assert_eq!(one("WORKDIR"), image["WorkingDir"].as_str().unwrap());
    assert_eq!(serde_json::from_str::<Value>(&one("ENTRYPOINT")).unwrap(), image["Entrypoint"]);
    assert_eq!(serde_json::from_str::<Value>(&one("CMD")).unwrap(), image["Cmd"]);
    let volumes: Vec<&str> = image["Volumes"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(one("VOLUME").split_whitespace().collect::<Vec<_>>(), volumes);
    let ports: Vec<&str> = image["ExposedPorts"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(one("EXPOSE").split_whitespace().collect::<Vec<_>>(), ports);
    let env: Vec<&str> = image["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(vec![one("ENV").as_str()], env);
    // The build stage's toolchain is the workspace's.
    let manifest = std::fs::read_to_string(deploy().join("../Cargo.toml")).unwrap();
    let version = manifest.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(text.contains(&format!("FROM docker.io/library/rust:{version}-")), "the build stage is not Rust {version}");
}
