//! OAuth2 client credentials (RFC 6749 §4.4), for a source's `auth` and `[platform.auth]`
//! alike: the token is fetched when first needed, kept until shortly before it expires (at
//! most [`MAX_TOKEN_LIFETIME`], whatever the server says), and dropped after a 401 so that
//! one fresh token is tried.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use url::Url;

use super::{check_scheme, describe, read_capped, ReadError, SchemeError};
use crate::source::secret::Secret;

/// The longest a token is used before a new one is fetched. A server's `expires_in` beyond
/// it (a year, or 2^64 seconds) is cut to it: the lifetime stays a sane `Instant` offset.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct CachedToken {
    token: Secret,
    valid_until: Instant,
}

/// One client-credentials grant and its cached token.
pub struct OAuth2 {
    token_url: Url,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

/// Why no token was had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The endpoint was not reached, or its answer broke off: not the credentials' fault.
    Unreachable(String),
    /// A 5xx or 429: its service failed; the credentials were not judged.
    Server(u16),
    /// Another non-2xx status: the credentials were refused.
    Refused(u16),
    /// The answer is larger than `max_response_bytes`.
    TooLarge,
    /// A 2xx answer without a usable token (what was wrong, never the body).
    Invalid(String),
}

impl OAuth2 {
    /// The grant for `token_url`: an absolute URL, or a path under `base`. An absolute
    /// `http://` URL obeys the insecure-http rule like any other ([`check_scheme`]), under
    /// the peer's options `h`, at config key `http_key`.
    pub fn new(
        token_url: &str,
        base: &Url,
        (h, http_key): (&super::HttpConfig, &str),
        client_id: &str,
        client_secret: Secret,
        scope: Option<String>,
    ) -> Result<OAuth2, String> {
        let url = if token_url.contains("://") {
            Url::parse(token_url)
        } else {
            base.join(token_url.trim_start_matches('/'))
        }
        .map_err(|e| format!("auth.token_url {token_url:?} is not a URL: {e}"))?;
        check_scheme(&url, h, "an OAuth2 token endpoint")
            .map_err(|e: SchemeError| e.message("auth.token_url", http_key))?;
        Ok(OAuth2 {
            token_url: url,
            client_id: client_id.to_string(),
            client_secret,
            scope,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The cached token, or a new one from the endpoint when there is none or it is about to
    /// expire. The answer is read up to `max_bytes`.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        max_bytes: usize,
    ) -> Result<Secret, TokenError> {
        let mut guard = self.cache.lock().await;
        if let Some(c) = guard.as_ref() {
            if Instant::now() < c.valid_until {
                return Ok(c.token.clone());
            }
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        if let Some(s) = &self.scope {
            form.push(("scope", s.as_str()));
        }
        let resp = client
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(describe(&e)))?;
        let status = resp.status();
        let body = read_capped(resp, max_bytes).await.map_err(|e| match e {
            ReadError::TooLarge => TokenError::TooLarge,
            ReadError::Broken(m) => TokenError::Unreachable(format!("the answer broke off: {m}")),
        })?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Server(status.as_u16()));
        }
        if !status.is_success() {
            return Err(TokenError::Refused(status.as_u16()));
        }
        let (token, lifetime) = parse_token_response(&body).map_err(TokenError::Invalid)?;
        let now = Instant::now();
        *guard = Some(CachedToken {
            token: token.clone(),
            valid_until: now.checked_add(lifetime).unwrap_or(now),
        });
        tracing::debug!(path = %self.token_url.path(), lifetime_secs = lifetime.as_secs(), "fetched OAuth2 token");
        Ok(token)
    }

    /// After a 401: drops the cached token if it is still `used`, so the next request fetches
    /// a new one.
    pub async fn invalidate(&self, used: &Secret) {
        let mut guard = self.cache.lock().await;
        if guard.as_ref().is_some_and(|c| &c.token == used) {
            *guard = None;
        }
    }
}

/// Seconds cut off a token's lifetime so it is renewed before the server rejects it.
pub fn token_margin(expires_in: u64) -> Duration {
    Duration::from_secs(60.min(expires_in / 2))
}

/// Reads an OAuth2 token endpoint's answer: the token and how long to use it (its lifetime
/// less a safety margin, at most [`MAX_TOKEN_LIFETIME`]). A UTF-8 BOM is tolerated (vendors
/// that send one on data endpoints send it here too). The error says what was wrong, never
/// the body.
pub fn parse_token_response(body: &[u8]) -> Result<(Secret, Duration), String> {
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the token response is not JSON".to_string())?;
    let token = doc
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "the token response has no access_token".to_string())?;
    let expires_in = match doc.get("expires_in") {
        // A float is taken whole (`as` saturates: 1e30 is u64::MAX, then capped below).
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(3600),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(3600),
        _ => 3600,
    };
    let lifetime = Duration::from_secs(expires_in)
        .saturating_sub(token_margin(expires_in))
        .min(MAX_TOKEN_LIFETIME);
    Ok((Secret::new(token), lifetime))
}
