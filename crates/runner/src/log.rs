//! How the process logs: text for people (the default) or, with `--log-format json`, one JSON object per line for a
//! log pipeline. The server's own notes (listening, draining, stopped) go the same way as tracing's events.

use std::io::Write as _;
use std::sync::OnceLock;

/// The format of every line written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target` and `message`, with the event's fields beside them.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets up logging in `format`, at the level `TRIBUTARY_LOG` names (warn by default). Call once, first.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (its disk is full) is dropped; reporting that with `eprintln!` would
        // panic the request that logged it.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Writes one of the server's notes to standard error in the process's format, at level INFO, whatever the log
/// level; dropped if it cannot be written (a full disk must not crash the server).
pub fn note(message: std::fmt::Arguments<'_>) {
    let line = match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => message.to_string(),
        LogFormat::Json => serde_json::json!({
            "timestamp": crate::format::format_millis(spool::now_millis()),
            "level": "INFO",
            "target": "tributary",
            "message": message.to_string(),
        })
        .to_string(),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes a note ([`note`]) with `format!` arguments.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::log::note(format_args!($($arg)*))
    };
}
