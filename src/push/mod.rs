//! Push stage: drains the outbox to the platform in batches, in outbox order, each batch with a
//! stable `Idempotency-Key`. A row is marked sent only after the platform acknowledged it, so a
//! crash at any instant leads at worst to a re-send of the same batch under the same key, which
//! the platform applies once (docs/platform-api.md). Reads and writes only the outbox tables.
//!
//! The drain is pipelined: while batch N is on the wire, one blocking store transaction stores
//! the acknowledgement of batch N-1 and forms (keys, serialises, compresses) batch N+1. Sends
//! stay strictly sequential, and a batch is sent only after the previous one was answered, so
//! per-entity order holds; a batch formed but never sent keeps its key and is the first one
//! sent by the next drain.
//!
//! The bookkeeping (outbox, batching, coalescing, keys, acknowledgements, dead letters, the
//! audit chain) is this module's, whatever carries the batches: [`drain_batches`] drives a
//! [`Delivery`], the HTTP platform ([`Pusher`]) or a NATS JetStream stream
//! ([`JetStreamSink`], `push::jetstream`). [`drain`] picks the one `[platform] kind` names.

mod auth;
pub mod jetstream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, PlatformConfig, PlatformKind};
use crate::store::codec::CodecError;
use crate::store::{now_text, Codec, Store, StoreError};

pub use auth::PlatformAuth;
pub use jetstream::JetStreamSink;

/// Drains the outbox to the platform the config names (`[platform] kind`).
pub async fn drain(
    config: &Config,
    store: &Arc<Mutex<Store>>,
    max_batches: Option<u64>,
) -> Result<PushStats, PushError> {
    match config.platform.kind {
        PlatformKind::Http => Pusher::new(config)?.drain(store, max_batches).await,
        PlatformKind::Jetstream => {
            let sink = JetStreamSink::connect(config).await?;
            let stats = sink.drain(&config.platform, store, max_batches).await;
            sink.close().await;
            stats
        }
    }
}

/// What carries a formed batch to the platform. [`drain_batches`] keeps the books around it.
pub(crate) trait Delivery {
    /// Names the destination in the audit chain and in errors (a URL path, a stream).
    fn destination(&self) -> &str;
    /// How a batch's events are encoded for this destination.
    fn shape(&self) -> Shape;
    /// Delivers one batch, with its own retries: the per-event verdicts (an event it does not
    /// list counts as accepted) and the number of retries, or why the batch stays pending.
    fn deliver(
        &self,
        batch: &Batch,
    ) -> impl std::future::Future<Output = (Result<BatchResponse, PushError>, u64)> + Send;
}

/// How a batch is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One JSON body `{"batch_id", "events": [...]}`, gzipped when asked (the HTTP platform).
    Body { gzip: bool },
    /// The events' JSON one after another, each line one message (`Batch::spans`).
    Events,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push to platform {path}: {message}")]
    Platform { path: String, message: String },
    #[error(
        "push to platform {path}: the platform refused our credentials (HTTP {status}); check [platform.auth] and its secret. Events stay pending and are re-sent with the same Idempotency-Key"
    )]
    Unauthorized { path: String, status: u16 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("push: {0}")]
    Setup(String),
}

impl From<rusqlite::Error> for PushError {
    fn from(e: rusqlite::Error) -> Self {
        PushError::Store(StoreError::Sql(e))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushStats {
    pub batches: u64,
    pub sent: u64,
    pub dead: u64,
    pub superseded: u64,
    pub retries: u64,
}

/// The per-event verdict in a platform response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EventResult {
    event_id: String,
    status: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct BatchResponse {
    #[serde(default)]
    results: Vec<EventResult>,
}

/// A batch's rows: outbox id, event id (ascending ids).
type BatchRows = Vec<(i64, String)>;

/// One batch, ready to send: its rows and the request body (gzipped when configured).
pub(crate) struct Batch {
    key: String,
    /// outbox id, event id (ascending ids).
    rows: Vec<(i64, String)>,
    body: Vec<u8>,
    gzip: bool,
    /// `Shape::Events`: where each row's event lies in `body` (empty for `Shape::Body`).
    spans: Vec<std::ops::Range<usize>>,
}

impl Batch {
    fn encode(key: String, rows: Vec<(i64, String)>, payloads: &[String], shape: Shape) -> Batch {
        match shape {
            Shape::Body { gzip } => {
                let body = encode_body(&key, payloads, gzip);
                let gzip = is_gzip(&body);
                Batch {
                    key,
                    rows,
                    body,
                    gzip,
                    spans: Vec::new(),
                }
            }
            Shape::Events => {
                let (body, spans) = encode_events(payloads);
                Batch {
                    key,
                    rows,
                    body,
                    gzip: false,
                    spans,
                }
            }
        }
    }

    fn id_range(&self) -> (i64, i64) {
        (
            self.rows.first().map_or(0, |r| r.0),
            self.rows.last().map_or(0, |r| r.0),
        )
    }
}

/// What one blocking store step did.
#[derive(Default)]
struct StoreStep {
    next: Option<Batch>,
    superseded: u64,
    sent: u64,
    dead: u64,
}

/// The platform's HTTP client, from the HTTP layer ([`crate::net::client`]): timeouts, no
/// redirects, certificate checks always on, `platform.http.ca_file` as the only trusted CA when
/// given, and the client certificate (`platform.client_cert`, `platform.client_key`) for
/// mutual TLS. Checks `platform.url` against the insecure-http rule first.
pub fn build_client(config: &Config) -> Result<reqwest::Client, PushError> {
    let p = &config.platform;
    let url = url::Url::parse(&p.url)
        .map_err(|e| PushError::Setup(format!("platform.url {:?} is not a URL: {e}", p.url)))?;
    crate::net::check_scheme(&url, &p.http, "the platform")
        .map_err(|e| PushError::Setup(e.message("platform.url", "platform.http")))?;
    let dir = config.path.parent().unwrap_or(std::path::Path::new("."));
    let identity = match (&p.client_cert, &p.client_key) {
        (Some(cert), Some(key)) => {
            Some(crate::net::identity(cert, key, dir).map_err(PushError::Setup)?)
        }
        (None, None) => None,
        _ => {
            return Err(PushError::Setup(
                "platform.client_cert and platform.client_key must be given together".into(),
            ))
        }
    };
    crate::net::client(
        &p.http,
        crate::net::ClientSpec {
            http_key: "platform.http",
            dir,
            redirect: reqwest::redirect::Policy::none(),
            headers: Default::default(),
            identity,
        },
    )
    .map_err(|e| PushError::Setup(format!("platform: {e}")))
}

pub struct Pusher {
    client: reqwest::Client,
    config: PlatformConfig,
    auth: PlatformAuth,
    url: url::Url,
    path: String,
    /// `host:port/path` of the events endpoint, for messages (never the query: it may carry
    /// a key).
    endpoint: String,
}

/// What `check --connect` found at the platform ([`probe`]).
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `host:port/path` of the endpoint.
    pub endpoint: String,
    /// The HTTP status of its answer.
    pub status: u16,
    pub millis: u64,
}

impl Pusher {
    pub fn new(config: &Config) -> Result<Pusher, PushError> {
        let p = &config.platform;
        let client = build_client(config)?;
        let mut url = url::Url::parse(&p.url)
            .map_err(|e| PushError::Setup(format!("platform.url {:?} is not a URL: {e}", p.url)))?;
        let dir = config.path.parent().unwrap_or(std::path::Path::new("."));
        let auth = PlatformAuth::new(&p.auth, &url, dir, &p.http)?;
        auth.apply_to_url(&mut url);
        let path = url.path().to_string();
        let endpoint = format!("{}{}", crate::net::host_port(&url), url.path());
        Ok(Pusher {
            client,
            config: p.clone(),
            auth,
            url,
            path,
            endpoint,
        })
    }

    /// Reaches the platform and authenticates, changing nothing: one empty batch (no events)
    /// under a fresh `cs-probe-…` Idempotency-Key, which the contract accepts without effect
    /// (docs/platform-api.md). No retries: `check --connect` reports the first answer.
    pub async fn probe(&self) -> Result<Probe, PushError> {
        let started = std::time::Instant::now();
        let key = format!("cs-probe-{:016x}", rand::random::<u64>());
        let body = serde_json::json!({ "batch_id": key, "events": [] }).to_string();
        let req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &key)
            .body(body);
        let (req, _) = self
            .auth
            .apply(&self.client, self.config.http.max_response_bytes, req)
            .await?;
        let resp = req.send().await.map_err(|e| {
            self.err(format!(
                "cannot reach the platform: {}; check platform.url, the network and that the platform is up",
                crate::net::describe(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(Probe {
                endpoint: self.endpoint.clone(),
                status,
                millis: started.elapsed().as_millis() as u64,
            }),
            401 | 403 => Err(PushError::Unauthorized {
                path: self.endpoint.clone(),
                status,
            }),
            _ => Err(self.err(format!(
                "the platform answered an empty batch with HTTP {status}; check platform.url (the events endpoint) and the platform's state"
            ))),
        }
    }

    /// Sends pending events until the outbox is empty, or `max_batches` were sent. Stops at the
    /// first batch that still fails after its retries (its rows stay pending, keeping their key).
    pub async fn drain(
        &self,
        store: &Arc<Mutex<Store>>,
        max_batches: Option<u64>,
    ) -> Result<PushStats, PushError> {
        drain_batches(self, &self.config, store, max_batches).await
    }

    /// Sends one batch with the HTTP layer's retries ([`crate::net::Retries`]: timeouts,
    /// 408, 429 and 5xx, backoff with full jitter or Retry-After, one fresh OAuth2 token after
    /// a 401). Returns the parsed verdicts and the retry count.
    async fn send(&self, batch: &Batch) -> (Result<BatchResponse, PushError>, u64) {
        let mut retries = crate::net::Retries::new(&self.config.http);
        loop {
            let step = self.attempt(batch, retries.count()).await;
            let log = |attempt: u32, e: &PushError, delay: Duration| {
                tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, key = %batch.key, "{e}; retrying");
            };
            if let Some(outcome) = retries.after(step, log).await {
                return (outcome, u64::from(retries.count()));
            }
        }
    }

    /// One try at sending `batch` (`attempt` retries were made before it).
    async fn attempt(
        &self,
        batch: &Batch,
        attempt: u32,
    ) -> crate::net::Step<BatchResponse, PushError> {
        use crate::net::Step;
        let http = &self.config.http;
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &batch.key)
            .body(batch.body.clone());
        if batch.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        let (req, token) = match self
            .auth
            .apply(&self.client, http.max_response_bytes, req)
            .await
        {
            Ok(x) => x,
            Err(e) => return Step::Fail(e),
        };
        let given_up = |message: String| {
            self.err(format!(
                "{message} (after {} attempt(s)); the events stay in the outbox and are re-sent with the same Idempotency-Key by the next push",
                attempt + 1
            ))
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let message = if e.is_timeout() {
                    format!(
                        "no answer within {}s (platform.http.timeout_secs)",
                        http.timeout_secs
                    )
                } else {
                    format!("cannot reach the platform: {}", crate::net::describe(&e))
                };
                return Step::Retry {
                    error: given_up(message),
                    after: None,
                };
            }
        };
        let status = resp.status();
        let after = crate::net::retry_after(resp.headers());
        match status.as_u16() {
            200..=299 => match crate::net::read_capped(resp, http.max_response_bytes).await {
                Ok(body) => match self.parse_results(status, &body) {
                    Ok(r) => Step::Done(r),
                    Err(e) => Step::Fail(e),
                },
                Err(crate::net::ReadError::Broken(m)) => Step::Retry {
                    error: given_up(format!(
                        "the platform's answer broke off ({m}); it may or may not have applied the batch"
                    )),
                    after: None,
                },
                Err(crate::net::ReadError::TooLarge) => Step::Fail(self.err(format!(
                    "the platform answered {status} with more than platform.http.max_response_bytes ({} bytes), which was not read; the events stay in the outbox and are re-sent with the same Idempotency-Key by the next push",
                    http.max_response_bytes
                ))),
            },
            // The whole batch refused for good: every event is a dead letter.
            409 | 422 => {
                let text = crate::net::read_capped(resp, http.max_response_bytes)
                    .await
                    .unwrap_or_default();
                Step::Done(refused_batch(batch, status.as_u16(), &text))
            }
            401 if self.auth.invalidate(token.as_ref()).await => {
                Step::Reauth(PushError::Unauthorized {
                    path: self.endpoint.clone(),
                    status: 401,
                })
            }
            401 | 403 => Step::Fail(PushError::Unauthorized {
                path: self.endpoint.clone(),
                status: status.as_u16(),
            }),
            _ => {
                let error = given_up(format!("platform answered HTTP {}", status.as_u16()));
                if crate::net::retryable(status) {
                    Step::Retry { error, after }
                } else {
                    Step::Fail(error)
                }
            }
        }
    }

    fn parse_results(
        &self,
        status: reqwest::StatusCode,
        body: &[u8],
    ) -> Result<BatchResponse, PushError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(BatchResponse::default());
        }
        serde_json::from_slice::<BatchResponse>(body).map_err(|e| {
            let text = String::from_utf8_lossy(&body[..body.len().min(80)]).to_string();
            self.err(format!(
                "platform answered {status} with a body that is not the documented result list ({e}); first bytes: {:?}",
                crate::mask::scrub_text(&text)
            ))
        })
    }

    fn err(&self, message: String) -> PushError {
        PushError::Platform {
            path: self.endpoint.clone(),
            message,
        }
    }
}

/// Sends pending events through `sink` until the outbox is empty, or `max_batches` were sent.
/// Stops at the first batch that still fails after its retries (its rows stay pending, keeping
/// their key). Batches go one at a time: the next is delivered only after the previous one was
/// answered, so two events of one key are never in flight together (a batch holds one version
/// per key: `form_batch` coalesces).
pub(crate) async fn drain_batches<D: Delivery>(
    sink: &D,
    platform: &PlatformConfig,
    store: &Arc<Mutex<Store>>,
    max_batches: Option<u64>,
) -> Result<PushStats, PushError> {
    let mut stats = PushStats::default();
    let shape = sink.shape();
    let size = platform.batch_size.max(1);
    let bytes = platform.batch_bytes.max(1);
    let destination = sink.destination();
    let first = store_step(store, destination, None, Some(0), size, bytes, shape).await?;
    stats.superseded += first.superseded;
    let mut current = first.next;
    let mut unacked: Option<(Batch, BatchResponse)> = None;
    while let Some(batch) = current.take() {
        if max_batches.is_some_and(|m| stats.batches >= m) {
            break;
        }
        let form_next = max_batches
            .is_none_or(|m| stats.batches + 1 < m)
            .then(|| batch.id_range().1);
        let step = store_step(
            store,
            destination,
            unacked.take(),
            form_next,
            size,
            bytes,
            shape,
        );
        let ((response, retries), step) = tokio::join!(sink.deliver(&batch), step);
        stats.retries += retries;
        let step = step?;
        stats.sent += step.sent;
        stats.dead += step.dead;
        stats.superseded += step.superseded;
        match response {
            Ok(r) => {
                stats.batches += 1;
                unacked = Some((batch, r));
                current = step.next;
            }
            Err(e) => {
                let msg = e.to_string();
                let s = store.clone();
                let (lo, hi) = batch.id_range();
                let (key, n) = (batch.key.clone(), batch.rows.len());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Ok(g) = s.lock() {
                        if let Err(e) = log_failure(&g, &key, lo, hi, n, &msg) {
                            tracing::warn!("cannot record the failed push attempt: {e}");
                        }
                    }
                })
                .await;
                return Err(e);
            }
        }
    }
    if let Some(done) = unacked {
        let step = store_step(store, destination, Some(done), None, size, bytes, shape).await?;
        stats.sent += step.sent;
        stats.dead += step.dead;
    }
    Ok(stats)
}

impl Delivery for Pusher {
    fn destination(&self) -> &str {
        &self.path
    }
    fn shape(&self) -> Shape {
        Shape::Body {
            gzip: self.config.gzip,
        }
    }
    async fn deliver(&self, batch: &Batch) -> (Result<BatchResponse, PushError>, u64) {
        self.send(batch).await
    }
}

/// Reaches the configured platform without changing anything (`check --connect`); see
/// [`Pusher::probe`]. The one place a transport other than HTTP would add its own probe.
pub async fn probe(config: &Config) -> Result<Probe, PushError> {
    Pusher::new(config)?.probe().await
}

/// A batch the platform refused whole (409, 422): every event is a dead letter, with the
/// start of the platform's answer as the reason.
fn refused_batch(batch: &Batch, status: u16, answer: &[u8]) -> BatchResponse {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(800)]);
    let reason = crate::mask::scrub_text(&text.chars().take(200).collect::<String>());
    let results = batch
        .rows
        .iter()
        .map(|(_, id)| EventResult {
            event_id: id.clone(),
            status: "rejected".into(),
            code: Some(i64::from(status)),
            reason: Some(format!("batch refused with HTTP {status}: {reason}")),
        })
        .collect();
    BatchResponse { results }
}

/// Exponential backoff with jitter (half to full of the capped exponential step).
pub fn backoff_delay(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let cap = initial_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(1);
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// One blocking store transaction: stores the acknowledgement of `ack` (if any), then forms the
/// next batch after outbox id `after` (if asked).
#[allow(clippy::too_many_arguments)]
async fn store_step(
    store: &Arc<Mutex<Store>>,
    destination: &str,
    ack: Option<(Batch, BatchResponse)>,
    after: Option<i64>,
    size: usize,
    max_bytes: usize,
    shape: Shape,
) -> Result<StoreStep, PushError> {
    if ack.is_none() && after.is_none() {
        return Ok(StoreStep::default());
    }
    let store = store.clone();
    let destination = destination.to_string();
    tokio::task::spawn_blocking(move || -> Result<StoreStep, PushError> {
        let mut guard = store
            .lock()
            .map_err(|_| PushError::Setup("store lock poisoned".into()))?;
        let mut step = StoreStep::default();
        if let Some((batch, response)) = &ack {
            let (sent, dead) = acknowledge(&mut guard, &destination, batch, response)?;
            step.sent = sent;
            step.dead = dead;
        }
        if let Some(after) = after {
            let (next, superseded) = form_batch(&mut guard, after, size, max_bytes, shape)?;
            step.next = next;
            step.superseded = superseded;
        }
        Ok(step)
    })
    .await
    .map_err(|e| PushError::Setup(format!("push store task failed: {e}")))?
}

/// Keys the pending rows of a new batch (`?1..?2`: its id range, `?3`: its key).
///
/// This, [`ACK_BATCH_SQL`] and [`FAIL_BATCH_SQL`] walk the batch's id range by rowid (NOT INDEXED): through
/// `outbox_pending`, which the acknowledgement takes the rows out of, SQLite collects the rows
/// first and updates them in a second pass (a tenth of the acknowledgement's samples at 1M,
/// BENCHMARKS.md). A batch's range holds its own rows and the superseded ones cut from it.
const KEY_BATCH_SQL: &str = "UPDATE outbox NOT INDEXED SET batch_key = ?3, attempts = attempts + 1
     WHERE id BETWEEN ?1 AND ?2 AND state = 'pending' AND batch_key IS NULL";

/// Notes a failed attempt on a batch's pending rows (`?3`: its key, `?4`: what went wrong).
const FAIL_BATCH_SQL: &str = "UPDATE outbox NOT INDEXED SET last_error = ?4
     WHERE id BETWEEN ?1 AND ?2 AND batch_key = ?3 AND state = 'pending'";

/// Marks an acknowledged batch's rows sent (`?3`: its key, `?4`: the time).
const ACK_BATCH_SQL: &str =
    "UPDATE outbox NOT INDEXED SET state = 'sent', sent_at = ?4, last_error = NULL
     WHERE id BETWEEN ?1 AND ?2 AND batch_key = ?3 AND state = 'pending'";

/// Picks the next batch after outbox id `after`: a batch already keyed (formed by an earlier
/// drain, maybe sent, maybe applied) is re-sent exactly as it was; otherwise the oldest pending
/// unkeyed events, with superseded versions of one entity coalesced to the newest, up to `size`
/// events and `max_bytes` bytes of JSON.
fn form_batch(
    store: &mut Store,
    after: i64,
    size: usize,
    max_bytes: usize,
    shape: Shape,
) -> Result<(Option<Batch>, u64), PushError> {
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction()?;
    let first: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT id, batch_key FROM outbox WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT 1",
            [after],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let Some((first_id, first_key)) = first else {
        tx.commit()?;
        return Ok((None, 0));
    };
    if let Some(key) = first_key {
        let (rows, payloads) = keyed_batch(&tx, &codec, first_id, &key)?;
        tx.commit()?;
        tracing::info!(key = %key, events = rows.len(), "re-sending a batch formed before (same Idempotency-Key)");
        return Ok((Some(Batch::encode(key, rows, &payloads, shape)), 0));
    }
    // Candidates: pending rows from `first_id` on, stopping at the first keyed one.
    let mut rows_read: Vec<(i64, String, String, String)> = Vec::with_capacity(size);
    let mut sealed = Vec::with_capacity(size);
    {
        let mut stmt = tx.prepare_cached(concat!(
            "SELECT id, ",
            crate::store::event_id_of_outbox!(),
            ", payload, entity, entity_key, batch_key
             FROM outbox JOIN outbox_payloads USING (id)
             WHERE state = 'pending' AND id >= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let mut q = stmt.query(params![first_id, size as i64])?;
        while let Some(r) = q.next()? {
            if r.get::<_, Option<String>>(5)?.is_some() {
                break;
            }
            sealed.push(r.get::<_, rusqlite::types::Value>(2)?);
            rows_read.push((r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?));
        }
    }
    let candidates: Vec<(i64, String, String, String, String)> = rows_read
        .into_iter()
        .zip(open_all(&codec, sealed)?)
        .map(|((id, event_id, entity, key), payload)| (id, event_id, payload, entity, key))
        .collect();
    // Coalesce: keep the newest pending version per entity; older ones are superseded.
    let mut newest: std::collections::HashMap<(&str, &str), i64> = std::collections::HashMap::new();
    for (id, _, _, entity, key) in &candidates {
        newest.insert((entity.as_str(), key.as_str()), *id);
    }
    let superseded_ids: Vec<i64> = candidates
        .iter()
        .filter(|(id, _, _, entity, key)| newest.get(&(entity.as_str(), key.as_str())) != Some(id))
        .map(|c| c.0)
        .collect();
    drop(newest);
    let mut rows = Vec::new();
    let mut payloads = Vec::new();
    let mut bytes = 0usize;
    let mut superseded = 0u64;
    {
        let mut sup = tx.prepare_cached("UPDATE outbox SET state = 'superseded' WHERE id = ?1")?;
        let mut s = superseded_ids.iter().peekable();
        for (id, event_id, payload, _, _) in candidates {
            if s.peek() == Some(&&id) {
                s.next();
                sup.execute([id])?;
                superseded += 1;
                continue;
            }
            if !rows.is_empty() && bytes + payload.len() + 1 > max_bytes {
                break;
            }
            bytes += payload.len() + 1;
            rows.push((id, event_id));
            payloads.push(payload);
        }
    }
    if rows.is_empty() {
        // Everything in the window was superseded by a later row in it: nothing to send here.
        tx.commit()?;
        return Ok((None, superseded));
    }
    let key = batch_key(&rows);
    let (lo, hi) = (rows[0].0, rows[rows.len() - 1].0);
    // Every pending unkeyed row in [lo, hi] is in the batch (the superseded ones were marked).
    let keyed = tx.execute(KEY_BATCH_SQL, params![lo, hi, key])?;
    if keyed != rows.len() {
        return Err(PushError::Setup(format!(
            "outbox rows {lo}..{hi} changed while a batch was formed ({keyed} keyed, {} expected); nothing was sent, push again",
            rows.len()
        )));
    }
    tx.commit()?;
    Ok((Some(Batch::encode(key, rows, &payloads, shape)), superseded))
}

/// The rows and opened payloads of the batch keyed `key` that starts at outbox id `first_id`
/// (formed by an earlier drain, to be re-sent exactly as it was).
fn keyed_batch(
    tx: &rusqlite::Transaction<'_>,
    codec: &Codec,
    first_id: i64,
    key: &str,
) -> Result<(BatchRows, Vec<String>), PushError> {
    let mut rows = Vec::new();
    let mut sealed = Vec::new();
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT id, ",
        crate::store::event_id_of_outbox!(),
        ", payload FROM outbox JOIN outbox_payloads USING (id)
         WHERE state = 'pending' AND id >= ?1 AND batch_key = ?2 ORDER BY id"
    ))?;
    let mut q = stmt.query(params![first_id, key])?;
    while let Some(r) = q.next()? {
        rows.push((r.get(0)?, r.get(1)?));
        sealed.push(r.get::<_, rusqlite::types::Value>(2)?);
    }
    Ok((rows, open_all(codec, sealed)?))
}

/// A new batch's Idempotency-Key: `cs-` and 32 hex digits of the SHA-256 of its event ids, so
/// the same events always form the same key.
fn batch_key(rows: &[(i64, String)]) -> String {
    let mut hasher = Sha256::new();
    for (_, event_id) in rows {
        hasher.update(event_id.as_bytes());
        hasher.update(b"\n");
    }
    format!("cs-{}", &hex::encode(hasher.finalize())[..32])
}

/// Opens stored payloads on every core (decryption is most of the cost of forming a batch).
fn open_all(codec: &Codec, sealed: Vec<rusqlite::types::Value>) -> Result<Vec<String>, PushError> {
    use rayon::prelude::*;
    let opened: Result<Vec<String>, CodecError> = sealed
        .par_iter()
        .map(|v| codec.open(v.into()).map(Option::unwrap_or_default))
        .collect();
    Ok(opened.map_err(rusqlite::Error::from)?)
}

/// The request body: `{"batch_id": key, "events": [payload, ...]}`, gzipped if asked.
fn encode_body(key: &str, payloads: &[String], gzip: bool) -> Vec<u8> {
    let mut body = String::with_capacity(payloads.iter().map(|p| p.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"batch_id\":");
    body.push_str(&serde_json::Value::String(key.to_string()).to_string());
    body.push_str(",\"events\":[");
    for (i, payload) in payloads.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(payload);
    }
    body.push_str("]}");
    if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        if enc.write_all(body.as_bytes()).is_ok() {
            if let Ok(b) = enc.finish() {
                return b;
            }
        }
    }
    body.into_bytes()
}

/// The events one per line (what the audit chain hashes) and where each lies.
fn encode_events(payloads: &[String]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut body = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
    let mut spans = Vec::with_capacity(payloads.len());
    for p in payloads {
        let start = body.len();
        body.extend_from_slice(p.as_bytes());
        spans.push(start..body.len());
        body.push(b'\n');
    }
    (body, spans)
}

/// The gzip flag a body was actually encoded with (a gzip stream starts with 1f 8b).
fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b])
}

fn acknowledge(
    store: &mut Store,
    destination: &str,
    batch: &Batch,
    response: &BatchResponse,
) -> Result<(u64, u64), PushError> {
    let rejected: std::collections::HashMap<&str, &EventResult> = response
        .results
        .iter()
        .filter(|r| r.status == "rejected")
        .map(|r| (r.event_id.as_str(), r))
        .collect();
    let now = now_text();
    let (lo, hi) = batch.id_range();
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction()?;
    let mut dead = 0u64;
    if !rejected.is_empty() {
        let mut upd = tx.prepare_cached(
            "UPDATE outbox SET state = 'dead', last_error = ?2 WHERE id = ?1 AND state = 'pending'",
        )?;
        let mut ins = tx.prepare_cached(
            "INSERT INTO dead_letters (outbox_id, event_id, code, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (id, event_id) in &batch.rows {
            if let Some(r) = rejected.get(event_id.as_str()) {
                let reason = r.reason.clone().unwrap_or_else(|| "rejected".into());
                if upd.execute(params![id, reason])? == 1 {
                    ins.execute(params![id, event_id, r.code, reason, now])?;
                    dead += 1;
                }
            }
        }
    }
    // accepted, duplicate, or not mentioned (the contract: a 2xx accepts what it does not list).
    let sent = tx.execute(ACK_BATCH_SQL, params![lo, hi, batch.key, now])? as u64;
    tx.execute(
        "INSERT INTO push_log (at, batch_key, events, outcome, detail) VALUES (?1, ?2, ?3, 'ok', ?4)",
        params![now, batch.key, batch.rows.len() as i64, format!("{sent} sent, {dead} dead")],
    )?;
    // The tamper-evident trail of what left the store: in the acknowledging transaction.
    {
        use sha2::Digest as _;
        let details = serde_json::json!({
            "destination": destination,
            "idempotency_key": batch.key,
            "event_ids": batch.rows.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
            "content_sha256": hex::encode(sha2::Sha256::digest(&batch.body)),
            "sent": sent,
            "dead": dead,
        });
        crate::audit::append(
            &tx,
            &codec,
            "push_batch",
            &crate::audit::Actor::process(),
            &details,
        )?;
    }
    tx.commit()?;
    Ok((sent, dead))
}

fn log_failure(
    store: &Store,
    key: &str,
    lo: i64,
    hi: i64,
    n: usize,
    detail: &str,
) -> Result<(), PushError> {
    store.conn().execute(
        "INSERT INTO push_log (at, batch_key, events, outcome, detail) VALUES (?1, ?2, ?3, 'failed', ?4)",
        params![now_text(), key, n as i64, detail],
    )?;
    store
        .conn()
        .execute(FAIL_BATCH_SQL, params![lo, hi, key, detail])?;
    Ok(())
}

#[cfg(test)]
mod tests;
