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
