//! Hostile or broken responses fail clearly, naming the source, stream and path; limits on
//! concurrency, redirects and insecure transport hold.

mod source_common;

use std::sync::Arc;

use community_sync::sim::variants::{Chaos, Variant, VariantConfig};
use community_sync::source::{FetchPlan, SourceClient, SourceError};
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

fn assert_names_path(err: &SourceError) {
    let msg = err.to_string();
    assert!(msg.contains("source t"), "{msg}");
    assert!(msg.contains("stream s"), "{msg}");
    assert!(msg.contains("/api/items"), "{msg}");
    assert!(!msg.contains('?'), "query string leaked: {msg}");
}

#[tokio::test]
async fn html_error_page_with_200_is_not_json() {
    let v = sim(Chaos {
        html_error: true,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(&v.base_url, "", "", "", PAGED))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::NotJson { .. }), "{err}");
    assert_names_path(&err);
    let msg = err.to_string();
    assert!(msg.contains("<html><body>"), "{msg}");
    assert!(!msg.contains("13800138000"), "phone number leaked: {msg}");
}

#[tokio::test]
async fn oversized_body_is_cut() {
    let v = sim(Chaos {
        oversized_bytes: 200_000,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "max_response_bytes = 100000",
        PAGED,
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, SourceError::TooLarge { limit: 100_000, .. }),
        "{err}"
    );
    assert_names_path(&err);
}

#[tokio::test]
async fn deeply_nested_json_is_refused() {
    let v = sim(Chaos {
        nested_depth: 5000,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(&v.base_url, "", "", "max_json_depth = 64", PAGED))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::TooDeep { max: 64, .. }), "{err}");
    assert_names_path(&err);
}

#[tokio::test]
async fn too_many_records_on_a_page() {
    let v = sim(Chaos::default()).await;
    let err = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "max_records_per_page = 5",
        PAGED,
    ))
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("max_records_per_page"));
}

#[tokio::test]
async fn records_pointer_at_a_non_array_is_a_shape_error() {
    let v = sim(Chaos::default()).await;
    let err = fetch_all(&source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/total"
pagination = { type = "none" }"#,
    ))
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::Shape { .. }), "{err}");
    assert_names_path(&err);
}

#[tokio::test]
async fn cross_host_redirect_is_not_followed() {
    let v = sim(Chaos {
        redirect_cross_host: true,
        ..Chaos::default()
    })
    .await;
    let err = fetch_all(&source(&v.base_url, "", "", "", PAGED))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, SourceError::CrossHostRedirect { .. }),
        "{err}"
    );
    assert_names_path(&err);
    assert!(err.to_string().contains("localhost"));
    assert_eq!(v.requests(), 1, "the redirect target was not requested");
}

#[tokio::test]
async fn insecure_http_to_a_non_loopback_host_is_refused_at_creation() {
    let src = source("http://10.0.0.1:8080", "", "", "", PAGED);
    let err = SourceClient::new(&src).err().unwrap();
    assert!(matches!(err, SourceError::InsecureHttp { .. }), "{err}");
    assert!(err.to_string().contains("allow_insecure_http"));
    let src = source(
        "http://10.0.0.1:8080",
        "",
        "",
        "allow_insecure_http = true",
        PAGED,
    );
    assert!(SourceClient::new(&src).is_ok());
    let src = source("https://10.0.0.1:8443", "", "", "", PAGED);
    assert!(SourceClient::new(&src).is_ok());
}

#[tokio::test]
async fn bad_ca_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let src = source("https://10.0.0.1", "", "", r#"ca_file = "ca.pem""#, PAGED);
    let err = SourceClient::with_config_dir(&src, dir.path())
        .err()
        .unwrap();
    assert!(err.to_string().contains("ca.pem"), "{err}");
    let src = source(
        "https://10.0.0.1",
        "",
        "",
        r#"ca_file = "missing.pem""#,
        PAGED,
    );
    let err = SourceClient::with_config_dir(&src, dir.path())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

async fn max_in_flight_with(concurrency: usize) -> u64 {
    let v = sim(Chaos {
        delay_ms: 40,
        ..Chaos::default()
    })
    .await;
    let src = source(
        &v.base_url,
        "",
        "",
        &format!("concurrency = {concurrency}"),
        PAGED,
    );
    let client = Arc::new(SourceClient::new(&src).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let src = src.clone();
        tasks.push(tokio::spawn(async move {
            fetch(&client, stream(&src), &FetchPlan::default())
                .await
                .map(|f| f.records.len())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 25);
    }
    assert_eq!(v.requests(), 12);
    v.max_in_flight()
}

#[tokio::test]
async fn concurrency_limit_is_shared_by_all_streams_of_a_source() {
    assert_eq!(max_in_flight_with(1).await, 1);
    assert!(max_in_flight_with(2).await <= 2);
}

#[tokio::test]
async fn rate_limit_still_fetches_everything() {
    let v = sim(Chaos::default()).await;
    let f = fetch_all(&source(&v.base_url, "", "", "rate_limit_rps = 200", PAGED))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
}
