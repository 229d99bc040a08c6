//! Where `serve` runs what: delivery on the runtime the server was started on, ingest on a runtime of its own
//! whose threads yield to delivery's.
//!
//! Measured on 2 cores with 512 clients: when ingest shared delivery's runtime, every step of a delivery (a read
//! from the spool, a PutRecords call, its answer) waited in the run queue behind hundreds of requests being
//! parsed, and delivery fell to 10,000 messages a second while ingest acknowledged 250,000; the backlog grew
//! without bound. On its own runtime, delivery's steps no longer queue behind requests; with ingest's threads at a
//! lower priority, the kernel gives delivery the CPU it asks for first and ingest the rest, so the server
//! acknowledges what it can deliver and clients wait for their answers instead of the backlog growing.

/// How much lower than the process's own ingest's threads run (a `nice` increment): delivery's threads get about
/// three times ingest's share of a core when both want it (the kernel's weights for nice 0 and 5 are 1024 and 335).
const INGEST_NICENESS: i32 = 5;

/// A multi-threaded runtime, one worker per core, for the HTTP API, its threads named `tributary-ingest` and set
/// [`INGEST_NICENESS`] below the process's priority where the system allows it.
pub fn ingest_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .thread_name("tributary-ingest")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// Lowers the calling thread's priority by [`INGEST_NICENESS`]. Raising a niceness needs no privilege; where it
/// fails anyway, the thread keeps its priority and the runtimes alone separate the work.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a thread ID names one thread to setpriority, not the whole process.
        let thread = rustix::thread::gettid();
        if let Ok(current) = rustix::process::getpriority_process(Some(thread)) {
            let _ = rustix::process::setpriority_process(Some(thread), (current + INGEST_NICENESS).min(19));
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn ingest_threads_run_below_the_process() {
        let process = rustix::process::getpriority_process(None).expect("the process's niceness");
        let runtime = super::ingest_runtime().expect("a runtime");
        let niceness = runtime
            .block_on(async {
                tokio::spawn(async { rustix::process::getpriority_process(Some(rustix::thread::gettid())) }).await
            })
            .expect("the task ran")
            .expect("the thread's niceness");
        assert_eq!(niceness, (process + super::INGEST_NICENESS).min(19));
    }
}
