//! The status pages: `GET /livez` and `GET /readyz` for orchestrators, `GET /health` and `GET /metrics` for people
//! and Prometheus (what the workers report, the spool's backlogs and each destination's lag, read when asked).
//! They are served on the ingest port, or with `serve --admin-listen` on a port of their own.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State as Shared;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::delivery::health::{Report, State};
use crate::metrics::{DestinationState, Metrics};
use crate::serve::ingest::Ingest;

/// The routes of the status pages.
pub fn routes() -> axum::Router<Arc<Ingest>> {
    axum::Router::new()
        .route("/livez", axum::routing::get(livez))
        .route("/readyz", axum::routing::get(readyz))
        .route("/health", axum::routing::get(health))
        .route("/metrics", axum::routing::get(metrics))
}

/// How long after a failed commit (a full disk) `/readyz` keeps answering 503 when no commit has succeeded since.
const UNWRITABLE_FOR: i64 = 5_000;

/// `GET /livez`: 200 while the process serves. A destination's trouble never fails it: restarting the process
/// would not mend a stream, and it would stop the other destinations' deliveries.
async fn livez() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 while the server should get traffic: not draining, and the spool writable (no commit failed
/// in the last 5 seconds without one succeeding since) and below its budgets; else 503 with the reasons.
async fn readyz(Shared(ingest): Shared<Arc<Ingest>>) -> Response {
    let spool = &ingest.spool;
    let mut reasons = Vec::new();
    if ingest.draining.load(Ordering::Relaxed) {
        reasons.push("draining: the server is shutting down".to_owned());
    }
    let failed_at = ingest.commit_failed_at.load(Ordering::Relaxed);
    if failed_at != 0 && spool::now_millis() - failed_at < UNWRITABLE_FOR {
        reasons.push("the spool could not commit (is its disk full?)".to_owned());
    }
    if spool.bytes() >= spool.max_bytes() {
        reasons.push(format!("the spool holds {} bytes, its budget is {}", spool.bytes(), spool.max_bytes()));
    }
    if spool.depth() >= spool.max_depth() {
        reasons.push(format!("the spool holds {} messages, its limit is {}", spool.depth(), spool.max_depth()));
    }
    match reasons.is_empty() {
        true => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "reasons": reasons})),
        )
            .into_response(),
    }
}

/// `GET /health`: each destination's state, backlog and lag; 503 when one is stopped or too far behind, or while
/// the server drains.
pub async fn health(Shared(ingest): Shared<Arc<Ingest>>) -> Response {
    let draining = ingest.draining.load(Ordering::Relaxed);
    let destinations = destination_health(&ingest).await;
    let max_age = ingest.health_max_age.as_secs_f64();
    // A destination no longer delivered says so in its state, and does not make the server unhealthy: its
    // messages wait for it by the operator's choice.
    let delivered = || destinations.iter().filter(|d| !matches!(d.report.state, State::Removed | State::Disabled));
    let unhealthy =
        delivered().any(|d| d.report.state == State::Stopped || d.oldest_waiting.is_some_and(|age| age > max_age));
    let degraded = delivered().any(|d| d.report.state != State::Ok);
    let status = if draining {
        "draining"
    } else if unhealthy {
        "unhealthy"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = serde_json::json!({
        "status": status,
        "spool_depth": ingest.spool.depth(),
        "dedupe": dedupe_health(&ingest),
        "destinations": destinations.iter().map(|d| {
            (d.name.clone(), serde_json::json!({
                "state": d.report.state,
                "waiting": d.waiting,
                "waiting_bytes": d.waiting_bytes,
                "oldest_waiting_seconds": d.oldest_waiting.map(|s| (s * 1000.0).round() / 1000.0),
                "lag_seconds": ingest.lag.of(&d.name).as_millis() as f64 / 1000.0,
                "last_error": d.report.last_error,
                "last_error_at": d.report.last_error_at.map(crate::format::format_millis),
                "restarts": d.report.restarts,
            }))
        }).collect::<serde_json::Map<_, _>>(),
    });
    let code = if unhealthy || draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, axum::Json(body)).into_response()
}

/// The dedupe key store, as `/health` shows it: `off`; the spool's own, `ok`, or `shrunk` while the key budget is
/// full and the window held is shorter than the one asked for; with the fleet's Redis, `ok`, or `degraded` while its
/// last record failed or the other nodes' keys cannot be read.
fn dedupe_health(ingest: &Ingest) -> serde_json::Value {
    let Some(dedupe) = &ingest.dedupe else { return serde_json::json!({"state": "off"}) };
    let stats = ingest.spool.dedupe_stats();
    if let Some(store) = &dedupe.shared {
        let health = store.health();
        let (last_error_at, last_error) = health.last_error.unzip();
        return serde_json::json!({
            "state": if health.failing { "degraded" } else { "ok" },
            "store": store.address,
            "window_seconds": dedupe.window.as_secs(),
            "window_held_seconds": stats.window_held_millis / 1_000,
            "keys": stats.keys,
            "bytes": stats.bytes,
            "memory_bytes": stats.memory_bytes,
            "adopted": health.adopted,
            "caught_up": health.caught_up,
            "unshared": health.unshared,
            "unavailable": ingest.metrics.dedupe_unavailable.get(),
            "last_error": last_error,
            "last_error_at": last_error_at.map(crate::format::format_millis),
        });
    }
    let state = if stats.window_held_millis < stats.window_millis - 1_000 { "shrunk" } else { "ok" };
    serde_json::json!({
        "state": state,
        "window_seconds": stats.window_millis / 1_000,
        "window_held_seconds": stats.window_held_millis / 1_000,
        "keys": stats.keys,
        "bytes": stats.bytes,
        "memory_bytes": stats.memory_bytes,
    })
}

/// One destination's health, as `/health` and `/metrics` show it.
struct DestinationHealth {
    name: String,
    report: Report,
    waiting: u64,
    waiting_bytes: u64,
    oldest_waiting: Option<f64>,
}

/// Every destination delivered now, and every other one that has messages waiting in the spool: one a reload
/// removed or disabled, or one the config lost while the server was stopped.
async fn destination_health(ingest: &Ingest) -> Vec<DestinationHealth> {
    let backlogs = ingest.spool.backlogs();
    let now = spool::now_millis();
    let live = ingest.live();
    let mut names: Vec<&str> = live.routes.all().map(|d| d.name.as_str()).collect();
    let undelivered = backlogs.iter().filter(|(name, b)| b.messages > 0 && live.routes.get(name).is_none());
    names.extend(undelivered.map(|(name, _)| name.as_str()));
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let backlog = backlogs.get(name).copied().unwrap_or_default();
        let mut report = ingest.health.report(name);
        if live.routes.get(name).is_none() {
            report.state = match live.disabled.iter().any(|d| d == name) {
                true => State::Disabled,
                false => State::Removed,
            };
        }
        let oldest = match backlog.messages {
            0 => None,
            _ => ingest.spool.oldest_at(name).await.ok().flatten().map(|at| (now - at).max(0) as f64 / 1000.0),
        };
        out.push(DestinationHealth {
            name: name.to_owned(),
            report,
            waiting: backlog.messages,
            waiting_bytes: backlog.bytes,
            oldest_waiting: oldest,
        });
    }
    out
}

/// `GET /metrics`: the Prometheus page, with the gauges read from the spool, the workers and the sinks now.
pub async fn metrics(Shared(ingest): Shared<Arc<Ingest>>) -> Response {
    ingest.metrics.spool_depth.set(ingest.spool.depth() as i64);
    ingest.metrics.spool_bytes.set(i64::try_from(ingest.spool.bytes()).unwrap_or(i64::MAX));
    ingest.metrics.spool_budget_bytes.set(i64::try_from(ingest.spool.max_bytes()).unwrap_or(i64::MAX));
    match ingest.dedupe.as_ref().filter(|dedupe| dedupe.shared.is_some()) {
        // Redis keeps its own count and evicts by its own policy: its INFO says what it holds.
        Some(dedupe) => drop(ingest.metrics.dedupe_window.set(dedupe.window.as_secs_f64())),
        None => {
            let dedupe = ingest.spool.dedupe_stats();
            ingest.metrics.dedupe_window.set(dedupe.window_held_millis as f64 / 1_000.0);
            ingest.metrics.dedupe_keys.set(i64::try_from(dedupe.keys).unwrap_or(i64::MAX));
        }
    };
    for d in destination_health(&ingest).await {
        let label = Metrics::destination(&d.name);
        let m = &ingest.metrics;
        m.oldest_waiting.get_or_create(&label).set(d.oldest_waiting.unwrap_or(0.0) as i64);
        m.backlog_messages.get_or_create(&label).set(d.waiting as i64);
        m.lag.get_or_create(&label).set(ingest.lag.of(&d.name).as_secs_f64());
        m.backlog_bytes.get_or_create(&label).set(d.waiting_bytes as i64);
        for state in State::ALL {
            let label = DestinationState { destination: d.name.clone(), state: state.name().to_owned() };
            m.state.get_or_create(&label).set(i64::from(state == d.report.state));
        }
        // Shown at 0 from the start, so that an alert on their increase has a series to watch (a series that first
        // appears at 3 shows Prometheus no increase).
        let label = Metrics::destination(&d.name);
        for family in [&m.restarts, &m.delivered, &m.retried, &m.failed, &m.overflowed] {
            drop(family.get_or_create(&label));
        }
        drop(m.delivery_latency.get_or_create(&label));
    }
    ingest.metrics.rejections_evicted.inner().store(ingest.spool.rejections_dropped(), Ordering::Relaxed);
    ingest.metrics.spool_commits.inner().store(ingest.spool.commits(), Ordering::Relaxed);
    // Replaced as a whole, so that what a sink no longer reports (a hot key that cooled down) leaves the page.
    let live = ingest.live();
    ingest.metrics.set_sink_metrics(live.routes.all().map(|t| (t.name.clone(), t.sink.metrics())).collect());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ingest.metrics.render()).into_response()
}
