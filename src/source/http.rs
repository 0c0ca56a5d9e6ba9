//! The HTTP side of a source: one client from the HTTP layer ([`crate::net`]: TLS trust,
//! timeouts, capped reads, the retry loop and OAuth2), this source's redirect policy and
//! headers, a per-source rate limiter and concurrency limit, request signing, and what each
//! outcome means for a page.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LINK};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use url::Url;

use super::auth::Auth;
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
        crate::net::check_scheme(&base, h, &format!("source {name}")).map_err(|e| match e {
            crate::net::SchemeError::PlainHttp { .. } => SourceError::InsecureHttp {
                source_name: name.clone(),
                message: e.message("base_url", "http"),
            },
            crate::net::SchemeError::NotHttp(_) => config_err(e.message("base_url", "http")),
        })?;
        let auth = Auth::new(&name, &source.auth, &base, dir, (h, "http"))?;
        let client = crate::net::client(
            h,
            crate::net::ClientSpec {
                http_key: "http",
                dir,
                redirect: redirect_policy(h.follow_cross_host_redirects),
                headers: default_headers(h).map_err(config_err)?,
                identity: None,
            },
        )
        .map_err(config_err)?;
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

    /// Sends a request with rate limiting, the concurrency limit, auth and retries (the HTTP
    /// layer's loop, [`crate::net::Retries`]), and hands a 2xx response to `accept`, which may
    /// ask for a retry (sharing the retry budget) or fail. Other statuses are retried (408,
    /// 429, 5xx) or fail, naming what the vendor said.
    async fn execute<T>(
        &self,
        stream: &str,
        req: &Req,
        retries: &mut u64,
        classifier: &Classifier,
        mut accept: impl FnMut(&Fetched, u32) -> Body<T>,
    ) -> Result<T, SourceError> {
        let path = req.url.path().to_string();
        let mut tries = crate::net::Retries::new(&self.cfg.http);
        loop {
            let step = match self.attempt(stream, &path, req).await {
                Ok((outcome, token)) => {
                    let attempt = tries.count();
                    self.judge(
                        stream,
                        req,
                        classifier,
                        outcome,
                        token,
                        attempt,
                        &mut accept,
                    )
                    .await
                }
                Err(e) => crate::net::Step::Fail(e),
            };
            let log = |attempt: u32, e: &SourceError, _| {
                tracing::debug!(source = %self.cfg.name, stream, path = %path, attempt, "retrying: {e}");
            };
            if let Some(outcome) = tries.after(step, log).await {
                *retries += u64::from(tries.count());
                return outcome;
            }
        }
    }

    /// What one try's outcome means: a page for `accept`, a fresh OAuth2 token after a 401,
    /// another try, or an error.
    #[allow(clippy::too_many_arguments)]
    async fn judge<T>(
        &self,
        stream: &str,
        req: &Req,
        classifier: &Classifier,
        outcome: Result<Fetched, AttemptError>,
        token: Option<Secret>,
        attempt: u32,
        accept: &mut impl FnMut(&Fetched, u32) -> Body<T>,
    ) -> crate::net::Step<T, SourceError> {
        use crate::net::Step;
        let path = req.url.path();
        match outcome {
            Ok(resp) if resp.status.is_success() => match accept(&resp, attempt + 1) {
                Body::Ok(t) => Step::Done(t),
                Body::Fail(e) => Step::Fail(e),
                Body::Retry(error) => Step::Retry { error, after: None },
            },
            Ok(resp) => {
                if let (StatusCode::UNAUTHORIZED, Auth::OAuth2(o), Some(used)) =
                    (resp.status, &self.auth, &token)
                {
                    // One fresh token, outside the retry budget.
                    o.invalidate(used).await;
                    return Step::Reauth(self.auth_error(stream, path, 401));
                }
                self.error_status(stream, path, req, &resp, attempt, classifier)
            }
            Err(AttemptError::Fatal(e)) => Step::Fail(e),
            Err(AttemptError::Transient { timeout, message }) => Step::Retry {
                error: self.network_error(stream, path, &req.url, timeout, message, attempt),
                after: None,
            },
        }
    }

    /// One try: waits for the rate limiter and a permit, builds the request (under the permit,
    /// so a signature's timestamp is fresh when sent) and reads the answer. Returns the OAuth2
    /// token used, if any.
    async fn attempt(
        &self,
        stream: &str,
        path: &str,
        req: &Req,
    ) -> Result<(Result<Fetched, AttemptError>, Option<Secret>), SourceError> {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SourceError::Other {
                source_name: self.cfg.name.clone(),
                message: "the client was shut down".into(),
            })?;
        let (builder, token) = self.build(req).await?;
        Ok((self.send_once(stream, path, builder).await, token))
    }

    /// A timeout or connection problem, as the error it is once no retry is left.
    fn network_error(
        &self,
        stream: &str,
        path: &str,
        url: &Url,
        timeout: bool,
        message: String,
        attempt: u32,
    ) -> SourceError {
        let (source_name, stream, host, path) = (
            self.cfg.name.clone(),
            stream.to_string(),
            crate::net::host_port(url),
            path.to_string(),
        );
        if timeout {
            SourceError::Timeout {
                source_name,
                stream,
                host,
                path,
                secs: self.cfg.http.timeout_secs,
                attempts: attempt + 1,
            }
        } else {
            SourceError::Connect {
                source_name,
                stream,
                host,
                path,
                message,
                attempts: attempt + 1,
            }
        }
    }

    fn auth_error(&self, stream: &str, path: &str, status: u16) -> SourceError {
        SourceError::Auth {
            source_name: self.cfg.name.clone(),
            stream: stream.to_string(),
            path: path.to_string(),
            status,
        }
    }

    /// A response that is neither a success nor an OAuth2 token to refresh: the error to fail
    /// with, or (408, 429, 5xx) another try after its `Retry-After`, with the error to end
    /// with once no retry is left.
    fn error_status<T>(
        &self,
        stream: &str,
        path: &str,
        req: &Req,
        resp: &Fetched,
        attempt: u32,
        classifier: &Classifier,
    ) -> crate::net::Step<T, SourceError> {
        use crate::net::Step;
        let (h, status, path) = (&self.cfg.http, resp.status, path.to_string());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Step::Fail(self.auth_error(stream, &path, status.as_u16()));
        }
        if status.is_redirection() {
            let target = resp
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| req.url.join(l).ok())
                .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                .unwrap_or_else(|| "unknown".into());
            return Step::Fail(SourceError::CrossHostRedirect {
                source_name: self.cfg.name.clone(),
                stream: stream.to_string(),
                path,
                target_host: target,
            });
        }
        let retryable = crate::net::retryable(status);
        let said = self.said(resp, classifier);
        let what = if retryable {
            format!("the system kept failing; it may be overloaded or down. Try later or raise http.retries ({})", h.retries)
        } else {
            "the system rejected the request; check the stream's path, query and body".to_string()
        } + &said;
        let error = SourceError::Status {
            source_name: self.cfg.name.clone(),
            stream: stream.to_string(),
            path,
            status: status.as_u16(),
            attempts: attempt + 1,
            what,
        };
        if retryable {
            Step::Retry {
                error,
                after: crate::net::retry_after(&resp.headers),
            }
        } else {
            Step::Fail(error)
        }
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
            Auth::OAuth2(o) => {
                let t = self.oauth_token(o).await?;
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
    async fn oauth_token(&self, o: &crate::net::OAuth2) -> Result<Secret, SourceError> {
        use crate::net::TokenError;
        let token_url = o.token_url();
        let (source_name, host, path) = (
            self.cfg.name.clone(),
            crate::net::host_port(token_url),
            token_url.path().to_string(),
        );
        o.token(&self.client, self.cfg.http.max_response_bytes)
            .await
            .map_err(|e| {
                let message = match e {
                    // The token endpoint was not reached: a network problem, not the credentials.
                    TokenError::Unreachable(message) => {
                        return SourceError::TokenUnreachable {
                            source_name,
                            host,
                            path,
                            message,
                        }
                    }
                    TokenError::Server(status) => {
                        return SourceError::TokenServer {
                            source_name,
                            host,
                            path,
                            status,
                        }
                    }
                    TokenError::TooLarge => {
                        "the answer is larger than http.max_response_bytes".to_string()
                    }
                    TokenError::Refused(status) => {
                        format!("HTTP {status}: the credentials were refused")
                    }
                    TokenError::Invalid(message) => message,
                };
                SourceError::Token {
                    source_name,
                    host,
                    path,
                    message,
                }
            })
    }

    async fn send_once(
        &self,
        stream: &str,
        path: &str,
        b: reqwest::RequestBuilder,
    ) -> Result<Fetched, AttemptError> {
        let resp = b.send().await.map_err(|e| AttemptError::Transient {
            timeout: e.is_timeout(),
            message: crate::net::describe(&e),
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        match crate::net::read_capped(resp, self.cfg.http.max_response_bytes).await {
            Ok(body) => Ok(Fetched {
                status,
                headers,
                body,
            }),
            Err(crate::net::ReadError::Broken(message)) => Err(AttemptError::Transient {
                timeout: message.contains("timed out"),
                message,
            }),
            Err(crate::net::ReadError::TooLarge) => {
                Err(AttemptError::Fatal(SourceError::TooLarge {
                    source_name: self.cfg.name.clone(),
                    stream: stream.to_string(),
                    path: path.to_string(),
                    limit: self.cfg.http.max_response_bytes,
                }))
            }
        }
    }
}

/// `http.headers`, and `Accept: application/json` unless they name another.
fn default_headers(h: &HttpConfig) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &h.headers {
        let hn = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("http.headers: {k:?} is not a valid header name"))?;
        let hv = HeaderValue::from_str(v).map_err(|_| {
            format!("http.headers.{k}: value has characters not allowed in a header")
        })?;
        headers.insert(hn, hv);
    }
    if !headers.contains_key(reqwest::header::ACCEPT) {
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(headers)
}

/// Redirects: at most 10, never from https to http, and to another host only with
/// `follow_cross_host_redirects` (a stopped redirect is reported as such).
fn redirect_policy(cross_host: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
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
        if downgrade || (!same_host && !cross_host) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
