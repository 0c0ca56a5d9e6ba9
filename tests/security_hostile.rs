//! Hostile input through the whole pipeline: a source whose responses exceed the size cap, and
//! one whose responses nest deeper than allowed, fail their pages with a clear error; nothing
//! of theirs is stored, their cursors do not move, and every other source syncs as usual.

mod common;

use std::sync::{Arc, Mutex};

use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_deeply_nested_responses_fail_only_their_pages() {
    let sim = common::sim(200).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    let mut config = (*ctx.config).clone();
    drop(ctx);
    let names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let (big, deep) = (names[0].clone(), names[1].clone());
    for s in &mut config.sources {
        if s.name == big {
            s.http.max_response_bytes = 200;
            s.http.retries = 0;
        }
        if s.name == deep {
            s.http.max_json_depth = 2;
            s.http.retries = 0;
        }
    }
    let store = Store::open_configured(&config).unwrap();
    let ctx = Context {
        config: Arc::new(config),
        store: Arc::new(Mutex::new(store)),
    };
    let report = pipeline::sync(
        &ctx,
        &SyncOptions {
            trigger: "test".into(),
            push: false,
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap();
    for s in &report.streams {
        let err = s.error.clone().unwrap_or_default();
        if s.source == big {
            assert!(
                !s.ok && err.contains("max_response_bytes"),
                "{}/{}: {err}",
                s.source,
                s.stream
            );
        } else if s.source == deep {
            assert!(
                !s.ok && err.contains("max_json_depth"),
                "{}/{}: {err}",
                s.source,
                s.stream
            );
        } else {
            assert!(s.ok, "{}/{} failed: {err}", s.source, s.stream);
            assert!(s.fetched > 0);
        }
    }
    let stored = |src: &str| {
        common::count(
            &ctx,
            &format!("SELECT count(*) FROM source_records WHERE source = '{src}'"),
        )
    };
    assert_eq!(stored(&big), 0);
    assert_eq!(stored(&deep), 0);
    let cursors = |src: &str| {
        common::count(
            &ctx,
            &format!("SELECT count(*) FROM sync_state WHERE source = '{src}'"),
        )
    };
    assert_eq!(
        cursors(&big) + cursors(&deep),
        0,
        "cursors of failed streams stay where they were"
    );
    let others: i64 = names[2..].iter().map(|n| stored(n)).sum();
    assert!(others > 0, "the other sources synced");
    sim.shutdown().await;
}
