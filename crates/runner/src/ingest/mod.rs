//! The HTTP tracking API: Segment's endpoints, so that Segment's own libraries can point at Tributary.
//!
//! A request is acknowledged (`200 {"success":true}`) only once every message in it is committed to the spool,
//! for every destination it is meant for.

mod auth;
mod body;
mod error;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use segment_model::{Batch, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Map, Message, MessageType};
use serde_json::Value;
use spool::{NewEntry, Spool, SpoolError};

pub use auth::WriteKeys;
pub use error::ApiError;

use crate::metrics::Metrics;
use crate::route::Router as Routes;

/// What every handler shares.
pub struct Ingest {
    /// Write keys to source IDs.
    pub keys: WriteKeys,
    /// Which destinations each message goes to.
    pub routes: Arc<Routes>,
    /// Where accepted messages wait for delivery.
    pub spool: Spool,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Set when the server is shutting down: new requests get 503.
    pub shutting_down: AtomicBool,
    /// Wakes the delivery workers when new messages are stored.
    pub stored: Arc<tokio::sync::Notify>,
}

/// The HTTP routes.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
        .route("/v1/{kind}", post(single))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint takes POST")
        })
        .with_state(ingest)
}

async fn health(State(ingest): State<Arc<Ingest>>) -> Response {
    if ingest.shutting_down.load(Ordering::Relaxed) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
            .into_response();
    }
    axum::Json(serde_json::json!({"status": "ok", "spool_depth": ingest.spool.depth()})).into_response()
}

async fn metrics(State(ingest): State<Arc<Ingest>>) -> Response {
    ingest.metrics.spool_depth.set(ingest.spool.depth() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ingest.metrics.render()).into_response()
}

async fn single(
    State(ingest): State<Arc<Ingest>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(kind) = kind.parse::<MessageType>() else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response();
    };
    ingest.metrics.received.inc();
    let result = async {
        ingest.check_open()?;
        let basic = auth::basic_key(&headers)?;
        let bytes = body::read(&headers, body, MAX_MESSAGE_BYTES).await?;
        let mut fields: Map = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
            Err(e) => return Err(ApiError::invalid_json(&e)),
        };
        let body_key = match fields.shift_remove("writeKey") {
            Some(Value::String(key)) => Some(key),
            _ => None,
        };
        let source = ingest.keys.source(basic.as_deref().or(body_key.as_deref()))?;
        let message = Message::from_map_as(fields, Some(kind))
            .map_err(|e| ApiError::bad_request("invalid_message", e.to_string()))?;
        ingest.store(source, vec![message]).await
    }
    .await;
    ingest.answer(result, 1)
}

async fn batch(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let result = async {
        ingest.check_open()?;
        let basic = auth::basic_key(&headers)?;
        let bytes = body::read(&headers, body, MAX_BATCH_BYTES).await?;
        let batch = Batch::from_slice(&bytes).map_err(ApiError::from_batch)?;
        ingest.metrics.received.inc_by(batch.len() as u64);
        let source = ingest.keys.source(basic.as_deref().or(batch.write_key()))?;
        let mut messages = Vec::with_capacity(batch.len());
        for item in batch.into_messages() {
            let mut message = item.map_err(|e| ApiError::bad_request("invalid_message", e.to_string()))?;
            message.take_write_key();
            messages.push(message);
        }
        ingest.store(source, messages).await
    }
    .await;
    ingest.answer(result, 1)
}

impl Ingest {
    fn check_open(&self) -> Result<(), ApiError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
        }
        Ok(())
    }

    /// Enriches `messages`, stores one spool entry per destination they go to, and returns once it is committed.
    async fn store(&self, source: &str, messages: Vec<Message>) -> Result<u64, ApiError> {
        let receipt = segment_model::Receipt::new(time::OffsetDateTime::now_utc());
        let count = messages.len() as u64;
        let mut encoded = Vec::with_capacity(messages.len());
        let mut targets: Vec<(&str, Vec<usize>)> = Vec::new();
        for (index, mut message) in messages.into_iter().enumerate() {
            message.enrich_on(&receipt, || uuid::Uuid::new_v4().to_string());
            for destination in self.routes.destinations_for(source, &message) {
                match targets.iter_mut().find(|(name, _)| *name == destination.name) {
                    Some((_, indices)) => indices.push(index),
                    None => targets.push((&destination.name, vec![index])),
                }
            }
            let id = message.message_id().unwrap_or_default().to_owned();
            let key = message.partition_key(false).into_owned();
            encoded.push((id, key, message.to_json_vec()));
        }
        let entries = targets
            .into_iter()
            .map(|(destination, indices)| NewEntry {
                destination: destination.to_owned(),
                source_id: source.to_owned(),
                count: indices.len() as u32,
                items: crate::stored::encode(
                    indices.iter().map(|&i| (encoded[i].0.as_str(), encoded[i].1.as_str(), encoded[i].2.as_slice())),
                ),
            })
            .collect();
        match self.spool.append(entries).await {
            Ok(()) => {
                self.stored.notify_waiters();
                Ok(count)
            }
            Err(SpoolError::Full { depth, max }) => Err(ApiError::spool_full(depth, max)),
            Err(SpoolError::Stopped) => {
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"))
            }
            Err(e) => {
                tracing::error!(error = %e, "the spool refused a write");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "spool_error",
                    "the message could not be stored; retry",
                ))
            }
        }
    }

    fn answer(&self, result: Result<u64, ApiError>, rejected: u64) -> Response {
        match result {
            Ok(accepted) => {
                self.metrics.accepted.inc_by(accepted);
                axum::Json(serde_json::json!({"success": true})).into_response()
            }
            Err(error) => {
                self.metrics.reject(error.code, rejected);
                error.into_response()
            }
        }
    }
}
