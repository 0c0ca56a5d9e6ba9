//! Each pagination style fetches exactly all records once; broken paging is an error.

mod source_common;

use community_sync::sim::variants::{Chaos, Variant, VariantConfig};
use community_sync::source::{FetchPlan, SourceClient, SourceError};
use source_common::*;

async fn sim(records: usize) -> Variant {
    Variant::start(VariantConfig {
        records,
        ..VariantConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn page_number_with_total() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "page_number", page_param = "page", size_param = "rows", size = 10, total_path = "/total" }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(f.stats.pages, 3);
    assert_eq!(f.stats.records, 25);
    assert_eq!(v.requests(), 3);
    assert_eq!(f.pages[0].total, Some(25));
    assert_eq!(f.pages[0].url_path, "/api/items");
    assert_eq!(
        f.pages.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn page_number_stops_on_short_then_on_empty_page() {
    let v = sim(25).await;
    let stream = r#"records = "/items"
pagination = { type = "page_number", size = 10 }"#;
    let f = fetch_all(&source(&v.base_url, "", "", "", stream))
        .await
        .unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 3, "stops on the short third page");

    let v = sim(20).await;
    let f = fetch_all(&source(&v.base_url, "", "", "", stream))
        .await
        .unwrap();
    assert_all_once(&f.records, 20);
    assert_eq!(
        v.requests(),
        3,
        "a full last page needs one empty page to end"
    );
    assert_eq!(f.pages.len(), 2, "empty pages are not sent");
}

#[tokio::test]
async fn page_number_with_has_more_flag_and_server_page_cap() {
    let v = Variant::start(VariantConfig {
        records: 25,
        max_page_size: 7,
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    // The server hands out 7 per page although 10 are asked: has_more keeps paging right.
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "page_number", size = 7, has_more_path = "/hasMore" }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 4);
}

#[tokio::test]
async fn offset_limit_with_total_even_when_the_server_caps_pages() {
    let v = Variant::start(VariantConfig {
        records: 25,
        max_page_size: 7,
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "offset_limit", limit = 10, total_path = "/total" }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 4);
}

#[tokio::test]
async fn cursor_token() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "cursor", cursor_path = "/nextCursor", cursor_param = "cursor", size_param = "limit", size = 10 }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn next_link_by_pointer() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "next_link", next_path = "/next", size_param = "limit", size = 10 }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn fhir_bundle_next_link_records_and_total() {
    let v = Variant::start(VariantConfig {
        records: 25,
        fhir: true,
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/entry"
record_pointer = "/resource"
query = { _sort = "_lastUpdated" }
pagination = { type = "next_link", fhir = true, size_param = "_count", size = 10 }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert!(f.records.iter().all(|r| r["resourceType"] == "Patient"));
    assert_eq!(f.pages[0].total, Some(25));
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn link_header() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "link_header", size_param = "limit", size = 10 }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn post_body_page_number_merges_stream_body() {
    let v = sim(25).await;
    // The fixed body's filter reaches the server together with page and size.
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
method = "POST"
body = { updated_since = "2024-01-01T00:10:00+08:00" }
pagination = { type = "page_number", size = 5, total_path = "/total", in_body = true }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_eq!(seqs(&f.records), (10..25).collect::<Vec<_>>());
    assert_eq!(v.requests(), 3);
}

#[tokio::test]
async fn post_body_offset_limit() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "offset_limit", limit = 10, total_path = "/total", in_body = true }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
}

#[tokio::test]
async fn no_pagination_is_one_request() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
query = { size = "100" }
pagination = { type = "none" }"#,
    );
    let f = fetch_all(&src).await.unwrap();
    assert_all_once(&f.records, 25);
    assert_eq!(v.requests(), 1);
}

#[tokio::test]
async fn plan_max_pages_stops_early_and_http_max_pages_is_an_error() {
    let v = sim(25).await;
    let stream = r#"records = "/items"
pagination = { type = "page_number", size = 10, total_path = "/total" }"#;
    let src = source(&v.base_url, "", "", "", stream);
    let client = SourceClient::new(&src).unwrap();
    let plan = FetchPlan {
        max_pages: Some(1),
        ..FetchPlan::default()
    };
    let f = fetch(&client, stream_of(&src), &plan).await.unwrap();
    assert_eq!(f.records.len(), 10);
    assert_eq!(v.requests(), 1);

    let src = source(&v.base_url, "", "", "max_pages = 2", stream);
    let err = fetch_all(&src).await.err().unwrap();
    assert!(
        matches!(err, SourceError::TooManyPages { max: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/api/items"));
}

fn stream_of(s: &community_sync::config::SourceConfig) -> &community_sync::config::StreamConfig {
    &s.streams[0]
}

#[tokio::test]
async fn repeating_cursor_is_an_error_not_a_loop() {
    let v = Variant::start(VariantConfig {
        records: 25,
        chaos: Chaos {
            repeat_cursor: true,
            ..Chaos::default()
        },
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "cursor", cursor_path = "/nextCursor", cursor_param = "cursor", size_param = "limit", size = 10 }"#,
    );
    let err = fetch_all(&src).await.err().unwrap();
    assert!(
        matches!(err, SourceError::Repeated { what: "cursor", .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("/api/items") && msg.contains("stream s"),
        "{msg}"
    );
    assert_eq!(v.requests(), 2);
}

#[tokio::test]
async fn repeating_link_is_an_error_not_a_loop() {
    let v = Variant::start(VariantConfig {
        records: 25,
        chaos: Chaos {
            repeat_link: true,
            ..Chaos::default()
        },
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "link_header", size_param = "limit", size = 10 }"#,
    );
    let err = fetch_all(&src).await.err().unwrap();
    assert!(
        matches!(
            err,
            SourceError::Repeated {
                what: "next link",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/api/items"));
}

#[tokio::test]
async fn next_link_to_another_host_is_refused() {
    let v = sim(25).await;
    // The client talks to "localhost"; the server's links name 127.0.0.1: another host.
    let base = v.base_url.replace("127.0.0.1", "localhost");
    let src = source(
        &base,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "next_link", next_path = "/next", size_param = "limit", size = 10 }"#,
    );
    let err = fetch_all(&src).await.err().unwrap();
    assert!(matches!(err, SourceError::CrossHostLink { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"));
}

#[tokio::test]
async fn probe_reports_first_page_and_total() {
    let v = sim(25).await;
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "page_number", size = 10, total_path = "/total" }"#,
    );
    let client = SourceClient::new(&src).unwrap();
    let r = client.probe(stream_of(&src)).await.unwrap();
    assert_eq!(r.records, 10);
    assert_eq!(r.total, Some(25));
    assert!(r.has_more);
    assert_eq!(v.requests(), 1);
}
