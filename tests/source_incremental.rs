//! The incremental window reaches the system as configured: inclusive lower bound,
//! exclusive upper bound, formats and prefixes.

mod source_common;

use community_sync::sim::variants::{updated_at, Variant, VariantConfig};
use community_sync::source::{CursorBound, FetchPlan, SourceClient, SourceError};
use source_common::*;

#[tokio::test]
async fn lower_and_upper_bounds_select_the_window() {
    let v = Variant::start(VariantConfig {
        records: 30,
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
pagination = { type = "cursor", cursor_path = "/nextCursor", cursor_param = "cursor", size_param = "limit", size = 4 }
[streams.incremental]
cursor_field = "updated_at"
param = "updated_since"
format = "rfc3339"
upper_param = "updated_before""#,
    );
    let client = SourceClient::new(&src).unwrap();
    let plan = FetchPlan {
        lower: Some(CursorBound::Time(updated_at(5))),
        upper: Some(CursorBound::Time(updated_at(15))),
        max_pages: None,
    };
    let f = fetch(&client, stream(&src), &plan).await.unwrap();
    assert_eq!(seqs(&f.records), (5..15).collect::<Vec<_>>());
}

#[tokio::test]
async fn fhir_prefix_is_prepended() {
    let v = Variant::start(VariantConfig {
        records: 30,
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
pagination = { type = "next_link", fhir = true, size_param = "_count", size = 7 }
[streams.incremental]
cursor_field = "meta.lastUpdated"
param = "_lastUpdated"
prefix = "ge"
format = "rfc3339""#,
    );
    let client = SourceClient::new(&src).unwrap();
    let plan = FetchPlan {
        lower: Some(CursorBound::Time(updated_at(20))),
        ..FetchPlan::default()
    };
    let f = fetch(&client, stream(&src), &plan).await.unwrap();
    assert_eq!(seqs(&f.records), (20..30).collect::<Vec<_>>());
    assert_eq!(f.pages[0].total, Some(10));
}

#[tokio::test]
async fn a_window_without_an_incremental_table_is_a_config_error() {
    let v = Variant::start(VariantConfig::default()).await.unwrap();
    let src = source(
        &v.base_url,
        "",
        "",
        "",
        r#"records = "/items"
pagination = { type = "none" }"#,
    );
    let client = SourceClient::new(&src).unwrap();
    let plan = FetchPlan {
        lower: Some(CursorBound::Integer(3)),
        ..FetchPlan::default()
    };
    let err = fetch(&client, stream(&src), &plan).await.err().unwrap();
    assert!(matches!(err, SourceError::Config { .. }), "{err}");
    assert_eq!(v.requests(), 0);
}
