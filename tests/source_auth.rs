//! Each auth style succeeds with the right secret and fails clearly with a wrong one.

mod source_common;

use community_sync::sim::variants::{SimAuth, Variant, VariantConfig};
use community_sync::source::{CursorBound, FetchPlan, SourceClient, SourceError};
use source_common::*;

const PAGED: &str = r#"records = "/items"
pagination = { type = "page_number", size = 10, total_path = "/total" }"#;

async fn sim(auth: SimAuth) -> Variant {
    Variant::start(VariantConfig {
        records: 25,
        auth,
        ..VariantConfig::default()
    })
    .await
    .unwrap()
}

/// Fetches with `good` (must get every record) and with `bad` (must fail with an auth error
/// that names the source, the path, and does not leak the wrong secret).
async fn right_and_wrong(auth: SimAuth, good: &str, bad: &str, bad_secret: &str) {
    let v = sim(auth).await;
    let f = fetch_all(&source(&v.base_url, "", good, "", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    let err = fetch_all(&source(&v.base_url, "", bad, "", PAGED))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            SourceError::Auth { status: 401, .. } | SourceError::Token { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains("check the credentials for source t"), "{msg}");
    assert!(!msg.contains(bad_secret), "secret leaked: {msg}");
}

#[tokio::test]
async fn no_auth() {
    let v = sim(SimAuth::None).await;
    let f = fetch_all(&source(&v.base_url, "", "", "", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
}

#[tokio::test]
async fn bearer() {
    right_and_wrong(
        SimAuth::Bearer("tok-right".into()),
        r#"type = "bearer"
token = { value = "tok-right" }"#,
        r#"type = "bearer"
token = { value = "tok-wrong-xyz" }"#,
        "tok-wrong-xyz",
    )
    .await;
}

#[tokio::test]
async fn api_key_header() {
    right_and_wrong(
        SimAuth::ApiKeyHeader {
            name: "X-Api-Key".into(),
            key: "eld-demo-key".into(),
        },
        r#"type = "api_key"
name = "X-Api-Key"
key = { value = "eld-demo-key" }"#,
        r#"type = "api_key"
name = "X-Api-Key"
key = { value = "nope-key-xyz" }"#,
        "nope-key-xyz",
    )
    .await;
}

#[tokio::test]
async fn api_key_query() {
    right_and_wrong(
        SimAuth::ApiKeyQuery {
            name: "apikey".into(),
            key: "qk-right".into(),
        },
        r#"type = "api_key"
name = "apikey"
location = "query"
key = { value = "qk-right" }"#,
        r#"type = "api_key"
name = "apikey"
location = "query"
key = { value = "qk-wrong-xyz" }"#,
        "qk-wrong-xyz",
    )
    .await;
}

#[tokio::test]
async fn basic() {
    right_and_wrong(
        SimAuth::Basic {
            username: "sync".into(),
            password: "health-demo-pass".into(),
        },
        r#"type = "basic"
username = "sync"
password = { value = "health-demo-pass" }"#,
        r#"type = "basic"
username = "sync"
password = { value = "wrong-pass-xyz" }"#,
        "wrong-pass-xyz",
    )
    .await;
}

fn oauth(expires_in: u64, token_uses: Option<u64>) -> SimAuth {
    SimAuth::OAuth2 {
        client_id: "community-sync".into(),
        client_secret: "vol-demo-secret".into(),
        expires_in,
        token_uses,
    }
}

const OAUTH_GOOD: &str = r#"type = "oauth2_client_credentials"
token_url = "/oauth/token"
client_id = "community-sync"
client_secret = { value = "vol-demo-secret" }"#;

#[tokio::test]
async fn oauth2_client_credentials_right_and_wrong() {
    right_and_wrong(
        oauth(3600, None),
        OAUTH_GOOD,
        r#"type = "oauth2_client_credentials"
token_url = "/oauth/token"
client_id = "community-sync"
client_secret = { value = "wrong-client-secret" }"#,
        "wrong-client-secret",
    )
    .await;
}

#[tokio::test]
async fn oauth2_token_is_cached_across_pages() {
    let v = sim(oauth(3600, None)).await;
    let f = fetch_all(&source(&v.base_url, "", OAUTH_GOOD, "", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.tokens_issued(), 1);
}

#[tokio::test]
async fn oauth2_token_refreshed_after_expiry() {
    // expires_in = 0: every cached token is already past its expiry, so each request
    // fetches a fresh one.
    let v = sim(oauth(0, None)).await;
    let f = fetch_all(&source(&v.base_url, "", OAUTH_GOOD, "", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.tokens_issued(), 3);
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn oauth2_token_refreshed_once_on_401_and_request_retried() {
    // The server revokes each token after one use although it claims an hour of life.
    let v = sim(oauth(3600, Some(1))).await;
    let f = fetch_all(&source(&v.base_url, "", OAUTH_GOOD, "", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.tokens_issued(), 3);
    // Pages 2 and 3 each met one 401 and were retried once.
    assert_eq!(v.requests(), 5);
}

#[tokio::test]
async fn oauth2_gives_up_when_a_fresh_token_is_rejected_too() {
    let v = sim(oauth(3600, Some(0))).await;
    let err = fetch_all(&source(&v.base_url, "", OAUTH_GOOD, "", PAGED))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, SourceError::Auth { status: 401, .. }),
        "{err}"
    );
    assert_eq!(v.tokens_issued(), 2);
    assert_eq!(v.requests(), 2);
}

fn signed() -> SimAuth {
    SimAuth::SignedMd5 {
        app_key: "ykt-demo".into(),
        secret: "ykt-demo-secret".into(),
    }
}

#[tokio::test]
async fn signed_md5_gateway() {
    right_and_wrong(
        signed(),
        r#"type = "signed"
app_key = "ykt-demo"
secret = { value = "ykt-demo-secret" }
algorithm = "md5"
template = "{params}&key={secret}"
location = "query""#,
        r#"type = "signed"
app_key = "ykt-demo"
secret = { value = "wrong-sign-secret" }
location = "query""#,
        "wrong-sign-secret",
    )
    .await;
}

#[tokio::test]
async fn signed_md5_in_headers() {
    right_and_wrong(
        SimAuth::SignedHeaderMd5 {
            app_key: "gw-app".into(),
            secret: "gw-secret".into(),
        },
        r#"type = "signed"
app_key = "gw-app"
secret = { value = "gw-secret" }
template = "{app_key}{timestamp}{nonce}{params}{secret}"
location = "header""#,
        r#"type = "signed"
app_key = "gw-app"
secret = { value = "gw-wrong-secret" }
template = "{app_key}{timestamp}{nonce}{params}{secret}"
location = "header""#,
        "gw-wrong-secret",
    )
    .await;
}

#[tokio::test]
async fn signed_md5_with_an_incremental_value_needing_url_encoding() {
    // "2024-01-01T00:05:00+08:00" has a "+": signed raw, sent URL-encoded, verified raw.
    let v = sim(signed()).await;
    let src = source(
        &v.base_url,
        "",
        r#"type = "signed"
app_key = "ykt-demo"
secret = { value = "ykt-demo-secret" }
location = "query""#,
        "",
        r#"records = "/items"
pagination = { type = "page_number", page_param = "page", size_param = "rows", size = 10, total_path = "/total" }
[streams.incremental]
cursor_field = "updated_at"
param = "updated_since"
format = "rfc3339""#,
    );
    let client = SourceClient::new(&src).unwrap();
    let plan = FetchPlan {
        lower: Some(CursorBound::Time(
            community_sync::sim::variants::updated_at(5),
        )),
        ..FetchPlan::default()
    };
    let f = fetch(&client, stream(&src), &plan).await.unwrap();
    assert_eq!(seqs(&f.records), (5..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn missing_secret_is_a_clear_error_at_client_creation() {
    let src = source(
        "http://127.0.0.1:9",
        "",
        r#"type = "bearer"
token = { env = "CS_TEST_NEVER_SET_TOKEN_VAR" }"#,
        "",
        PAGED,
    );
    let err = SourceClient::new(&src).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Secret { .. }), "{msg}");
    assert!(
        msg.contains("source t") && msg.contains("CS_TEST_NEVER_SET_TOKEN_VAR"),
        "{msg}"
    );
}

#[tokio::test]
async fn secret_file_relative_to_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "tok-right\n").unwrap();
    #[cfg(unix)]
    {
        // Secret files readable by others are refused (issue 10).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let v = sim(SimAuth::Bearer("tok-right".into())).await;
    let src = source(
        &v.base_url,
        "",
        r#"type = "bearer"
token = { file = "token" }"#,
        "",
        PAGED,
    );
    let client = SourceClient::with_config_dir(&src, dir.path()).unwrap();
    let f = fetch(&client, stream(&src), &FetchPlan::default())
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert!(!format!("{client:?}").contains("tok-right"));
}
