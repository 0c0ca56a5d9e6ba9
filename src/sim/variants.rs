//! A small configurable test server for the source stage: one generated record set served
//! with any of the pagination styles, auth styles and encodings the source stage supports,
//! plus chaos (failures, throttling, hangs, error pages, oversized or hostile bodies,
//! repeating cursors, cross-host redirects). Binds 127.0.0.1 on an ephemeral port.
//!
//! Every request path except `/oauth/token` serves the records, so a stream's `path` may be
//! anything. The server accepts every paging parameter at once (`page`+`size`/`rows`,
//! `offset`+`limit`, `cursor`, `_count`) in the query or a JSON POST body, and every response
//! carries every paging signal (`total`, `hasMore`, `nextCursor`, `next`, a `Link` header), so
//! the client's configured style decides which are used. Incremental windows:
//! `updated_since` (inclusive) and `updated_before` (exclusive), RFC 3339, or FHIR
//! `_lastUpdated=ge…`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use chrono::{DateTime, FixedOffset, TimeZone};
use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// How requests must authenticate.
#[derive(Debug, Clone, Default)]
pub enum SimAuth {
    #[default]
    None,
    Bearer(String),
    ApiKeyHeader {
        name: String,
        key: String,
    },
    ApiKeyQuery {
        name: String,
        key: String,
    },
    Basic {
        username: String,
        password: String,
    },
    /// Tokens from `POST /oauth/token`; each token stops working after `token_uses` uses.
    OAuth2 {
        client_id: String,
        client_secret: String,
        expires_in: u64,
        token_uses: Option<u64>,
    },
    /// The one-card gateway: `sign = UPPER(hex(MD5("{params}&key={secret}")))` over all query
    /// parameters but `sign`, sorted; parameters `appkey`, `timestamp`, `nonce`, `sign`.
    SignedMd5 {
        app_key: String,
        secret: String,
    },
    /// Signature in headers `appkey`, `timestamp`, `nonce`, `sign`:
    /// `sign = UPPER(hex(MD5("{app_key}{timestamp}{nonce}{params}{secret}")))`, where
    /// `{params}` are the query parameters, sorted, `k=v` joined by `&`.
    SignedHeaderMd5 {
        app_key: String,
        secret: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SimEncoding {
    #[default]
    Utf8,
    Utf8Bom,
    /// GBK bytes; `declare` puts `charset=GBK` in the Content-Type.
    Gbk {
        declare: bool,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// The first N requests get 503.
    pub fail_first: u64,
    /// The N requests after those get 429 with `retry_after`.
    pub throttle_next: u64,
    /// `Retry-After` value for 429s and random failures ("1", or an HTTP date).
    pub retry_after: Option<String>,
    /// Probability of a random 500/503/429 per request (seeded by `seed`).
    pub random_fail_rate: f64,
    pub seed: u64,
    /// 1-based request number that hangs for `hang_secs` before answering.
    pub hang_request: Option<u64>,
    pub hang_secs: u64,
    /// Answer every records request with an HTML page and status 200.
    pub html_error: bool,
    /// Pad every response with this many bytes.
    pub oversized_bytes: usize,
    /// Answer with JSON nested this deep instead of records (0 = off).
    pub nested_depth: usize,
    /// The next cursor never advances.
    pub repeat_cursor: bool,
    /// The next link always points at the second page.
    pub repeat_link: bool,
    /// Redirect every records request to `localhost` (another host name).
    pub redirect_cross_host: bool,
    /// Delay before answering, so concurrent requests overlap.
    pub delay_ms: u64,
}

#[derive(Debug, Clone)]
pub struct VariantConfig {
    pub records: usize,
    pub auth: SimAuth,
    pub encoding: SimEncoding,
    /// Serve HL7 FHIR R4 searchset Bundles (`entry[].resource`, `link`, `total`).
    pub fhir: bool,
    /// Largest page the server hands out whatever is asked.
    pub max_page_size: usize,
    pub chaos: Chaos,
    /// Serve these records instead of `records` generated ones (for pipeline tests that need
    /// person fields, or a record set that shrinks between runs).
    pub custom_records: Option<Vec<Value>>,
}

impl Default for VariantConfig {
    fn default() -> Self {
        VariantConfig {
            records: 25,
            auth: SimAuth::None,
            encoding: SimEncoding::Utf8,
            fhir: false,
            max_page_size: 1000,
            chaos: Chaos::default(),
            custom_records: None,
        }
    }
}

struct Shared {
    cfg: VariantConfig,
    records: Vec<Value>,
    base_url: String,
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    tokens_issued: AtomicU64,
    tokens: Mutex<HashMap<String, u64>>,
    nonces: Mutex<HashSet<String>>,
    rng: Mutex<ChaCha8Rng>,
}

/// A running variant server; stopped when dropped.
pub struct Variant {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Variant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const NAMES: [&str; 8] = [
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄丽",
];

/// The generated record `i`: `updated_at` one minute apart from 2024-01-01 00:00 +08:00.
pub fn record(i: usize) -> Value {
    json!({
        "id": format!("R{i:05}"),
        "seq": i,
        "name": NAMES[i % NAMES.len()],
        "community": "幸福社区",
        "updated_at": updated_at(i).to_rfc3339(),
    })
}

/// The `updated_at` of record `i`.
pub fn updated_at(i: usize) -> DateTime<FixedOffset> {
    let cst = FixedOffset::east_opt(8 * 3600)
        .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
    let start = cst
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(|| unreachable!());
    start + chrono::Duration::minutes(i as i64)
}

impl Variant {
    pub async fn start(cfg: VariantConfig) -> std::io::Result<Variant> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let records = match &cfg.custom_records {
            Some(r) => r.clone(),
            None => (0..cfg.records).map(record).collect(),
        };
        let seed = cfg.chaos.seed;
        let shared = Arc::new(Shared {
            cfg,
            records,
            base_url: base_url.clone(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashSet::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        });
        let app = Router::new()
            .route("/oauth/token", post(token))
            .fallback(items)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("variant server stopped: {e}");
            }
        });
        Ok(Variant {
            addr,
            base_url,
            shared,
            task,
        })
    }

    /// Record requests served so far (token requests not counted).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Most record requests in progress at once.
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// OAuth2 tokens issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// The full record set.
    pub fn records(&self) -> &[Value] {
        &self.shared.records
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let SimAuth::OAuth2 {
        client_id,
        client_secret,
        expires_in,
        token_uses,
    } = &s.cfg.auth
    else {
        return (StatusCode::NOT_FOUND, "no oauth").into_response();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id") == Some(client_id)
        && form.get("client_secret") == Some(client_secret);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = s.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let tok = format!("tok-{n}");
    if let Ok(mut t) = s.tokens.lock() {
        t.insert(tok.clone(), token_uses.unwrap_or(u64::MAX));
    }
    axum::Json(json!({"access_token": tok, "token_type": "Bearer", "expires_in": expires_in}))
        .into_response()
}

fn status(code: StatusCode, msg: &str) -> Response {
    (code, axum::Json(json!({"error": msg}))).into_response()
}

async fn items(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&s.in_flight);
    let c = &s.cfg.chaos;
    if c.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(c.delay_ms)).await;
    }
    if c.hang_request == Some(n) {
        tokio::time::sleep(Duration::from_secs(c.hang_secs)).await;
    }
    let retry_after = c.retry_after.clone().unwrap_or_else(|| "0".into());
    if n <= c.fail_first {
        return status(StatusCode::SERVICE_UNAVAILABLE, "starting up");
    }
    if n <= c.fail_first + c.throttle_next {
        let mut r = status(StatusCode::TOO_MANY_REQUESTS, "slow down");
        if let Ok(v) = header::HeaderValue::from_str(&retry_after) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if c.random_fail_rate > 0.0 {
        let pick = s
            .rng
            .lock()
            .ok()
            .map(|mut r| (r.random::<f64>(), r.random_range(0..3u8)));
        if let Some((p, which)) = pick {
            if p < c.random_fail_rate {
                let code = [
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::TOO_MANY_REQUESTS,
                ][which as usize];
                let mut r = status(code, "random failure");
                if let Ok(v) = header::HeaderValue::from_str(&retry_after) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
        }
    }

    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if let Err(msg) = check_auth(&s, &headers, &params) {
        return status(StatusCode::UNAUTHORIZED, msg);
    }
    if method == Method::POST && !body.is_empty() {
        match serde_json::from_slice::<Map<String, Value>>(&body) {
            Ok(m) => {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    params.push((k, v));
                }
            }
            Err(_) => return status(StatusCode::BAD_REQUEST, "body is not a JSON object"),
        }
    }
    if c.redirect_cross_host {
        let target = format!(
            "http://localhost:{}{}",
            s.base_url.rsplit(':').next().unwrap_or("80"),
            uri.path()
        );
        return (StatusCode::FOUND, [(header::LOCATION, target)]).into_response();
    }
    if c.html_error {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>系统维护中 Service maintenance</h1> call 13800138000</body></html>",
        )
            .into_response();
    }
    if c.nested_depth > 0 {
        let body = format!(
            "{}{}",
            "[".repeat(c.nested_depth),
            "]".repeat(c.nested_depth)
        );
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let since = get("updated_since")
        .or_else(|| get("_lastUpdated").map(|v| v.trim_start_matches("ge").to_string()));
    let before = get("updated_before");
    let parse = |v: Option<String>| -> Result<Option<DateTime<FixedOffset>>, ()> {
        match v {
            None => Ok(None),
            Some(v) => DateTime::parse_from_rfc3339(&v).map(Some).map_err(|_| ()),
        }
    };
    let (Ok(since), Ok(before)) = (parse(since), parse(before)) else {
        return status(StatusCode::BAD_REQUEST, "bad time bound");
    };
    let selected: Vec<&Value> = s
        .records
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let t = updated_at(*i);
            since.is_none_or(|l| t >= l) && before.is_none_or(|u| t < u)
        })
        .map(|(_, r)| r)
        .collect();
    let total = selected.len();
    let num = |k: &str| get(k).and_then(|v| v.parse::<usize>().ok());
    let size = num("size")
        .or_else(|| num("rows"))
        .or_else(|| num("limit"))
        .or_else(|| num("_count"))
        .unwrap_or(10)
        .clamp(1, s.cfg.max_page_size.max(1));
    let offset = if let Some(o) = num("offset") {
        o
    } else if let Some(p) = num("page") {
        p.saturating_sub(1) * size
    } else if let Some(cur) = get("cursor") {
        match cur.strip_prefix('c').and_then(|x| x.parse::<usize>().ok()) {
            Some(o) => o,
            None => return status(StatusCode::BAD_REQUEST, "bad cursor"),
        }
    } else {
        0
    };
    let page: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(size)
        .map(|v| (*v).clone())
        .collect();
    let next_offset = offset + page.len();
    let more = next_offset < total;
    let next_cursor = if c.repeat_cursor {
        Some(format!("c{size}"))
    } else if more {
        Some(format!("c{next_offset}"))
    } else {
        None
    };
    let link_offset = if c.repeat_link { size } else { next_offset };
    let next_link = (more || c.repeat_link).then(|| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            if !matches!(
                k.as_str(),
                "sign"
                    | "appkey"
                    | "timestamp"
                    | "nonce"
                    | "offset"
                    | "page"
                    | "cursor"
                    | "limit"
                    | "size"
                    | "rows"
                    | "_count"
            ) && !is_key_param(&s.cfg.auth, k)
            {
                q.append_pair(k, v);
            }
        }
        q.append_pair("offset", &link_offset.to_string());
        q.append_pair("limit", &size.to_string());
        format!("{}{}?{}", s.base_url, uri.path(), q.finish())
    });
    let mut doc = if s.cfg.fhir {
        let mut links = vec![json!({"relation": "self", "url": format!("{}{}", s.base_url, uri)})];
        if let Some(l) = &next_link {
            links.push(json!({"relation": "next", "url": l}));
        }
        let entry: Vec<Value> = page
            .into_iter()
            .map(|mut r| {
                let id = r.get("id").cloned().unwrap_or(Value::Null);
                if let Some(o) = r.as_object_mut() {
                    o.insert("resourceType".into(), json!("Patient"));
                }
                json!({"fullUrl": format!("{}/fhir/Patient/{}", s.base_url, id.as_str().unwrap_or("")), "resource": r})
            })
            .collect();
        let mut d =
            json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links});
        if !entry.is_empty() {
            d["entry"] = Value::Array(entry);
        }
        d
    } else {
        json!({"items": page, "total": total, "hasMore": more, "nextCursor": next_cursor, "next": next_link})
    };
    if c.oversized_bytes > 0 {
        doc["padding"] = Value::String("x".repeat(c.oversized_bytes));
    }
    let text = doc.to_string();
    let (bytes, ct): (Vec<u8>, &str) = match s.cfg.encoding {
        SimEncoding::Utf8 => (text.into_bytes(), "application/json; charset=utf-8"),
        SimEncoding::Utf8Bom => {
            let mut b = b"\xEF\xBB\xBF".to_vec();
            b.extend_from_slice(text.as_bytes());
            (b, "application/json")
        }
        SimEncoding::Gbk { declare } => {
            let (b, _, _) = encoding_rs::GBK.encode(&text);
            (
                b.into_owned(),
                if declare {
                    "application/json;charset=GBK"
                } else {
                    "application/json"
                },
            )
        }
    };
    let mut resp = ([(header::CONTENT_TYPE, ct)], bytes).into_response();
    if let Some(l) = &next_link {
        if let Ok(v) = header::HeaderValue::from_str(&format!("<{l}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

fn is_key_param(auth: &SimAuth, k: &str) -> bool {
    matches!(auth, SimAuth::ApiKeyQuery { name, .. } if name == k)
}

fn check_auth(
    s: &Shared,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), &'static str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let query = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match &s.cfg.auth {
        SimAuth::None => Ok(()),
        SimAuth::Bearer(t) => (header("authorization") == Some(format!("Bearer {t}")))
            .then_some(())
            .ok_or("bad bearer token"),
        SimAuth::ApiKeyHeader { name, key } => (header(name).as_ref() == Some(key))
            .then_some(())
            .ok_or("bad api key"),
        SimAuth::ApiKeyQuery { name, key } => (query(name).as_ref() == Some(key))
            .then_some(())
            .ok_or("bad api key"),
        SimAuth::Basic { username, password } => {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            (header("authorization") == Some(format!("Basic {expected}")))
                .then_some(())
                .ok_or("bad basic credentials")
        }
        SimAuth::OAuth2 { .. } => {
            let tok = header("authorization")
                .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
                .ok_or("no bearer token")?;
            let mut tokens = s.tokens.lock().map_err(|_| "lock")?;
            match tokens.get_mut(&tok) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    Ok(())
                }
                _ => Err("token expired or unknown"),
            }
        }
        SimAuth::SignedMd5 { app_key, secret } => {
            if query("appkey").as_ref() != Some(app_key) {
                return Err("unknown appkey");
            }
            let ts: i64 = query("timestamp")
                .and_then(|t| t.parse().ok())
                .ok_or("no timestamp")?;
            if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
                return Err("timestamp out of window");
            }
            let nonce = query("nonce").ok_or("no nonce")?;
            let sign = query("sign").ok_or("no sign")?;
            let mut rest: Vec<&(String, String)> =
                params.iter().filter(|(k, _)| k != "sign").collect();
            rest.sort();
            let joined = rest
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let expected = hex::encode(Md5::digest(format!("{joined}&key={secret}").as_bytes()))
                .to_ascii_uppercase();
            if sign != expected {
                return Err("bad signature");
            }
            let mut seen = s.nonces.lock().map_err(|_| "lock")?;
            if !seen.insert(nonce) {
                return Err("nonce reused");
            }
            Ok(())
        }
        SimAuth::SignedHeaderMd5 { app_key, secret } => {
            if header("appkey").as_ref() != Some(app_key) {
                return Err("unknown appkey");
            }
            let ts = header("timestamp").ok_or("no timestamp")?;
            let nonce = header("nonce").ok_or("no nonce")?;
            let sign = header("sign").ok_or("no sign")?;
            let mut sorted: Vec<&(String, String)> = params.iter().collect();
            sorted.sort();
            let joined = sorted
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let expected = hex::encode(Md5::digest(
                format!("{app_key}{ts}{nonce}{joined}{secret}").as_bytes(),
            ))
            .to_ascii_uppercase();
            if sign != expected {
                return Err("bad signature");
            }
            Ok(())
        }
    }
}
