//! The real browser library in a real browser: a page built with @segment/analytics-next from npm, served from
//! one origin and pointed at `tributary serve` on another by its `cdnURL` alone, in headless Chromium, with the
//! standard and the batching delivery strategies.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::env::dummy_credentials;
use tests::stream::{client, create, read_all, unique_name};

use crate::scratch;
use crate::server::{Server, WRITE_KEY, folder_with, kinesis_destination};

/// Bundles the page's script with esbuild, as a web app's build would, into `out/bundle.js`, beside the page.
fn build_page(modules: &str, out: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/browser");
    std::fs::copy(source.join("index.html"), out.join("index.html")).unwrap();
    let script = format!(
        "require('esbuild').build({{entryPoints: [{entry:?}], bundle: true, format: 'iife', outfile: {out:?}, \
         nodePaths: [{modules:?}], logLevel: 'warning'}}).catch((e) => {{ console.error(e); process.exit(1); }})",
        entry = source.join("app.js").display().to_string(),
        out = out.join("bundle.js").display().to_string(),
    );
    let output = Command::new("node").args(["-e", &script]).env("NODE_PATH", modules).output().unwrap();
    assert!(output.status.success(), "esbuild failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn analytics_js_in_chromium_delivers_every_call_once_with_the_clients_ip() {
    let (modules, chromium) = tests::env::browser();
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let admin = client(&url, dummy_credentials()).await;
    let stream = unique_name("browser");
    create(&admin, &stream, 1).await;
    let config = folder_with(
        "browser",
        &[("main", &kinesis_destination("main", &stream, &url, "max_in_flight = 1"))],
        "collect_ip = true",
    );
    let server = Server::start(&config, &scratch("browser-spool"), &[]).await;
    let page_dir = scratch("browser-page");
    build_page(&modules, &page_dir);
    let site = tests::web::Site::start(&page_dir).await;
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/browser/drive.js");

    let mut records = Vec::new();
    for (prefix, strategy, paths) in
        [("std", "standard", &["/v1/i", "/v1/t", "/v1/p", "/v1/g", "/v1/a"][..]), ("bat", "batching", &["/v1/b"][..])]
    {
        let page = format!(
            "{}/index.html?writeKey={WRITE_KEY}&cdnURL={}&prefix={prefix}&strategy={strategy}",
            site.url, server.url
        );
        let mut browser = Command::new("node")
            .arg(&driver)
            .args([&chromium, &page])
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(browser.stdout.take().unwrap());
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut requests = Vec::new();
        let mut sent = false;
        let give_up = std::time::Instant::now() + Duration::from_secs(90);
        let mine = |records: &[Value]| records.iter().filter(|m| m.to_string().contains(prefix)).count();
        while std::time::Instant::now() < give_up {
            while let Ok(line) = lines_rx.try_recv() {
                sent |= line == "sent";
                if let Some(request) = line.strip_prefix("request ") {
                    requests.push(request.to_owned());
                }
            }
            records = read_all(&admin, &stream)
                .await
                .iter()
                .map(|r| serde_json::from_slice::<Value>(&r.data).unwrap())
                .collect();
            if sent && mine(&records) >= 5 {
                break;
            }
            if let Ok(Some(status)) = browser.try_wait() {
                let mut stderr = String::new();
                let _ = std::io::Read::read_to_string(browser.stderr.as_mut().unwrap(), &mut stderr);
                panic!("the browser driver stopped ({status}):\n{stderr}\nserver log:\n{}", server.log());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Closing its input lets the driver close the browser.
        drop(browser.stdin.take());
        let status = browser.wait().unwrap();
        // The driver's last lines may come after the records landed: read its output to the end.
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(5)) {
            sent |= line == "sent";
            if let Some(request) = line.strip_prefix("request ") {
                requests.push(request.to_owned());
            }
        }
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(browser.stderr.as_mut().unwrap(), &mut stderr);
        assert!(status.success() && sent, "{strategy}: the page did not send its calls:\n{stderr}");
        assert_eq!(mine(&records), 5, "{strategy}: records {records:?}\nbrowser:\n{stderr}\nserver:\n{}", server.log());
        let settings = format!("GET {}/v1/projects/{WRITE_KEY}/settings", server.url);
        assert!(requests.contains(&settings), "{strategy}: no settings request in {requests:?}");
        for path in paths {
            let post = format!("POST {}{path}", server.url);
            assert!(requests.contains(&post), "{strategy}: no {post} in {requests:?}");
        }
    }

    for prefix in ["std", "bat"] {
        let mine: Vec<&Value> = records.iter().filter(|m| m.to_string().contains(prefix)).collect();
        let mut kinds: Vec<&str> = mine.iter().map(|m| m["type"].as_str().unwrap()).collect();
        kinds.sort();
        assert_eq!(kinds, ["alias", "group", "identify", "page", "track"], "{prefix}");
        for message in &mine {
            assert_eq!(message["context"]["ip"], "127.0.0.1", "{message}");
            assert_eq!(message["context"]["library"]["name"], "analytics.js", "{message}");
            assert!(message.get("writeKey").is_none(), "{message}");
        }
        let track = mine.iter().find(|m| m["type"] == "track").unwrap();
        assert_eq!(track["userId"], format!("{prefix}_user"));
        assert_eq!(track["event"], format!("{prefix} Clicked"));
    }
    let mut ids: Vec<&str> = records.iter().map(|m| m["messageId"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "a message landed twice");
}
