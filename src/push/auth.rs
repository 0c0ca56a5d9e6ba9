//! Platform authentication: the same `[platform.auth]` options as sources (bearer, basic, API
//! key in a header or the query, OAuth2 client credentials), resolved and validated by the
//! source machinery (`source::auth::Auth`), applied here to the push requests.

use std::path::Path;
use std::time::Instant;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use url::Url;

use super::PushError;
use crate::source::auth::{Auth, CachedToken};
use crate::source::config::AuthConfig;
use crate::source::secret::Secret;
use crate::source::SourceError;

pub struct PlatformAuth {
    auth: Auth,
}

fn setup_error(e: SourceError) -> PushError {
    PushError::Setup(match e {
        SourceError::Secret { key, message, .. } => format!(
            "[platform.auth]: secret for `platform.auth.{}` cannot be read: {message}",
            key.rsplit('.').next().unwrap_or("")
        ),
        SourceError::Config { message, .. } => format!("[platform.auth]: {message}"),
        other => format!("[platform.auth]: {other}"),
    })
}

impl PlatformAuth {
    /// Resolves the secrets of `[platform.auth]` (relative files against `dir`).
    pub fn new(cfg: &AuthConfig, url: &Url, dir: &Path) -> Result<PlatformAuth, PushError> {
        if matches!(cfg, AuthConfig::Signed { .. }) {
            return Err(PushError::Setup(
                "[platform.auth]: type \"signed\" is a department-system scheme and is not supported for the platform; use bearer, basic, api_key or oauth2_client_credentials".into(),
            ));
        }
        let auth = Auth::new("platform", cfg, url, dir).map_err(setup_error)?;
        Ok(PlatformAuth { auth })
    }

    /// Adds an API key given in the query to the endpoint URL (once, at setup).
    pub fn apply_to_url(&self, url: &mut Url) {
        if let Auth::ApiKeyQuery(name, key) = &self.auth {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != name)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.set_query(None);
            let mut q = url.query_pairs_mut();
            q.extend_pairs(kept);
            q.append_pair(name, key.expose());
        }
    }

    /// Adds the credentials to a request. Returns the OAuth2 token used, if any.
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), PushError> {
        Ok(match &self.auth {
            Auth::None | Auth::ApiKeyQuery(..) | Auth::Signed { .. } => (req, None),
            Auth::Bearer(t) => (req.header(AUTHORIZATION, bearer(t)?), None),
            Auth::ApiKeyHeader(name, key) => {
                let v = HeaderValue::from_str(key.expose()).map_err(|_| {
                    PushError::Setup(
                        "[platform.auth]: the key has characters not allowed in an HTTP header"
                            .into(),
                    )
                })?;
                (req.header(name.clone(), v), None)
            }
            Auth::Basic(user, pass) => (req.basic_auth(user, Some(pass.expose())), None),
            Auth::OAuth2 { .. } => {
                let t = self.oauth_token(client).await?;
                (req.header(AUTHORIZATION, bearer(&t)?), Some(t))
            }
        })
    }

    /// After a 401: drops the cached OAuth2 token `used` so the next request fetches a new one.
    /// Returns whether a retry with a fresh token makes sense.
    pub async fn invalidate(&self, used: Option<&Secret>) -> bool {
        let (Auth::OAuth2 { cache, .. }, Some(used)) = (&self.auth, used) else {
            return false;
        };
        let mut guard = cache.lock().await;
        if guard.as_ref().is_some_and(|c| &c.token == used) {
            *guard = None;
        }
        true
    }

    async fn oauth_token(&self, client: &reqwest::Client) -> Result<Secret, PushError> {
        let Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            cache,
            fetched,
        } = &self.auth
        else {
            return Err(PushError::Setup(
                "[platform.auth]: no OAuth2 configured".into(),
            ));
        };
        let mut guard = cache.lock().await;
        if let Some(c) = guard.as_ref() {
            if Instant::now() < c.valid_until {
                return Ok(c.token.clone());
            }
        }
        let path = format!(
            "{}{}",
            crate::source::host_port(token_url),
            token_url.path()
        );
        let err = |message: String| PushError::Platform {
            path: path.clone(),
            message: format!("cannot get an OAuth2 token for [platform.auth]: {message}"),
        };
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.as_str()));
        }
        let resp = client
            .post(token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "the token endpoint cannot be reached ({}); check [platform.auth] token_url, the network and that it is up (the credentials were not tried)",
                    crate::source::describe_http_error(&e)
                ))
            })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(err(format!(
                "the token endpoint answered HTTP {}; its service failed, try later (the credentials were not judged)",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(err(format!(
                "the token endpoint answered HTTP {}: the credentials were refused; check [platform.auth] client_id and its secret",
                status.as_u16()
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            err(format!(
                "reading the answer failed: {}",
                crate::mask::scrub_text(&e.to_string())
            ))
        })?;
        let (token, lifetime) = crate::source::auth::parse_token_response(&body).map_err(err)?;
        *guard = Some(CachedToken {
            token: token.clone(),
            valid_until: Instant::now() + lifetime,
        });
        fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(token)
    }
}

fn bearer(t: &Secret) -> Result<HeaderValue, PushError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
        PushError::Setup(
            "[platform.auth]: the token has characters not allowed in an HTTP header".into(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml_text: &str) -> Result<PlatformAuth, PushError> {
        let cfg: AuthConfig = toml::from_str(toml_text).unwrap();
        let url = Url::parse("http://127.0.0.1:1/api/v1/events").unwrap();
        PlatformAuth::new(&cfg, &url, Path::new("."))
    }

    async fn headers_of(a: &PlatformAuth) -> reqwest::header::HeaderMap {
        let client = reqwest::Client::new();
        let (req, token) = a
            .apply(&client, client.post("http://127.0.0.1:1/x"))
            .await
            .unwrap();
        assert!(token.is_none());
        req.build().unwrap().headers().clone()
    }

    #[tokio::test]
    async fn same_options_as_sources() {
        let a = auth("type = \"bearer\"\ntoken = { value = \"t0k\" }").unwrap();
        assert_eq!(headers_of(&a).await[AUTHORIZATION], "Bearer t0k");
        let a = auth("type = \"basic\"\nusername = \"u\"\npassword = { value = \"p\" }").unwrap();
        assert_eq!(headers_of(&a).await[AUTHORIZATION], "Basic dTpw");
        let a = auth(
            "type = \"api_key\"\nname = \"X-Key\"\nlocation = \"header\"\nkey = { value = \"k1\" }",
        )
        .unwrap();
        assert_eq!(headers_of(&a).await["x-key"], "k1");
        let a = auth(
            "type = \"api_key\"\nname = \"appkey\"\nlocation = \"query\"\nkey = { value = \"k2\" }",
        )
        .unwrap();
        let mut url = Url::parse("http://127.0.0.1:1/api?x=1&appkey=old").unwrap();
        a.apply_to_url(&mut url);
        assert_eq!(url.query(), Some("x=1&appkey=k2"));
    }

    #[test]
    fn missing_secret_names_the_platform_key_and_signed_is_refused() {
        let e = auth("type = \"bearer\"\ntoken = { env = \"CS_TEST_NO_SUCH_VAR_42\" }")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("platform.auth.token") && e.contains("CS_TEST_NO_SUCH_VAR_42"),
            "{e}"
        );
        let e = auth("type = \"signed\"\napp_key = \"a\"\nsecret = { value = \"s\" }\nalgorithm = \"md5\"\ntemplate = \"x\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not supported for the platform"), "{e}");
    }
}
