//! `tributary`: the command line. Parses arguments, sets up logging and signals, runs a command from
//! `runner::commands` (or `runner::serve`) with standard output and error, and turns its result into the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runner::commands::{dlq, filters, personas, plan, privacy, rejected, reload, send, setup, streams, tail, validate};
use runner::serve;

/// Tributary: a self-hosted Segment-compatible event router for AWS Kinesis.
#[derive(Parser)]
#[command(name = "tributary", version)]
struct Cli {
    /// The config folder, holding sources/*.toml, destinations/*.toml, audiences/*.toml and suppressions/*.toml.
    #[arg(long, global = true, default_value = "configs", env = "TRIBUTARY_CONFIG")]
    config: PathBuf,
    /// How log lines are written to standard error: text for people, or json (one object per line, with
    /// timestamp, level, target and message at the top level) for a log pipeline.
    #[arg(long, global = true, value_enum, default_value = "text", env = "TRIBUTARY_LOG_FORMAT")]
    log_format: runner::log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deliver NDJSON messages to every destination a source is connected to.
    Send(send::Args),
    /// Print the records of a Kinesis destination's stream (with shard, sequence number and partition key), or of a
    /// Firehose delivery stream, read from the S3 objects it wrote.
    Tail(tail::Args),
    /// Check the config folder and print every problem with its file and key.
    Validate,
    /// Serve Segment's HTTP tracking API and deliver what it accepts.
    Serve(Box<serve::Args>),
    /// Ask the server that owns a spool to reload its config folder (as SIGHUP does), and print how it went.
    Reload(reload::Args),
    /// Inspect the messages serve accepted the request of but did not deliver, because they broke Segment's rules.
    Rejected(rejected::Args),
    /// Print the IAM documents a Kinesis or Firehose destination's role needs.
    Iam {
        #[command(subcommand)]
        action: setup::IamAction,
    },
    /// Test every enabled Kinesis and Firehose destination (or one) without sending an event: assume the role with
    /// each External ID it will use, and describe the stream (every mapped delivery stream).
    Check(setup::CheckArgs),
    /// Sync audiences and computed traits: identify calls for whoever joined, left or changed since the last run.
    Personas {
        #[command(subcommand)]
        action: personas::Action,
    },
    /// Check messages from a file against a source's tracking plan, without sending them.
    Plan {
        #[command(subcommand)]
        action: plan::Action,
    },
    /// Try a destination's filters on messages from a file, without sending them.
    Filters {
        #[command(subcommand)]
        action: filters::Action,
    },
    /// Suppress users (their messages dropped at ingest, never stored), take them off, or list who is suppressed.
    Privacy(privacy::Args),
    /// Inspect and resend messages that failed permanently.
    Dlq(dlq::Args),
    /// Create or describe a Kinesis destination's stream, or a Firehose destination's delivery stream.
    Streams {
        #[command(subcommand)]
        action: streams::Action,
    },
}

/// The server allocates and frees many small JSON values per message across worker threads, where glibc's
/// allocator spends a third of the CPU on arena locks; mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    runner::log::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT, and from then on exits the process at the second one: a second signal
/// means "now", and everything acknowledged is in the spool already. Both signals are listened for from the call
/// on, on the same streams, so that a second signal sent before a new listener would be set up is not missed.
fn shutdown_on_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut interrupt) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            runner::note!("tributary: second signal; exiting now (acknowledged messages stay in the spool)");
            std::process::exit(130);
        });
    })
}

/// Asks for a reload on each SIGHUP. Installed before the server starts, so that an early SIGHUP does not end
/// the process (its default action).
fn reload_on_sighup() -> anyhow::Result<serve::reload::Requests> {
    let requests = serve::reload::Requests::new();
    let sender = requests.sender.clone();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            // A reload already waiting will read the folder as it is by then.
            let _ = sender.try_send(serve::reload::Trigger::Signal);
        }
    });
    Ok(requests)
}

/// Runs the command: its output to standard output, its diagnostics to standard error.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.config.as_path();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match cli.command {
        Command::Validate => validate::run(dir, &mut out, &mut err),
        Command::Serve(args) => serve::run(dir, *args, shutdown_on_signals()?, reload_on_sighup()?, &mut err).await,
        Command::Reload(args) => reload::run(args, &mut out, &mut err).await,
        Command::Personas { action } => personas::run(dir, action, &mut out, &mut err).await,
        Command::Iam { action } => setup::run_iam(dir, action, &mut out, &mut err).await,
        Command::Check(args) => setup::run_check(dir, args, &mut out, &mut err).await,
        Command::Rejected(args) => rejected::run(args, &mut out, &mut err),
        Command::Dlq(args) => dlq::run(dir, args, &mut out, &mut err).await,
        Command::Filters { action } => filters::run(dir, action, &mut out, &mut err),
        Command::Plan { action } => plan::run(dir, action, &mut out, &mut err),
        Command::Privacy(args) => privacy::run(dir, args, &mut out, &mut err).await,
        Command::Send(args) => send::run(dir, args, &mut err).await,
        Command::Tail(args) => tail::run(dir, args, &mut out, &mut err).await,
        Command::Streams { action } => streams::run(dir, action, &mut out, &mut err).await,
    }
}
