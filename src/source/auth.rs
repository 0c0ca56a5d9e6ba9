//! Authentication: secrets resolved at client creation, applied to each request. OAuth2
//! client-credentials tokens are cached until shortly before expiry.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use super::config::{ApiKeyLocation, AuthConfig, SignAlgorithm, SignParamNames};
use super::secret::{self, Secret};
use super::SourceError;

pub enum Auth {
    None,
    Bearer(Secret),
    ApiKeyHeader(HeaderName, Secret),
    ApiKeyQuery(String, Secret),
    Basic(String, Secret),
    OAuth2 {
        token_url: Url,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
        cache: tokio::sync::Mutex<Option<CachedToken>>,
        fetched: std::sync::atomic::AtomicU64,
    },
    Signed {
        app_key: String,
        secret: Secret,
        algorithm: SignAlgorithm,
        template: String,
        location: ApiKeyLocation,
        names: SignParamNames,
        uppercase: bool,
    },
}

pub struct CachedToken {
    pub token: Secret,
    pub valid_until: Instant,
}

impl Auth {
    pub fn new(
        source: &str,
        cfg: &AuthConfig,
        base: &Url,
        dir: &Path,
    ) -> Result<Auth, SourceError> {
        let get = |key: &str, r: &super::config::SecretRef| {
            if r.env.is_none() && r.file.is_none() && r.value.is_some() {
                tracing::warn!(
                    source,
                    key,
                    "secret given inline in the config: fine for tests and demos, use env or file in production"
                );
            }
            secret::resolve(r, dir).map_err(|p| SourceError::Secret {
                source_name: source.to_string(),
                key: format!("sources[{source}].auth.{key}"),
                message: p.0,
            })
        };
        Ok(match cfg {
            AuthConfig::None => Auth::None,
            AuthConfig::Bearer { token } => Auth::Bearer(get("token", token)?),
            AuthConfig::ApiKey {
                name,
                location,
                key,
            } => {
                let key = get("key", key)?;
                match location {
                    ApiKeyLocation::Header => {
                        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            SourceError::Config {
                                source_name: source.to_string(),
                                message: format!(
                                    "auth.name {name:?} is not a valid HTTP header name"
                                ),
                            }
                        })?;
                        if HeaderValue::from_str(key.expose()).is_err() {
                            return Err(SourceError::Secret {
                                source_name: source.to_string(),
                                key: format!("sources[{source}].auth.key"),
                                message:
                                    "the key contains characters not allowed in an HTTP header"
                                        .into(),
                            });
                        }
                        Auth::ApiKeyHeader(header, key)
                    }
                    ApiKeyLocation::Query => Auth::ApiKeyQuery(name.clone(), key),
                }
            }
            AuthConfig::Basic { username, password } => {
                Auth::Basic(username.clone(), get("password", password)?)
            }
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let url =
                    if token_url.starts_with("http://") || token_url.starts_with("https://") {
                        Url::parse(token_url)
                    } else {
                        base.join(token_url.trim_start_matches('/'))
                    }
                    .map_err(|e| SourceError::Config {
                        source_name: source.to_string(),
                        message: format!("auth.token_url {token_url:?} is not a URL: {e}"),
                    })?;
                Auth::OAuth2 {
                    token_url: url,
                    client_id: client_id.clone(),
                    client_secret: get("client_secret", client_secret)?,
                    scope: scope.clone(),
                    cache: tokio::sync::Mutex::new(None),
                    fetched: std::sync::atomic::AtomicU64::new(0),
                }
            }
            AuthConfig::Signed {
                app_key,
                secret,
                algorithm,
                template,
                location,
                param_names,
                uppercase,
            } => Auth::Signed {
                app_key: app_key.clone(),
                secret: get("secret", secret)?,
                algorithm: *algorithm,
                template: template.clone(),
                location: *location,
                names: param_names.clone(),
                uppercase: *uppercase,
            },
        })
    }
}

/// Seconds cut off a token's lifetime so it is renewed before the server rejects it.
pub fn token_margin(expires_in: u64) -> Duration {
    Duration::from_secs(60.min(expires_in / 2))
}

/// A fresh random nonce: 16 lowercase hex characters.
pub fn nonce() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// Reads an OAuth2 token endpoint's answer: the token and how long to use it (its lifetime
/// less a safety margin). A UTF-8 BOM is tolerated (vendors that send one on data endpoints
/// send it here too). The error says what was wrong, never the body.
pub fn parse_token_response(body: &[u8]) -> Result<(Secret, std::time::Duration), String> {
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
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3600),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(3600),
        _ => 3600,
    };
    let lifetime =
        std::time::Duration::from_secs(expires_in).saturating_sub(token_margin(expires_in));
    Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_bounded_by_half_the_lifetime() {
        assert_eq!(token_margin(7200), Duration::from_secs(60));
        assert_eq!(token_margin(10), Duration::from_secs(5));
        assert_eq!(token_margin(0), Duration::ZERO);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
