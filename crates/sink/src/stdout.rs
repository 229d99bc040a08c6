//! NDJSON to standard output, or to any writer.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::{Delivery, Outcome, Record, Sink};

/// Writes each record's JSON as one line to a writer, flushing after every batch.
pub struct WriterSink<W> {
    writer: Mutex<W>,
}

/// The `stdout` destination type.
pub type StdoutSink = WriterSink<tokio::io::Stdout>;

impl StdoutSink {
    /// A sink that prints to this process's standard output.
    pub fn stdout() -> StdoutSink {
        WriterSink::new(tokio::io::stdout())
    }
}

impl<W> WriterSink<W> {
    /// A sink writing to `writer`.
    pub fn new(writer: W) -> WriterSink<W> {
        WriterSink { writer: Mutex::new(writer) }
    }

    /// Returns the writer.
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

/// Writes `records` as NDJSON in one buffer and flushes; every record shares the outcome of the write.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(writer: &mut W, records: &[Record]) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(records.iter().map(|r| r.payload().len() + 1).sum());
    for record in records {
        buffer.extend_from_slice(record.payload());
        buffer.push(b'\n');
    }
    writer.write_all(&buffer).await?;
    writer.flush().await
}

/// The outcomes of one write that covered every record.
pub(crate) fn outcomes(count: usize, result: std::io::Result<()>, what: &str) -> Vec<Outcome> {
    match result {
        Ok(()) => vec![Outcome::Delivered(Delivery::default()); count],
        // A failed write may pass (a full disk can be cleared), so the caller keeps the records.
        Err(e) => vec![Outcome::Retryable(format!("writing to {what}: {e}")); count],
    }
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Unpin + Send> Sink for WriterSink<W> {
    async fn deliver(&self, records: Vec<Record>) -> Vec<Outcome> {
        let mut writer = self.writer.lock().await;
        let result = write_lines(&mut *writer, &records).await;
        outcomes(records.len(), result, "the output")
    }
}
