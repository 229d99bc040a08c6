//! Faults the suites switch on through the environment of `serve`, to check how the server survives them. Never
//! set `TRIBUTARY_TEST_FAULTS` in production.

use std::sync::Arc;

use sink::{Outcome, Sink};

/// The variable: a comma-separated list of faults. `panic` adds `POST /test/panic`, whose handler panics, so that
/// tests can check the answer and the count a panic gets; `sink-panic=TEXT` see [`with_test_faults`].
pub const TEST_FAULTS: &str = "TRIBUTARY_TEST_FAULTS";

/// Whether the fault `name` (one without a value) is switched on.
pub fn asked(name: &str) -> bool {
    std::env::var(TEST_FAULTS).is_ok_and(|faults| faults.split(',').any(|f| f == name))
}

/// Wraps `sink` as `TRIBUTARY_TEST_FAULTS` asks, for the suites that check how workers survive faults: with
/// `sink-panic=TEXT` in it, the first delivery holding a message that contains `TEXT` panics. Never set it in
/// production.
pub fn with_test_faults(sink: Arc<dyn Sink>) -> Arc<dyn Sink> {
    let faults = std::env::var(TEST_FAULTS).unwrap_or_default();
    match faults.split(',').find_map(|f| f.strip_prefix("sink-panic=")) {
        Some(text) => Arc::new(PanicOnce { sink, text: text.as_bytes().to_vec(), done: Default::default() }),
        None => sink,
    }
}

/// A sink that panics once, on the first delivery holding a message that contains `text`.
struct PanicOnce {
    sink: Arc<dyn Sink>,
    text: Vec<u8>,
    done: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Sink for PanicOnce {
    async fn deliver(&self, records: Vec<sink::Record>) -> Vec<Outcome> {
        let hit = records.iter().any(|r| r.payload().windows(self.text.len()).any(|w| w == self.text.as_slice()));
        if hit && !self.done.swap(true, std::sync::atomic::Ordering::Relaxed) {
            panic!("the test fault switch asked for a panic in the sink");
        }
        self.sink.deliver(records).await
    }
}
