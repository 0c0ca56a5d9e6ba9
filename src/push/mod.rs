//! Push stage: drains the outbox to the platform in batches, in outbox order, each batch with a
//! stable `Idempotency-Key`. A row is marked sent only after the platform acknowledged it, so a
//! crash at any instant leads at worst to a re-send of the same batch under the same key, which
//! the platform applies once (docs/platform-api.md). Reads and writes only the outbox tables.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, PlatformConfig};
use crate::store::{now_text, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push to platform {path}: {message}")]
    Platform { path: String, message: String },
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
struct EventResult {
    event_id: String,
    status: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
struct BatchResponse {
    #[serde(default)]
    results: Vec<EventResult>,
}

struct Batch {
    key: String,
    rows: Vec<(i64, String, String)>, // outbox id, event id, payload
}

pub struct Pusher {
    client: reqwest::Client,
    config: PlatformConfig,
    auth_header: Option<String>,
    path: String,
}

impl Pusher {
    pub fn new(config: &Config) -> Result<Pusher, PushError> {
        let p = &config.platform;
        let client = crate::tls::platform_client(config).map_err(PushError::Setup)?;
        let auth_header = platform_auth_header(config)?;
        let path = url::Url::parse(&p.url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| p.url.clone());
        Ok(Pusher {
            client,
            config: p.clone(),
            auth_header,
            path,
        })
    }

    /// Sends pending events until the outbox is empty, or `max_batches` were sent. Stops at the
    /// first batch that still fails after its retries (its rows stay pending, keeping their key).
    pub async fn drain(&self, store: &Arc<Mutex<Store>>, max_batches: Option<u64>) -> Result<PushStats, PushError> {
        let mut stats = PushStats::default();
        loop {
            if max_batches.is_some_and(|m| stats.batches >= m) {
                break;
            }
            let batch = {
                let store = store.clone();
                let size = self.config.batch_size;
                let bytes = self.config.batch_bytes;
                tokio::task::spawn_blocking(move || -> Result<(Option<Batch>, u64), PushError> {
                    let mut guard = store.lock().map_err(|_| PushError::Setup("store lock poisoned".into()))?;
                    form_batch(&mut guard, size, bytes)
                })
                .await
                .map_err(|e| PushError::Setup(e.to_string()))??
            };
            let (batch, superseded) = batch;
            stats.superseded += superseded;
            let Some(batch) = batch else { break };
            let (response, retries) = self.send(&batch).await;
            stats.retries += retries;
            let outcome = match response {
                Ok(r) => r,
                Err(e) => {
                    let store = store.clone();
                    let key = batch.key.clone();
                    let n = batch.rows.len();
                    let msg = e.to_string();
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Ok(g) = store.lock() {
                            let _ = log_attempt(&g, &key, n, "failed", Some(&msg));
                        }
                    })
                    .await;
                    return Err(e);
                }
            };
            let store2 = store.clone();
            let (sent, dead) = tokio::task::spawn_blocking(move || -> Result<(u64, u64), PushError> {
                let mut guard = store2.lock().map_err(|_| PushError::Setup("store lock poisoned".into()))?;
                acknowledge(&mut guard, &batch, &outcome)
            })
            .await
            .map_err(|e| PushError::Setup(e.to_string()))??;
            stats.batches += 1;
            stats.sent += sent;
            stats.dead += dead;
            tracing::debug!(batch = stats.batches, sent, dead, "push batch acknowledged");
        }
        Ok(stats)
    }

    /// Sends one batch with retries on timeouts, 429 and 5xx (exponential backoff with full
    /// jitter, honouring Retry-After). Returns the parsed verdicts.
    async fn send(&self, batch: &Batch) -> (Result<BatchResponse, PushError>, u64) {
        let mut body = String::with_capacity(batch.rows.iter().map(|r| r.2.len() + 1).sum::<usize>() + 64);
        body.push_str("{\"batch_id\":");
        body.push_str(&serde_json::to_string(&batch.key).unwrap_or_default());
        body.push_str(",\"events\":[");
        for (i, (_, _, payload)) in batch.rows.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(payload);
        }
        body.push_str("]}");
        let (bytes, gzip) = if self.config.gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match enc.write_all(body.as_bytes()).and_then(|_| enc.finish()) {
                Ok(b) => (b, true),
                Err(_) => (body.into_bytes(), false),
            }
        } else {
            (body.into_bytes(), false)
        };
        let http = &self.config.http;
        let mut attempt: u32 = 0;
        loop {
            let mut req = self
                .client
                .post(&self.config.url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &batch.key)
                .body(bytes.clone());
            if gzip {
                req = req.header("Content-Encoding", "gzip");
            }
            if let Some(h) = &self.auth_header {
                req = req.header("Authorization", h);
            }
            let (retryable, retry_after, message) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if status.is_success() {
                        let text = resp.text().await.unwrap_or_default();
                        let parsed = if text.trim().is_empty() {
                            BatchResponse::default()
                        } else {
                            match serde_json::from_str::<BatchResponse>(&text) {
                                Ok(r) => r,
                                Err(e) => {
                                    return (
                                        Err(self.err(format!(
                                            "platform answered {status} with a body that is not the documented result list ({e}); first bytes: {:?}",
                                            crate::mask::scrub_text(&text.chars().take(80).collect::<String>())
                                        ))),
                                        attempt as u64,
                                    )
                                }
                            }
                        };
                        return (Ok(parsed), attempt as u64);
                    }
                    if status.as_u16() == 409 || status.as_u16() == 422 {
                        // The whole batch refused for good: every event is a dead letter.
                        let text = resp.text().await.unwrap_or_default();
                        let reason = crate::mask::scrub_text(&text.chars().take(200).collect::<String>());
                        let results = batch
                            .rows
                            .iter()
                            .map(|(_, id, _)| EventResult {
                                event_id: id.clone(),
                                status: "rejected".into(),
                                code: Some(status.as_u16() as i64),
                                reason: Some(format!("batch refused: {reason}")),
                            })
                            .collect();
                        return (Ok(BatchResponse { results }), attempt as u64);
                    }
                    if status.as_u16() == 401 || status.as_u16() == 403 {
                        return (
                            Err(self.err(format!(
                                "platform refused our credentials ({status}); check [platform.auth] and its secret"
                            ))),
                            attempt as u64,
                        );
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408;
                    (retryable, retry_after, format!("platform answered {status}"))
                }
                Err(e) => (
                    e.is_timeout() || e.is_connect() || e.is_request(),
                    None,
                    format!("cannot reach the platform: {}", crate::mask::scrub_text(&e.to_string())),
                ),
            };
            if !retryable || attempt >= http.retries {
                return (
                    Err(self.err(format!(
                        "{message} (after {} attempts); the events stay in the outbox and are re-sent with the same Idempotency-Key",
                        attempt + 1
                    ))),
                    attempt as u64,
                );
            }
            let backoff = backoff_delay(attempt, http.backoff_initial_ms, http.backoff_max_ms);
            let delay = retry_after.map(|r| r.max(backoff)).unwrap_or(backoff);
            tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, "{message}; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn err(&self, message: String) -> PushError {
        PushError::Platform {
            path: self.path.clone(),
            message,
        }
    }
}

/// Exponential backoff with full jitter.
pub fn backoff_delay(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let cap = initial_ms.saturating_mul(1u64 << attempt.min(20)).min(max_ms).max(1);
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// Picks the next batch: a batch already keyed (a send that may have reached the platform) is
/// re-sent as it was; otherwise the oldest pending events, with superseded versions of one
/// entity coalesced to the newest.
fn form_batch(store: &mut Store, size: usize, max_bytes: usize) -> Result<(Option<Batch>, u64), PushError> {
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction()?;
    let keyed: Option<String> = tx
        .query_row(
            "SELECT batch_key FROM outbox WHERE state = 'pending' AND batch_key IS NOT NULL ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(key) = keyed {
        let rows = {
            let mut stmt = tx.prepare(
                "SELECT id, event_id, payload FROM outbox WHERE state = 'pending' AND batch_key = ?1 ORDER BY id",
            )?;
            let rows = stmt
                .query_map([&key], |r| {
                    Ok((r.get(0)?, r.get(1)?, codec.open(r.get_ref(2)?)?.unwrap_or_default()))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        tx.commit()?;
        return Ok((Some(Batch { key, rows }), 0));
    }
    let mut candidates: Vec<(i64, String, String, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, event_id, payload, entity, entity_key FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([size as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    codec.open(r.get_ref(2)?)?.unwrap_or_default(),
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    if candidates.is_empty() {
        tx.commit()?;
        return Ok((None, 0));
    }
    // Coalesce: keep the newest pending version per entity; older ones are superseded.
    let mut newest: std::collections::HashMap<(String, String), i64> = std::collections::HashMap::new();
    for (id, _, _, entity, key) in &candidates {
        newest.insert((entity.clone(), key.clone()), *id);
    }
    let mut superseded = 0;
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    for (id, event_id, payload, entity, key) in candidates.drain(..) {
        if newest.get(&(entity, key)) != Some(&id) {
            tx.execute("UPDATE outbox SET state = 'superseded' WHERE id = ?1", [id])?;
            superseded += 1;
            continue;
        }
        if !rows.is_empty() && bytes + payload.len() > max_bytes {
            break;
        }
        bytes += payload.len();
        rows.push((id, event_id, payload));
    }
    let mut hasher = Sha256::new();
    for (_, event_id, _) in &rows {
        hasher.update(event_id.as_bytes());
        hasher.update(b"\n");
    }
    let key = format!("cs-{}", &hex::encode(hasher.finalize())[..32]);
    {
        let mut stmt = tx.prepare_cached("UPDATE outbox SET batch_key = ?2, attempts = attempts + 1 WHERE id = ?1")?;
        for (id, _, _) in &rows {
            stmt.execute(params![id, key])?;
        }
    }
    tx.commit()?;
    Ok((Some(Batch { key, rows }), superseded))
}

fn acknowledge(store: &mut Store, batch: &Batch, response: &BatchResponse) -> Result<(u64, u64), PushError> {
    let verdicts: std::collections::HashMap<&str, &EventResult> =
        response.results.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let now = now_text();
    let tx = store.conn_mut().transaction()?;
    let (mut sent, mut dead) = (0, 0);
    for (id, event_id, _) in &batch.rows {
        match verdicts.get(event_id.as_str()) {
            Some(r) if r.status == "rejected" => {
                tx.execute(
                    "UPDATE outbox SET state = 'dead', last_error = ?2 WHERE id = ?1",
                    params![id, r.reason],
                )?;
                tx.execute(
                    "INSERT INTO dead_letters (outbox_id, event_id, code, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, event_id, r.code, r.reason.clone().unwrap_or_else(|| "rejected".into()), now],
                )?;
                dead += 1;
            }
            // accepted, duplicate, or not mentioned (the contract: a 2xx accepts what it does
            // not list).
            _ => {
                tx.execute("UPDATE outbox SET state = 'sent', sent_at = ?2 WHERE id = ?1", params![id, now])?;
                sent += 1;
            }
        }
    }
    tx.execute(
        "INSERT INTO push_log (at, batch_key, events, outcome, detail) VALUES (?1, ?2, ?3, 'ok', ?4)",
        params![now, batch.key, batch.rows.len() as i64, format!("{sent} sent, {dead} dead")],
    )?;
    tx.commit()?;
    Ok((sent, dead))
}

fn log_attempt(store: &Store, key: &str, n: usize, outcome: &str, detail: Option<&str>) -> Result<(), PushError> {
    store.conn().execute(
        "INSERT INTO push_log (at, batch_key, events, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_text(), key, n as i64, outcome, detail],
    )?;
    store
        .conn()
        .execute("UPDATE outbox SET last_error = ?2 WHERE batch_key = ?1 AND state = 'pending'", params![key, detail])?;
    Ok(())
}

/// The Authorization header for the platform (bearer or basic).
fn platform_auth_header(config: &Config) -> Result<Option<String>, PushError> {
    use crate::source::config::AuthConfig;
    let dir = config.path.parent().unwrap_or(std::path::Path::new("."));
    let resolve = |r: &crate::source::config::SecretRef| -> Result<String, PushError> {
        crate::source::secret::resolve(r, dir)
            .map(|s| s.expose().to_string())
            .map_err(|p| PushError::Setup(format!("[platform.auth]: {}", p.0)))
    };
    Ok(match &config.platform.auth {
        AuthConfig::None => None,
        AuthConfig::Bearer { token } => Some(format!("Bearer {}", resolve(token)?)),
        AuthConfig::Basic { username, password } => {
            use base64::Engine;
            let raw = format!("{username}:{}", resolve(password)?);
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
        }
        other => {
            return Err(PushError::Setup(format!(
                "[platform.auth]: type {:?} is not supported for the platform; use bearer or basic",
                serde_json::to_value(other).ok().and_then(|v| v.get("type").cloned()).unwrap_or_default()
            )))
        }
    })
}
