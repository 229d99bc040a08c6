//! Reloading the config folder while serving: on SIGHUP (which `tributary reload` sends), or when a file changes
//! with `serve --watch-config`.
//!
//! A reload reads and checks the whole folder, resolves every write key and secret and builds every sink before it
//! changes anything: a config with any problem is refused whole and the running one stays. An accepted one replaces
//! the sources, write keys and routes at once for the requests that start from then on (a request in flight ends
//! with the config it started with), then retires the workers of destinations that are gone or changed and starts
//! those of new or changed ones. Nothing waiting in the spool is touched: a removed destination's messages stay
//! there, shown as `removed` in `/health`, and are delivered if it comes back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_sink::BaseCredentials;
use sha2::{Digest as _, Sha256};
use sink::{Secret, SecretRef};
use tokio::sync::{mpsc, watch};

use super::fleet::{Changes, Fingerprint, Fleet};
use super::ingest::origin::Origins;
use super::ingest::{Ingest, Live, Source, WriteKeys};
use super::lag::Lag;
use crate::config::{Config, SourceConfig};
use crate::note;
use crate::route::Routes;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP, which `tributary reload` sends.
    Signal,
    /// A file of the config folder changed (`serve --watch-config`).
    Watch,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::Watch => "watch",
        }
    }
}

/// A source with its secrets read: its write key, and its privacy controls compiled with their key.
pub type ReadSource<'c> = (Secret, governance::Privacy, &'c crate::config::Loaded<SourceConfig>);

/// Every source's write key and privacy controls, read, with the source's file: what [`live`] needs, resolved
/// before anything changes.
pub fn read_write_keys(config: &Config) -> anyhow::Result<Vec<ReadSource<'_>>> {
    config
        .sources
        .iter()
        .map(|source| Ok((config.write_key(source)?, config.source_privacy(source)?, source)))
        .collect()
}

/// The config ingest serves from: the sources with their keys, settings and the lags of the destinations they
/// feed, over `routes`. A source whose rate limit is unchanged since `previous` keeps its bucket, so a reload does
/// not hand a throttled source a fresh second.
pub fn live(config: &Config, keys: Vec<ReadSource<'_>>, routes: Routes, lag: &Lag, previous: Option<&Live>) -> Live {
    let sources = keys.into_iter().map(|(key, privacy, source)| {
        let c = &source.config;
        let rate = c.max_messages_per_second.map(|per_second| {
            let kept = previous.and_then(|p| p.keys.by_id(&c.id)).and_then(|s| s.rate.clone());
            match kept {
                Some(rate) if rate.per_second() == f64::from(per_second) => rate,
                _ => Arc::new(super::ingest::limit::RateLimit::new(per_second)),
            }
        });
        let source = Source {
            id: c.id.clone(),
            strict: c.strict,
            origins: Origins::from_config(c.allowed_origins.as_deref()),
            rate,
            collect_ip: c.collect_ip,
            dedupe_by_source: c.dedupe_scope == crate::config::DedupeScope::Source,
            destinations: routes.connected(&c.id).iter().filter_map(|d| lag.get(&d.name)).collect(),
            privacy: Arc::new(privacy),
            plan: config.source_plan(c).map(Arc::new),
        };
        (key, source)
    });
    let disabled = config.destinations.iter().filter(|d| !d.config.enabled).map(|d| d.config.name.clone()).collect();
    let suppressed = Arc::new(crate::suppression::Suppressions::from_config(config));
    Live { keys: WriteKeys::new(sources.collect()), routes: Arc::new(routes), disabled, suppressed }
}

/// The files a config refers to outside its own folders (secrets in files), which `--watch-config` watches too.
fn referenced_files(config: &Config) -> Vec<PathBuf> {
    let mut refs: Vec<&SecretRef> = config.sources.iter().map(|s| &s.config.write_key).collect();
    refs.extend(config.sources.iter().filter_map(|s| s.config.privacy.as_ref()?.privacy_key.as_ref()));
    for d in &config.destinations {
        if let Some((_, _, Some(secret))) = d.config.kind.aws_role() {
            refs.push(secret);
        }
        refs.extend(d.config.privacy.as_ref().and_then(|p| p.privacy_key.as_ref()));
    }
    refs.into_iter()
        .filter_map(|r| match r {
            SecretRef::File { file } => Some(config.dir.join(file)),
            SecretRef::Inline(_) | SecretRef::Env { .. } => None,
        })
        .collect()
}

/// The server's side of reloads: the running config and the workers that deliver it.
pub struct Reloader {
    /// The config folder.
    pub dir: PathBuf,
    /// Where the spool is, beside which each reload's outcome is written for `tributary reload`.
    pub spool_dir: PathBuf,
    /// The credentials sinks start from.
    pub base: BaseCredentials,
    /// Whose config is replaced.
    pub ingest: Arc<Ingest>,
    /// The workers.
    pub fleet: Fleet,
    /// The secret files the running config refers to, which the watcher watches.
    pub watched: Arc<Mutex<Vec<PathBuf>>>,
    /// Reloads so far.
    pub sequence: u64,
}

impl Reloader {
    /// Starts the workers of the config the server started with, and notes the files it refers to.
    pub async fn start(&mut self, config: &Config, routes: &Routes) -> anyhow::Result<()> {
        let fingerprints = Fingerprint::all(config)?;
        self.fleet.reconcile(routes, &fingerprints).await;
        *self.watched.lock().expect("watched lock poisoned") = referenced_files(config);
        Ok(())
    }

    /// Reloads until `stop` turns true, once per request on `requests`, and returns the workers for the drain.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Trigger>, mut stop: watch::Receiver<bool>) -> Fleet {
        loop {
            let trigger = tokio::select! {
                trigger = requests.recv() => trigger,
                _ = stop.wait_for(|stopped| *stopped) => None,
            };
            match trigger {
                Some(trigger) if !*stop.borrow() => self.reload(trigger).await,
                Some(_) => return self.fleet,
                // No one can ask any more: the workers run until the drain.
                None => {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                    return self.fleet;
                }
            }
        }
    }

    /// Reloads the config folder: applies it whole, or refuses it whole and logs every problem.
    pub async fn reload(&mut self, trigger: Trigger) {
        self.sequence += 1;
        note!(
            "tributary: reloading the config in {} ({})",
            self.dir.display(),
            match trigger {
                Trigger::Signal => "asked by a signal",
                Trigger::Watch => "a file changed",
            }
        );
        let (outcome, summary, problems) = match self.attempt().await {
            Ok((changes, sources, destinations)) => {
                let summary =
                    format!("{sources} sources, {destinations} destinations delivered; {}", changes.summary());
                note!("tributary: config reloaded: {summary}");
                ("applied", summary, Vec::new())
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(problem = %problem, "config reload refused");
                }
                note!(
                    "tributary: config reload refused ({} problems, each logged above); the running config stays",
                    problems.len()
                );
                ("refused", String::new(), problems)
            }
        };
        self.ingest.metrics.reloaded(outcome);
        let written = crate::reloads::write(
            &self.spool_dir,
            &crate::reloads::Outcome {
                pid: std::process::id(),
                sequence: self.sequence,
                at: crate::format::format_millis(spool::now_millis()),
                outcome: outcome.to_owned(),
                trigger: trigger.name().to_owned(),
                summary,
                problems,
            },
        );
        if let Err(e) = written {
            tracing::warn!(error = %e, "writing the reload's outcome for `tributary reload` failed");
        }
    }

    /// Everything a reload checks before it changes anything, then the change. Returns what changed with the
    /// numbers of sources and delivered destinations, or every problem found, each with its file and key.
    async fn attempt(&mut self) -> Result<(Changes, usize, usize), Vec<String>> {
        let config = match Config::load(&self.dir) {
            Ok(config) => config,
            Err(problems) => return Err(problems.0.iter().filter(|p| p.error).map(ToString::to_string).collect()),
        };
        for warning in &config.warnings.0 {
            tracing::warn!(problem = %warning, "config reload");
        }
        *self.watched.lock().expect("watched lock poisoned") = referenced_files(&config);
        let keys = read_write_keys(&config).map_err(|e| vec![format!("error: {e:#}")])?;
        let fingerprints = Fingerprint::all(&config).map_err(|e| vec![format!("error: {e:#}")])?;
        let previous = self.ingest.live();
        let fleet = &self.fleet;
        let reuse = |d: &crate::config::Destination| {
            let same = fleet.fingerprint(&d.name).is_some_and(|f| fingerprints.get(&d.name) == Some(f));
            same.then(|| previous.routes.get(&d.name).map(|t| t.sink.clone())).flatten()
        };
        let routes =
            Routes::build_reusing(&config, &self.base, &reuse).await.map_err(|e| vec![format!("error: {e:#}")])?;
        // Everything is read and built: from here on, the reload is applied.
        let lag = &self.ingest.lag;
        lag.track(routes.all().map(|d| d.name.clone()));
        let live = live(&config, keys, routes, lag, Some(&previous));
        let routes = live.routes.clone();
        let sources = config.sources.len();
        self.ingest.replace(live);
        let changes = self.fleet.reconcile(&routes, &fingerprints).await;
        // The workers of destinations that were just added wake to what the requests since the swap stored.
        self.ingest.stored.notify_waiters();
        Ok((changes, sources, routes.all().count()))
    }
}

/// How often `--watch-config` looks at the config folder.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Asks for a reload on `requests` whenever what the config folder holds changes (`serve --watch-config`): the
/// `*.toml` files of its `sources`, `destinations` and `audiences` folders, and the secret files the running config
/// refers to. It compares contents, not times, so that the way Kubernetes updates a mounted ConfigMap or Secret
/// (a symbolic link swapped to a new folder) is seen, and a change waits until two looks agree, so that a file
/// caught half written is not reloaded.
pub async fn watch_config(
    dir: PathBuf,
    watched: Arc<Mutex<Vec<PathBuf>>>,
    requests: mpsc::Sender<Trigger>,
    mut stop: watch::Receiver<bool>,
) {
    let look = || {
        let extra = watched.lock().expect("watched lock poisoned").clone();
        digest(&dir, &extra)
    };
    let mut last = look();
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH_EVERY) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let now = look();
        if now == last {
            continue;
        }
        // Settle: a change is taken once a look a moment later sees the same.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if look() != now {
            continue;
        }
        last = now;
        let _ = requests.send(Trigger::Watch).await;
    }
}

/// A digest of the config files of `dir` and of `extra`: their paths and contents (a missing file counts as such).
fn digest(dir: &Path, extra: &[PathBuf]) -> [u8; 32] {
    let mut files: Vec<PathBuf> = extra.to_vec();
    let folders = [
        ("sources", "toml"),
        ("destinations", "toml"),
        ("audiences", "toml"),
        ("suppressions", "toml"),
        ("tracking-plans", "json"),
    ];
    for (sub, extension) in folders {
        if let Ok(read) = std::fs::read_dir(dir.join(sub)) {
            files.extend(
                read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == extension)),
            );
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.as_os_str().as_encoded_bytes());
        match std::fs::read(&file) {
            Ok(contents) => {
                hash.update(b"\x01");
                hash.update((contents.len() as u64).to_le_bytes());
                hash.update(contents);
            }
            Err(_) => hash.update(b"\x00"),
        }
    }
    hash.finalize().into()
}

/// Requests for reloads: the binary sends one on SIGHUP, the watcher one on a change; one reload runs at a time.
pub struct Requests {
    /// Where requests are sent.
    pub sender: mpsc::Sender<Trigger>,
    /// Where the server takes them.
    pub receiver: mpsc::Receiver<Trigger>,
}

impl Requests {
    /// A channel of requests; a few may wait while a reload runs.
    pub fn new() -> Requests {
        let (sender, receiver) = mpsc::channel(4);
        Requests { sender, receiver }
    }
}

impl Default for Requests {
    fn default() -> Self {
        Requests::new()
    }
}
