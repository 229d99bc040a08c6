//! The stdout and file sinks.

use std::sync::Arc;

use segment_model::Message;
use sink::{FileSink, Outcome, Record, Sink, WriterSink};

fn record(body: &str) -> Record {
    Record::new(Arc::from("src_1"), Message::from_slice(body.as_bytes()).unwrap())
}

#[tokio::test]
async fn writer_sink_writes_one_line_per_record() {
    let sink = WriterSink::new(Vec::new());
    let outcomes = sink
        .deliver(vec![
            record(r#"{"type":"identify","userId":"a"}"#),
            record(r#"{"type":"track","userId":"b","event":"E"}"#),
        ])
        .await;
    assert!(outcomes.iter().all(Outcome::is_delivered));
    let text = String::from_utf8(sink.into_inner()).unwrap();
    assert_eq!(
        text,
        "{\"type\":\"identify\",\"userId\":\"a\"}\n{\"type\":\"track\",\"userId\":\"b\",\"event\":\"E\"}\n"
    );
}

#[tokio::test]
async fn file_sink_appends_across_opens() {
    let dir = std::env::temp_dir().join(format!("tributary-file-sink-{}", std::process::id()));
    let path = dir.join("nested/out.ndjson");
    let _ = std::fs::remove_dir_all(&dir);
    for user in ["a", "b"] {
        let sink = FileSink::open(&path).await.unwrap();
        let outcomes = sink.deliver(vec![record(&format!(r#"{{"type":"identify","userId":"{user}"}}"#))]).await;
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0].is_delivered());
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().nth(1).unwrap().contains("\"b\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn file_sink_writes_a_large_batch_whole_and_in_order() {
    // More records than one vectored write takes (1,024 slices, two a record), of sizes that leave partial writes
    // possible: every line lands once, in order, whole.
    let dir = std::env::temp_dir().join(format!("tributary-file-sink-large-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("out.ndjson");
    let sink = FileSink::open(&path).await.unwrap();
    let records: Vec<Record> = (0..1_500)
        .map(|i| record(&format!(r#"{{"type":"track","userId":"u{i}","event":"{}"}}"#, "e".repeat(1 + i % 700))))
        .collect();
    let outcomes = sink.deliver(records.clone()).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    let text = std::fs::read(&path).unwrap();
    let expected: Vec<u8> = records.iter().flat_map(|r| [r.payload().as_ref(), b"\n"].concat()).collect();
    assert_eq!(text.len(), expected.len());
    assert!(text == expected, "the file differs from the records, in order, one a line");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_write_is_retryable() {
    // Writing to a file opened read-only fails; every record in the batch must say so and be retryable.
    let path = std::env::temp_dir().join(format!("tributary-ro-{}", std::process::id()));
    std::fs::write(&path, "").unwrap();
    let file = tokio::fs::File::open(&path).await.unwrap();
    let sink = WriterSink::new(file);
    let outcomes = sink.deliver(vec![record(r#"{"type":"identify","userId":"a"}"#); 3]).await;
    assert_eq!(outcomes.len(), 3);
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Retryable(reason) if reason.starts_with("writing to the output")))
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_file_sink_to_a_device_delivers_without_syncing() {
    // /dev/null cannot be synced (EINVAL); a sink that tried would fail every batch forever.
    let sink = FileSink::open("/dev/null").await.unwrap();
    let outcomes = sink.deliver(vec![record(r#"{"type":"identify","userId":"a"}"#); 2]).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
}
