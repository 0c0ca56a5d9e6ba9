//! Pipeline-level behaviour against the variant server: full refresh with delete detection
//! (flowing to reconcile and the outbox), and schema drift reported once per change.

use std::path::Path;
use std::sync::{Arc, Mutex};

use community_sync::config::Config;
use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::sim::variants::{Variant, VariantConfig};
use community_sync::store::Store;
use serde_json::{json, Value};

/// A person record with a valid ID number (check digit computed) for resident `i`.
fn person(i: usize) -> Value {
    let first17 = format!("36010219800101{:03}", i % 1000);
    let check = community_sync::normalize::id_number::check_char(&first17).unwrap();
    json!({
        "id": format!("C{i:04}"),
        "name": format!("测试{}", ["甲", "乙", "丙", "丁", "戊"][i % 5]),
        "idno": format!("{first17}{check}"),
        "mobile": format!("139{:08}", i),
        "balance": format!("{}.50", i),
        "updated_at": "2024-01-01T00:00:00+08:00",
    })
}

fn config_text(base_url: &str, store: &Path, extra_stream: &str) -> String {
    format!(
        r#"
[store]
path = {store:?}
[platform]
url = "http://127.0.0.1:9/api/v1/events"
[[sources]]
name = "registry"
base_url = "{base_url}"
[[sources.streams]]
name = "cards"
entity = "card_account"
path = "/cards"
records = "/items"
key = "id"
mode = "full_refresh"
pagination = {{ type = "page_number", page_param = "page", size_param = "size", size = 7, has_more_path = "/hasMore" }}
{extra_stream}
[sources.streams.fields]
card_no = "id"
name = "name"
id_number = "idno"
phone = "mobile"
balance_fen = {{ path = "balance", unit = "yuan" }}
"#
    )
}

fn context(text: &str, dir: &Path) -> Context {
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let store = Store::open(&config.store.path).unwrap();
    Context {
        config: Arc::new(config),
        store: Arc::new(Mutex::new(store)),
    }
}

fn opts() -> SyncOptions {
    SyncOptions {
        progress: None,
        sources: vec![],
        full: false,
        trigger: "test".into(),
        push: false,
        confirm_deletes: false,
        stop: None,
    }
}

fn count(ctx: &Context, sql: &str) -> i64 {
    ctx.store
        .lock()
        .unwrap()
        .conn()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

async fn serve(records: Vec<Value>) -> Variant {
    Variant::start(VariantConfig {
        custom_records: Some(records),
        ..VariantConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refresh_marks_vanished_records_deleted_and_pushes_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let all: Vec<Value> = (0..30).map(person).collect();
    let v1 = serve(all.clone()).await;
    let ctx = context(&config_text(&v1.base_url, &store, ""), dir.path());
    let r1 = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r1.failed_streams(), 0, "{:?}", r1.streams);
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM persons WHERE retired = 0"),
        30
    );

    // Three records vanish from the system; a fourth changes.
    let mut fewer: Vec<Value> = all.iter().skip(3).cloned().collect();
    fewer[0]["balance"] = json!("999.00");
    let v2 = serve(fewer).await;
    let ctx = context(&config_text(&v2.base_url, &store, ""), dir.path());
    let before = count(&ctx, "SELECT count(*) FROM outbox");
    let r2 = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r2.failed_streams(), 0, "{:?}", r2.streams);
    assert_eq!(r2.streams[0].stats.deleted, 3);
    assert_eq!(r2.streams[0].stats.updated, 1);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        3
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM persons WHERE retired = 1"),
        3
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM outbox WHERE op = 'delete' AND entity = 'person'"
        ),
        3
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM outbox WHERE op = 'delete' AND entity = 'card_account'"
        ),
        3
    );
    // 3 person deletions + 3 card deletions + 1 card balance change.
    assert_eq!(count(&ctx, "SELECT count(*) FROM outbox") - before, 7);

    // A failed refresh never deletes: the system answers with an error page this time.
    let v3 = Variant::start(VariantConfig {
        custom_records: Some(vec![]),
        chaos: community_sync::sim::variants::Chaos {
            html_error: true,
            ..Default::default()
        },
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let ctx = context(&config_text(&v3.base_url, &store, ""), dir.path());
    let r3 = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r3.failed_streams(), 1);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        3
    );
    drop((v1, v2, v3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_drift_is_reported_once_and_can_fail_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let all: Vec<Value> = (0..25).map(person).collect();
    let v1 = serve(all.clone()).await;
    let ctx = context(&config_text(&v1.base_url, &store, ""), dir.path());
    pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM schema_drift"), 0);

    // The vendor renames `balance` (the mapped field stops arriving) and sends `mobile` as a
    // number.
    let drifted: Vec<Value> = all
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let b = r["balance"].clone();
            r.as_object_mut().unwrap().remove("balance");
            r["amount"] = b;
            let m: u64 = r["mobile"].as_str().unwrap().parse().unwrap();
            r["mobile"] = json!(m);
            r
        })
        .collect();
    let v2 = serve(drifted).await;
    let ctx = context(&config_text(&v2.base_url, &store, ""), dir.path());
    let r = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(
        r.failed_streams(),
        0,
        "warn is the default: the stream still succeeds"
    );
    let kinds: Vec<(String, String)> = {
        let g = ctx.store.lock().unwrap();
        let mut stmt = g
            .conn()
            .prepare("SELECT field, kind FROM schema_drift ORDER BY field")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        kinds,
        vec![
            ("balance_fen".to_string(), "missing".to_string()),
            ("phone".to_string(), "type_changed".to_string())
        ]
    );
    // Reported once: the same drifted data again adds nothing.
    pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(count(&ctx, "SELECT count(*) FROM schema_drift"), 2);

    // With schema_drift = "fail" a new drift fails the stream and keeps its state.
    let renamed: Vec<Value> = all
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let n = r["name"].clone();
            r.as_object_mut().unwrap().remove("name");
            r["fullname"] = n;
            r
        })
        .collect();
    let v3 = serve(renamed).await;
    let ctx = context(
        &config_text(&v3.base_url, &store, "schema_drift = \"fail\""),
        dir.path(),
    );
    let r = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 1);
    let err = r.streams[0].error.clone().unwrap();
    assert!(
        err.contains("schema drift") && err.contains("name"),
        "{err}"
    );
    drop((v1, v2, v3));
}
