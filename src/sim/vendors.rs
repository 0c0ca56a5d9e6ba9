//! HTTP servers of the four simulated department systems, each exactly as
//! `config/community-sync.toml` describes it.

use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use chrono::NaiveDateTime;
use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::world::{self, StreamId};
use super::{
    Shared, ELDERCARE_KEY, HEALTH_PASSWORD, HEALTH_USER, ONECARD_APP_KEY, ONECARD_SECRET,
    VOLUNTEER_CLIENT_ID, VOLUNTEER_SECRET,
};

type Params = Vec<(String, String)>;

/// A fault a simulated system can answer a data request with instead of its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 with `Retry-After: 1` and the vendor's JSON error body.
    Unavailable,
    /// A gateway's own nginx "502 Bad Gateway" HTML page, with status 200.
    GatewayHtml,
    /// "Busy, try again" the vendor's way: inside HTTP 200 (one-card `{"code": 500, …}`,
    /// elder care `{"success": false, "resultCode": "E503"}`), or 503 where the vendor uses
    /// HTTP statuses (volunteer, FHIR).
    Busy,
    /// A refusal that retrying does not cure, the vendor's way: one-card `{"code": "4003"}` and
    /// elder care `{"resultCode": "E401"}` inside HTTP 200, 403 / FHIR OperationOutcome else.
    Fatal,
}

/// A fault scheduled on one stream's requests.
struct Scheduled {
    stream: StreamId,
    /// The 1-based number of the stream's data request that gets the first fault.
    from: u64,
    remaining: u64,
    fault: Fault,
}

/// Random transient faults (`demo --faults`): each data request fails with probability
/// `rate`, but never more than `max_in_a_row` times in a row on one stream, so a client that
/// retries as many times always gets through and the ground truth is reached.
struct RandomFaults {
    rate: f64,
    max_in_a_row: u64,
    rng: rand_chacha::ChaCha8Rng,
    in_a_row: [u64; 8],
}

/// Failure knobs of the four simulated systems (index = position in `SOURCES`).
pub struct SourceChaos {
    fail_next: [AtomicU64; 4],
    latency_ms: [AtomicU64; 4],
    /// Data requests seen per stream (index = `StreamId::idx`), faulted ones included.
    requests: [AtomicU64; 8],
    scheduled: Mutex<Vec<Scheduled>>,
    random: Mutex<Option<RandomFaults>>,
    injected: AtomicU64,
}

impl SourceChaos {
    pub(crate) fn new() -> SourceChaos {
        SourceChaos {
            fail_next: Default::default(),
            latency_ms: Default::default(),
            requests: Default::default(),
            scheduled: Mutex::new(Vec::new()),
            random: Mutex::new(None),
            injected: AtomicU64::new(0),
        }
    }

    fn index(source: &str) -> Option<usize> {
        super::SOURCES.iter().position(|s| *s == source)
    }

    /// The next `n` requests to `source` fail with 503 and `Retry-After: 1`.
    pub fn fail_next(&self, source: &str, n: u64) {
        if let Some(i) = Self::index(source) {
            self.fail_next[i].store(n, Ordering::SeqCst);
        }
    }

    /// Artificial latency before every response of `source`.
    pub fn set_latency(&self, source: &str, latency: Duration) {
        if let Some(i) = Self::index(source) {
            self.latency_ms[i].store(latency.as_millis() as u64, Ordering::SeqCst);
        }
    }

    /// Answers data requests of `source`/`stream` with `fault`: the `at`-th request from now
    /// (1 = the next one) and the `times - 1` after it. Retries count as requests, so
    /// `inject(…, 2, Fault::Busy, 3)` on a fresh sync makes page 2 busy for its first three
    /// attempts. An unknown stream injects nothing and returns false.
    pub fn inject(&self, source: &str, stream: &str, at: u64, fault: Fault, times: u64) -> bool {
        let Some(s) = StreamId::parse(source, stream) else {
            return false;
        };
        let seen = self.requests[s.idx()].load(Ordering::SeqCst);
        self.scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Scheduled {
                stream: s,
                from: seen + at.max(1),
                remaining: times,
                fault,
            });
        true
    }

    /// Random transient faults on every data request of every system (see [`Fault`]):
    /// 503s, gateway HTML pages at 200 and busy answers, each request with probability
    /// `rate`, at most `max_in_a_row` in a row per stream; seeded, so a run is repeatable.
    pub fn set_random_faults(&self, rate: f64, max_in_a_row: u64, seed: u64) {
        use rand::SeedableRng;
        *self.random.lock().unwrap_or_else(|e| e.into_inner()) = Some(RandomFaults {
            rate: rate.clamp(0.0, 1.0),
            max_in_a_row,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x00FA_u64),
            in_a_row: [0; 8],
        });
    }

    /// Faults answered so far (scheduled and random).
    pub fn faults_injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Back to well-behaved systems.
    pub fn reset(&self) {
        for i in 0..4 {
            self.fail_next[i].store(0, Ordering::SeqCst);
            self.latency_ms[i].store(0, Ordering::SeqCst);
        }
        self.scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.random.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn take_failure(&self, i: usize) -> bool {
        self.fail_next[i]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Counts a data request of `s` and says which fault it gets, if any.
    fn fault_for(&self, s: StreamId) -> Option<Fault> {
        use rand::Rng;
        let n = self.requests[s.idx()].fetch_add(1, Ordering::SeqCst) + 1;
        let scheduled = {
            let mut list = self.scheduled.lock().unwrap_or_else(|e| e.into_inner());
            let hit = list
                .iter_mut()
                .find(|f| f.stream == s && n >= f.from && f.remaining > 0);
            let fault = hit.map(|f| {
                f.remaining -= 1;
                f.fault
            });
            list.retain(|f| f.remaining > 0);
            fault
        };
        let fault = scheduled.or_else(|| {
            let mut guard = self.random.lock().unwrap_or_else(|e| e.into_inner());
            let r = guard.as_mut()?;
            let run = &mut r.in_a_row[s.idx()];
            if *run >= r.max_in_a_row || !r.rng.random_bool(r.rate) {
                *run = 0;
                return None;
            }
            *run += 1;
            Some([Fault::Unavailable, Fault::GatewayHtml, Fault::Busy][r.rng.random_range(0..3)])
        });
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

/// nginx's own error page, as a gateway in front of a department system answers it (here
/// with status 200, as misconfigured gateways do).
const GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The response of system `i` for an injected fault, in that vendor's own style.
fn fault_response(i: usize, fault: Fault) -> Response {
    let unavailable = |body: Response| {
        let mut resp = body;
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    };
    match (fault, i) {
        (Fault::GatewayHtml, _) => with_type(
            StatusCode::OK,
            "text/html",
            GATEWAY_HTML.as_bytes().to_vec(),
        ),
        (Fault::Busy, 0) => gbk_json(
            StatusCode::OK,
            &json!({"code": 500, "msg": "系统繁忙，请稍后再试", "data": null}),
        ),
        (Fault::Fatal, 0) => gbk_json(
            StatusCode::OK,
            &json!({"code": "4003", "msg": "接口访问受限，请联系管理员开通权限", "data": null}),
        ),
        (Fault::Busy, 2) => plain_json(
            StatusCode::OK,
            &json!({"success": false, "resultCode": "E503", "resultMsg": "服务繁忙，请稍后重试"}),
        ),
        (Fault::Fatal, 2) => plain_json(
            StatusCode::OK,
            &json!({"success": false, "resultCode": "E401", "resultMsg": "应用未授权访问该接口"}),
        ),
        (Fault::Fatal, 3) => fhir_json(
            StatusCode::FORBIDDEN,
            &outcome("forbidden", "access to this resource is not permitted"),
        ),
        (Fault::Fatal, _) => plain_json(
            StatusCode::FORBIDDEN,
            &json!({"error": "forbidden", "message": "client may not read this resource"}),
        ),
        (Fault::Unavailable | Fault::Busy, 3) => unavailable(fhir_json(
            StatusCode::OK,
            &outcome("transient", "server busy, try again"),
        )),
        (Fault::Unavailable | Fault::Busy, _) => unavailable(plain_json(
            StatusCode::OK,
            &json!({"error": "service_unavailable", "message": "系统繁忙，请稍后重试"}),
        )),
    }
}

async fn chaos_layer(
    State((shared, i)): State<(Arc<Shared>, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let latency = shared.source_chaos.latency_ms[i].load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if shared.source_chaos.take_failure(i) {
        let mut resp = plain_json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "service_unavailable", "message": "系统繁忙，请稍后重试"}),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    // Only data requests: the OAuth token endpoint stays well-behaved.
    if let Some(s) = StreamId::of_path(req.uri().path()) {
        if let Some(fault) = shared.source_chaos.fault_for(s) {
            return fault_response(i, fault);
        }
    }
    next.run(req).await
}

fn with_chaos(router: Router, shared: Arc<Shared>, i: usize) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        (shared, i),
        chaos_layer,
    ))
}

fn params(q: Option<String>) -> Params {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn num(p: &Params, name: &str, default: usize, max: usize) -> Result<usize, String> {
    match param(p, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| format!("{name} must be a non-negative integer")),
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn encode_position(ts: i64, no: u32) -> String {
    b64().encode(format!("{ts}:{no}"))
}

fn decode_position(token: &str) -> Option<(i64, u32)> {
    let raw = b64().decode(token.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (ts, no) = text.split_once(':')?;
    Some((ts.parse().ok()?, no.parse().ok()?))
}

/// Lenient RFC 3339: a `+` that arrived unencoded in a query decodes to a space.
fn rfc3339_ms(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&v.trim().replace(' ', "+"))
        .ok()
        .map(|d| d.timestamp_millis())
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Records of a stream at order positions `start..end`, rendered.
fn render_slice(
    shared: &Shared,
    s: StreamId,
    lo: Option<i64>,
    hi: Option<i64>,
    offset: usize,
    limit: usize,
    base: &str,
) -> (usize, Vec<Value>) {
    let w = shared.read();
    let stream = w.stream(s);
    let range = stream.range(lo, hi);
    let total = range.len();
    let start = range.start.saturating_add(offset).min(range.end);
    let end = start.saturating_add(limit).min(range.end);
    let rows = stream.order[start..end]
        .iter()
        .filter_map(|e| stream.recs.get(e.2 as usize))
        .map(|r| w.render(s, r, base))
        .collect();
    (total, rows)
}

/// Keyset page: records in [lo, hi) after `after`, at most `limit`; also whether more follow
/// and the position of the last one.
#[allow(clippy::type_complexity)]
fn render_keyset(
    shared: &Shared,
    s: StreamId,
    lo: Option<i64>,
    hi: Option<i64>,
    after: Option<(i64, u32)>,
    limit: usize,
    base: &str,
) -> (usize, Vec<Value>, Option<(i64, u32)>) {
    let w = shared.read();
    let stream = w.stream(s);
    let range = stream.range(lo, hi);
    let total = range.len();
    let slice = &stream.order[range];
    let start = match after {
        Some(a) => slice.partition_point(|e| (e.0, e.1) <= a),
        None => 0,
    };
    let end = start.saturating_add(limit).min(slice.len());
    let page = &slice[start..end];
    let rows = page
        .iter()
        .filter_map(|e| stream.recs.get(e.2 as usize))
        .map(|r| w.render(s, r, base))
        .collect();
    let next = if end < slice.len() {
        page.last().map(|e| (e.0, e.1))
    } else {
        None
    };
    (total, rows, next)
}

// ---------------------------------------------------------------- 社区一卡通 (onecard)

fn gbk_json(status: StatusCode, v: &Value) -> Response {
    let text = v.to_string();
    let (bytes, _, _) = encoding_rs::GBK.encode(&text);
    with_type(status, "application/json;charset=GBK", bytes.into_owned())
}

/// The one-card signature: uppercase hex MD5 of "{sorted k=v joined by &}&key={secret}".
pub fn onecard_sign(params: &[(String, String)], secret: &str) -> String {
    let mut p: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sign").collect();
    p.sort();
    let joined = p
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    hex::encode_upper(Md5::digest(format!("{joined}&key={secret}").as_bytes()))
}

fn onecard_auth(p: &Params) -> Result<(), &'static str> {
    if param(p, "appkey") != Some(ONECARD_APP_KEY) {
        return Err("签名错误");
    }
    let ts: i64 = param(p, "timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("签名错误")?;
    if (ts - world::now_ms() / 1000).abs() > 300 {
        return Err("时间戳超出允许范围");
    }
    if param(p, "nonce").is_none() {
        return Err("签名错误");
    }
    let sign = param(p, "sign").ok_or("签名错误")?;
    if !sign.eq_ignore_ascii_case(&onecard_sign(p, ONECARD_SECRET)) {
        return Err("签名错误");
    }
    Ok(())
}

fn onecard_time(p: &Params, name: &str) -> Result<Option<i64>, String> {
    match param(p, name) {
        None => Ok(None),
        Some(v) => NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%d %H:%M:%S")
            .map(|n| Some(n.and_utc().timestamp_millis() - 8 * 3_600_000))
            .map_err(|_| format!("{name} 格式应为 yyyy-MM-dd HH:mm:ss")),
    }
}

fn onecard_page(shared: &Shared, q: Option<String>, s: StreamId) -> Response {
    let p = params(q);
    if let Err(msg) = onecard_auth(&p) {
        return gbk_json(
            StatusCode::UNAUTHORIZED,
            &json!({"code": "4001", "msg": msg}),
        );
    }
    let parsed = (|| -> Result<_, String> {
        let page = num(&p, "page", 1, usize::MAX)?.max(1);
        let rows = num(&p, "rows", 20, 1000)?;
        Ok((
            page,
            rows,
            onecard_time(&p, "gxsj_start")?,
            onecard_time(&p, "gxsj_end")?,
        ))
    })();
    let (page, rows, lo, hi) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            return gbk_json(
                StatusCode::BAD_REQUEST,
                &json!({"code": "4000", "msg": format!("参数错误: {msg}")}),
            )
        }
    };
    let offset = (page - 1).saturating_mul(rows);
    let (total, rows) = render_slice(shared, s, lo, hi, offset, rows, "");
    let body = json!({"code": "0000", "msg": "成功", "data": {"total": total, "rows": rows}});
    let resp = gbk_json(StatusCode::OK, &body);
    shared.page_served(s);
    resp
}

pub fn onecard(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route(
            "/api/ykt/v1/cardholders",
            get(
                |State(s): State<Arc<Shared>>, RawQuery(q): RawQuery| async move {
                    onecard_page(&s, q, StreamId::Cardholders)
                },
            ),
        )
        .route(
            "/api/ykt/v1/transactions",
            get(
                |State(s): State<Arc<Shared>>, RawQuery(q): RawQuery| async move {
                    onecard_page(&s, q, StreamId::Transactions)
                },
            ),
        )
        .with_state(shared.clone());
    with_chaos(router, shared, 0)
}

// ---------------------------------------------------------------- 志愿者服务 (volunteer)

fn bom_json(status: StatusCode, v: &Value) -> Response {
    let mut body = "\u{FEFF}".as_bytes().to_vec();
    body.extend_from_slice(v.to_string().as_bytes());
    with_type(status, "application/json; charset=utf-8", body)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn oauth_token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: Params = url::form_urlencoded::parse(body).into_owned().collect();
    if param(&form, "grant_type") != Some("client_credentials") {
        return bom_json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}),
        );
    }
    let creds = basic_credentials(headers).or_else(|| {
        Some((
            param(&form, "client_id")?.to_string(),
            param(&form, "client_secret")?.to_string(),
        ))
    });
    if creds
        != Some((
            VOLUNTEER_CLIENT_ID.to_string(),
            VOLUNTEER_SECRET.to_string(),
        ))
    {
        return bom_json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "client authentication failed"}),
        );
    }
    let token = format!("{:032x}", rand::random::<u128>());
    let lifetime = shared.token_lifetime_secs;
    shared
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), world::now_ms() + lifetime as i64 * 1000);
    bom_json(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}),
    )
}

fn bearer_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
    tokens
        .get(token.trim())
        .is_some_and(|exp| *exp > world::now_ms())
}

fn volunteer_page(
    shared: &Shared,
    headers: &HeaderMap,
    q: Option<String>,
    s: StreamId,
) -> Response {
    if !bearer_ok(shared, headers) {
        let mut resp = bom_json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": "missing, unknown or expired access token"}),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return resp;
    }
    let p = params(q);
    let parsed = (|| -> Result<_, String> {
        let limit = num(&p, "limit", 50, 1000)?.max(1);
        let time = |name: &str| -> Result<Option<i64>, String> {
            match param(&p, name) {
                None => Ok(None),
                Some(v) => rfc3339_ms(v)
                    .map(Some)
                    .ok_or_else(|| format!("{name} must be RFC 3339")),
            }
        };
        let cursor = match param(&p, "cursor") {
            None => None,
            Some(c) => Some(decode_position(c).ok_or("cursor is not valid")?),
        };
        Ok((limit, time("updatedSince")?, time("updatedBefore")?, cursor))
    })();
    let (limit, lo, hi, cursor) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            return bom_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "error_description": msg}),
            )
        }
    };
    let (_, items, next) = render_keyset(shared, s, lo, hi, cursor, limit, "");
    let next = next.map(|(ts, no)| encode_position(ts, no));
    let resp = bom_json(StatusCode::OK, &json!({"items": items, "nextCursor": next}));
    shared.page_served(s);
    resp
}

pub fn volunteer(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route(
            "/oauth/token",
            post(|State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                oauth_token(&s, &headers, &body)
            }),
        )
        .route(
            "/api/v2/volunteers",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                volunteer_page(&s, &headers, q, StreamId::Volunteers)
            }),
        )
        .route(
            "/api/v2/service-records",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                volunteer_page(&s, &headers, q, StreamId::ServiceRecords)
            }),
        )
        .with_state(shared.clone());
    with_chaos(router, shared, 1)
}

// ---------------------------------------------------------------- 居家养老 (eldercare)

fn plain_json(status: StatusCode, v: &Value) -> Response {
    with_type(status, "application/json", v.to_string().into_bytes())
}

fn eldercare_page(
    shared: &Shared,
    headers: &HeaderMap,
    q: Option<String>,
    s: StreamId,
) -> Response {
    let key_ok = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == ELDERCARE_KEY);
    if !key_ok {
        return plain_json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthorized", "message": "missing or invalid X-Api-Key"}),
        );
    }
    let p = params(q);
    let parsed = (|| -> Result<_, String> {
        let offset = num(&p, "offset", 0, usize::MAX)?;
        let limit = num(&p, "limit", 20, 1000)?;
        let time = |name: &str| -> Result<Option<i64>, String> {
            match param(&p, name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("{name} must be epoch milliseconds")),
            }
        };
        Ok((
            offset,
            limit,
            time("updated_after")?,
            time("updated_before")?,
        ))
    })();
    let (offset, limit, lo, hi) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            return plain_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "bad_request", "message": msg}),
            )
        }
    };
    let (total, data) = render_slice(shared, s, lo, hi, offset, limit, "");
    let resp = plain_json(
        StatusCode::OK,
        &json!({"success": true, "resultCode": "0000", "resultMsg": "ok", "total": total, "offset": offset, "limit": limit, "data": data}),
    );
    shared.page_served(s);
    resp
}

pub fn eldercare(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route(
            "/api/elders",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                eldercare_page(&s, &headers, q, StreamId::Elders)
            }),
        )
        .route(
            "/api/service_orders",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                eldercare_page(&s, &headers, q, StreamId::ServiceOrders)
            }),
        )
        .with_state(shared.clone());
    with_chaos(router, shared, 2)
}

// ---------------------------------------------------------------- 社区健康服务 (health, FHIR)

fn fhir_json(status: StatusCode, v: &Value) -> Response {
    with_type(
        status,
        "application/fhir+json;charset=utf-8",
        v.to_string().into_bytes(),
    )
}

fn outcome(code: &str, text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    })
}

fn health_page(
    shared: &Shared,
    headers: &HeaderMap,
    q: Option<String>,
    s: StreamId,
    resource: &str,
) -> Response {
    if basic_credentials(headers) != Some((HEALTH_USER.to_string(), HEALTH_PASSWORD.to_string())) {
        let mut resp = fhir_json(
            StatusCode::UNAUTHORIZED,
            &outcome("login", "authentication required"),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fhir\""),
        );
        return resp;
    }
    let p = params(q);
    let parsed = (|| -> Result<_, String> {
        let count = num(&p, "_count", 50, 1000)?.max(1);
        let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
        for (k, v) in &p {
            if k != "_lastUpdated" {
                continue;
            }
            let (prefix, rest) = match v.get(..2) {
                Some(pre @ ("ge" | "gt" | "le" | "lt" | "eq")) => (pre, &v[2..]),
                _ => ("ge", v.as_str()),
            };
            let ms = rfc3339_ms(rest)
                .ok_or_else(|| format!("_lastUpdated {v:?} is not an RFC 3339 instant"))?;
            match prefix {
                "ge" | "eq" => lo = Some(lo.map_or(ms, |l| l.max(ms))),
                "gt" => lo = Some(lo.map_or(ms + 1, |l| l.max(ms + 1))),
                "lt" => hi = Some(hi.map_or(ms, |h| h.min(ms))),
                _ => hi = Some(hi.map_or(ms + 1, |h| h.min(ms + 1))),
            }
        }
        if let Some(sort) = param(&p, "_sort") {
            if sort != "_lastUpdated" {
                return Err(format!("_sort={sort} is not supported (only _lastUpdated)"));
            }
        }
        let token = match param(&p, "_page_token") {
            None => None,
            Some(t) => Some(decode_position(t).ok_or("_page_token is not valid")?),
        };
        Ok((count, lo, hi, token))
    })();
    let (count, lo, hi, token) = match parsed {
        Ok(v) => v,
        Err(msg) => return fhir_json(StatusCode::BAD_REQUEST, &outcome("invalid", &msg)),
    };
    let base = shared.base(3);
    let (total, entries, next) = render_keyset(shared, s, lo, hi, token, count, &base);
    let link_for = |token: Option<String>| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &p {
            if k != "_page_token" {
                ser.append_pair(k, v);
            }
        }
        if let Some(t) = token {
            ser.append_pair("_page_token", &t);
        }
        format!("{base}/fhir/{resource}?{}", ser.finish())
    };
    let mut links = vec![
        json!({"relation": "self", "url": link_for(param(&p, "_page_token").map(str::to_string))}),
    ];
    if let Some((ts, no)) = next {
        links.push(json!({"relation": "next", "url": link_for(Some(encode_position(ts, no)))}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    });
    let resp = fhir_json(StatusCode::OK, &bundle);
    shared.page_served(s);
    resp
}

pub fn health(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route(
            "/fhir/Patient",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                health_page(&s, &headers, q, StreamId::Patients, "Patient")
            }),
        )
        .route(
            "/fhir/Encounter",
            get(|State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                health_page(&s, &headers, q, StreamId::Followups, "Encounter")
            }),
        )
        .with_state(shared.clone());
    with_chaos(router, shared, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(resp: Response) -> (StatusCode, String, Vec<u8>) {
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, ct, bytes.to_vec())
    }

    #[tokio::test]
    async fn faults_answer_in_each_vendors_own_style() {
        // One-card: busy and fatal inside HTTP 200, in GBK, in its {code, msg, data} envelope.
        let (status, ct, bytes) = body_of(fault_response(0, Fault::Busy)).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "application/json;charset=GBK")
        );
        let (text, _, bad) = encoding_rs::GBK.decode(&bytes);
        assert!(!bad);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"code": 500, "msg": "系统繁忙，请稍后再试", "data": null})
        );
        let (status, _, bytes) = body_of(fault_response(0, Fault::Fatal)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(encoding_rs::GBK.decode(&bytes).0.contains("\"4003\""));
        // Elder care: {success: false, resultCode} inside 200.
        let (status, _, bytes) = body_of(fault_response(2, Fault::Busy)).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, v["success"].clone(), v["resultCode"].clone()),
            (StatusCode::OK, json!(false), json!("E503"))
        );
        // A gateway's HTML page with status 200, whatever the system behind it.
        for i in 0..4 {
            let (status, ct, bytes) = body_of(fault_response(i, Fault::GatewayHtml)).await;
            assert_eq!((status, ct.as_str()), (StatusCode::OK, "text/html"));
            assert!(String::from_utf8_lossy(&bytes).contains("502 Bad Gateway"));
        }
        // Volunteer and FHIR use HTTP statuses: busy is a 503, fatal a 403.
        assert_eq!(
            body_of(fault_response(1, Fault::Busy)).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, ct, _) = body_of(fault_response(3, Fault::Fatal)).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::FORBIDDEN, "application/fhir+json;charset=utf-8")
        );
    }

    #[test]
    fn scheduled_and_random_faults_count_requests_per_stream() {
        let chaos = SourceChaos::new();
        assert!(chaos.inject("onecard", "cardholders", 2, Fault::Busy, 2));
        assert!(!chaos.inject("onecard", "nonsense", 1, Fault::Busy, 1));
        let seen: Vec<Option<Fault>> = (0..5)
            .map(|_| chaos.fault_for(StreamId::Cardholders))
            .collect();
        assert_eq!(
            seen,
            vec![None, Some(Fault::Busy), Some(Fault::Busy), None, None]
        );
        assert_eq!(
            chaos.fault_for(StreamId::Transactions),
            None,
            "other streams untouched"
        );
        chaos.set_random_faults(1.0, 2, 9);
        let seen: Vec<bool> = (0..6)
            .map(|_| chaos.fault_for(StreamId::Elders).is_some())
            .collect();
        assert_eq!(
            seen,
            vec![true, true, false, true, true, false],
            "never more than 2 in a row"
        );
        assert_eq!(chaos.faults_injected(), 6);
        chaos.reset();
        assert_eq!(chaos.fault_for(StreamId::Elders), None);
    }

    #[test]
    fn position_round_trips() {
        assert_eq!(
            decode_position(&encode_position(1_700_000_000_123, 42)),
            Some((1_700_000_000_123, 42))
        );
        assert_eq!(decode_position("!!"), None);
    }

    #[test]
    fn sign_sorts_params_and_excludes_sign() {
        let a = vec![
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
            ("sign".to_string(), "x".to_string()),
        ];
        let expected = hex::encode_upper(Md5::digest(b"a=1&b=2&key=s"));
        assert_eq!(onecard_sign(&a, "s"), expected);
    }

    #[test]
    fn gbk_round_trips_names_with_middle_dot_and_full_width() {
        let v = json!({"xm": "阿卜杜·热合曼", "sfzh": "３６０１", "x": "张\u{3000}三"});
        let text = v.to_string();
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        let (back, _, bad) = encoding_rs::GBK.decode(&bytes);
        assert!(!bad);
        assert_eq!(back, text);
    }
}
