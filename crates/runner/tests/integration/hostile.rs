//! Hostile request bodies against a running `tributary serve`: each gets an answer, and costs the server no more
//! CPU than a small multiple of an ordinary batch of the same size.

use crate::scratch;
use crate::server::{Server, file_destination, folder};

/// How much more server CPU a hostile request may cost than an ordinary 480 KB batch.
const MAX_RATIO: f64 = 5.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_answered_at_the_cost_of_an_ordinary_batch() {
    for shape in tests::hostile::shapes() {
        let limit = if shape.path == "/v1/batch" { 500 * 1024 } else { 32 * 1024 };
        assert!(
            shape.body.len() <= limit,
            "{} is {} bytes, over the limit it means to test within",
            shape.name,
            shape.body.len()
        );
    }
    let out = scratch("hostile-out").join("out.ndjson");
    let config = folder("hostile", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("hostile-spool"), &[]).await;
    let report = tests::hostile::measure(server.pid(), &server.url, server.key, 4)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", server.log()));
    let (worst, label) = report.worst();
    eprintln!("{}worst: {worst:.2}x ({label})", report.table());
    for series in &report.series {
        assert_eq!(series.status, series.expected, "{}: answered {}", series.label, series.status);
    }
    assert!(worst <= MAX_RATIO, "{label} cost {worst:.2}x the CPU of an ordinary batch\n{}", report.table());
    // Still serving.
    let (status, _) =
        server.post(&reqwest::Client::new(), "/v1/track", &serde_json::json!({"userId": "u", "event": "After"})).await;
    assert_eq!(status, 200);
}

/// A request whose body trickles in gives its turn back: ingest reads, parses and encodes only a few requests per
/// core at once, and a turn that had to wait for the body of one of 64 stalled clients for the whole read timeout
/// would hold every request behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_mid_body_do_not_hold_up_the_others() {
    use tokio::io::AsyncWriteExt as _;

    let out = scratch("stalled-out").join("out.ndjson");
    let config = folder("stalled", &[("archive", &file_destination("archive", &out))]);
    let server = Server::start(&config, &scratch("stalled-spool"), &["--read-timeout", "20"]).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let auth = base64_key(server.key);
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/batch HTTP/1.1\r\nhost: {address}\r\nauthorization: Basic {auth}\r\ncontent-type: \
             application/json\r\ncontent-length: 50000\r\n\r\n{{\"batch\": ["
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    for i in 0..20 {
        let (status, body) =
            server.post(&client, "/v1/track", &serde_json::json!({"userId": "u", "event": "Beside", "n": i})).await;
        assert_eq!(status, 200, "{body}");
    }
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(3), "20 requests beside 64 stalled bodies took {took:?}");
    drop(stalled);
}

/// `key:` in Basic form.
fn base64_key(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}
