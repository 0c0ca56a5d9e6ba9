//! The HTTP side of a source: one reqwest client (TLS roots, timeouts, redirect policy),
//! a per-source rate limiter and concurrency limit, auth, retries with backoff, and body
//! reading with a size cap.
//!
//! Retries are a small explicit loop rather than a retry crate: each attempt's delay may come
//! from the response's `Retry-After`, a 401 under OAuth2 refreshes the token once outside the
//! retry budget, and every outcome maps to a specific error; written out it stays readable.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LINK, RETRY_AFTER,
};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use url::Url;

use super::auth::{Auth, CachedToken};
use super::classify::{Class, Classifier};
use super::config::{ApiKeyLocation, HttpConfig, Method};
use super::decode::{self, DecodeProblem};
use super::pager::{Pager, Req};
use super::secret::Secret;
use super::sign::{self, SignInput};
use super::{Page, SourceError};
use crate::config::{SourceConfig, StreamConfig};

pub struct Http {
    pub cfg: SourceConfig,
    pub base: Url,
    client: reqwest::Client,
    auth: Auth,
    limiter: Option<DefaultDirectRateLimiter>,
    permits: Arc<Semaphore>,
}

/// A response read to the end.
struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// What a check of a 2xx body decided.
enum Body<T> {
    Ok(T),
    /// Worth another try (a gateway page, a busy vendor); the error if none is left.
    Retry(SourceError),
    Fail(SourceError),
}

/// A 2xx body that is a page.
struct Accepted {
    doc: serde_json::Value,
    /// The vendor said "no data" (or a declared success carried no record container).
    empty: bool,
    /// The `Link` response header.
    link: Option<String>,
    bytes: usize,
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth another try: timeout or connection problem.
    Transient { timeout: bool, message: String },
    /// Not worth retrying.
    Fatal(SourceError),
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl Http {
    pub fn new(source: &SourceConfig, dir: &Path) -> Result<Http, SourceError> {
        let name = source.name.clone();
        let config_err = |message: String| SourceError::Config {
            source_name: name.clone(),
            message,
        };
        let mut base = Url::parse(&source.base_url)
            .map_err(|e| config_err(format!("base_url {:?} is not a URL: {e}", source.base_url)))?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let h = &source.http;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" if h.allow_insecure_http => {
                tracing::warn!(
                    source = %name,
                    host = base.host_str().unwrap_or(""),
                    "plain http to a non-loopback host is allowed by http.allow_insecure_http: credentials and personal data travel unencrypted"
                );
            }
            "http" => {
                return Err(SourceError::InsecureHttp {
                    source_name: name.clone(),
                    host: base.host_str().unwrap_or("").to_string(),
                })
            }
            other => {
                return Err(config_err(format!(
                    "base_url scheme {other:?} is not http or https"
                )))
            }
        }
        let auth = Auth::new(&name, &source.auth, &base, dir)?;

        let mut headers = HeaderMap::new();
        for (k, v) in &h.headers {
            let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                config_err(format!("http.headers: {k:?} is not a valid header name"))
            })?;
            let hv = HeaderValue::from_str(v).map_err(|_| {
                config_err(format!(
                    "http.headers.{k}: value has characters not allowed in a header"
                ))
            })?;
            headers.insert(hn, hv);
        }
        if !headers.contains_key(reqwest::header::ACCEPT) {
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            );
        }
        let cross = h.follow_cross_host_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            let (same_host, downgrade) = match attempt.previous().first() {
                Some(first) => (
                    first.host_str() == attempt.url().host_str(),
                    first.scheme() == "https" && attempt.url().scheme() != "https",
                ),
                None => (false, false),
            };
            if downgrade || (!same_host && !cross) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let secs = |s: f64, key: &str| {
            if s.is_finite() && s > 0.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(config_err(format!(
                    "http.{key} must be a positive number of seconds"
                )))
            }
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(secs(h.connect_timeout_secs, "connect_timeout_secs")?)
            .timeout(secs(h.timeout_secs, "timeout_secs")?)
            .redirect(policy)
            .default_headers(headers)
            .user_agent(concat!("community-sync/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &h.ca_file {
            let path = if Path::new(ca).is_relative() {
                dir.join(ca)
            } else {
                Path::new(ca).to_path_buf()
            };
            let pem = std::fs::read(&path).map_err(|e| {
                config_err(format!("cannot read http.ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                config_err(format!(
                    "http.ca_file {} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(config_err(format!(
                    "http.ca_file {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))?;
        let limiter = if h.rate_limit_rps > 0.0 && h.rate_limit_rps.is_finite() {
            Quota::with_period(Duration::from_secs_f64(1.0 / h.rate_limit_rps))
                .map(|q| RateLimiter::direct(q.allow_burst(NonZeroU32::MIN)))
        } else {
            None
        };
        Ok(Http {
            cfg: source.clone(),
            base,
            client,
            auth,
            limiter,
            permits: Arc::new(Semaphore::new(h.concurrency.max(1))),
        })
    }

    /// Fetches, decodes, classifies and cuts out one page, and moves the pager on. A body
    /// that is not JSON, or that the classifier calls busy, is retried like a 5xx (sharing the
    /// request's retry budget); a body it calls fatal fails at once.
    pub async fn fetch_page(
        &self,
        stream: &StreamConfig,
        classifier: &Classifier,
        pager: &mut Pager,
        req: Req,
        number: u64,
        retries: &mut u64,
    ) -> Result<Page, SourceError> {
        let path = req.url.path().to_string();
        let body = self
            .execute(&stream.name, &req, retries, classifier, |resp, attempts| {
                self.accept_body(stream, classifier, &path, resp, attempts)
            })
            .await?;
        let h = &self.cfg.http;
        let signals = pager.signals(&body.doc, body.link.as_deref());
        let total = signals.total;
        let records = if body.empty {
            Vec::new()
        } else {
            decode::select_records(
                body.doc,
                &stream.records,
                stream.record_pointer.as_deref(),
                h.max_records_per_page,
            )
            .map_err(|message| SourceError::Shape {
                source_name: self.cfg.name.clone(),
                stream: stream.name.clone(),
                path: path.clone(),
                message,
            })?
        };
        pager.advance(&req, signals, records.len() as u64)?;
        tracing::debug!(
            source = %self.cfg.name,
            stream = %stream.name,
            page = number,
            records = records.len(),
            bytes = body.bytes,
            path = %path,
            "fetched page"
        );
        Ok(Page {
            records,
            number,
            total,
            url_path: path,
            bytes: body.bytes,
            cursor: None,
            locations: Vec::new(),
        })
    }

    /// Reads a 2xx body: decodes it, classifies it (see [`super::classify`]) and checks that
    /// the records' container is there.
    fn accept_body(
        &self,
        stream: &StreamConfig,
        classifier: &Classifier,
        path: &str,
        resp: &Fetched,
        attempts: u32,
    ) -> Body<Accepted> {
        let ct = resp.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let h = &self.cfg.http;
        let doc = match decode::parse_body(&resp.body, self.cfg.encoding, ct, h.max_json_depth) {
            Ok(doc) => doc,
            Err(p @ DecodeProblem::NotJson { .. }) => {
                return Body::Retry(self.decode_error(&stream.name, path, p, attempts))
            }
            Err(p) => return Body::Fail(self.decode_error(&stream.name, path, p, attempts)),
        };
        let refused = |what: String| SourceError::Refused {
            source_name: self.cfg.name.clone(),
            stream: stream.name.clone(),
            path: path.to_string(),
            attempts,
            said: classifier
                .vendor_says(&doc)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            what,
        };
        let link = resp
            .headers
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let empty = match classifier.classify(&doc) {
            Class::Empty => true,
            Class::Busy => {
                return Body::Retry(refused(format!(
                    "it kept answering that it is busy (response.retry); try later or raise http.retries ({})",
                    h.retries
                )))
            }
            Class::Fatal => {
                return Body::Fail(refused(format!(
                    "the body does not satisfy response.success ({}) and is not a busy answer (response.retry); check the credentials and the request, or add the code to response.retry if the system means \"try again\"",
                    classifier.success_text().unwrap_or_default()
                )))
            }
            Class::Page => match decode::missing_container(&doc, &stream.records) {
                // A declared success with no container: the system's way of saying "none".
                Some(_) if classifier.declares_success() => true,
                Some(container) => {
                    return Body::Retry(refused(format!(
                        "the body has no {container:?} (where records = {:?} lives), so it is not a page of records; if the system reports errors this way, declare [sources.response] (docs/sources.md)",
                        stream.records
                    )))
                }
                None => false,
            },
        };
        Body::Ok(Accepted {
            doc,
            empty,
            link,
            bytes: resp.body.len(),
        })
    }

    fn decode_error(
        &self,
        stream: &str,
        path: &str,
        p: DecodeProblem,
        attempts: u32,
    ) -> SourceError {
        let (source_name, stream, path) =
            (self.cfg.name.clone(), stream.to_string(), path.to_string());
        match p {
            DecodeProblem::UnknownCharset(charset) => SourceError::Charset {
                source_name,
                stream,
                path,
                charset,
            },
            DecodeProblem::Malformed(encoding) => SourceError::Malformed {
                source_name,
                stream,
                path,
                encoding: encoding.to_string(),
            },
            DecodeProblem::TooDeep(max) => SourceError::TooDeep {
                source_name,
                stream,
                path,
                max,
            },
            DecodeProblem::NotJson { snippet, detail } => SourceError::NotJson {
                source_name,
                stream,
                path,
                snippet,
                detail,
                attempts,
            },
        }
    }

    /// Sends a request with rate limiting, the concurrency limit, auth and retries, and hands
    /// a 2xx response to `accept`, which may ask for a retry (sharing the retry budget) or
    /// fail. Other statuses are retried (5xx, 429) or fail, naming what the vendor said.
    async fn execute<T>(
        &self,
        stream: &str,
        req: &Req,
        retries: &mut u64,
        classifier: &Classifier,
        mut accept: impl FnMut(&Fetched, u32) -> Body<T>,
    ) -> Result<T, SourceError> {
        let h = &self.cfg.http;
        let path = req.url.path().to_string();
        let host = host_port(&req.url);
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            if let Some(l) = &self.limiter {
                l.until_ready().await;
            }
            let (outcome, token) = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| SourceError::Other {
                        source_name: self.cfg.name.clone(),
                        message: "the client was shut down".into(),
                    })?;
                // Built under the permit so a signature's timestamp is fresh when sent.
                let (builder, token) = self.build(req).await?;
                (self.send_once(stream, &path, builder).await, token)
            };
            let retry_after;
            match outcome {
                Ok(resp) if resp.status.is_success() => match accept(&resp, attempt + 1) {
                    Body::Ok(t) => return Ok(t),
                    Body::Fail(e) => return Err(e),
                    Body::Retry(e) if attempt >= h.retries => return Err(e),
                    Body::Retry(e) => {
                        retry_after = None;
                        tracing::debug!(source = %self.cfg.name, stream, path = %path, attempt, "retrying after an unusable body: {e}");
                    }
                },
                Ok(resp) => {
                    let status = resp.status;
                    if status == StatusCode::UNAUTHORIZED && !refreshed {
                        if let (Auth::OAuth2 { cache, .. }, Some(used)) = (&self.auth, token) {
                            refreshed = true;
                            let mut guard = cache.lock().await;
                            if guard.as_ref().is_some_and(|c| c.token == used) {
                                *guard = None;
                            }
                            continue;
                        }
                    }
                    retry_after =
                        self.error_status(stream, &path, req, &resp, attempt, classifier)?;
                    tracing::debug!(source = %self.cfg.name, stream, path = %path, status = status.as_u16(), attempt, "retrying after HTTP error");
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Transient { timeout, message }) => {
                    if attempt >= h.retries {
                        return Err(if timeout {
                            SourceError::Timeout {
                                source_name: self.cfg.name.clone(),
                                stream: stream.to_string(),
                                host,
                                path,
                                secs: h.timeout_secs,
                                attempts: attempt + 1,
                            }
                        } else {
                            SourceError::Connect {
                                source_name: self.cfg.name.clone(),
                                stream: stream.to_string(),
                                host,
                                path,
                                message,
                                attempts: attempt + 1,
                            }
                        });
                    }
                    retry_after = None;
                    tracing::debug!(source = %self.cfg.name, stream, path = %path, attempt, timeout, "retrying after a network error");
                }
            }
            let delay = retry_delay(attempt, retry_after, h, &mut rand::rng());
            attempt += 1;
            *retries += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// A response that is neither a success nor an OAuth2 token to refresh: the error to fail
    /// with, or (5xx, 429 with retries left) the `Retry-After` to wait before trying again.
    fn error_status(
        &self,
        stream: &str,
        path: &str,
        req: &Req,
        resp: &Fetched,
        attempt: u32,
        classifier: &Classifier,
    ) -> Result<Option<Duration>, SourceError> {
        let (h, status, path) = (&self.cfg.http, resp.status, path.to_string());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(SourceError::Auth {
                source_name: self.cfg.name.clone(),
                stream: stream.to_string(),
                path,
                status: status.as_u16(),
            });
        }
        if status.is_redirection() {
            let target = resp
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| req.url.join(l).ok())
                .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                .unwrap_or_else(|| "unknown".into());
            return Err(SourceError::CrossHostRedirect {
                source_name: self.cfg.name.clone(),
                stream: stream.to_string(),
                path,
                target_host: target,
            });
        }
        let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        if !retryable || attempt >= h.retries {
            let said = self.said(resp, classifier);
            let what = if retryable {
                format!("the system kept failing; it may be overloaded or down. Try later or raise http.retries ({})", h.retries)
            } else {
                "the system rejected the request; check the stream's path, query and body"
                    .to_string()
            } + &said;
            return Err(SourceError::Status {
                source_name: self.cfg.name.clone(),
                stream: stream.to_string(),
                path,
                status: status.as_u16(),
                attempts: attempt + 1,
                what,
            });
        }
        Ok(resp
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now())))
    }

    /// What an error response said: the vendor's code and message when the body is JSON and
    /// holds them (masked), else its first bytes.
    fn said(&self, resp: &Fetched, classifier: &Classifier) -> String {
        if resp.body.is_empty() {
            return String::new();
        }
        let ct = resp.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let vendor = decode::parse_body(
            &resp.body,
            self.cfg.encoding,
            ct,
            self.cfg.http.max_json_depth,
        )
        .ok()
        .and_then(|doc| classifier.vendor_says(&doc));
        match vendor {
            Some(v) => format!("; the system said: {v}"),
            None => format!(
                "; it answered {:?}",
                decode::snippet(&String::from_utf8_lossy(&resp.body))
            ),
        }
    }

    /// Builds the request with auth applied. Returns the OAuth2 token used, if any.
    async fn build(
        &self,
        req: &Req,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), SourceError> {
        let mut query = req.query.clone();
        let body = match &req.body {
            Some(map) => Some(serde_json::to_string(map).map_err(|e| SourceError::Other {
                source_name: self.cfg.name.clone(),
                message: format!("cannot serialise the request body: {e}"),
            })?),
            None => None,
        };
        let mut headers: Vec<(HeaderName, String)> = Vec::new();
        let mut basic = None;
        let mut token_used = None;
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => headers.push((AUTHORIZATION, format!("Bearer {}", t.expose()))),
            Auth::ApiKeyHeader(name, key) => headers.push((name.clone(), key.expose().to_string())),
            Auth::ApiKeyQuery(name, key) => {
                query.retain(|(k, _)| k != name);
                query.push((name.clone(), key.expose().to_string()));
            }
            Auth::Basic(user, pass) => basic = Some((user.clone(), pass.clone())),
            Auth::OAuth2 { .. } => {
                let t = self.oauth_token().await?;
                headers.push((AUTHORIZATION, format!("Bearer {}", t.expose())));
                token_used = Some(t);
            }
            Auth::Signed {
                app_key,
                secret,
                algorithm,
                template,
                location,
                names,
                uppercase,
            } => {
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let nonce = super::auth::nonce();
                let sig_params = [
                    (names.app_key.clone(), app_key.clone()),
                    (names.timestamp.clone(), timestamp.clone()),
                    (names.nonce.clone(), nonce.clone()),
                ];
                query.retain(|(k, _)| k != &names.sign && !sig_params.iter().any(|(n, _)| n == k));
                if *location == ApiKeyLocation::Query {
                    query.extend(sig_params.iter().cloned());
                }
                let input = SignInput {
                    app_key,
                    timestamp: &timestamp,
                    nonce: &nonce,
                    params: &query,
                    body: body.as_deref().unwrap_or(""),
                    secret: secret.expose(),
                };
                let signature = sign::sign(*algorithm, template, &input, *uppercase);
                match location {
                    ApiKeyLocation::Query => query.push((names.sign.clone(), signature)),
                    ApiKeyLocation::Header => {
                        for (n, v) in sig_params
                            .into_iter()
                            .chain([(names.sign.clone(), signature)])
                        {
                            let hn = HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                                SourceError::Config {
                                    source_name: self.cfg.name.clone(),
                                    message: format!(
                                        "auth.param_names: {n:?} is not a valid header name"
                                    ),
                                }
                            })?;
                            headers.push((hn, v));
                        }
                    }
                }
            }
        }
        let mut url = req.url.clone();
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter());
        }
        let mut b = match req.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
        };
        for (n, v) in headers {
            let hv = HeaderValue::from_str(&v).map_err(|_| SourceError::Config {
                source_name: self.cfg.name.clone(),
                message: format!("header {n} would carry characters not allowed in HTTP headers"),
            })?;
            b = b.header(n, hv);
        }
        if let Some((u, p)) = basic {
            b = b.basic_auth(u, Some(p.expose()));
        }
        if let Some(body) = body {
            b = b.header(CONTENT_TYPE, "application/json").body(body);
        }
        Ok((b, token_used))
    }

    /// The cached OAuth2 token, fetching a new one when absent or near expiry.
    async fn oauth_token(&self) -> Result<Secret, SourceError> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            cache,
            fetched,
        } = &self.auth
        else {
            return Err(SourceError::Other {
                source_name: self.cfg.name.clone(),
                message: "no OAuth2 configured".into(),
            });
        };
        let mut guard = cache.lock().await;
        if let Some(c) = guard.as_ref() {
            if Instant::now() < c.valid_until {
                return Ok(c.token.clone());
            }
        }
        let path = token_url.path().to_string();
        let host = host_port(token_url);
        let token_err = |message: String| SourceError::Token {
            source_name: self.cfg.name.clone(),
            host: host.clone(),
            path: path.clone(),
            message,
        };
        // The token endpoint was not reached: a network problem, not the credentials.
        let unreachable = |message: String| SourceError::TokenUnreachable {
            source_name: self.cfg.name.clone(),
            host: host.clone(),
            path: path.clone(),
            message,
        };
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.as_str()));
        }
        let resp = self
            .client
            .post(token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(describe(&e)))?;
        let status = resp.status();
        let fetched_resp = read_capped(resp, self.cfg.http.max_response_bytes)
            .await
            .map_err(|e| match e {
                Some(m) => unreachable(format!("the answer broke off: {m}")),
                None => token_err("the answer is larger than http.max_response_bytes".into()),
            })?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SourceError::TokenServer {
                source_name: self.cfg.name.clone(),
                host: host.clone(),
                path: path.clone(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(token_err(format!(
                "HTTP {}: the credentials were refused",
                status.as_u16()
            )));
        }
        let (token, lifetime) =
            super::auth::parse_token_response(&fetched_resp).map_err(token_err)?;
        *guard = Some(CachedToken {
            token: token.clone(),
            valid_until: Instant::now() + lifetime,
        });
        fetched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(source = %self.cfg.name, path = %path, lifetime_secs = lifetime.as_secs(), "fetched OAuth2 token");
        Ok(token)
    }

    async fn send_once(
        &self,
        stream: &str,
        path: &str,
        b: reqwest::RequestBuilder,
    ) -> Result<Fetched, AttemptError> {
        let resp = b.send().await.map_err(|e| AttemptError::Transient {
            timeout: e.is_timeout(),
            message: describe(&e),
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        match read_capped(resp, self.cfg.http.max_response_bytes).await {
            Ok(body) => Ok(Fetched {
                status,
                headers,
                body,
            }),
            Err(Some(message)) => Err(AttemptError::Transient {
                timeout: message.contains("timed out"),
                message,
            }),
            Err(None) => Err(AttemptError::Fatal(SourceError::TooLarge {
                source_name: self.cfg.name.clone(),
                stream: stream.to_string(),
                path: path.to_string(),
                limit: self.cfg.http.max_response_bytes,
            })),
        }
    }
}

/// Reads a body, stopping past `limit` bytes. `Err(None)` = too large; `Err(Some)` = I/O.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Option<String>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(None);
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(Some(describe(&e))),
        }
    }
}

/// `host:port` of a URL (the port the scheme implies when none is written), for messages:
/// a refused connection says where it was refused.
pub fn host_port(url: &url::Url) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn host_port_names_the_port_even_when_implied() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            host_port(&u("http://127.0.0.1:18082/api")),
            "127.0.0.1:18082"
        );
        assert_eq!(
            host_port(&u("https://vendor.example/x?k=v")),
            "vendor.example:443"
        );
        assert_eq!(host_port(&u("http://[::1]:8080/")), "[::1]:8080");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(10))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_delay_honours_retry_after_and_caps_backoff() {
        let h = HttpConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..HttpConfig::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(
            retry_delay(0, Some(Duration::from_millis(700)), &h, &mut rng),
            Duration::from_millis(700)
        );
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(60)), &h, &mut rng),
            Duration::from_millis(1000)
        );
        for attempt in 0..40 {
            let d = retry_delay(attempt, None, &h, &mut rng);
            let ceiling = (100u64 << attempt.min(32)).min(1000);
            assert!(
                d <= Duration::from_millis(ceiling),
                "attempt {attempt}: {d:?}"
            );
        }
        // Full jitter: not every delay is the ceiling.
        let ds: Vec<_> = (0..20)
            .map(|_| retry_delay(5, None, &h, &mut rng))
            .collect();
        assert!(ds.iter().any(|d| *d < Duration::from_millis(900)));
    }

    #[test]
    fn rate_limiter_allows_one_request_per_period() {
        let src: SourceConfig = toml::from_str(
            r#"
name = "t"
base_url = "http://127.0.0.1:9"
[http]
rate_limit_rps = 0.5
[[streams]]
name = "s"
entity = "volunteer"
path = "/x"
key = "id"
mode = "full_refresh"
pagination = { type = "none" }
[streams.fields]
"#,
        )
        .unwrap();
        let h = Http::new(&src, Path::new(".")).unwrap();
        let limiter = h.limiter.as_ref().unwrap();
        assert!(limiter.check().is_ok());
        assert!(
            limiter.check().is_err(),
            "a second request within 2s must wait"
        );
        let mut unlimited = src.clone();
        unlimited.http.rate_limit_rps = 0.0;
        assert!(Http::new(&unlimited, Path::new("."))
            .unwrap()
            .limiter
            .is_none());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(&Url::parse("http://127.0.0.1:8080/").unwrap()));
        assert!(is_loopback(&Url::parse("http://localhost/").unwrap()));
        assert!(is_loopback(&Url::parse("http://[::1]/").unwrap()));
        assert!(!is_loopback(&Url::parse("http://10.0.0.1/").unwrap()));
        assert!(!is_loopback(&Url::parse("http://example.org/").unwrap()));
    }
}
