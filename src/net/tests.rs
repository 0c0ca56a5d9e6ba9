use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::SeedableRng;

use crate::source::secret::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A raw HTTP/1.1 response that closes the connection.
fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request (headers and a `Content-Length` body) and answers `answer`.
async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, answer: &[u8]) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let _ = s.write_all(answer).await;
    let _ = s.shutdown().await;
}

/// A local server answering the `answers` in turn (the last one again and again). Returns
/// its `http://127.0.0.1:PORT` and the count of requests answered.
async fn serve(answers: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let i = counter.fetch_add(1, Ordering::SeqCst);
            let answer = answers[i.min(answers.len() - 1)].clone();
            tokio::spawn(async move { answer_one(s, &answer).await });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), hits)
}

fn config_with(f: impl FnOnce(&mut HttpConfig)) -> HttpConfig {
    let mut h = HttpConfig {
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        ..HttpConfig::default()
    };
    f(&mut h);
    h
}

fn plain_client(h: &HttpConfig) -> reqwest::Client {
    client(
        h,
        ClientSpec {
            http_key: "http",
            dir: Path::new("."),
            redirect: reqwest::redirect::Policy::none(),
            headers: Default::default(),
            identity: None,
        },
    )
    .unwrap()
}

#[test]
fn host_port_names_the_port_even_when_implied() {
    let u = |s: &str| Url::parse(s).unwrap();
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
fn loopback_and_the_insecure_http_rule() {
    let u = |s: &str| Url::parse(s).unwrap();
    assert!(is_loopback(&u("http://127.0.0.1:8080/")));
    assert!(is_loopback(&u("http://localhost/")));
    assert!(is_loopback(&u("http://[::1]/")));
    assert!(!is_loopback(&u("http://10.0.0.1/")));
    assert!(!is_loopback(&u("http://example.org/")));
    let strict = HttpConfig::default();
    let allowing = config_with(|h| h.allow_insecure_http = true);
    assert_eq!(check_scheme(&u("https://10.0.0.1/"), &strict, "t"), Ok(()));
    assert_eq!(check_scheme(&u("http://127.0.0.1/"), &strict, "t"), Ok(()));
    assert_eq!(check_scheme(&u("http://10.0.0.1/"), &allowing, "t"), Ok(()));
    let e = check_scheme(&u("http://10.0.0.1/"), &strict, "t").unwrap_err();
    assert!(e
        .message("platform.url", "platform.http")
        .contains("platform.http.allow_insecure_http"));
    assert!(check_scheme(&u("ftp://10.0.0.1/"), &allowing, "t").is_err());
}

#[test]
fn retryable_statuses_are_408_429_and_5xx() {
    for s in [408, 429, 500, 502, 503, 504] {
        assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
    }
    for s in [200, 301, 400, 401, 403, 404, 409, 422] {
        assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
    }
}

#[test]
fn token_margin_is_bounded_by_half_the_lifetime() {
    assert_eq!(oauth::token_margin(7200), Duration::from_secs(60));
    assert_eq!(oauth::token_margin(10), Duration::from_secs(5));
    assert_eq!(oauth::token_margin(0), Duration::ZERO);
}

#[test]
fn a_huge_expires_in_is_capped() {
    let (_, lifetime) =
        parse_token_response(br#"{"access_token":"t","expires_in":18446744073709551615}"#).unwrap();
    assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
    let (_, lifetime) =
        parse_token_response(br#"{"access_token":"t","expires_in":1e300}"#).unwrap();
    assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
    let (_, lifetime) =
        parse_token_response(br#"{"access_token":"t","expires_in":"7200"}"#).unwrap();
    assert_eq!(lifetime, Duration::from_secs(7200 - 60));
}

/// Before, `Instant::now() + lifetime` panicked on such an answer (overflow).
#[tokio::test]
async fn a_token_with_a_huge_expires_in_is_used_not_a_panic() {
    let (url, hits) = serve(vec![response(
        "200 OK",
        "Content-Type: application/json\r\n",
        r#"{"access_token":"tok","expires_in":18446744073709551615}"#,
    )])
    .await;
    let base = Url::parse(&format!("{url}/api/")).unwrap();
    let o = OAuth2::new(
        "/oauth/token",
        &base,
        (&HttpConfig::default(), "http"),
        "id",
        Secret::new("secret"),
        None,
    )
    .unwrap();
    let c = plain_client(&config_with(|_| {}));
    assert_eq!(o.token(&c, 1 << 20).await.unwrap().expose(), "tok");
    // Cached: no second request.
    assert_eq!(o.token(&c, 1 << 20).await.unwrap().expose(), "tok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_answers_are_read_with_the_cap() {
    let big = format!(r#"{{"access_token":"{}"}}"#, "x".repeat(4096));
    let (url, _) = serve(vec![response("200 OK", "", &big)]).await;
    let base = Url::parse(&format!("{url}/")).unwrap();
    let o = OAuth2::new(
        "token",
        &base,
        (&HttpConfig::default(), "http"),
        "id",
        Secret::new("s"),
        None,
    )
    .unwrap();
    let c = plain_client(&config_with(|_| {}));
    assert_eq!(o.token(&c, 1024).await.unwrap_err(), TokenError::TooLarge);
}

/// Before, an absolute `http://` token_url skipped the insecure-http check.
#[test]
fn a_plain_http_token_url_is_refused_like_any_other() {
    let base = Url::parse("https://vendor.example/api/").unwrap();
    let new = |url: &str, allow: bool| {
        let h = config_with(|h| h.allow_insecure_http = allow);
        OAuth2::new(url, &base, (&h, "http"), "id", Secret::new("s"), None).map(|_| ())
    };
    let e = new("http://10.0.0.1/oauth/token", false).unwrap_err();
    assert!(
        e.contains("auth.token_url") && e.contains("http.allow_insecure_http"),
        "{e}"
    );
    assert!(new("http://10.0.0.1/oauth/token", true).is_ok());
    assert!(new("http://127.0.0.1:9/oauth/token", false).is_ok());
    assert!(new("https://10.0.0.1/oauth/token", false).is_ok());
    assert!(new("/oauth/token", false).is_ok());

    // Through a source's config, as an operator writes it.
    let src: crate::config::SourceConfig = toml::from_str(
        r#"
name = "t"
base_url = "https://vendor.example/api"
[auth]
type = "oauth2_client_credentials"
token_url = "http://10.0.0.1/oauth/token"
client_id = "id"
client_secret = { value = "s" }
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
    let e = crate::source::SourceClient::new(&src)
        .unwrap_err()
        .to_string();
    assert!(e.contains("allow_insecure_http"), "{e}");
}

#[tokio::test]
async fn reads_stop_at_the_cap_announced_or_not() {
    let body = "y".repeat(10_000);
    // With a Content-Length, then without one (the body ends when the connection closes).
    let announced = response("200 OK", "", &body);
    let unannounced = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{body}").into_bytes();
    let (url, _) = serve(vec![announced, unannounced]).await;
    let c = plain_client(&config_with(|_| {}));
    for _ in 0..2 {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(read_capped(resp, 1000).await, Err(ReadError::TooLarge));
    }
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(read_capped(resp, 10_000).await.unwrap().len(), 10_000);
}

/// A source's config for a stream at `url` with quick retries.
fn source_at(url: &str, http: &str) -> crate::config::SourceConfig {
    toml::from_str(&format!(
        r#"
name = "t"
base_url = "{url}"
[http]
backoff_initial_ms = 1
backoff_max_ms = 5
{http}
[[streams]]
name = "s"
entity = "volunteer"
path = "/people"
records = "/items"
key = "id"
mode = "full_refresh"
pagination = {{ type = "none" }}
[streams.fields]
"#
    ))
    .unwrap()
}

async fn fetch(
    src: &crate::config::SourceConfig,
) -> Result<crate::source::FetchStats, crate::source::SourceError> {
    let client = crate::source::SourceClient::new(src)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let stats = client
        .fetch_stream(&src.streams[0], &crate::source::FetchPlan::default(), tx)
        .await;
    drain.await.unwrap();
    stats
}

/// The platform config of the example, pointed at `url`, with quick retries; and a store with
/// one event waiting.
fn platform_at(
    url: &str,
    dir: &Path,
) -> (
    crate::config::Config,
    Arc<std::sync::Mutex<crate::store::Store>>,
) {
    let mut config = crate::config::Config::from_toml(
        crate::cli::demo::EXAMPLE_CONFIG,
        &dir.join("community-sync.toml"),
    )
    .unwrap();
    config.platform.url = format!("{url}/api/v1/events");
    config.platform.auth = Default::default();
    config.platform.http.backoff_initial_ms = 1;
    config.platform.http.backoff_max_ms = 5;
    let mut store = crate::store::Store::open(&dir.join("s.db")).unwrap();
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction().unwrap();
    let ev = crate::model::Event::new(
        "person",
        "P1",
        1,
        crate::model::Op::Upsert,
        vec!["name".into()],
        Some(serde_json::json!({"person": "P1"})),
    );
    crate::store::enqueue_event(&tx, &codec, &ev).unwrap();
    tx.commit().unwrap();
    (config, Arc::new(std::sync::Mutex::new(store)))
}

fn pending(store: &std::sync::Mutex<crate::store::Store>) -> i64 {
    let s = store.lock().unwrap();
    s.conn()
        .query_row(
            "SELECT count(*) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Before, a source gave up at a 408 while the platform retried it.
#[tokio::test]
async fn a_408_is_retried_the_same_way_by_sources_and_the_push() {
    let timed_out = response("408 Request Timeout", "", "");
    // The source: 408, then the page.
    let (url, hits) = serve(vec![
        timed_out.clone(),
        response("200 OK", "", r#"{"items":[{"id":1}]}"#),
    ])
    .await;
    let stats = fetch(&source_at(&url, "")).await.unwrap();
    assert_eq!((stats.records, stats.retries), (1, 1));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // With no retry left, both give up on the 408.
    let (url, _) = serve(vec![timed_out.clone()]).await;
    let e = fetch(&source_at(&url, "retries = 0")).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 408"), "{e}");

    // The push: 408, then the acknowledgement.
    let dir = tempfile::tempdir().unwrap();
    let (url, hits) = serve(vec![
        timed_out.clone(),
        response("200 OK", "", r#"{"results":[]}"#),
    ])
    .await;
    let (config, store) = platform_at(&url, dir.path());
    let pusher = crate::push::Pusher::new(&config).unwrap();
    let stats = pusher.drain(&store, None).await.unwrap();
    assert_eq!((stats.sent, stats.retries), (1, 1));
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(vec![timed_out]).await;
    let (mut config, store) = platform_at(&url, dir.path());
    config.platform.http.retries = 0;
    let e = crate::push::Pusher::new(&config)
        .unwrap()
        .drain(&store, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 408"), "{e}");
    assert_eq!(pending(&store), 1);
}

/// Before, the platform's answer was read whole, whatever its size.
#[tokio::test]
async fn a_platform_answer_past_the_cap_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(r#"{{"results":[],"pad":"{}"}}"#, "z".repeat(8192));
    let (url, hits) = serve(vec![response("200 OK", "", &big)]).await;
    let (mut config, store) = platform_at(&url, dir.path());
    config.platform.http.max_response_bytes = 4096;
    let e = crate::push::Pusher::new(&config)
        .unwrap()
        .drain(&store, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_response_bytes"), "{e}");
    // Not a transient failure: no retries; the event stays pending, to be sent again.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(pending(&store), 1);
}

const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");

/// A local https server (certificate for localhost from tests/tls/ca.pem) answering 200.
async fn serve_tls() -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{TLS_DIR}/localhost.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{TLS_DIR}/localhost.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    answer_one(tls, &response("200 OK", "", "ok")).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_ca_file_is_the_only_trust() {
    let port = serve_tls().await;
    let url = format!("https://localhost:{port}/");
    let with_ca = |ca: Option<&str>| {
        client(
            &config_with(|h| h.ca_file = ca.map(String::from)),
            ClientSpec {
                http_key: "http",
                dir: Path::new(TLS_DIR),
                redirect: reqwest::redirect::Policy::none(),
                headers: Default::default(),
                identity: None,
            },
        )
        .unwrap()
    };
    // Its own CA: trusted.
    let ok = with_ca(Some("ca.pem")).get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // The public roots do not know the test CA, and another private CA is not it.
    assert!(with_ca(None).get(&url).send().await.is_err());
    assert!(with_ca(Some("other-ca.pem"))
        .get(&url)
        .send()
        .await
        .is_err());
    // A CA bundle replaces the public roots rather than joining them.
    let h = config_with(|h| h.ca_file = Some("ca.pem".into()));
    match roots(&h, "http", Path::new(TLS_DIR)).unwrap() {
        Roots::Only(certs) => assert_eq!(certs.len(), 1),
        Roots::Public => panic!("a ca_file must replace the public roots"),
    }
    assert!(matches!(
        roots(&HttpConfig::default(), "http", Path::new(TLS_DIR)).unwrap(),
        Roots::Public
    ));
}

/// Before, a source's ca_file was taken literally, `${CREDENTIALS_DIRECTORY}` and all.
#[test]
fn a_source_ca_file_expands_the_credentials_directory() {
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
        eprintln!("SKIPPED: CREDENTIALS_DIRECTORY is set; the test uses its fallback");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = crate::source::secret::credentials_fallback(dir.path());
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::copy(format!("{TLS_DIR}/ca.pem"), creds.join("ca.pem")).unwrap();
    let src = source_at(
        "https://vendor.example/api",
        "ca_file = \"${CREDENTIALS_DIRECTORY}/ca.pem\"",
    );
    crate::source::SourceClient::with_config_dir(&src, dir.path()).unwrap();
    let h = config_with(|h| h.ca_file = Some("${CREDENTIALS_DIRECTORY}/ca.pem".into()));
    assert!(matches!(
        roots(&h, "http", dir.path()).unwrap(),
        Roots::Only(_)
    ));
}
