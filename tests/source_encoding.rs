//! GBK, UTF-8 with BOM and forced encodings decode to the same records as plain UTF-8;
//! undeclared GBK read as UTF-8 is an error, not mojibake.

mod source_common;

use community_sync::sim::variants::{SimEncoding, Variant, VariantConfig};
use community_sync::source::SourceError;
use source_common::*;

const PAGED: &str = r#"records = "/items"
pagination = { type = "page_number", size = 10, total_path = "/total" }"#;

async fn records_with(
    encoding: SimEncoding,
    source_extra: &str,
) -> Result<Vec<serde_json::Value>, SourceError> {
    let v = Variant::start(VariantConfig {
        records: 25,
        encoding,
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    Ok(fetch_all(&source(&v.base_url, source_extra, "", "", PAGED))
        .await?
        .records)
}

#[tokio::test]
async fn every_encoding_yields_the_same_records() {
    let utf8 = records_with(SimEncoding::Utf8, "").await.unwrap();
    assert_all_once(&utf8, 25);
    assert_eq!(utf8[0]["name"], "张伟");
    assert_eq!(utf8[1]["community"], "幸福社区");
    let bom = records_with(SimEncoding::Utf8Bom, "").await.unwrap();
    assert_eq!(bom, utf8);
    let gbk = records_with(SimEncoding::Gbk { declare: true }, "")
        .await
        .unwrap();
    assert_eq!(gbk, utf8);
    let forced = records_with(SimEncoding::Gbk { declare: false }, r#"encoding = "gbk""#)
        .await
        .unwrap();
    assert_eq!(forced, utf8);
    let gb18030 = records_with(
        SimEncoding::Gbk { declare: false },
        r#"encoding = "gb18030""#,
    )
    .await
    .unwrap();
    assert_eq!(gb18030, utf8);
}

#[tokio::test]
async fn undeclared_gbk_read_as_utf8_is_a_clear_error() {
    let err = records_with(SimEncoding::Gbk { declare: false }, "")
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Malformed { .. }), "{msg}");
    assert!(
        msg.contains("source t") && msg.contains("/api/items") && msg.contains("encoding"),
        "{msg}"
    );
}
