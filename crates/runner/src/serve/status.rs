//! `GET /health` and `GET /metrics`: what the workers report, the spool's backlogs and each destination's lag,
//! read when asked.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State as Shared;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::delivery::health::{Report, State};
use crate::metrics::{DestinationState, Metrics};
use crate::serve::ingest::{Ingest, Refusal};

/// The routes of the status pages, for [`crate::serve::ingest::router`].
pub fn routes() -> axum::Router<Arc<Ingest>> {
    axum::Router::new().route("/health", axum::routing::get(health)).route("/metrics", axum::routing::get(metrics))
}

/// `GET /health`: each destination's state, backlog and lag; 503 when one is stopped or too far behind.
pub async fn health(Shared(ingest): Shared<Arc<Ingest>>) -> Response {
    if ingest.shutting_down.load(Ordering::Relaxed) {
        return Refusal::shutting_down().into_response();
    }
    let destinations = destination_health(&ingest).await;
    let max_age = ingest.health_max_age.as_secs_f64();
    let unhealthy = destinations
        .iter()
        .any(|d| d.report.state == State::Stopped || d.oldest_waiting.is_some_and(|age| age > max_age));
    let degraded = destinations.iter().any(|d| d.report.state != State::Ok);
    let status = if unhealthy {
        "unhealthy"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = serde_json::json!({
        "status": status,
        "spool_depth": ingest.spool.depth(),
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
    let code = if unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, axum::Json(body)).into_response()
}

/// One destination's health, as `/health` and `/metrics` show it.
struct DestinationHealth {
    name: String,
    report: Report,
    waiting: u64,
    waiting_bytes: u64,
    oldest_waiting: Option<f64>,
}

async fn destination_health(ingest: &Ingest) -> Vec<DestinationHealth> {
    let backlogs = ingest.spool.backlogs();
    let now = spool::now_millis();
    let mut names: Vec<&str> = ingest.routes.all().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let backlog = backlogs.get(name).copied().unwrap_or_default();
        let oldest = match backlog.messages {
            0 => None,
            _ => ingest.spool.oldest_at(name).await.ok().flatten().map(|at| (now - at).max(0) as f64 / 1000.0),
        };
        out.push(DestinationHealth {
            name: name.to_owned(),
            report: ingest.health.report(name),
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
        // Shown at 0 from the start, so that an alert on its increase has a series to watch.
        drop(m.restarts.get_or_create(&Metrics::destination(&d.name)));
    }
    ingest.metrics.rejections_evicted.inner().store(ingest.spool.rejections_dropped(), Ordering::Relaxed);
    ingest.metrics.spool_commits.inner().store(ingest.spool.commits(), Ordering::Relaxed);
    // Replaced as a whole, so that what a sink no longer reports (a hot key that cooled down) leaves the page.
    ingest.metrics.set_sink_metrics(ingest.routes.all().map(|t| (t.name.clone(), t.sink.metrics())).collect());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ingest.metrics.render()).into_response()
}
