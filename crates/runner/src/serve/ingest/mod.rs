//! The HTTP tracking API: Segment's endpoints, so that Segment's own libraries can point at Tributary.
//!
//! A request is acknowledged (`200 {"success":true}`) only once every valid message in it is committed to the
//! spool, for every destination it is meant for. As Segment's API does, a request that is valid JSON within the
//! limits is answered 200 even when some of its messages break Segment's rules: those are kept in the spool's
//! rejected table for the operator, not delivered. A `strict` source refuses such a request whole instead.

mod auth;
mod body;
pub mod client_ip;
pub mod connections;
pub mod dedupe;
mod error;
pub mod limit;
pub mod origin;
pub mod settings;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::FutureExt as _;
use segment_model::{Batch, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Message, MessageType, Rejected, Single};
use spool::{NewEntry, NewRejection, Spool, SpoolError};

pub use auth::{Source, WriteKeys};
pub use error::Refusal;

use crate::metrics::Metrics;
use crate::route::{Filtered, Routes};

/// One valid message's ID, partition key and span in the batch's JSON.
type Encoded<'a> = (&'a str, std::borrow::Cow<'a, str>, std::ops::Range<usize>);

/// What the config folder decides, which a reload replaces as a whole: a request reads it once and keeps that
/// version to its end, so that a reload never meets a request half way.
pub struct Live {
    /// Write keys to sources.
    pub keys: WriteKeys,
    /// Which destinations each message goes to.
    pub routes: Arc<Routes>,
    /// The destinations the config has with `enabled = false`.
    pub disabled: Vec<String>,
    /// The config folder's suppression list (`suppressions/*.toml`).
    pub suppressed: Arc<crate::suppression::Suppressions>,
}

/// What every handler shares.
pub struct Ingest {
    /// Sources, write keys and routes, as the config folder last loaded them.
    pub live: std::sync::RwLock<Arc<Live>>,
    /// Where accepted messages wait for delivery.
    pub spool: Spool,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// What the delivery workers report.
    pub health: Arc<crate::delivery::health::Health>,
    /// `/health` answers 503 when a destination's oldest waiting message is older than this.
    pub health_max_age: Duration,
    /// Set from the first shutdown signal: `/readyz` answers 503 and every answer says `Connection: close`, while
    /// requests are still taken until the drain delay ends.
    pub draining: AtomicBool,
    /// When a commit last failed for a reason other than a limit (a full disk), in Unix milliseconds; 0 once one
    /// succeeds. `/readyz` reads it.
    pub commit_failed_at: std::sync::atomic::AtomicI64,
    /// Wakes the delivery workers when new messages are stored.
    pub stored: Arc<tokio::sync::Notify>,
    /// Where clients reach this server, for the settings analytics.js loads.
    pub public_url: settings::PublicUrl,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<client_ip::Network>,
    /// How long a request's body may take to arrive.
    pub read_timeout: Duration,
    /// How far behind each destination is, and the bound past which its sources' requests get 429.
    pub lag: Arc<crate::serve::lag::Lag>,
    /// Requests being parsed, validated and stored at once; see [`parsing_permits`].
    pub parsing: tokio::sync::Semaphore,
    /// How resends are dropped; `None` with `--dedupe-window 0`.
    pub dedupe: Option<dedupe::Dedupe>,
    /// The spool's suppression list, kept current by [`crate::suppression::watch_spool`].
    pub suppressed: crate::suppression::SpoolList,
}

/// How many requests are read, parsed and encoded at once (a turn ends before the commit is awaited): a few per
/// core, so that the cores stay busy while a turn waits for the rest of a body. Past it, a request waits its
/// turn, in order of arrival, instead of interleaving with hundreds of others: with 512 clients, interleaving
/// them all cost ingest a third more CPU per message (caches, wakeups), which delivery then lacked.
pub fn parsing_permits() -> usize {
    const PER_CORE: usize = 4;
    PER_CORE * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// One request's messages, encoded and ready to store.
struct Prepared {
    /// How many messages are valid and new.
    count: u64,
    /// One entry per destination they go to.
    entries: Vec<NewEntry>,
    /// The invalid messages, for the rejected table.
    rejections: Vec<NewRejection>,
    /// The dedupe keys of the messages stored, recorded in the same commit.
    keys: Vec<i64>,
}

/// One request's messages, parsed and checked, from the source its key opened.
struct Parsed<'a> {
    source: &'a Source,
    valid: Vec<Message>,
    rejected: Vec<Rejected>,
    planned: Planned,
}

/// What a source's tracking plan added to a request: the messages it kept out, and the `Violation Generated` calls
/// for the destination it forwards them to.
#[derive(Default)]
struct Planned {
    blocked: Vec<NewRejection>,
    forwarded: Vec<Message>,
    forward_to: Option<String>,
}

impl Ingest {
    /// The config now: what a request uses from its start to its end.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("live config lock poisoned").clone()
    }

    /// Makes `live` the config for the requests that start from now on.
    pub fn replace(&self, live: Live) {
        *self.live.write().expect("live config lock poisoned") = Arc::new(live);
    }
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// `/v1/track` and the other single calls.
    Single(MessageType),
    /// `/v1/batch` and `/v1/import`.
    Batch,
}

/// The HTTP routes: Segment's tracking API and the settings analytics.js loads, with `more` (the status pages)
/// beside them under the same layers.
pub fn router(ingest: Arc<Ingest>, more: Router<Arc<Ingest>>) -> Router {
    let mut routes = more;
    if crate::faults::asked("panic") {
        routes = routes.route("/test/panic", post(test_panic));
    }
    routes
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
        .route("/v1/b", post(batch))
        .route("/v1/{kind}", post(single))
        .route("/v1/projects/{key}/settings", get(project_settings))
        .fallback(|| async { Refusal::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint takes POST")
        })
        .layer(axum::middleware::from_fn(origin::cors))
        .layer(axum::middleware::from_fn_with_state(ingest.clone(), catch_panics))
        .layer(axum::middleware::from_fn_with_state(ingest.clone(), answered))
        .with_state(ingest)
}

/// Counts every answer by status code, and while the server drains, asks the client to close the connection, so
/// that a kept-alive client's next request opens a new one (through its load balancer, to another node).
/// Every 5xx answer is logged with its path, code and reason.
async fn answered(State(ingest): State<Arc<Ingest>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    ingest.metrics.answered(status);
    if status >= 500 {
        let (code, reason) = match response.extensions().get::<error::Answered>() {
            Some(answered) => (answered.code, answered.message.as_str()),
            None => ("", "no reason given"),
        };
        tracing::warn!(status, path = %path, code, reason, "answered {status}");
    }
    if ingest.draining.load(Ordering::Relaxed) {
        response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

/// The last line of defence: a handler that panics still answers `500 {"code":"internal"}` (so a client retries
/// rather than seeing its connection drop), and the panic is counted. Nothing of the request was acknowledged.
async fn catch_panics(State(ingest): State<Arc<Ingest>>, request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            ingest.metrics.panics.inc();
            Refusal::internal().into_response()
        }
    }
}

async fn test_panic() -> StatusCode {
    panic!("the test fault switch asked for a panic")
}

async fn single(
    State(ingest): State<Arc<Ingest>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(kind) = MessageType::from_path(&kind) else {
        return Refusal::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response();
    };
    ingest.receive(Endpoint::Single(kind), peer, headers, body).await
}

async fn batch(
    State(ingest): State<Arc<Ingest>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    ingest.receive(Endpoint::Batch, peer, headers, body).await
}

/// The settings analytics.js loads (`cdnURL` pointed here): send to this server with this key.
async fn project_settings(State(ingest): State<Arc<Ingest>>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    let live = ingest.live();
    let source = match live.keys.source(Some(&key)) {
        Ok(source) => source,
        Err(_) => {
            return Refusal::new(StatusCode::NOT_FOUND, "unknown_write_key", "no source has this write key")
                .into_response();
        }
    };
    if let Err(error) = source.origins.check(&headers) {
        ingest.metrics.reject(error.code, 0);
        return error.into_response();
    }
    let document = settings::document(&key, &ingest.public_url);
    ([(header::CACHE_CONTROL, "no-cache")], axum::Json(document)).into_response()
}

/// Whether `source` takes requests from this origin now: its `allowed_origins`, a rate limit that is not in debt,
/// and no destination it feeds further behind than `--max-lag`.
fn admissible(source: &Source, headers: &HeaderMap, lag: &crate::serve::lag::Lag) -> Result<(), Refusal> {
    source.origins.check(headers)?;
    if let Some(wait) = source.rate.as_ref().and_then(|rate| rate.wait()) {
        return Err(Refusal::rate_limited(limit::seconds(wait)));
    }
    match lag.over(&source.destinations) {
        Some(behind) => Err(Refusal::behind(&behind)),
        None => Ok(()),
    }
}

impl Ingest {
    /// Authenticates, reads, validates and stores one request, and answers it.
    async fn receive(
        &self,
        endpoint: Endpoint,
        peer: SocketAddr,
        headers: HeaderMap,
        body: axum::body::Body,
    ) -> Response {
        let limit = match endpoint {
            Endpoint::Single(_) => MAX_MESSAGE_BYTES,
            Endpoint::Batch => MAX_BATCH_BYTES,
        };
        // A key in the header is checked before the body is read, with the source's origin and rate, so that a
        // wrong key, a foreign site or a source over its rate costs next to nothing. The body is still drained,
        // unparsed, so that the client reads the answer instead of a reset connection.
        let live = self.live();
        let header_source = match auth::basic_key(&headers) {
            Ok(None) => None,
            Ok(Some(key)) => {
                match live.keys.source(Some(&key)).and_then(|s| admissible(s, &headers, &self.lag).map(|()| s)) {
                    Ok(source) => Some(source),
                    Err(error) => return self.refuse_unread(error, body, limit).await,
                }
            }
            Err(error) => return self.refuse_unread(error, body, limit).await,
        };
        let mut messages = 1;
        let result = self.accept(&live, endpoint, header_source, (peer, &headers), body, limit, &mut messages).await;
        self.answer(result, messages)
    }

    /// Answers `error` after reading and discarding at most `limit` bytes of the body.
    async fn refuse_unread(&self, error: Refusal, body: axum::body::Body, limit: usize) -> Response {
        let _ = tokio::time::timeout(self.read_timeout, body::discard(body, limit)).await;
        self.answer(Err(error), 1)
    }

    #[allow(clippy::too_many_arguments)]
    async fn accept(
        &self,
        live: &Live,
        endpoint: Endpoint,
        header_source: Option<&Source>,
        (peer, headers): (SocketAddr, &HeaderMap),
        body: axum::body::Body,
        limit: usize,
        messages: &mut u64,
    ) -> Result<u64, Refusal> {
        let (bytes, turn) = body::read(headers, body, limit, self.read_timeout, &self.parsing).await?;
        let Parsed { source, valid, rejected, planned } =
            self.prepare(live, endpoint, header_source, (peer, headers), &bytes, messages)?;
        if let Some(dedupe @ dedupe::Dedupe { shared: Some(store), .. }) = &self.dedupe {
            let parsed = (valid, rejected, planned);
            return self.accept_shared(live, source, parsed, (bytes, turn), (store, dedupe.required)).await;
        }
        let (valid, keys) = self.drop_duplicates(source, valid);
        let prepared = self.encode(&live.routes, &source.id, (valid, rejected, planned), keys);
        // The body, the parsed messages and the turn are let go before the commit is awaited: a request holds
        // only its compressed entries while it waits, so the requests being parsed meanwhile find their memory
        // in the cache, and the commit the wait shares takes as many requests as arrive.
        drop((bytes, turn));
        self.commit(prepared).await
    }

    /// The rest of [`Ingest::accept`] with a fleet's shared keys (`--dedupe-store`): duplicates of the keys this
    /// node holds are dropped and the rest encoded, as alone; then on the store's thread, the keys are looked up
    /// once more after the keys other nodes shared a moment ago are read, the commit is made and the keys are
    /// shared ([`dedupe::request::settle`]), and the request is woken once, to answer.
    async fn accept_shared(
        &self,
        live: &Live,
        source: &Source,
        (valid, rejected, planned): (Vec<Message>, Vec<Rejected>, Planned),
        turn: (bytes::Bytes, tokio::sync::SemaphorePermit<'_>),
        (store, required): (&Arc<dedupe::shared::Store>, bool),
    ) -> Result<u64, Refusal> {
        let (keys, duplicate) = self.mark_duplicates(source, &valid);
        let (mut valid, keys) = self.drop_marked(source, valid, keys, &duplicate);
        // A duplicate found on the store's thread is found again in the encoded entries by its messageId: the
        // messages themselves are let go here, on the thread that parsed them (freed on another, they cost a fifth
        // more CPU a message).
        let mut asked = dedupe::request::Asked { keys: Vec::with_capacity(keys.len()), ..Default::default() };
        for (message, key) in valid.iter().zip(&keys) {
            if let Some(key) = key {
                let start = asked.ids.len();
                asked.ids.push_str(message.message_id().unwrap_or_default());
                asked.spans.push(start..asked.ids.len());
                asked.keys.push(*key);
            }
        }
        self.enrich(&source.id, &mut valid);
        let mut entries = self.entries(&live.routes, &source.id, &valid);
        let rejections =
            self.planned(&live.routes, &source.id, planned, &mut entries, self.rejections(&source.id, rejected));
        let encoded = dedupe::request::Encoded { count: valid.len() as u64, entries, rejections };
        drop((valid, keys, turn));
        let settle = dedupe::request::settle(store.clone(), self.spool.clone(), asked, encoded, required);
        let settled = store.spawn(settle).await.map_err(|e| {
            tracing::error!(error = %e, "the dedupe store's thread failed a request");
            Refusal::internal()
        })?;
        match settled {
            dedupe::request::Settled::Refused(why) => {
                self.metrics.dedupe_unavailable.inc();
                tracing::debug!(source = %source.id, error = %why, "refused: the dedupe store is not answering");
                Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dedupe_unavailable",
                    "the dedupe store is not answering and this server is run with --dedupe-required; retry later",
                ))
            }
            dedupe::request::Settled::Broken(e) => {
                tracing::error!(error = %e, "an entry encoded a moment ago did not read back");
                Err(Refusal::internal())
            }
            dedupe::request::Settled::Done { committed, count, dropped, unchecked, unrecorded } => {
                self.note_duplicates(source, dropped.iter().map(String::as_str));
                if let Some(why) = &unchecked {
                    tracing::debug!(source = %source.id, error = %why, "checked against this node's keys only");
                } else if let Some(why) = &unrecorded {
                    tracing::debug!(source = %source.id, error = %why, "dedupe keys not shared: a resend of these messages to another node will be stored again");
                }
                if unchecked.is_some() || unrecorded.is_some() {
                    self.metrics.dedupe_unavailable.inc();
                }
                self.committed(committed, count)
            }
        }
    }

    /// Parses and validates one request's body: its source, its valid messages and the invalid ones. Parsing is
    /// linear in the body whatever its shape; validation waits until the key is known good.
    #[allow(clippy::too_many_arguments)]
    fn prepare<'a>(
        &self,
        live: &'a Live,
        endpoint: Endpoint,
        header_source: Option<&'a Source>,
        (peer, headers): (SocketAddr, &HeaderMap),
        bytes: &[u8],
        messages: &mut u64,
    ) -> Result<Parsed<'a>, Refusal> {
        let (source, items) = match endpoint {
            Endpoint::Single(kind) => {
                let single = Single::from_slice(bytes).map_err(Refusal::from_parse)?;
                let source = match header_source {
                    Some(source) => source,
                    None => live.keys.source(single.write_key().as_deref())?,
                };
                (source, vec![single.into_message(kind)])
            }
            Endpoint::Batch => {
                let batch = Batch::from_slice(bytes).map_err(Refusal::from_batch)?;
                *messages = batch.len() as u64;
                let source = match header_source {
                    Some(source) => source,
                    None => live.keys.source(batch.write_key())?,
                };
                (source, batch.into_messages())
            }
        };
        if header_source.is_none() {
            admissible(source, headers, &self.lag)?;
        }
        if let Some(limit) = &source.rate {
            limit.admit(*messages).map_err(|wait| Refusal::rate_limited(limit::seconds(wait)))?;
        }
        self.metrics.received.inc_by(*messages);
        let mut valid = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for item in items {
            match item {
                Ok(mut message) => {
                    message.take_write_key();
                    valid.push(message);
                }
                Err(refused) if source.strict => {
                    return Err(Refusal::bad_request("invalid_message", refused.to_string()));
                }
                Err(refused) => rejected.push(refused),
            }
        }
        self.drop_suppressed(live, source, &mut valid, &mut rejected);
        let planned = match &source.plan {
            Some(plan) => self.apply_plan(plan, source, &mut valid)?,
            None => Planned::default(),
        };
        let ip = client_ip::client_ip(peer, headers, &self.trusted_proxies).to_string();
        for message in &mut valid {
            message.fill_ip(&ip, source.collect_ip);
        }
        // The source's privacy controls, before dedupe and before any destination, the console or a log sees it.
        if !source.privacy.is_empty() {
            for message in &mut valid {
                self.metrics.privacy(&source.privacy.apply(message));
            }
        }
        Ok(Parsed { source, valid, rejected, planned })
    }

    /// The source's tracking plan, after suppression and before its privacy controls: violations counted (and
    /// forwarded, when the source asks), and each violating message delivered, delivered without what violates, or
    /// kept out in the rejected table, as the source and the plan say. A strict source refuses a request with a
    /// message it keeps out.
    fn apply_plan(
        &self,
        plan: &crate::plans::SourcePlan,
        source: &Source,
        valid: &mut Vec<Message>,
    ) -> Result<Planned, Refusal> {
        let mut planned = Planned { forward_to: plan.forward_to.clone(), ..Planned::default() };
        let mut now = None;
        let mut kept = Vec::with_capacity(valid.len());
        for mut message in valid.drain(..) {
            let applied = plan.apply(&mut message);
            if applied.violations.is_empty() {
                kept.push(message);
                continue;
            }
            self.metrics.plan_violations(&source.id, &applied.violations);
            if plan.forward_to.is_some() {
                let now = now.get_or_insert_with(|| crate::format::format_millis(spool::now_millis()));
                let forwarded = applied.violations.iter().take(crate::plans::REASONS);
                planned.forwarded.extend(forwarded.map(|v| plan.violation_message(&message, v, now)));
            }
            let Some((field, reason)) = applied.blocked else {
                kept.push(message);
                continue;
            };
            if source.strict {
                return Err(Refusal::bad_request("invalid_message", reason));
            }
            self.metrics.drop_invalid(&field, "tracking_plan");
            planned.blocked.push(NewRejection {
                source_id: source.id.clone(),
                index: None,
                field: Some(field),
                reason,
                message: Some(message.to_json_vec()),
            });
        }
        *valid = kept;
        Ok(planned)
    }

    /// Drops the messages, valid or not, of users either suppression list names, first of all: they are counted and
    /// never stored, not even in the rejected table.
    fn drop_suppressed(&self, live: &Live, source: &Source, valid: &mut Vec<Message>, rejected: &mut Vec<Rejected>) {
        let spooled = self.suppressed.read().expect("suppression list lock poisoned").clone();
        let lists = [&*live.suppressed, &*spooled];
        if lists.iter().all(|list| list.is_empty()) {
            return;
        }
        let before = valid.len() + rejected.len();
        valid.retain(|message| !lists.iter().any(|list| list.suppresses(message)));
        rejected.retain(|r| !r.json.as_deref().is_some_and(|json| lists.iter().any(|list| list.suppresses_json(json))));
        let dropped = before - valid.len() - rejected.len();
        if dropped > 0 {
            self.metrics
                .suppressed
                .get_or_create(&crate::metrics::SourceLabel { source: source.id.clone() })
                .inc_by(dropped as u64);
        }
    }

    /// Drops the messages whose messageId was accepted within the dedupe window, earlier in this request or in a
    /// committed one (the spool's own keys), and returns the others with the keys to record beside them.
    fn drop_duplicates(&self, source: &Source, messages: Vec<Message>) -> (Vec<Message>, Vec<i64>) {
        if self.dedupe.is_none() {
            return (messages, Vec::new());
        }
        let (keys, duplicate) = self.mark_duplicates(source, &messages);
        let (kept, keys) = self.drop_marked(source, messages, keys, &duplicate);
        (kept, keys.into_iter().flatten().collect())
    }

    /// The keys of `messages` (none without dedupe, or for a message without a messageId), and which of them are
    /// duplicates: of an earlier message of the same request, or of a key the spool holds.
    fn mark_duplicates(&self, source: &Source, messages: &[Message]) -> (Vec<Option<i64>>, Vec<bool>) {
        let Some(dedupe) = &self.dedupe else { return (vec![None; messages.len()], vec![false; messages.len()]) };
        let scope = source.dedupe_by_source.then_some(source.id.as_str());
        let (keys, mut duplicate) = dedupe.keys.of(scope, messages);
        for (key, duplicate) in keys.iter().zip(duplicate.iter_mut()) {
            if let Some(key) = key
                && !*duplicate
            {
                *duplicate = self.spool.holds(*key);
            }
        }
        (keys, duplicate)
    }

    /// Drops the messages marked `duplicate` (counted, and logged at debug level by messageId), and returns the
    /// others with their keys.
    fn drop_marked(
        &self,
        source: &Source,
        messages: Vec<Message>,
        keys: Vec<Option<i64>>,
        duplicate: &[bool],
    ) -> (Vec<Message>, Vec<Option<i64>>) {
        if !duplicate.contains(&true) {
            return (messages, keys);
        }
        let dropped = messages.iter().zip(duplicate).filter(|(_, duplicate)| **duplicate);
        self.note_duplicates(source, dropped.map(|(message, _)| message.message_id().unwrap_or_default()));
        let mut kept = Vec::with_capacity(messages.len());
        let mut kept_keys = Vec::with_capacity(messages.len());
        for ((message, key), duplicate) in messages.into_iter().zip(keys).zip(duplicate) {
            if !*duplicate {
                kept_keys.push(key);
                kept.push(message);
            }
        }
        (kept, kept_keys)
    }

    /// Counts the duplicates of `source` whose messageIds are `ids`, and logs each at debug level (never the
    /// payload).
    fn note_duplicates<'i>(&self, source: &Source, ids: impl Iterator<Item = &'i str>) {
        let mut dropped = 0;
        for id in ids {
            tracing::debug!(source = %source.id, message_id = id, "a duplicate: not stored again");
            dropped += 1;
        }
        if dropped > 0 {
            self.metrics
                .duplicates
                .get_or_create(&crate::metrics::SourceLabel { source: source.id.clone() })
                .inc_by(dropped);
        }
    }

    /// Enriches `messages` and encodes one spool entry per destination they go to, and the `rejected` ones for
    /// the operator; `keys` are recorded with them.
    fn encode(
        &self,
        routes: &Routes,
        source: &str,
        (mut messages, rejected, planned): (Vec<Message>, Vec<Rejected>, Planned),
        keys: Vec<i64>,
    ) -> Prepared {
        self.enrich(source, &mut messages);
        let mut entries = self.entries(routes, source, &messages);
        let rejections = self.planned(routes, source, planned, &mut entries, self.rejections(source, rejected));
        Prepared { count: messages.len() as u64, entries, rejections, keys }
    }

    /// Adds what a tracking plan made of a request: the `Violation Generated` calls, as one entry for the
    /// destination they are forwarded to (when it runs), and the messages it kept out to `rejections`.
    fn planned(
        &self,
        routes: &Routes,
        source: &str,
        mut planned: Planned,
        entries: &mut Vec<NewEntry>,
        mut rejections: Vec<NewRejection>,
    ) -> Vec<NewRejection> {
        rejections.append(&mut planned.blocked);
        let Some(destination) = planned.forward_to.filter(|name| routes.all().any(|d| d.name == *name)) else {
            return rejections;
        };
        if planned.forwarded.is_empty() {
            return rejections;
        }
        self.enrich(source, &mut planned.forwarded);
        let json: Vec<Vec<u8>> = planned.forwarded.iter().map(Message::to_json_vec).collect();
        let items = crate::delivery::stored::encode(
            planned
                .forwarded
                .iter()
                .zip(&json)
                .map(|(m, json)| (m.message_id().unwrap_or_default(), "schema-violations", json.as_slice())),
        );
        entries.push(NewEntry {
            destination,
            source_id: source.to_owned(),
            count: planned.forwarded.len() as u32,
            items,
        });
        rejections
    }

    /// Enriches `messages` on receipt: a messageId where there is none, receivedAt, and timestamp corrected with
    /// sentAt.
    fn enrich(&self, source: &str, messages: &mut [Message]) {
        let receipt = segment_model::Receipt::new(time::OffsetDateTime::now_utc());
        for message in messages {
            let note = message.enrich_on(&receipt, crate::format::new_message_id);
            if note.skew_out_of_range {
                tracing::debug!(
                    source,
                    message_id = message.message_id().unwrap_or_default(),
                    "sentAt and the client's time are too far apart to correct timestamp; it is receivedAt"
                );
            }
        }
    }

    /// One spool entry per destination `messages` go to.
    fn entries(&self, routes: &Routes, source: &str, messages: &[Message]) -> Vec<NewEntry> {
        let targets = routes.group(source, messages);
        // Every message's JSON in one buffer, its keys borrowed from the message: not three allocations each.
        let mut json = Vec::with_capacity(messages.iter().map(Message::json_size).sum());
        let mut encoded = Vec::with_capacity(messages.len());
        for message in messages {
            let start = json.len();
            message.write_json(&mut json);
            let key = message.user_key().unwrap_or_default();
            encoded.push((message.message_id().unwrap_or_default(), key, start..json.len()));
        }
        // Destinations that take the same messages (the usual case) share one encoding: compressing it is the
        // costly part.
        let mut entries: Vec<NewEntry> = Vec::with_capacity(targets.len());
        // Entries made without filters, by position in `targets`, which later destinations may share.
        let mut plain: Vec<Option<usize>> = Vec::with_capacity(targets.len());
        for (at, (destination, indices)) in targets.iter().enumerate() {
            if destination.controls(source) {
                plain.push(None);
                if let Some(entry) = self.filtered_entry(destination, source, messages, indices, (&json, &encoded)) {
                    entries.push(entry);
                }
                continue;
            }
            let shared =
                targets[..at].iter().zip(&plain).find_map(|((_, earlier), entry)| entry.filter(|_| earlier == indices));
            let items = match shared {
                Some(same) => entries[same].items.clone(),
                None => crate::delivery::stored::encode(indices.iter().map(|&i| {
                    let (id, key, span) = &encoded[i];
                    (*id, key.as_ref(), &json[span.clone()])
                })),
            };
            plain.push(Some(entries.len()));
            entries.push(NewEntry {
                destination: destination.name.clone(),
                source_id: source.to_owned(),
                count: indices.len() as u32,
                items,
            });
        }
        entries
    }

    /// The entry of a destination whose filters or privacy controls apply to `source`: its messages as they leave
    /// them (the dropped left out, each counted by the action that decided), or none when its filters drop them all.
    fn filtered_entry(
        &self,
        destination: &crate::route::Target,
        source: &str,
        messages: &[Message],
        indices: &[usize],
        (json, encoded): (&[u8], &[Encoded<'_>]),
    ) -> Option<NewEntry> {
        let mut changed: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut kept: Vec<usize> = Vec::with_capacity(indices.len());
        for &i in indices {
            match destination.filter(source, &messages[i]) {
                Filtered::Same(_) => kept.push(i),
                Filtered::Changed(message, action, privacy) => {
                    if let Some(action) = action {
                        self.metrics.filtered(&destination.name, action);
                    }
                    self.metrics.privacy(&privacy);
                    changed.push((i, message.to_json_vec()));
                    kept.push(i);
                }
                Filtered::Dropped(action) => self.metrics.filtered(&destination.name, action),
            }
        }
        if kept.is_empty() {
            return None;
        }
        // Both in the order of `indices`, each changed message also kept: one walk finds them, not a search each
        // (a batch of thousands of tiny messages a filter changes would cost a square of them).
        let mut changed = changed.iter().peekable();
        let items = crate::delivery::stored::encode(kept.iter().map(|&i| {
            let (id, key, span) = &encoded[i];
            let bytes = match changed.next_if(|(at, _)| *at == i) {
                Some((_, bytes)) => bytes.as_slice(),
                None => &json[span.clone()],
            };
            (*id, key.as_ref(), bytes)
        }));
        Some(NewEntry {
            destination: destination.name.clone(),
            source_id: source.to_owned(),
            count: kept.len() as u32,
            items,
        })
    }

    /// The invalid messages, counted, as the rejected table keeps them.
    fn rejections(&self, source: &str, rejected: Vec<Rejected>) -> Vec<NewRejection> {
        rejected
            .into_iter()
            .map(|refused| {
                self.metrics.drop_invalid(refused.field().unwrap_or("message"), refused.error.code());
                NewRejection {
                    source_id: source.to_owned(),
                    index: refused.index.map(|i| i as u32),
                    field: refused.field().map(str::to_owned),
                    reason: refused.error.to_string(),
                    message: refused.json,
                }
            })
            .collect()
    }

    /// Stores what [`Ingest::prepare`] made, and returns the number of messages accepted once all of it is
    /// committed.
    async fn commit(&self, Prepared { count, entries, rejections, keys }: Prepared) -> Result<u64, Refusal> {
        let committed = self.spool.append_keyed(entries, rejections, keys).await;
        self.committed(committed, count)
    }

    /// What a commit of `count` messages that ended in `committed` answers.
    fn committed(&self, committed: Result<(), SpoolError>, count: u64) -> Result<u64, Refusal> {
        match committed {
            Ok(()) => {
                self.stored.notify_waiters();
                self.commit_failed_at.store(0, Ordering::Relaxed);
                Ok(count)
            }
            Err(SpoolError::Full { depth, max }) => {
                Err(Refusal::spool_full(&format!("{depth} messages waiting, the limit is {max}")))
            }
            Err(SpoolError::FullBytes { bytes, max }) => {
                Err(Refusal::spool_full(&format!("{bytes} bytes waiting, the limit is {max}")))
            }
            Err(SpoolError::Stopped) => Err(Refusal::shutting_down()),
            // A full disk, or any other failure to commit: nothing was stored, and the client keeps the messages.
            Err(e) => {
                self.commit_failed_at.store(spool::now_millis(), Ordering::Relaxed);
                tracing::error!(error = %e, "the spool refused a write");
                Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "spool_unavailable",
                    "the messages could not be stored (is the spool's disk full?); retry later",
                ))
            }
        }
    }

    fn answer(&self, result: Result<u64, Refusal>, refused: u64) -> Response {
        match result {
            Ok(accepted) => {
                self.metrics.accepted.inc_by(accepted);
                axum::Json(serde_json::json!({"success": true})).into_response()
            }
            Err(error) => {
                self.metrics.reject(error.code, refused);
                error.into_response()
            }
        }
    }
}
