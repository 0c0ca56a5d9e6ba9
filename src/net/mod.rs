//! The one HTTP layer of the department systems (`source`) and the platform (`push`): the
//! options both take (`[sources.http]`, `[platform.http]`: [`HttpConfig`]), the rule that plain
//! http goes to loopback only unless allowed ([`check_scheme`]), the client with its
//! timeouts and TLS trust ([`client`]: a configured CA bundle *replaces* the public roots), body
//! reads with a size cap ([`read_capped`]), which statuses are worth another try
//! ([`retryable`]: 408, 429, 5xx) and the retry loop around them ([`Retries`], backoff with
//! full jitter or `Retry-After`, a 401 under OAuth2 answered with one fresh token outside the
//! budget), and the OAuth2 client-credentials token cache ([`OAuth2`]).
//!
//! What a response *means* stays with its caller: a source pages, classifies vendor bodies and
//! paces itself (rate limit, concurrency); the platform has its batch contract. Errors here are
//! small values that each caller words with its own config keys.

mod oauth;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use url::Url;

pub use oauth::{parse_token_response, OAuth2, TokenError, MAX_TOKEN_LIFETIME};

/// Timeouts, retries, rate and size limits, and TLS trust of one HTTP peer: a source's
/// `[sources.http]` or the platform's `[platform.http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub connect_timeout_secs: f64,
    pub timeout_secs: f64,
    /// Retries after the first attempt, on timeouts, broken connections, 408, 429 and 5xx.
    pub retries: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Requests per second across the source (0 = unlimited).
    pub rate_limit_rps: f64,
    /// Requests in flight at once across the source.
    pub concurrency: usize,
    /// A response larger than this fails the page (or the push).
    pub max_response_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Most records accepted from one page.
    pub max_records_per_page: usize,
    /// Follow redirects only to the same host unless this is true.
    pub follow_cross_host_redirects: bool,
    /// Plain http to a non-loopback address is refused unless this is true.
    pub allow_insecure_http: bool,
    /// PEM bundle of the CA certificates to trust *instead of* the public roots (a private
    /// intranet CA). May start with `${CREDENTIALS_DIRECTORY}`; relative to the config file.
    pub ca_file: Option<String>,
    /// Extra headers sent with every request.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Guard against endless paging: a fetch with more pages than this fails.
    pub max_pages: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_secs: 5.0,
            timeout_secs: 30.0,
            retries: 4,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            rate_limit_rps: 0.0,
            concurrency: 2,
            max_response_bytes: 32 * 1024 * 1024,
            max_json_depth: 64,
            max_records_per_page: 100_000,
            follow_cross_host_redirects: false,
            allow_insecure_http: false,
            ca_file: None,
            headers: Default::default(),
            max_pages: 100_000,
        }
    }
}

/// A URL's host is this machine (127.0.0.0/8, ::1, `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// A host name or address (IPv6 with or without brackets) is this machine: the one judgement
/// of "plain text stays on this machine" for HTTP, database and NATS connections alike.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeError {
    /// Plain http to a host that is not this machine, not allowed.
    PlainHttp { host: String },
    /// Neither http nor https.
    NotHttp(String),
}

impl SchemeError {
    /// The message, for the URL under config key `what` (`base_url`, `platform.url`,
    /// `auth.token_url`) whose HTTP options live under `http_key` (`http`, `platform.http`).
    pub fn message(&self, what: &str, http_key: &str) -> String {
        match self {
            SchemeError::PlainHttp { host } => format!(
                "{what}: refusing plain http to non-loopback host {host}: credentials and personal data would travel unencrypted; use https (with {http_key}.ca_file for a private CA), or set {http_key}.allow_insecure_http = true if the link is protected otherwise"
            ),
            SchemeError::NotHttp(scheme) => {
                format!("{what}: scheme {scheme:?} is not http or https")
            }
        }
    }
}

/// The insecure-http rule, the same for every URL we send credentials or personal data to:
/// https always; plain http to loopback; plain http elsewhere only with the peer's
/// `allow_insecure_http` (warned about each time, naming `who`).
pub fn check_scheme(url: &Url, h: &HttpConfig, who: &str) -> Result<(), SchemeError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" if h.allow_insecure_http => {
            tracing::warn!(
                to = who,
                host = url.host_str().unwrap_or(""),
                "plain http to a non-loopback host is allowed by allow_insecure_http: credentials and personal data travel unencrypted"
            );
            Ok(())
        }
        "http" => Err(SchemeError::PlainHttp {
            host: url.host_str().unwrap_or("").to_string(),
        }),
        other => Err(SchemeError::NotHttp(other.to_string())),
    }
}

/// What a client is built from besides its [`HttpConfig`].
pub struct ClientSpec<'a> {
    /// Config key of the options, for messages (`http`, `platform.http`).
    pub http_key: &'a str,
    /// The config file's directory (relative paths, `${CREDENTIALS_DIRECTORY}`'s fallback).
    pub dir: &'a Path,
    pub redirect: reqwest::redirect::Policy,
    pub headers: reqwest::header::HeaderMap,
    /// A client certificate for mutual TLS ([`identity`]).
    pub identity: Option<reqwest::Identity>,
}

/// Builds a client: rustls with certificate checks always on, the configured timeouts, and
/// the trust of [`roots`]: the public roots, or only the CA bundle of `ca_file`.
pub fn client(h: &HttpConfig, spec: ClientSpec<'_>) -> Result<reqwest::Client, String> {
    let key = spec.http_key;
    let secs = |v: f64, name: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("{key}.{name} must be a positive number of seconds"))
        }
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(secs(h.connect_timeout_secs, "connect_timeout_secs")?)
        .timeout(secs(h.timeout_secs, "timeout_secs")?)
        .redirect(spec.redirect)
        .default_headers(spec.headers)
        .user_agent(concat!("community-sync/", env!("CARGO_PKG_VERSION")));
    if let Roots::Only(certs) = roots(h, key, spec.dir)? {
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    if let Some(identity) = spec.identity {
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Whom a client trusts.
pub enum Roots {
    /// The public web PKI (webpki roots).
    Public,
    /// Only these CA certificates (`ca_file`): a private CA replaces the public roots, so a
    /// certificate some public CA issued for the name is not accepted.
    Only(Vec<reqwest::Certificate>),
}

/// The trust `h.ca_file` asks for: its certificates only, or the public roots without one.
pub fn roots(h: &HttpConfig, http_key: &str, dir: &Path) -> Result<Roots, String> {
    let Some(ca) = &h.ca_file else {
        return Ok(Roots::Public);
    };
    let path = crate::source::secret::expand_path(ca, dir)
        .map_err(|p| format!("{http_key}.ca_file: {}", p.0))?;
    let pem = std::fs::read(&path)
        .map_err(|e| format!("cannot read {http_key}.ca_file {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{http_key}.ca_file {} is not a PEM certificate bundle: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{http_key}.ca_file {} holds no certificate",
            path.display()
        ));
    }
    Ok(Roots::Only(certs))
}

/// A client certificate and its key for mutual TLS (`platform.client_cert`,
/// `platform.client_key`; the key file follows `crypto::check_file_mode`).
pub fn identity(cert: &str, key: &str, dir: &Path) -> Result<reqwest::Identity, String> {
    let resolve = |file: &str| crate::source::secret::expand_path(file, dir).map_err(|p| p.0);
    let cert_path = resolve(cert)?;
    let key_path = resolve(key)?;
    if let Err(p) = crate::crypto::check_file_mode(&key_path, crate::crypto::FileKind::Secret) {
        return Err(format!(
            "platform.client_key {} is {} (mode {:04o}); run `chmod 600 {}`",
            key_path.display(),
            p.why,
            p.mode,
            key_path.display()
        ));
    }
    let mut pem = std::fs::read(&cert_path).map_err(|e| {
        format!(
            "cannot read platform.client_cert {}: {e}",
            cert_path.display()
        )
    })?;
    let key_pem = zeroize::Zeroizing::new(std::fs::read(&key_path).map_err(|e| {
        format!(
            "cannot read platform.client_key {}: {e}",
            key_path.display()
        )
    })?);
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
        format!(
            "platform.client_cert {} / client_key {}: not a PEM certificate and private key: {e}",
            cert_path.display(),
            key_path.display()
        )
    });
    zeroize::Zeroize::zeroize(&mut pem);
    identity
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Longer than the limit (announced or counted): nothing more was read.
    TooLarge,
    /// The connection broke off or timed out ([`describe`]d).
    Broken(String),
}

/// Reads a body, stopping as soon as it is known to exceed `limit` bytes.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ReadError::Broken(describe(&e))),
        }
    }
}

/// Worth another try: 408 (the server timed the request out), 429 and every 5xx.
pub fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// What one attempt came to, for [`Retries`].
pub enum Step<T, E> {
    Done(T),
    Fail(E),
    /// Worth another try (after `after`, a `Retry-After`, else the backoff) while the retry
    /// budget lasts; `error` is the outcome once it is spent.
    Retry {
        error: E,
        after: Option<Duration>,
    },
    /// The credentials were refreshed (a 401 under OAuth2): tried again at once, outside the
    /// budget, once; a second time ends with `E`.
    Reauth(E),
}

/// The retry loop's state, for sources and the platform alike:
///
/// ```ignore
/// let mut retries = Retries::new(&http);
/// loop {
///     let step = try_once(retries.count()).await;
///     if let Some(outcome) = retries.after(step, |n, error, delay| log(n, error, delay)).await {
///         return (outcome, retries.count());
///     }
/// }
/// ```
///
/// [`Retries::after`] ends the loop on success, failure or a spent budget (`retries` retries
/// after the first try), and otherwise sleeps [`retry_delay`] first (telling `retried` the
/// retry number, the error and the delay), or, once, not at all after a fresh token.
pub struct Retries<'h> {
    h: &'h HttpConfig,
    n: u32,
    reauthed: bool,
}

impl<'h> Retries<'h> {
    pub fn new(h: &'h HttpConfig) -> Retries<'h> {
        Retries {
            h,
            n: 0,
            reauthed: false,
        }
    }

    /// Retries made so far.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// The outcome, or `None` to try again (after the wait).
    pub async fn after<T, E>(
        &mut self,
        step: Step<T, E>,
        retried: impl FnOnce(u32, &E, Duration),
    ) -> Option<Result<T, E>> {
        match step {
            Step::Done(t) => Some(Ok(t)),
            Step::Fail(e) => Some(Err(e)),
            Step::Reauth(e) if self.reauthed => Some(Err(e)),
            Step::Reauth(_) => {
                self.reauthed = true;
                None
            }
            Step::Retry { error, .. } if self.n >= self.h.retries => Some(Err(error)),
            Step::Retry { error, after } => {
                let delay = retry_delay(self.n, after, self.h, &mut rand::rng());
                retried(self.n, &error, delay);
                drop(error);
                tokio::time::sleep(delay).await;
                self.n += 1;
                None
            }
        }
    }
}

/// A response's `Retry-After`, if it gives one we can read.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// `Retry-After` as seconds or an HTTP date (relative to `now`; past dates mean no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Delay before retry number `attempt + 1`: `Retry-After` when given, else full jitter
/// (uniform in `0..=min(backoff_max, initial * 2^attempt)`); always at most backoff_max_ms.
pub fn retry_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    h: &HttpConfig,
    rng: &mut impl Rng,
) -> Duration {
    let max = Duration::from_millis(h.backoff_max_ms);
    if let Some(ra) = retry_after {
        return ra.min(max);
    }
    let ceiling = h
        .backoff_initial_ms
        .saturating_mul(1u64 << attempt.min(32))
        .min(h.backoff_max_ms);
    Duration::from_millis(rng.random_range(0..=ceiling))
}

/// `host:port` of a URL (the port the scheme implies when none is written), for messages:
/// a refused connection says where it was refused.
pub fn host_port(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => "?".to_string(),
    };
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// A reqwest error without its URL (the query may carry secrets): what kind of failure,
/// then the innermost cause (`connection failed: Connection refused (os error 111)`).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    let detail = crate::mask::scrub_text(&detail);
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
