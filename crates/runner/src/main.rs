//! `tributary`: the command line. Parses arguments, loads the config, runs a command, prints errors.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use runner::commands::{dlq, personas, rejected, send, setup, streams, tail};
use runner::config::Config;
use runner::route::Routes;
use runner::serve;

/// Tributary: a self-hosted Segment-compatible event router for AWS Kinesis.
#[derive(Parser)]
#[command(name = "tributary", version)]
struct Cli {
    /// The config folder, holding sources/*.toml, destinations/*.toml and audiences/*.toml.
    #[arg(long, global = true, default_value = "configs", env = "TRIBUTARY_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deliver NDJSON messages to every destination a source is connected to.
    Send {
        /// The ID of the source the messages come from.
        #[arg(long)]
        source: String,
        /// The NDJSON file, or - for standard input.
        file: PathBuf,
    },
    /// Print the records of a Kinesis destination's stream, with shard, sequence number and partition key.
    Tail {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// Start at the oldest record kept and stop when caught up (unless --follow); without it, print new records
        /// as they arrive.
        #[arg(long)]
        from_start: bool,
        /// Keep polling for new records after catching up (implied without --from-start).
        #[arg(long)]
        follow: bool,
    },
    /// Check the config folder and print every problem with its file and key.
    Validate,
    /// Serve Segment's HTTP tracking API and deliver what it accepts.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where accepted messages wait for delivery.
        #[arg(long, default_value = ".tributary")]
        spool_dir: PathBuf,
        /// The most messages waiting before requests are answered 429; by default no count limit, since
        /// --spool-max-bytes bounds the spool.
        #[arg(long)]
        spool_max: Option<u64>,
        /// The most bytes of messages waiting before requests are answered 429, as bytes or a size (512MiB, 20GB);
        /// by default a quarter of the free space on the spool's disk at start, printed at start. Each destination
        /// may hold an equal share unless its file sets max_backlog_bytes; beyond its share, its oldest waiting
        /// messages move to the dead-letter table, so one broken destination never stops the others.
        #[arg(long, value_parser = parse_size_arg)]
        spool_max_bytes: Option<u64>,
        /// Seconds a shutdown waits for due messages to be delivered.
        #[arg(long, default_value_t = 10)]
        flush_timeout: u64,
        /// How many invalid messages the rejected table keeps (`tributary rejected list`); older ones are dropped.
        #[arg(long, default_value_t = spool::DEFAULT_MAX_REJECTIONS)]
        rejected_max: u64,
        /// The URL clients reach this server at (behind a load balancer, its address), which the settings
        /// analytics.js loads from /v1/projects/WRITE_KEY/settings point to; by default http://LISTEN.
        #[arg(long, value_parser = parse_public_url)]
        public_url: Option<runner::serve::ingest::settings::PublicUrl>,
        /// Seconds a client may send nothing while the server waits for it (headers, a body, or its next request)
        /// before its connection is closed.
        #[arg(long, default_value_t = 30)]
        read_timeout: u64,
        /// The most client connections open at once; more wait in the kernel's backlog.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
        /// A proxy (an address or a CIDR network) whose X-Forwarded-For header names the client for context.ip;
        /// repeat for several. Without one, the connection's address is the client's.
        #[arg(long = "trusted-proxy", value_parser = parse_network)]
        trusted_proxies: Vec<runner::serve::ingest::client_ip::Network>,
        /// /health answers 503 when a destination's oldest waiting message has waited longer than this (90s, 15m,
        /// 2h), so that a load balancer or a Kubernetes probe sees a destination that is not keeping up.
        #[arg(long, default_value = "15m", value_parser = parse_duration_arg)]
        health_max_age: std::time::Duration,
    },
    /// Inspect the messages serve accepted the request of but did not deliver, because they broke Segment's rules.
    Rejected {
        /// The spool folder of the server.
        #[arg(long, global = true, default_value = ".tributary")]
        spool_dir: PathBuf,
        #[command(subcommand)]
        action: RejectedAction,
    },
    /// Print the IAM documents a Kinesis destination's role needs.
    Iam {
        #[command(subcommand)]
        action: IamAction,
    },
    /// Test every enabled Kinesis destination (or one) without sending an event: assume the role with each
    /// External ID it will use, and describe the stream.
    Check {
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
    },
    /// Sync audiences and computed traits: identify calls for whoever joined, left or changed since the last run.
    Personas {
        #[command(subcommand)]
        action: PersonasAction,
    },
    /// Inspect and resend messages that failed permanently.
    Dlq {
        /// The spool folder.
        #[arg(long, global = true, default_value = ".tributary")]
        spool_dir: PathBuf,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Create or describe a Kinesis destination's stream.
    Streams {
        #[command(subcommand)]
        action: StreamsAction,
    },
}

#[derive(Subcommand)]
enum PersonasAction {
    /// Diff each audience's export against the last run and send the changes.
    Sync {
        /// Only this audience or trait (by name).
        #[arg(long)]
        audience: Option<String>,
        /// Print the identify calls that would be sent; send nothing and change no state.
        #[arg(long)]
        dry_run: bool,
        /// Send every current member again.
        #[arg(long)]
        full_resync: bool,
        /// Allow a run to remove more than the audience's max_removal_share (default 50%).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Where the sync state lives.
        #[arg(long, default_value = ".tributary")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum RejectedAction {
    /// Print each rejected message as a JSON line, newest first: source, time, field, batch index, reason and the
    /// message itself.
    List {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// Only those rejected within this long: 90s, 15m, 2h, 7d.
        #[arg(long, value_parser = rejected::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum IamAction {
    /// The permission policy: kinesis:PutRecord, PutRecords and DescribeStreamSummary on the stream.
    Policy {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The account that owns the stream, when the role_address does not say.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// The trust policy: sts:AssumeRole for the principal, with each External ID the destination presents.
    Trust {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The principal to trust; by default the identity of this process's AWS credentials.
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print each dead letter as a JSON line: id, destination, source, reason and message.
    List {
        /// Only this destination's.
        #[arg(long)]
        destination: Option<String>,
    },
    /// Move dead letters back to the queue, a page per commit, and deliver them: a server running on the spool
    /// delivers them; with none, this command delivers its destinations' queues itself until they are empty or
    /// delivery fails again. An interrupted replay resends nothing it had confirmed; run it again to go on.
    Replay {
        /// Only this destination's.
        #[arg(long)]
        destination: Option<String>,
        /// Only these dead-letter IDs (repeat for several).
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
enum StreamsAction {
    /// Create the stream (or report that it exists) and wait until it is ACTIVE.
    Create {
        /// The destination's name.
        #[arg(long)]
        destination: String,
        /// The number of shards.
        #[arg(long, default_value_t = 1)]
        shards: i32,
    },
    /// Print the stream's status, shards, retention and maximum record size.
    Describe {
        /// The destination's name.
        #[arg(long)]
        destination: String,
    },
}

fn parse_public_url(text: &str) -> Result<runner::serve::ingest::settings::PublicUrl, String> {
    text.parse()
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    runner::config::parse_size(text)
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    runner::config::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_network(text: &str) -> Result<runner::serve::ingest::client_ip::Network, String> {
    text.parse()
}

/// The server allocates and frees many small JSON values per message across worker threads, where glibc's
/// allocator spends a third of the CPU on arena locks; mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (its disk is full) is dropped; reporting that with `eprintln!` would
        // panic the request that logged it.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
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
/// means "now", and everything acknowledged is in the spool already.
async fn shutdown_on_signals() {
    first_signal().await;
    tokio::spawn(async {
        first_signal().await;
        let _ = writeln!(
            std::io::stderr(),
            "tributary: second signal; exiting now (acknowledged messages stay in the spool)"
        );
        std::process::exit(130);
    });
}

/// Resolves on SIGTERM or SIGINT.
async fn first_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Loads the config, printing every problem and warning.
fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
    match Config::load(dir) {
        Ok(config) => {
            eprint!("{}", config.warnings);
            Ok(config)
        }
        Err(problems) => {
            eprint!("{problems}");
            anyhow::bail!("the config in {} has errors", dir.display())
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate => {
            let config = load(&cli.config)?;
            println!(
                "{}: {} sources, {} destinations, {} audiences and traits, no errors",
                cli.config.display(),
                config.sources.len(),
                config.destinations.len(),
                config.audiences.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            spool_dir,
            spool_max,
            spool_max_bytes,
            flush_timeout,
            rejected_max,
            public_url,
            read_timeout,
            max_connections,
            trusted_proxies,
            health_max_age,
        } => {
            let config = load(&cli.config)?;
            let routes = Routes::build(&config, &runner::commands::base_credentials()).await?;
            let options = serve::ServeOptions {
                listen,
                spool_dir,
                spool_max: spool_max.unwrap_or(u64::MAX),
                spool_max_bytes,
                flush_timeout: std::time::Duration::from_secs(flush_timeout),
                rejected_max,
                public_url,
                read_timeout: std::time::Duration::from_secs(read_timeout.max(1)),
                max_connections: max_connections.max(1),
                trusted_proxies,
                health_max_age,
            };
            serve::serve(&config, routes, options, shutdown_on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Personas {
            action: PersonasAction::Sync { audience, dry_run, full_resync, allow_mass_removal, state_dir },
        } => {
            let config = load(&cli.config)?;
            let names: Vec<&str> = config
                .audiences
                .iter()
                .filter(|a| audience.as_ref().is_none_or(|only| *only == a.config.name))
                .flat_map(|a| a.config.destinations.iter().map(String::as_str))
                .collect();
            let router = match dry_run {
                true => None,
                false => Some(Routes::build_only(&config, &runner::commands::base_credentials(), Some(&names)).await?),
            };
            let options = personas::SyncOptions { audience, dry_run, full_resync, allow_mass_removal, state_dir };
            let summaries =
                personas::sync(&config, router.as_ref(), &options, &mut std::io::stdout(), &mut std::io::stderr())
                    .await?;
            let mut clean = true;
            for s in &summaries {
                clean &= s.is_clean();
                let verb = if dry_run { "would send" } else { "sent" };
                eprintln!(
                    "{}: {} added, {} removed, {} changed, {} unchanged, {} failed, {} malformed rows; {verb} {} in {:.2}s",
                    s.name,
                    s.counts.added,
                    s.counts.removed,
                    s.counts.changed,
                    s.counts.unchanged,
                    s.failed,
                    s.malformed,
                    s.sent,
                    s.seconds
                );
                if let Some(error) = &s.error {
                    eprintln!("{}: stopped: {error}", s.name);
                }
            }
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Iam { action: IamAction::Policy { destination, account_id } } => {
            let config = load(&cli.config)?;
            let policy = setup::policy(&config, &destination, account_id.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Iam { action: IamAction::Trust { destination, principal } } => {
            let config = load(&cli.config)?;
            let policy = setup::trust(&config, &destination, principal).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { destination } => {
            let config = load(&cli.config)?;
            let results = setup::check(&config, destination.as_deref()).await?;
            let mut failed = 0;
            for (name, result) in &results {
                match &result.outcome {
                    Ok(summary) => println!("ok    {name} ({}): {summary}", result.label()),
                    Err(problem) => {
                        failed += 1;
                        println!("FAIL  {name} ({}): {problem}", result.label());
                    }
                }
            }
            eprintln!("{} checked, {failed} failed", results.len());
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Rejected { spool_dir, action: RejectedAction::List { source, since, limit } } => {
            let options = rejected::ListOptions { source, since, limit };
            let count = rejected::list(&spool_dir, &options, &mut std::io::stdout().lock())?;
            eprintln!("{count} rejected messages");
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { spool_dir, action: DlqAction::List { destination } } => {
            // A server may be running on this spool: read it beside the server, leaving its schedule alone.
            let spool = spool::Spool::open_shared(&spool_dir)
                .with_context(|| format!("opening the spool in {}", spool_dir.display()))?;
            let count = dlq::list(&spool, destination.as_deref(), &mut std::io::stdout().lock()).await?;
            eprintln!("{count} dead letters");
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { spool_dir, action: DlqAction::Replay { destination, ids, limit } } => {
            let config = load(&cli.config)?;
            let routes = Routes::build(&config, &runner::commands::base_credentials()).await?;
            let options = dlq::ReplayOptions { destination, ids, limit };
            let done = dlq::replay(&spool_dir, &routes, &options).await?;
            let skipped = format!("{} skipped (destination unknown or disabled, or unreadable)", done.skipped);
            match (done.delivered, &done.failing) {
                (None, _) => eprintln!(
                    "{} moved back to the queue; the server running on {} (PID {}) delivers them; {skipped}",
                    done.queued,
                    spool_dir.display(),
                    done.server.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
                ),
                (Some(delivered), None) => {
                    eprintln!("{} moved back to the queue, {delivered} delivered; {skipped}", done.queued)
                }
                (Some(delivered), Some(reason)) => eprintln!(
                    "{} moved back to the queue, {delivered} delivered; delivery is failing again ({reason}), so the \
                     rest waits in the spool for the next `serve`; {skipped}",
                    done.queued
                ),
            }
            Ok(if done.failing.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Send { source, file } => {
            let config = load(&cli.config)?;
            let names: Vec<&str> = config
                .source(&source)
                .map(|s| s.config.destinations.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let router = Routes::build_only(&config, &runner::commands::base_credentials(), Some(&names)).await?;
            let mut errors = std::io::stderr();
            let summary = if file.as_os_str() == "-" {
                send::send(&config, &router, &source, tokio::io::stdin(), "<stdin>", &mut errors).await?
            } else {
                let input =
                    tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
                send::send(&config, &router, &source, input, &file.display().to_string(), &mut errors).await?
            };
            eprintln!("read {} messages, {} malformed lines", summary.messages, summary.malformed);
            for (name, tally) in &summary.destinations {
                eprintln!("{name}: {} delivered, {} failed", tally.delivered, tally.failed);
            }
            Ok(if summary.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Tail { destination, from_start, follow } => {
            let config = load(&cli.config)?;
            let follow = follow || !from_start;
            let printed = tail::tail(&config, &destination, from_start, follow, &mut std::io::stdout().lock()).await?;
            eprintln!("{printed} records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Streams { action: StreamsAction::Create { destination, shards } } => {
            let config = load(&cli.config)?;
            let (name, created) = streams::create(&config, &destination, shards).await?;
            match created {
                kinesis_sink::setup::admin::Created::New => {
                    println!("created stream {name} with {shards} shards; it is ACTIVE")
                }
                kinesis_sink::setup::admin::Created::Existing => println!("stream {name} already exists; it is ACTIVE"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Streams { action: StreamsAction::Describe { destination } } => {
            let config = load(&cli.config)?;
            let s = streams::describe(&config, &destination).await?;
            println!("stream:          {}", s.name);
            println!("arn:             {}", s.arn);
            println!("status:          {}", s.status);
            println!("open shards:     {}", s.open_shards);
            println!("retention:       {} hours", s.retention_hours);
            match s.max_record_size_kib {
                Some(kib) => println!("max record size: {kib} KiB"),
                None => println!("max record size: not reported (1024 KiB unless raised)"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
