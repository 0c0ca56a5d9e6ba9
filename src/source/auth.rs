//! Authentication: secrets resolved at client creation, applied to each request. OAuth2
//! client credentials are the HTTP layer's ([`crate::net::OAuth2`]: token cache, expiry).

use std::path::Path;

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
    OAuth2(crate::net::OAuth2),
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

impl Auth {
    /// Resolves the secrets of `cfg` (relative files against `dir`). `http` is the peer's HTTP
    /// options and their config key (`http`, `platform.http`): an OAuth2 `token_url` obeys
    /// their insecure-http rule too.
    pub fn new(
        source: &str,
        cfg: &AuthConfig,
        base: &Url,
        dir: &Path,
        http: (&crate::net::HttpConfig, &str),
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
            } => Auth::OAuth2(
                crate::net::OAuth2::new(
                    token_url,
                    base,
                    http,
                    client_id,
                    get("client_secret", client_secret)?,
                    scope.clone(),
                )
                .map_err(|message| SourceError::Config {
                    source_name: source.to_string(),
                    message,
                })?,
            ),
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

/// A fresh random nonce: 16 lowercase hex characters.
pub fn nonce() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
