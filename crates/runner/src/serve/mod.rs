//! `tributary serve`: the HTTP tracking API (`ingest`), `/health` and `/metrics` (`status`), how far behind
//! delivery is (`lag`), and which runtime runs what (`priority`), around the delivery workers of
//! [`crate::delivery`].

pub mod fleet;
pub mod ingest;
pub mod lag;
pub mod priority;
pub mod reload;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use spool::Spool;
use tokio::sync::{Notify, watch};

use self::fleet::Fleet;
use self::ingest::client_ip::Network;
use self::ingest::connections::{self, Limits};
use self::ingest::settings::PublicUrl;
use self::ingest::{Ingest, router};
use self::lag::Lag;
use self::reload::{Reloader, Requests};
use crate::config::Config;
use crate::delivery::health::Health;
use crate::metrics::Metrics;
use crate::route::Routes;

use crate::note;

/// Settings of `serve`.
pub struct ServeOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The spool folder.
    pub spool_dir: std::path::PathBuf,
    /// The most messages the spool may hold before requests get 429 (no limit by default: bytes bound it).
    pub spool_max: u64,
    /// The most bytes of messages the spool may hold before requests get 429; by default a quarter of the free
    /// space on the spool's disk at start.
    pub spool_max_bytes: Option<u64>,
    /// Where `/livez`, `/readyz`, `/health` and `/metrics` are served apart from the ingest API; on the ingest port
    /// without it.
    pub admin_listen: Option<SocketAddr>,
    /// How long requests are still taken after the first shutdown signal, with `/readyz` answering 503.
    pub drain_delay: Duration,
    /// How long the workers then deliver the backlog before the process exits.
    pub drain_timeout: Duration,
    /// How many invalid messages the rejected table keeps; older ones are dropped.
    pub rejected_max: u64,
    /// Where clients reach this server (the settings analytics.js loads point there); by default
    /// `http://LISTEN`.
    pub public_url: Option<PublicUrl>,
    /// How long a client may send nothing while the server waits for it.
    pub read_timeout: Duration,
    /// The most client connections open at once.
    pub max_connections: usize,
    /// Networks of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Network>,
    /// `/health` answers 503 when a destination's oldest waiting message is older than this.
    pub health_max_age: Duration,
    /// Requests get 429 while a destination their source feeds is further behind than this (zero: never).
    pub max_lag: Duration,
    /// Reload the config folder when a file in it changes.
    pub watch_config: bool,
    /// How long a messageId counts for dropping resends; zero turns dedupe off.
    pub dedupe_window: Duration,
    /// The most bytes of the spool's database the dedupe keys may take.
    pub dedupe_max_bytes: u64,
    /// The secret keys are made with; the spool's own without it.
    pub dedupe_secret_file: Option<std::path::PathBuf>,
    /// The Redis a fleet shares its keys through (`redis://` or `rediss://`); the node's own keys only without it.
    pub dedupe_store: Option<String>,
    /// How long a request waits for the shared store.
    pub dedupe_timeout: Duration,
    /// Refuse (503) requests while the shared store is not answering.
    pub dedupe_required: bool,
}

/// `tributary serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where accepted messages wait for delivery.
    #[arg(long, default_value = ".tributary")]
    pub spool_dir: std::path::PathBuf,
    /// The most messages waiting before requests are answered 429; by default no count limit, since
    /// --spool-max-bytes bounds the spool.
    #[arg(long)]
    pub spool_max: Option<u64>,
    /// The most bytes of messages waiting before requests are answered 429, as bytes or a size (512MiB, 20GB);
    /// by default a quarter of the free space on the spool's disk at start, printed at start. Each destination
    /// may hold an equal share unless its file sets max_backlog_bytes; beyond its share, its oldest waiting
    /// messages move to the dead-letter table, so one broken destination never stops the others.
    #[arg(long, value_parser = crate::config::parse_size)]
    pub spool_max_bytes: Option<u64>,
    /// Serve /livez, /readyz, /health and /metrics on this address, on a port of their own outside
    /// --max-connections (and not on the ingest port), so that a flood of clients cannot make a probe time out.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// After the first SIGTERM, how long requests are still taken (each answer with Connection: close) while
    /// /readyz answers 503, so that a load balancer takes the node out before it stops listening (5s, 0 for none).
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub drain_delay: Duration,
    /// Then, once the listener is closed and requests in flight are answered, how long the waiting messages are
    /// delivered before the process exits; what is left stays in the spool for the next start (60s, 2m).
    #[arg(long, alias = "flush-timeout", default_value = "60s", value_parser = crate::config::parse_duration)]
    pub drain_timeout: Duration,
    /// How many invalid messages the rejected table keeps (`tributary rejected list`); older ones are dropped.
    #[arg(long, default_value_t = spool::DEFAULT_MAX_REJECTIONS)]
    pub rejected_max: u64,
    /// The URL clients reach this server at (behind a load balancer, its address), which the settings
    /// analytics.js loads from /v1/projects/WRITE_KEY/settings point to; by default http://LISTEN.
    #[arg(long, value_parser = str::parse::<PublicUrl>)]
    pub public_url: Option<PublicUrl>,
    /// Seconds a client may send nothing while the server waits for it (headers, a body, or its next request)
    /// before its connection is closed.
    #[arg(long, default_value_t = 30)]
    pub read_timeout: u64,
    /// The most client connections open at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// A proxy (an address or a CIDR network) whose X-Forwarded-For header names the client for context.ip;
    /// repeat for several. Without one, the connection's address is the client's.
    #[arg(long = "trusted-proxy", value_parser = str::parse::<Network>)]
    pub trusted_proxies: Vec<Network>,
    /// /health answers 503 when a destination's oldest waiting message has waited longer than this (90s, 15m,
    /// 2h), so that a load balancer or a Kubernetes probe sees a destination that is not keeping up.
    #[arg(long, default_value = "15m", value_parser = crate::config::parse_duration)]
    pub health_max_age: Duration,
    /// The oldest a waiting message may get before requests are answered 429 (with Retry-After and
    /// x-ratelimit-reset): while a destination's oldest message that no delivery has failed has waited longer than
    /// this, requests from the sources that feed it are told to come back later instead of being acknowledged into
    /// a queue that cannot drain. A failing destination does not count (its byte budget bounds it). 0 turns it off.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub max_lag: Duration,
    /// Reload the config folder when one of its files, or a secret file it refers to, changes (checked every
    /// second): how a Kubernetes ConfigMap or Secret mounted as a volume reaches a running server. SIGHUP and
    /// `tributary reload` reload it with or without this.
    #[arg(long)]
    pub watch_config: bool,
    /// Drop a valid message whose messageId was accepted within this window (earlier in the same request or in
    /// any earlier one), as Segment does, and still answer 200 (24h, 90m; 0 turns dedupe off). Keys are global
    /// across sources unless a source sets dedupe_scope = "source".
    #[arg(long, default_value = "24h", value_parser = crate::config::parse_duration)]
    pub dedupe_window: Duration,
    /// The most bytes the dedupe keys may take in the spool's database, apart from --spool-max-bytes: 8 bytes a key
    /// (the default, 512MiB, holds 24 hours at about 770 messages a second), and in memory at most 21 bytes a key
    /// held. When it is full the oldest keys go first and the window held shrinks, which /health and
    /// tributary_dedupe_window_seconds report.
    #[arg(long, default_value = "512MiB", value_parser = crate::config::parse_size)]
    pub dedupe_max_bytes: u64,
    /// A file holding the secret messageIds are hashed with (at least 16 bytes), which every node of a fleet shares;
    /// without it, a secret made once for the spool and kept beside it.
    #[arg(long)]
    pub dedupe_secret_file: Option<std::path::PathBuf>,
    /// Share the dedupe keys through this Redis (redis://HOST:PORT, rediss:// for TLS,
    /// redis://:PASSWORD@HOST:PORT/DB), which every node of a fleet shares, so that a resend landing on another
    /// node is dropped too; each node holds the fleet's keys in its spool. The nodes must share
    /// --dedupe-secret-file. Read from TRIBUTARY_DEDUPE_STORE when not given, so that a password stays out
    /// of the command line; never logged with its password.
    #[arg(long, env = "TRIBUTARY_DEDUPE_STORE", hide_env_values = true)]
    pub dedupe_store: Option<String>,
    /// How long a request waits for --dedupe-store to take its keys before it answers without having shared them,
    /// counted in tributary_dedupe_unavailable_total (50ms, 1s).
    #[arg(long, default_value = "50ms", value_parser = crate::config::parse_duration)]
    pub dedupe_timeout: Duration,
    /// Answer 503 (the client retries) while --dedupe-store is not answering, instead of checking requests against
    /// this node's keys only.
    #[arg(long, requires = "dedupe_store")]
    pub dedupe_required: bool,
}

/// Loads the config folder `dir` (its warnings to `err`), builds the destinations' sinks and serves until
/// `shutdown` resolves, reloading the folder on each of `requests`. While it runs, the server writes its own notes
/// to standard error.
pub async fn run(
    dir: &std::path::Path,
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
    requests: Requests,
    err: crate::Out<'_>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = crate::config::load(dir, err)?;
    let routes = Routes::build(&config, &crate::route::base_credentials()).await?;
    let options = ServeOptions {
        listen: args.listen,
        spool_dir: args.spool_dir,
        spool_max: args.spool_max.unwrap_or(u64::MAX),
        spool_max_bytes: args.spool_max_bytes,
        admin_listen: args.admin_listen,
        drain_delay: args.drain_delay,
        drain_timeout: args.drain_timeout,
        rejected_max: args.rejected_max,
        public_url: args.public_url,
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        trusted_proxies: args.trusted_proxies,
        health_max_age: args.health_max_age,
        max_lag: args.max_lag,
        watch_config: args.watch_config,
        dedupe_window: args.dedupe_window,
        dedupe_max_bytes: args.dedupe_max_bytes,
        dedupe_secret_file: args.dedupe_secret_file,
        dedupe_store: args.dedupe_store,
        dedupe_timeout: args.dedupe_timeout,
        dedupe_required: args.dedupe_required,
    };
    serve(&config, routes, options, shutdown, requests).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Serves until `shutdown` resolves (the binary's is the first SIGTERM or SIGINT; a second one exits the process
/// at once), then drains: `/readyz` answers 503 at once, requests are still taken for `drain_delay` (each answer
/// with `Connection: close`), then the listener closes, requests in flight are answered, and the workers deliver
/// the backlog for up to `drain_timeout`. Either way every acknowledged message is in the spool, and what is left
/// is delivered by the next run. Long on purpose: the startup, each part in the order the next depends on it.
pub async fn serve(
    config: &Config,
    routes: Routes,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    requests: Requests,
) -> anyhow::Result<()> {
    let lag = Arc::new(Lag::new(routes.all().map(|d| d.name.clone()), options.max_lag));
    let keys = reload::read_write_keys(config)?;
    let enabled = routes.all().count().max(1) as u64;
    let (spool, max_bytes) = open_spool(&options, enabled)?;
    let (stop, stopped) = watch::channel(false);
    let dedupe = start_dedupe(&spool, &options, stopped.clone()).await?;
    let suppressed = crate::suppression::watch_spool(&options.spool_dir, stopped.clone())?;
    crate::erasure::watch(spool.clone(), stopped.clone());
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let stored = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let local = listener.local_addr()?;
    let public_url =
        options.public_url.map_or_else(|| format!("http://{local}").parse(), Ok).map_err(anyhow::Error::msg)?;
    let ingest = Arc::new(Ingest {
        live: std::sync::RwLock::new(Arc::new(reload::live(config, keys, routes, &lag, None))),
        spool: spool.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        health_max_age: options.health_max_age,
        draining: Default::default(),
        commit_failed_at: Default::default(),
        stored: stored.clone(),
        public_url,
        trusted_proxies: options.trusted_proxies,
        read_timeout: options.read_timeout,
        lag: lag.clone(),
        parsing: tokio::sync::Semaphore::new(ingest::parsing_permits()),
        dedupe,
        suppressed,
    });
    let mut reloader = Reloader {
        dir: config.dir.clone(),
        spool_dir: options.spool_dir.clone(),
        base: crate::route::base_credentials(),
        ingest: ingest.clone(),
        fleet: Fleet::new(&spool, &metrics, &stored, &health, max_bytes),
        watched: Default::default(),
        sequence: 0,
    };
    reloader.start(config, &ingest.live().routes).await?;
    if options.watch_config {
        let (dir, watched, stopped) = (config.dir.clone(), reloader.watched.clone(), stopped.clone());
        tokio::spawn(reload::watch_config(dir, watched, requests.sender.clone(), stopped));
    }
    let reloading = tokio::spawn(reloader.run(requests.receiver, stopped.clone()));
    let watching = {
        let (lag, spool, health, stopped) = (lag.clone(), spool.clone(), health.clone(), stopped.clone());
        tokio::spawn(async move { lag.watch(spool, &health, stopped).await })
    };
    let max_connections = connection_cap(options.max_connections);
    note!(
        "tributary: listening on http://{local} (at most {max_connections} connections), spool {} ({} waiting)",
        spool.path().display(),
        spool.depth()
    );
    let limits = Limits { max_connections, read_timeout: options.read_timeout };
    let (admin, status_pages) = match options.admin_listen {
        Some(address) => (Some(serve_admin(address, ingest.clone(), options.read_timeout).await?), axum::Router::new()),
        None => (None, status::routes()),
    };
    let drain = Drain { delay: options.drain_delay, ingest: ingest.clone() };
    let served = serve_requests(listener, router(ingest, status_pages), limits, drain, shutdown).await;
    let _ = stop.send(true);
    let _ = watching.await;
    let workers = reloading.await.context("the reloader failed")?.flush();
    served?;
    deliver_what_waits(&spool, workers, options.drain_timeout).await;
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(())
}

/// Sets up dropping resends: in the spool's key store (`--dedupe-window`, `--dedupe-max-bytes`), whose window it
/// watches until `stopped`, shared with the fleet through `--dedupe-store` when given; `None` with a zero window
/// (the spool then removes the keys it holds).
async fn start_dedupe(
    spool: &Spool,
    options: &ServeOptions,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Option<ingest::dedupe::Dedupe>> {
    let window = options.dedupe_window;
    if options.dedupe_store.is_some() {
        if window.is_zero() {
            bail!(
                "--dedupe-store keeps keys for --dedupe-window, which is 0 (dedupe off): give a window, or drop --dedupe-store"
            );
        }
        if options.dedupe_secret_file.is_none() {
            bail!(
                "--dedupe-store needs --dedupe-secret-file: the nodes sharing the store must hash messageIds with the same secret (for example `head -c 32 /dev/urandom | base64 > FILE`, on every node)"
            );
        }
    }
    let loading = std::time::Instant::now();
    // With a shared store too, the spool holds the keys: this node's, and those the other nodes share.
    spool
        .set_dedupe(window, options.dedupe_max_bytes)
        .map_err(|e| crate::delivery::spool_error(&options.spool_dir, e))?;
    if window.is_zero() {
        note!("tributary: dedupe is off (--dedupe-window 0): resent messages are stored again");
        return Ok(None);
    }
    let keys =
        ingest::dedupe::Keys::new(ingest::dedupe::secret(options.dedupe_secret_file.as_deref(), &options.spool_dir)?);
    let stats = spool.dedupe_stats();
    tokio::spawn(ingest::dedupe::watch_window(spool.clone(), window, stopped));
    let Some(url) = &options.dedupe_store else {
        note!(
            "tributary: dedupe drops messageIds accepted in the last {}, in at most {} of keys; {} keys held (loaded in {:.1}s, {} of memory)",
            crate::format::format_duration(window),
            format_bytes(options.dedupe_max_bytes),
            stats.keys,
            loading.elapsed().as_secs_f64(),
            format_bytes(stats.memory_bytes)
        );
        return Ok(Some(ingest::dedupe::Dedupe { keys, window, shared: None, required: false }));
    };
    let store = Arc::new(ingest::dedupe::shared::Store::open(url, options.dedupe_timeout, window)?);
    let unchecked = if options.dedupe_required { "refused (503)" } else { "checked against this node's keys only" };
    let (answered, advice) = store.greet(Duration::from_secs(2)).await;
    match answered {
        Ok(()) => note!(
            "tributary: dedupe drops messageIds accepted in the last {} by any node sharing {}, in at most {} of keys on each; {} keys held; while it does not answer within {}, a request is {unchecked}",
            crate::format::format_duration(window),
            store.address,
            format_bytes(options.dedupe_max_bytes),
            stats.keys,
            crate::format::format_duration(options.dedupe_timeout),
        ),
        Err(why) => note!(
            "tributary: the dedupe store {} does not answer ({why}): requests are {unchecked} until it does",
            store.address
        ),
    }
    for advice in advice {
        tracing::warn!(store = %store.address, "the dedupe store: {advice}");
    }
    store.start_reading(spool.clone());
    Ok(Some(ingest::dedupe::Dedupe { keys, window, shared: Some(store), required: options.dedupe_required }))
}

/// The end of a drain: the workers, told to stop, deliver what waits for up to `timeout`; then the spool closes and
/// the last log line says how it ended, with counts.
async fn deliver_what_waits(spool: &Spool, workers: Vec<tokio::task::JoinHandle<()>>, timeout: Duration) {
    let waiting = spool.depth();
    note!(
        "tributary: the listener is closed; delivering the {waiting} waiting messages for up to {}",
        crate::format::format_duration(timeout)
    );
    let delivered = tokio::time::timeout(timeout, futures::future::join_all(workers)).await;
    spool.close();
    let left = spool.depth();
    let ended = if delivered.is_ok() { "drained" } else { "drain timed out" };
    note!(
        "tributary: stopped ({ended}): {} delivered while draining, {left} messages left in {} for the next start",
        waiting.saturating_sub(left),
        spool.path().display()
    );
}

/// The most connections the admin listener keeps open: probes and scrapes, never clients.
const ADMIN_CONNECTIONS: usize = 64;

/// Serves the status pages on `address`, on the runtime delivery runs on, apart from the ingest API and its
/// connection cap, with the ingest port's accept loop (so a connection that sends nothing is closed after
/// `read_timeout` there too). It answers until the process ends, drain included.
async fn serve_admin(
    address: SocketAddr,
    ingest: Arc<Ingest>,
    read_timeout: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} (--admin-listen)"))?;
    note!("tributary: admin on http://{} (/livez, /readyz, /health, /metrics)", listener.local_addr()?);
    let app = status::routes().with_state(ingest);
    let limits = Limits { max_connections: ADMIN_CONNECTIONS, read_timeout };
    Ok(tokio::spawn(connections::serve(listener, app, limits, std::future::pending(), read_timeout)))
}

/// What happens between the first shutdown signal and the listener closing.
struct Drain {
    /// How long requests are still taken.
    delay: Duration,
    /// Whose `draining` flag turns readiness off and asks clients to close their connections.
    ingest: Arc<Ingest>,
}

/// The most connections served at once: `asked`, or fewer when the open-files limit (raised as far as it goes)
/// cannot hold that many, said once.
fn connection_cap(asked: usize) -> usize {
    // Each connection takes a descriptor; the spool, the sinks and the runtime need some too.
    let open_files = connections::raise_open_files();
    let cap = asked.min(usize::try_from(open_files.saturating_sub(256)).unwrap_or(usize::MAX)).max(1);
    if cap < asked {
        note!("tributary: at most {cap} connections, not {asked}: the open-files limit is {open_files}");
    }
    cap
}

/// Serves requests on the ingest runtime until `shutdown` resolves and every connection has ended, then tears
/// that runtime down. Requests run on a runtime of their own, whose threads yield to delivery's (see `priority`).
async fn serve_requests(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    drain: Drain,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The caller's shutdown future is awaited here, on the runtime the server was started on, not on ingest's:
    // what it spawns (the binary's handler of a second signal) must outlive the ingest runtime.
    let (begin_shutdown, shutdown_begun) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        drain.ingest.draining.store(true, Ordering::Relaxed);
        note!(
            "tributary: draining: /readyz answers 503; requests are still taken for {}, each answer with \
             Connection: close",
            crate::format::format_duration(drain.delay)
        );
        tokio::time::sleep(drain.delay).await;
        note!("tributary: closing the listener; answering the requests in flight");
        let _ = begin_shutdown.send(());
    });
    let shutdown = async move {
        let _ = shutdown_begun.await;
    };
    let ingest_runtime = priority::ingest_runtime().context("starting the ingest runtime")?;
    let listener = listener.into_std()?;
    let served = ingest_runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let read_timeout = limits.read_timeout;
        connections::serve(listener, app, limits, shutdown, read_timeout).await;
        std::io::Result::Ok(())
    });
    let served = served.await;
    // Every connection has ended; what is left on the runtime (a timer) can go without blocking this thread.
    ingest_runtime.shutdown_background();
    served.context("the ingest runtime failed")?.context("serving on the listener")
}

/// Takes the spool (as its owner) with its limits: `--spool-max-bytes`, or a quarter of the free space on its
/// disk, which is printed with each destination's share.
fn open_spool(options: &ServeOptions, destinations: u64) -> anyhow::Result<(Spool, u64)> {
    let spool = Spool::open(&options.spool_dir, options.spool_max)
        .map_err(|e| crate::delivery::spool_error(&options.spool_dir, e))?;
    spool.set_max_rejections(options.rejected_max);
    let max_bytes = match options.spool_max_bytes {
        Some(bytes) => bytes,
        None => {
            free_space(&options.spool_dir)
                .with_context(|| format!("reading the free space of {}", options.spool_dir.display()))?
                / 4
        }
    };
    spool.set_max_bytes(max_bytes);
    note!(
        "tributary: the spool holds at most {} of messages{}; each destination's share is {} unless it sets max_backlog_bytes",
        format_bytes(max_bytes),
        if options.spool_max_bytes.is_none() { " (a quarter of the free space on its disk)" } else { "" },
        format_bytes(max_bytes / destinations)
    );
    Ok((spool, max_bytes))
}

/// The bytes free for an unprivileged writer on the filesystem of `dir` (created if missing).
fn free_space(dir: &std::path::Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// A byte count as people read it: `1.5 GiB`.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}
