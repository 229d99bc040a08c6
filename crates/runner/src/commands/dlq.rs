//! `tributary dlq list|replay`: inspect and resend messages that failed for good.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use segment_model::Message;
use serde_json::{Value, json};
use spool::{NewEntry, Spool, SpoolError};
use tokio::sync::{Notify, watch};

use crate::delivery::health::{Health, State};
use crate::delivery::worker::{Control, Worker};
use crate::metrics::Metrics;
use crate::route::Routes;

/// How many dead letters one page (and one requeue commit) holds.
const PAGE: usize = 5_000;

/// Prints every dead letter (of one destination, if given) as a JSON line, a page at a time; returns how many.
pub async fn list(spool: &Spool, destination: Option<&str>, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let (mut after, mut count) = (0, 0);
    loop {
        let letters = spool.dead_letter_page(destination, after, PAGE).await?;
        let Some(last) = letters.last() else { return Ok(count) };
        after = last.id;
        for letter in &letters {
            let message = serde_json::from_slice::<Value>(&letter.message)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&letter.message).into_owned()));
            let line = json!({
                "id": letter.id,
                "destination": letter.destination,
                "source_id": letter.source_id,
                "failed_at": crate::format::format_millis(letter.failed_at),
                "reason": letter.reason,
                "message": message,
            });
            writeln!(out, "{line}")?;
        }
        count += letters.len();
    }
}

/// Which dead letters to replay.
#[derive(Debug, Default, Clone)]
pub struct ReplayOptions {
    /// Only this destination's.
    pub destination: Option<String>,
    /// Only these IDs (all, if empty).
    pub ids: Vec<i64>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Dead letters moved back to the queue (and removed from the dead-letter table).
    pub queued: usize,
    /// Dead letters of destinations that are unknown or disabled now, or whose message cannot be read, left alone.
    pub skipped: usize,
    /// With no server on the spool: messages this command delivered. `None` when a server delivers them.
    pub delivered: Option<u64>,
    /// With no server on the spool: why delivery stopped before the queue was empty, if it did.
    pub failing: Option<String>,
    /// The process ID of the server that delivers the queued letters, when one runs on the spool.
    pub server: Option<u32>,
}

/// Moves dead letters back to the queue, a page per commit, and has them delivered.
///
/// A server running on the spool delivers them as it delivers everything. With none, this command takes the
/// spool and delivers each page before it moves the next, so that an interruption resends at most the page in
/// flight and a rerun carries on; if delivery fails again, the page waits in the spool for the next `serve` and
/// the letters not yet moved stay letters.
pub async fn replay(dir: &Path, routes: &Routes, options: &ReplayOptions) -> anyhow::Result<Replayed> {
    let owned = match Spool::open(dir, u64::MAX) {
        Ok(spool) => Some(spool),
        Err(SpoolError::Locked { .. }) => None,
        Err(e) => return Err(crate::delivery::spool_error(dir, e)),
    };
    let spool = match &owned {
        Some(spool) => spool.clone(),
        None => Spool::open_shared(dir).map_err(|e| crate::delivery::spool_error(dir, e))?,
    };
    let delivery = owned.as_ref().map(|spool| Workers::start(spool, routes, options.destination.as_deref()));
    let mut result = Replayed::default();
    let wanted: HashSet<i64> = options.ids.iter().copied().collect();
    let mut left = options.limit.unwrap_or(usize::MAX);
    let mut after = 0;
    while left > 0 && result.failing.is_none() {
        let page_from = after;
        let letters = spool.dead_letter_page(options.destination.as_deref(), after, PAGE).await?;
        let Some(last) = letters.last() else { break };
        after = last.id;
        // Entries of at most ENTRY messages per destination and source, as ingest stores requests.
        let mut groups: BTreeMap<(String, String), Vec<Stored>> = BTreeMap::new();
        let mut ids = Vec::new();
        for letter in letters.into_iter().filter(|l| wanted.is_empty() || wanted.contains(&l.id)) {
            if left == 0 {
                break;
            }
            let (Some(_), Ok(message)) = (routes.get(&letter.destination), Message::from_slice(&letter.message)) else {
                result.skipped += 1;
                continue;
            };
            let id = message.message_id().unwrap_or_default().to_owned();
            let key = message.user_key().unwrap_or_default().into_owned();
            groups.entry((letter.destination, letter.source_id)).or_default().push((id, key, letter.message));
            ids.push(letter.id);
            left -= 1;
        }
        let mut entries = Vec::new();
        for ((destination, source_id), messages) in groups {
            for chunk in messages.chunks(ENTRY) {
                entries.push(NewEntry {
                    destination: destination.clone(),
                    source_id: source_id.clone(),
                    count: chunk.len() as u32,
                    items: crate::delivery::stored::encode(
                        chunk.iter().map(|(i, k, m)| (i.as_str(), k.as_str(), m.as_slice())),
                    ),
                });
            }
        }
        let count = ids.len();
        if !spool.requeue(entries, ids).await? {
            // A letter of the page went meanwhile (an erasure, another replay): the page is read again as it is now.
            after = page_from;
            left += count;
            continue;
        }
        result.queued += count;
        if let Some(delivery) = &delivery {
            result.failing = delivery.until_empty(&spool).await;
        }
    }
    match (owned, delivery) {
        (Some(spool), Some(delivery)) => {
            result.delivered = Some(delivery.stop().await);
            spool.close();
        }
        _ => {
            result.server =
                std::fs::read_to_string(dir.join(spool::LOCK_FILE)).ok().and_then(|t| t.trim().parse().ok());
        }
    }
    Ok(result)
}

/// A message as a spool entry keeps it: messageId, partition key, JSON.
type Stored = (String, String, Vec<u8>);

/// How many messages one requeued entry holds at most.
const ENTRY: usize = 500;

/// The server's delivery workers, run by `dlq replay` when no server owns the spool.
struct Workers {
    names: Vec<String>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stored: Arc<Notify>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    _control: watch::Sender<Control>,
}

impl Workers {
    /// Starts a worker for every enabled destination (or only `only`).
    fn start(spool: &Spool, routes: &Routes, only: Option<&str>) -> Workers {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::default());
        let stored = Arc::new(Notify::new());
        let (control, controlled) = watch::channel(Control::Run);
        let mut names = Vec::new();
        let mut workers = Vec::new();
        for destination in routes.all().filter(|d| only.is_none_or(|name| name == d.name)) {
            // Replayed letters do not count against a budget, and nothing else is appended here: no budget.
            let worker = Worker::new(destination, spool, &metrics, &stored, &health, u64::MAX);
            names.push(destination.name.clone());
            workers.push(tokio::spawn(worker.run(controlled.clone())));
        }
        Workers { names, metrics, health, stored, workers, _control: control }
    }

    /// Wakes the workers and waits until their queues are empty; returns why not, if a delivery failed.
    async fn until_empty(&self, spool: &Spool) -> Option<String> {
        self.stored.notify_waiters();
        loop {
            if let Some((name, report)) =
                self.names.iter().map(|name| (name, self.health.report(name))).find(|(_, r)| r.state != State::Ok)
            {
                return Some(format!("{name}: {}", report.last_error.unwrap_or_default()));
            }
            if self.names.iter().all(|name| spool.backlog(name).messages == 0) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the workers; returns how many messages they delivered. What they had in flight stays queued.
    async fn stop(self) -> u64 {
        for worker in self.workers {
            worker.abort();
            let _ = worker.await;
        }
        self.names.iter().map(|name| self.metrics.delivered.get_or_create(&Metrics::destination(name)).get()).sum()
    }
}
/// `tributary dlq`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spool folder.
    #[arg(long, global = true, default_value = ".tributary")]
    pub spool_dir: std::path::PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `tributary dlq` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
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

/// Lists dead letters to `out`, or replays them; counts and what became of a replay go to `err`. A replay whose
/// delivery fails again exits with 1.
pub async fn run(
    dir: &Path,
    args: Args,
    out: super::Out<'_>,
    err: super::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let spool_dir = args.spool_dir;
    match args.action {
        Action::List { destination } => {
            // A server may be running on this spool: read it beside the server, leaving its schedule alone.
            let spool = Spool::open_shared(&spool_dir).map_err(|e| crate::delivery::spool_error(&spool_dir, e))?;
            let count = list(&spool, destination.as_deref(), out).await?;
            writeln!(err, "{count} dead letters")?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Action::Replay { destination, ids, limit } => {
            let config = crate::config::load(dir, err)?;
            let routes = Routes::build(&config, &crate::route::base_credentials()).await?;
            let done = replay(&spool_dir, &routes, &ReplayOptions { destination, ids, limit }).await?;
            let skipped = format!("{} skipped (destination unknown or disabled, or unreadable)", done.skipped);
            match (done.delivered, &done.failing) {
                (None, _) => writeln!(
                    err,
                    "{} moved back to the queue; the server running on {} (PID {}) delivers them; {skipped}",
                    done.queued,
                    spool_dir.display(),
                    done.server.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
                )?,
                (Some(delivered), None) => {
                    writeln!(err, "{} moved back to the queue, {delivered} delivered; {skipped}", done.queued)?
                }
                (Some(delivered), Some(reason)) => writeln!(
                    err,
                    "{} moved back to the queue, {delivered} delivered; delivery is failing again ({reason}), so the \
                     rest waits in the spool for the next `serve`; {skipped}",
                    done.queued
                )?,
            }
            Ok(if done.failing.is_none() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
        }
    }
}
