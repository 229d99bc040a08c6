//! The delivery workers of a server: one per delivered destination, started, retired and restarted as the config
//! changes, and told to flush at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use spool::Spool;
use tokio::sync::{Notify, watch};

use crate::config::{Config, Destination};
use crate::delivery::health::Health;
use crate::delivery::worker::{Control, Worker};
use crate::metrics::Metrics;
use crate::route::{Routes, Target};

/// What a destination's sink and worker are built from: its resolved settings and a digest of the secret its file
/// refers to (a Secret ID in a mounted file can change while the file naming it does not). Two equal fingerprints
/// deliver alike, so a reload keeps that destination's sink and worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    destination: Destination,
    secret: Option<[u8; 32]>,
}

impl Fingerprint {
    /// The fingerprint of the destination `destination` of `config`, reading the secret it refers to.
    pub fn of(config: &Config, destination: &Destination) -> anyhow::Result<Fingerprint> {
        let secret = match destination.kind.aws_role() {
            Some((table, Some(_), Some(secret))) => {
                let file = &config.destination(&destination.name).expect("a destination of this config").file;
                let secret = config.secret(file, &format!("{table}.secret_id"), secret)?;
                Some(Sha256::digest(secret.expose().as_bytes()).into())
            }
            _ => None,
        };
        Ok(Fingerprint { destination: destination.clone(), secret })
    }

    /// The fingerprints of every enabled destination of `config`, by name.
    pub fn all(config: &Config) -> anyhow::Result<HashMap<String, Fingerprint>> {
        let enabled = config.destinations.iter().filter(|d| d.config.enabled);
        enabled.map(|d| Ok((d.config.name.clone(), Fingerprint::of(config, &d.config)?))).collect()
    }
}

/// One running worker.
struct Running {
    fingerprint: Fingerprint,
    control: watch::Sender<Control>,
    handle: tokio::task::JoinHandle<()>,
    budget: Arc<AtomicU64>,
}

/// What a reconciliation did, by destination name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Destinations that got a worker.
    pub added: Vec<String>,
    /// Destinations whose worker was retired: their waiting messages stay in the spool.
    pub removed: Vec<String>,
    /// Destinations whose worker was replaced by one with the new settings.
    pub changed: Vec<String>,
}

impl Changes {
    /// One line for people: `added a, b; removed c; changed d`, or `no destination changed`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [("added", &self.added), ("removed", &self.removed), ("changed", &self.changed)]
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what} {}", names.join(", ")))
            .collect();
        if parts.is_empty() { "no destination changed".to_owned() } else { parts.join("; ") }
    }
}

/// The workers, and what each new one shares.
pub struct Fleet {
    spool: Spool,
    metrics: Arc<Metrics>,
    stored: Arc<Notify>,
    health: Arc<Health>,
    /// The spool's byte budget, shared among the destinations that do not set their own.
    max_bytes: u64,
    running: HashMap<String, Running>,
}

impl Fleet {
    /// A fleet with no worker yet.
    pub fn new(
        spool: &Spool,
        metrics: &Arc<Metrics>,
        stored: &Arc<Notify>,
        health: &Arc<Health>,
        max_bytes: u64,
    ) -> Fleet {
        Fleet {
            spool: spool.clone(),
            metrics: metrics.clone(),
            stored: stored.clone(),
            health: health.clone(),
            max_bytes,
            running: HashMap::new(),
        }
    }

    /// The fingerprint of the running worker of `name`.
    pub fn fingerprint(&self, name: &str) -> Option<&Fingerprint> {
        self.running.get(name).map(|r| &r.fingerprint)
    }

    /// Makes the workers match `routes`: a destination that is gone or whose fingerprint changed has its worker
    /// retired (its deliveries in flight settle first, so two workers never deliver the same entry), then every
    /// destination without a worker gets one, and every worker gets its share of the byte budget anew.
    pub async fn reconcile(&mut self, routes: &Routes, fingerprints: &HashMap<String, Fingerprint>) -> Changes {
        let mut changes = Changes::default();
        let mut names: Vec<String> = self.running.keys().cloned().collect();
        names.sort_unstable();
        for name in names {
            let kept = fingerprints.get(&name);
            if kept == Some(&self.running[&name].fingerprint) {
                continue;
            }
            let running = self.running.remove(&name).expect("listed above");
            let _ = running.control.send(Control::Retire);
            let _ = running.handle.await;
            match kept {
                Some(_) => changes.changed.push(name),
                None => changes.removed.push(name),
            }
        }
        let share = self.max_bytes / routes.all().count().max(1) as u64;
        let mut targets: Vec<&Target> = routes.all().collect();
        targets.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for target in targets {
            let budget = target.max_backlog.unwrap_or(share);
            if let Some(running) = self.running.get(&target.name) {
                running.budget.store(budget, Ordering::Relaxed);
                continue;
            }
            let Some(fingerprint) = fingerprints.get(&target.name) else { continue };
            let worker = Worker::new(target, &self.spool, &self.metrics, &self.stored, &self.health, budget);
            let budget = worker.max_backlog_bytes.clone();
            let (control, controlled) = watch::channel(Control::Run);
            let handle = tokio::spawn(supervise(worker, controlled));
            self.running
                .insert(target.name.clone(), Running { fingerprint: fingerprint.clone(), control, handle, budget });
            if !changes.changed.contains(&target.name) {
                changes.added.push(target.name.clone());
            }
        }
        changes
    }

    /// Tells every worker to deliver what waits, now, and returns them to be awaited (the drain).
    pub fn flush(self) -> Vec<tokio::task::JoinHandle<()>> {
        self.running
            .into_values()
            .map(|running| {
                let _ = running.control.send(Control::Flush);
                running.handle
            })
            .collect()
    }
}

/// Runs `worker` until it returns, restarting it after a panic: with a backoff from 1 second doubling to a minute,
/// reported as `stopped` in `/health` meanwhile and counted in `/metrics`. Entries it had in flight were not
/// settled, so the restarted worker reads and delivers them again: nothing acknowledged is lost. A worker retired
/// while it waits to restart is not restarted; one told to flush is restarted at once.
async fn supervise(worker: Worker, control: watch::Receiver<Control>) {
    let mut restarts = 0u32;
    loop {
        let run = tokio::spawn(worker.clone().run(control.clone()));
        let panic = match run.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return,
        };
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        restarts += 1;
        let backoff = sink::backoff::doubling(Duration::from_secs(1), Duration::from_secs(60), restarts);
        tracing::error!(destination = %worker.name, %reason, ?backoff, "the delivery worker panicked; restarting it");
        worker.health.stopped(&worker.name, &format!("the delivery worker panicked: {reason}"), spool::now_millis());
        worker.metrics.restarts.get_or_create(&Metrics::destination(&worker.name)).inc();
        let mut asked = control.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = asked.wait_for(|c| *c != Control::Run) => {}
        }
        if *control.borrow() == Control::Retire {
            return;
        }
    }
}
