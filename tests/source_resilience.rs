//! Retries recover from 503/429 (honouring Retry-After), hangs are cut by the timeout,
//! and connection failures are clear.

mod source_common;

use community_sync::sim::variants::{Chaos, Variant, VariantConfig};
use community_sync::source::SourceError;
use source_common::*;

const PAGED: &str = r#"records = "/items"
pagination = { type = "page_number", size = 10, total_path = "/total" }"#;

async fn sim(chaos: Chaos) -> Variant {
    Variant::start(VariantConfig {
        records: 25,
        chaos,
        ..VariantConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn recovers_from_503s() {
    let v = sim(Chaos {
        fail_first: 2,
        ..Chaos::default()
    })
    .await;
    let f = fetch_all(&source(&v.base_url, "", "", "retries = 4", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 3 + 2);
    assert_eq!(f.stats.retries, 2);
}

#[tokio::test]
async fn gives_up_after_the_retry_budget() {
    let v = sim(Chaos {
        fail_first: 10,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(&v.base_url, "", "", "retries = 2", PAGED))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SourceError::Status {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/api/items"));
    assert!(
        err.to_string().contains("starting up"),
        "the system's own words are quoted: {err}"
    );
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn recovers_from_429_with_retry_after_seconds() {
    let v = sim(Chaos {
        throttle_next: 1,
        retry_after: Some("1".into()),
        ..Chaos::default()
    })
    .await;
    let f = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "retries = 1\nbackoff_max_ms = 2000",
        PAGED,
    ))
    .await
    .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 4);
    assert_eq!(f.stats.retries, 1);
}

#[tokio::test]
async fn recovers_from_429_with_retry_after_date() {
    let past =
        httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(5));
    let v = sim(Chaos {
        fail_first: 1,
        throttle_next: 2,
        retry_after: Some(past),
        ..Chaos::default()
    })
    .await;
    let f = fetch_all(&source(&v.base_url, "", "", "retries = 3", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 6);
}

#[tokio::test]
async fn random_failures_are_absorbed_by_retries() {
    let v = sim(Chaos {
        random_fail_rate: 0.5,
        seed: 7,
        ..Chaos::default()
    })
    .await;
    let f = fetch_all(&source(&v.base_url, "", "", "retries = 10", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert!(f.stats.retries > 0, "the seed must produce some failures");
    assert_eq!(v.requests(), 3 + f.stats.retries);
}

#[tokio::test]
async fn a_hanging_request_is_cut_by_the_timeout() {
    let v = sim(Chaos {
        hang_request: Some(1),
        hang_secs: 30,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "timeout_secs = 0.3\nretries = 0",
        PAGED,
    ))
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("/api/items"));

    // With one retry the second attempt succeeds.
    let v = sim(Chaos {
        hang_request: Some(1),
        hang_secs: 30,
        ..Chaos::default()
    })
    .await;
    let f = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "timeout_secs = 0.3\nretries = 1",
        PAGED,
    ))
    .await
    .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 4);
}

#[tokio::test]
async fn connection_refused_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetch_all(&source(
        &format!("http://{addr}"),
        "",
        "",
        "retries = 1",
        PAGED,
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, SourceError::Connect { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("check base_url"));
}
