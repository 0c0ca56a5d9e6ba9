//! Platform authentication: the same `[platform.auth]` options as sources (bearer, basic, API
//! key in a header or the query, OAuth2 client credentials), resolved and validated by the
//! source machinery (`source::auth::Auth`), applied here to the push requests.

use std::path::Path;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use url::Url;

use super::PushError;
use crate::net::TokenError;
use crate::source::auth::Auth;
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
    /// Resolves the secrets of `[platform.auth]` (relative files against `dir`); an OAuth2
    /// `token_url` obeys the insecure-http rule of `[platform.http]` (`http`) like
    /// `platform.url`.
    pub fn new(
        cfg: &AuthConfig,
        url: &Url,
        dir: &Path,
        http: &crate::net::HttpConfig,
    ) -> Result<PlatformAuth, PushError> {
        if matches!(cfg, AuthConfig::Signed { .. }) {
            return Err(PushError::Setup(
                "[platform.auth]: type \"signed\" is a department-system scheme and is not supported for the platform; use bearer, basic, api_key or oauth2_client_credentials".into(),
            ));
        }
        let auth =
            Auth::new("platform", cfg, url, dir, (http, "platform.http")).map_err(setup_error)?;
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
        max_bytes: usize,
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
            Auth::OAuth2(o) => {
                let t = oauth_token(o, client, max_bytes).await?;
                (req.header(AUTHORIZATION, bearer(&t)?), Some(t))
            }
        })
    }

    /// After a 401: drops the cached OAuth2 token `used` so the next request fetches a new one.
    /// Returns whether a retry with a fresh token makes sense.
    pub async fn invalidate(&self, used: Option<&Secret>) -> bool {
        let (Auth::OAuth2(o), Some(used)) = (&self.auth, used) else {
            return false;
        };
        o.invalidate(used).await;
        true
    }
}

async fn oauth_token(
    o: &crate::net::OAuth2,
    client: &reqwest::Client,
    max_bytes: usize,
) -> Result<Secret, PushError> {
    let token_url = o.token_url();
    let path = format!("{}{}", crate::net::host_port(token_url), token_url.path());
    o.token(client, max_bytes).await.map_err(|e| {
        let message = match e {
            TokenError::Unreachable(m) => format!(
                "the token endpoint cannot be reached ({m}); check [platform.auth] token_url, the network and that it is up (the credentials were not tried)"
            ),
            TokenError::Server(status) => format!(
                "the token endpoint answered HTTP {status}; its service failed, try later (the credentials were not judged)"
            ),
            TokenError::Refused(status) => format!(
                "the token endpoint answered HTTP {status}: the credentials were refused; check [platform.auth] client_id and its secret"
            ),
            TokenError::TooLarge => {
                "the token endpoint's answer is larger than platform.http.max_response_bytes".into()
            }
            TokenError::Invalid(m) => m,
        };
        PushError::Platform {
            path,
            message: format!("cannot get an OAuth2 token for [platform.auth]: {message}"),
        }
    })
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
        PlatformAuth::new(&cfg, &url, Path::new("."), &Default::default())
    }

    async fn headers_of(a: &PlatformAuth) -> reqwest::header::HeaderMap {
        let client = reqwest::Client::new();
        let (req, token) = a
            .apply(&client, 1 << 20, client.post("http://127.0.0.1:1/x"))
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
