//! The simulated platform (一平台): `POST /api/v1/events`, idempotent by Idempotency-Key,
//! versioned per (entity, key), with chaos knobs for failure tests.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{Shared, PLATFORM_TOKEN};

/// Runtime failure knobs of the platform. All take effect on the next request.
pub struct PlatformChaos {
    fail_next: AtomicU64,
    /// Probability (as f64 bits) that a request fails with 503 or 429.
    random_p: AtomicU64,
    retry_after_secs: AtomicU64,
    latency_ms: AtomicU64,
    /// Requests to apply and then leave unanswered for `hang_ms` (an ack lost on the way back).
    drop_after_apply: AtomicU64,
    /// Requests to leave unanswered for `hang_ms` without applying anything.
    hang_next: AtomicU64,
    hang_ms: AtomicU64,
    refuse_next: AtomicU64,
    refuse_status: AtomicU64,
    reject: Mutex<HashSet<String>>,
    conflict: Mutex<HashSet<String>>,
    rng: Mutex<ChaCha8Rng>,
}

impl PlatformChaos {
    fn new(seed: u64) -> PlatformChaos {
        PlatformChaos {
            fail_next: AtomicU64::new(0),
            random_p: AtomicU64::new(0f64.to_bits()),
            retry_after_secs: AtomicU64::new(1),
            latency_ms: AtomicU64::new(0),
            drop_after_apply: AtomicU64::new(0),
            hang_next: AtomicU64::new(0),
            hang_ms: AtomicU64::new(60_000),
            refuse_next: AtomicU64::new(0),
            refuse_status: AtomicU64::new(422),
            reject: Mutex::new(HashSet::new()),
            conflict: Mutex::new(HashSet::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x000C_4A05)),
        }
    }

    /// The next `n` requests fail with 503 (Retry-After set), applying nothing.
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Each request fails with probability `p` (0..1), as 503 or 429 with a Retry-After of
    /// `retry_after_secs`.
    pub fn set_random_failures(&self, p: f64, retry_after_secs: u64) {
        self.random_p
            .store(p.clamp(0.0, 1.0).to_bits(), Ordering::SeqCst);
        self.retry_after_secs
            .store(retry_after_secs, Ordering::SeqCst);
    }

    /// Retry-After (seconds) sent with injected failures (default 1).
    pub fn set_retry_after(&self, secs: u64) {
        self.retry_after_secs.store(secs, Ordering::SeqCst);
    }

    /// Events whose key is in the set are rejected with code 422.
    pub fn reject_keys<I: IntoIterator<Item = String>>(&self, keys: I) {
        self.reject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys);
    }

    /// Events whose key is in the set are rejected with code 409 (conflict).
    pub fn conflict_keys<I: IntoIterator<Item = String>>(&self, keys: I) {
        self.conflict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys);
    }

    /// Artificial latency before every response.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next `n` requests are applied (and their answer stored for replays), but the answer is
    /// held back for the hang time (see [`PlatformChaos::set_hang`]): the client times out without
    /// knowing the batch was applied, as when an ack is lost on the way back.
    pub fn drop_response_after_apply(&self, n: u64) {
        self.drop_after_apply.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests hang for the hang time, then fail with 503, applying nothing.
    pub fn hang_next(&self, n: u64) {
        self.hang_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests are refused whole with `status` (409 or 422), applying nothing.
    pub fn refuse_next(&self, n: u64, status: u16) {
        self.refuse_status.store(status as u64, Ordering::SeqCst);
        self.refuse_next.store(n, Ordering::SeqCst);
    }

    /// How long a hanging request waits before it answers (default 60 s): set it past the
    /// client's timeout.
    pub fn set_hang(&self, d: Duration) {
        self.hang_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn hang(&self) -> Duration {
        Duration::from_millis(self.hang_ms.load(Ordering::SeqCst))
    }

    /// Back to a well-behaved platform.
    pub fn reset(&self) {
        self.fail_next(0);
        self.drop_response_after_apply(0);
        self.hang_next(0);
        self.refuse_next(0, 422);
        self.set_random_failures(0.0, 1);
        self.set_latency(Duration::ZERO);
        self.reject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.conflict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn take_one(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// An injected failure for this request, if any: (status, retry-after seconds).
    fn injected(&self) -> Option<StatusCode> {
        let n = self.fail_next.load(Ordering::SeqCst);
        if n > 0
            && self
                .fail_next
                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return Some(StatusCode::SERVICE_UNAVAILABLE);
        }
        let p = f64::from_bits(self.random_p.load(Ordering::SeqCst));
        if p > 0.0 {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            if rng.random_bool(p) {
                return Some(if rng.random_bool(0.5) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                });
            }
        }
        None
    }
}

/// The hasher of the platform's per-event maps. A platform holding a million events spent a
/// quarter of its time in SipHash and in rehashing with it (BENCHMARKS.md, push drain); its
/// callers are our own tests and benchmarks, so HashDoS resistance buys nothing here.
pub type FastHash = foldhash::fast::RandomState;

/// The latest applied state of one (entity, key).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedEntity {
    pub version: i64,
    pub deleted: bool,
    /// The record of the last applied upsert, as the JSON text it came in (None after a
    /// delete). Text, not a tree: a platform holding millions of records should not spend its
    /// time building and freeing them.
    pub record: Option<String>,
    pub event_id: String,
    pub changed: Vec<String>,
    /// How many events were applied for this (entity, key) in total.
    pub applications: usize,
}

/// A snapshot of the platform's state, for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformView {
    /// (entity, key) -> latest applied state.
    pub applied: HashMap<(String, String), AppliedEntity, FastHash>,
    /// event_id -> times applied (exactly-once means every value is 1).
    pub applications: HashMap<String, usize, FastHash>,
    /// HTTP requests received (all, including failed and replayed).
    pub requests: u64,
    /// Requests failed by chaos knobs (503/429).
    pub injected_failures: u64,
    /// Requests answered from the idempotency store (nothing applied).
    pub replays: u64,
    /// Events received in processed (non-replayed) batches.
    pub events_received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Events whose version was lower than the already applied one.
    pub out_of_order: u64,
    /// Requests applied whose answer was held back (chaos `drop_response_after_apply`).
    pub dropped_answers: u64,
    /// Requests left hanging without applying (chaos `hang_next`).
    pub hangs: u64,
}

#[derive(Default)]
struct Inner {
    view: PlatformView,
    idempotency: HashMap<String, Vec<u8>>,
}

pub(crate) struct PlatformState {
    pub chaos: PlatformChaos,
    inner: Mutex<Inner>,
}

impl PlatformState {
    pub fn new(seed: u64) -> PlatformState {
        PlatformState {
            chaos: PlatformChaos::new(seed),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn view(&self) -> PlatformView {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .view
            .clone()
    }

    fn count(&self, f: impl FnOnce(&mut PlatformView)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).view);
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"error": code, "message": message})
            .to_string()
            .into_bytes(),
    )
}

fn version_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One incoming event, read straight from the request body into its few fields, the record
/// kept as JSON text (checked for syntax, not built into a tree). A well-formed event object is
/// read this way; anything else (a field of the wrong type, a duplicate field, not an object)
/// goes through [`Incoming::from_value`], which judges it field by field exactly as a tree
/// reader would.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    changed: Option<Vec<String>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
}

/// An event's fields as the platform judges them.
#[derive(Debug, PartialEq)]
struct EventFields {
    event_id: String,
    entity: String,
    key: String,
    op: String,
    version: Option<i64>,
    changed: Vec<String>,
    /// The record's JSON text if it is an object; `None` if absent or anything else.
    record: Option<String>,
}

impl Incoming<'_> {
    fn fields(self) -> EventFields {
        EventFields {
            event_id: self.event_id.unwrap_or_default(),
            entity: self.entity.unwrap_or_default(),
            key: self.key.unwrap_or_default(),
            op: self.op.unwrap_or_default(),
            version: self.version.as_ref().and_then(version_of),
            changed: self.changed.unwrap_or_default(),
            record: self
                .record
                .map(RawValue::get)
                .filter(|r| r.starts_with('{'))
                .map(str::to_string),
        }
    }

    /// The fields of an event that did not read as [`Incoming`]: each one taken if it has the
    /// right type, else treated as missing.
    fn from_value(ev: &Value) -> EventFields {
        let text = |name: &str| {
            ev.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        EventFields {
            event_id: text("event_id"),
            entity: text("entity"),
            key: text("key"),
            op: text("op"),
            version: ev.get("version").and_then(version_of),
            changed: ev
                .get("changed")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            record: ev
                .get("record")
                .filter(|r| r.is_object())
                .map(Value::to_string),
        }
    }
}

/// Reads one event of a batch (see [`Incoming`]); an error if its text is not JSON after all
/// (the batch read only checks the syntax of what it skips: a number out of range or a lone
/// surrogate escape shows up here).
fn read_event(raw: &RawValue) -> Result<EventFields, serde_json::Error> {
    // An object only: a serde struct would also read an array as its fields in order.
    if raw.get().starts_with('{') {
        if let Ok(ev) = serde_json::from_str::<Incoming<'_>>(raw.get()) {
            return Ok(ev.fields());
        }
    }
    let ev: Value = serde_json::from_str(raw.get())?;
    Ok(Incoming::from_value(&ev))
}

/// Every event of a batch read, or the 400 for a body that is not a batch of JSON events.
fn read_events(raw: &[u8]) -> Result<Vec<EventFields>, (&'static str, String)> {
    read_batch(raw)?
        .into_iter()
        .map(|ev| read_event(ev).map_err(|e| ("bad_json", format!("body is not JSON: {e}"))))
        .collect()
}

/// The platform's verdict on one event, as it appears in the answer's `results` list.
#[derive(Debug, Serialize)]
struct Verdict {
    event_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl Verdict {
    fn new(event_id: String, status: &'static str) -> Verdict {
        Verdict {
            event_id,
            status,
            code: None,
            reason: None,
        }
    }
}

/// Applies one event to the state; returns its verdict.
fn apply_event(view: &mut PlatformView, chaos: &PlatformChaos, ev: EventFields) -> Verdict {
    let EventFields {
        event_id,
        entity,
        key,
        op,
        version,
        changed,
        record,
    } = ev;
    let rejected = |event_id: String, code: u16, reason: &'static str| Verdict {
        code: Some(code),
        reason: Some(reason),
        ..Verdict::new(event_id, "rejected")
    };
    if event_id.is_empty() {
        view.rejected += 1;
        return rejected(event_id, 422, "event_id is missing");
    }
    let problem = if entity.is_empty() {
        Some("entity is missing")
    } else if key.is_empty() {
        Some("key is missing")
    } else if !matches!(op.as_str(), "upsert" | "delete") {
        Some("op must be upsert or delete")
    } else if version.is_none() {
        Some("version must be an integer")
    } else if op == "upsert" && record.is_none() {
        Some("an upsert needs a record object")
    } else {
        None
    };
    if let Some(p) = problem {
        view.rejected += 1;
        return rejected(event_id, 422, p);
    }
    let version = version.unwrap_or_default();
    if chaos
        .reject
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        view.rejected += 1;
        return rejected(event_id, 422, "rejected by platform validation (chaos)");
    }
    if chaos
        .conflict
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        view.rejected += 1;
        return rejected(event_id, 409, "conflicting change (chaos)");
    }
    // Built only once the event is known to apply (a duplicate copies nothing).
    let deleted = op == "delete";
    let applied = |event_id: &str, applications: usize| AppliedEntity {
        version,
        deleted,
        record: if deleted { None } else { record },
        event_id: event_id.to_string(),
        changed,
        applications,
    };
    match view.applied.entry((entity, key)) {
        Entry::Occupied(mut e) => {
            let existing = e.get_mut();
            if version <= existing.version {
                if version < existing.version {
                    view.out_of_order += 1;
                }
                view.duplicates += 1;
                return Verdict::new(event_id, "duplicate");
            }
            *existing = applied(&event_id, existing.applications + 1);
        }
        Entry::Vacant(e) => {
            e.insert(applied(&event_id, 1));
        }
    }
    *view.applications.entry(event_id.clone()).or_default() += 1;
    view.accepted += 1;
    Verdict::new(event_id, "accepted")
}

async fn events(shared: Arc<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let state = &shared.platform;
    state.count(|v| v.requests += 1);
    let latency = state.chaos.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == PLATFORM_TOKEN);
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
    }
    if let Some(status) = state.chaos.injected() {
        state.count(|v| v.injected_failures += 1);
        let mut resp = error(status, "unavailable", "platform is busy, retry later");
        let secs = state.chaos.retry_after_secs.load(Ordering::SeqCst);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    if PlatformChaos::take_one(&state.chaos.refuse_next) {
        let code = state.chaos.refuse_status.load(Ordering::SeqCst) as u16;
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        return error(status, "batch_refused", "the batch is refused (chaos)");
    }
    if PlatformChaos::take_one(&state.chaos.hang_next) {
        state.count(|v| v.hangs += 1);
        tokio::time::sleep(state.chaos.hang()).await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "platform hung",
        );
    }
    let Some(idem) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "the Idempotency-Key header is required",
        );
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gzip {
        // A guess at the inflated size (JSON shrinks severalfold): fewer regrowths of the buffer.
        let mut out = Vec::with_capacity(body.len().saturating_mul(4));
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_encoding",
                "body is not valid gzip",
            );
        }
        out
    } else {
        body.to_vec()
    };
    // Read outside the state lock; a replay does not look at the body.
    let parsed = read_events(&raw);
    let (body, hold) = {
        let mut guard = state.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        if let Some(stored) = inner.idempotency.get(idem) {
            let stored = stored.clone();
            inner.view.replays += 1;
            return json_response(StatusCode::OK, stored);
        }
        let evs = match parsed {
            Ok(evs) => evs,
            Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, &message),
        };
        let mut results = Vec::with_capacity(evs.len());
        for ev in evs {
            inner.view.events_received += 1;
            results.push(apply_event(&mut inner.view, &state.chaos, ev));
        }
        #[derive(Serialize)]
        struct Answer<'a> {
            results: &'a [Verdict],
        }
        let body = match serde_json::to_vec(&Answer { results: &results }) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &format!("cannot write the answer: {e}"),
                )
            }
        };
        inner.idempotency.insert(idem.to_string(), body.clone());
        let hold = PlatformChaos::take_one(&state.chaos.drop_after_apply);
        if hold {
            inner.view.dropped_answers += 1;
        }
        (body, hold)
    };
    if hold {
        tokio::time::sleep(state.chaos.hang()).await;
    }
    json_response(StatusCode::OK, body)
}

/// The events of a batch body `{"events": [...], ...}`, each still JSON text, or why the body
/// is refused with a 400 (error code, message).
fn read_batch(raw: &[u8]) -> Result<Vec<&RawValue>, (&'static str, String)> {
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }
    if let Ok(b) = serde_json::from_slice::<Batch<'_>>(raw) {
        return Ok(b.events);
    }
    // Not the expected shape: say precisely what is wrong.
    match serde_json::from_slice::<Value>(raw) {
        Err(e) => Err(("bad_json", format!("body is not JSON: {e}"))),
        Ok(v) if !v.get("events").is_some_and(Value::is_array) => Err((
            "bad_request",
            "body must be an object with an events array".into(),
        )),
        // The one other way the typed read fails: `events` given twice.
        Ok(_) => Err(("bad_request", "body has more than one events array".into())),
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v1/events",
            post(
                |State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                    events(s, headers, body).await
                },
            ),
        )
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, key: &str, version: i64) -> Value {
        json!({"event_id": id, "entity": "person", "key": key, "version": version, "op": "upsert",
               "changed": ["name"], "record": {"name": "x"}, "emitted_at": "2026-01-01T00:00:00+08:00"})
    }

    #[test]
    fn versions_decide_duplicates_and_out_of_order() {
        let chaos = PlatformChaos::new(1);
        let mut v = PlatformView::default();
        assert_eq!(
            apply_event(&mut v, &chaos, Incoming::from_value(&ev("a", "k", 2))).status,
            "accepted"
        );
        assert_eq!(
            apply_event(&mut v, &chaos, Incoming::from_value(&ev("b", "k", 2))).status,
            "duplicate"
        );
        assert_eq!(v.out_of_order, 0);
        assert_eq!(
            apply_event(&mut v, &chaos, Incoming::from_value(&ev("c", "k", 1))).status,
            "duplicate"
        );
        assert_eq!(v.out_of_order, 1);
        assert_eq!(
            apply_event(&mut v, &chaos, Incoming::from_value(&ev("d", "k", 3))).status,
            "accepted"
        );
        let applied = &v.applied[&("person".to_string(), "k".to_string())];
        assert_eq!((applied.version, applied.applications), (3, 2));
        chaos.reject_keys(["bad".to_string()]);
        let r = apply_event(&mut v, &chaos, Incoming::from_value(&ev("e", "bad", 1)));
        assert_eq!((r.status, r.code), ("rejected", Some(422)));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"event_id": "e", "status": "rejected", "code": 422,
                   "reason": "rejected by platform validation (chaos)"})
        );
        let ok = serde_json::to_value(Verdict::new("f".into(), "accepted")).unwrap();
        assert_eq!(ok, json!({"event_id": "f", "status": "accepted"}));
    }

    #[test]
    fn events_read_from_text_are_judged_as_from_a_tree() {
        let cases = [
            r#"{"event_id":"a","entity":"person","key":"k","version":2,"op":"upsert","changed":["name"],"record":{"name":"x"},"emitted_at":"t"}"#,
            r#"{"event_id":"b","entity":"person","key":"k\u00e9","version":"7","op":"delete"}"#,
            r#"{"event_id":"c","entity":"person","key":"k","version":1,"op":"upsert","record":[1]}"#,
            r#"{"event_id":"d","entity":"person","key":"k","version":1,"op":"upsert","record":null}"#,
            r#"{"event_id":"e","entity":5,"key":"k","version":1.5,"op":"upsert","record":{}}"#,
            r#"{"event_id":"f","entity":"person","key":"k","version":1,"op":"upsert","changed":["a",3],"record":{}}"#,
            r#"{"event_id":"g","event_id":"h","entity":"person","key":"k","version":1,"op":"upsert","record":{}}"#,
            r#"{"entity":"person"}"#,
            r#"[1,2]"#,
            r#"["e1","person","k","delete",3]"#,
            r#""not an event""#,
        ];
        for text in cases {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            let tree: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                read_event(&raw).unwrap(),
                Incoming::from_value(&tree),
                "{text}"
            );
        }
        // The fast path really is taken for a well-formed event (the record kept as text).
        let raw: Box<RawValue> = serde_json::from_str(cases[0]).unwrap();
        let typed: Incoming<'_> = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(typed.fields().record.as_deref(), Some(r#"{"name":"x"}"#));
    }

    #[test]
    fn batch_bodies_that_are_not_a_batch_get_a_400_saying_why() {
        assert_eq!(
            read_batch(br#"{"batch_id":"x","events":[{"a":1},2]}"#)
                .unwrap()
                .len(),
            2
        );
        for (body, code, says) in [
            (&b"{not json"[..], "bad_json", "not JSON"),
            (&br#"{"events":{}}"#[..], "bad_request", "an events array"),
            (&br#"[]"#[..], "bad_request", "an events array"),
            (
                &br#"{"events":[],"events":[]}"#[..],
                "bad_request",
                "more than one",
            ),
            // Skimmed by the batch read, refused by the event read: still not JSON.
            (
                &br#"{"events":[{"event_id":"a","version":1e400}]}"#[..],
                "bad_json",
                "not JSON",
            ),
            (
                &br#"{"events":[{"event_id":"\ud800"}]}"#[..],
                "bad_json",
                "not JSON",
            ),
        ] {
            let (c, message) = read_events(body).err().unwrap();
            assert_eq!(c, code);
            assert!(message.contains(says), "{message}");
        }
    }

    #[test]
    fn fail_next_counts_down() {
        let chaos = PlatformChaos::new(1);
        chaos.fail_next(2);
        assert!(chaos.injected().is_some());
        assert!(chaos.injected().is_some());
        assert!(chaos.injected().is_none());
    }
}
