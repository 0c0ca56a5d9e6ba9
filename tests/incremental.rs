//! Incremental sync while the systems change under it: nothing lost, nothing duplicated.

mod common;

use community_sync::config::Config;
use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::sim::Mutation;
use community_sync::source::config::PaginationConfig;

fn opts() -> SyncOptions {
    common::sync_options(true)
}

/// Small pages, so that one sync spans many requests and mutations land between them.
fn small_pages(ctx: &Context) -> Context {
    let mut config: Config = (*ctx.config).clone();
    for s in &mut config.sources {
        for t in &mut s.streams {
            match t.pagination.as_mut().expect("HTTP streams have pagination") {
                PaginationConfig::PageNumber { size, .. } => *size = 15,
                PaginationConfig::OffsetLimit { limit, .. } => *limit = 15,
                PaginationConfig::Cursor { size, .. } => *size = 15,
                PaginationConfig::NextLink { size, .. } => *size = 15,
                _ => {}
            }
        }
    }
    Context {
        config: std::sync::Arc::new(config),
        store: ctx.store.clone(),
    }
}

fn kept(ctx: &Context, source: &str, stream: &str) -> usize {
    let g = ctx.store.lock().unwrap();
    g.conn()
        .query_row(
            "SELECT count(*) FROM source_records WHERE source = ?1 AND stream = ?2 AND status = 'ok' AND deleted = 0",
            [source, stream],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changed_between_pages_are_neither_lost_nor_duplicated() {
    let sim = common::sim(400).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = small_pages(&common::context(&sim, dir.path()));
    // Residents with a valid ID in each system, whose records we change mid-sync.
    let pick = |source: &str| {
        sim.residents_in(source)
            .into_iter()
            .find(|r| {
                sim.record_info(source, *r)
                    .is_some_and(|i| i.has_valid_id && !i.rejected)
            })
            .unwrap()
    };
    let changes = [
        ("onecard", "cardholders", pick("onecard")),
        ("volunteer", "volunteers", pick("volunteer")),
        ("eldercare", "elders", pick("eldercare")),
        ("health", "patients", pick("health")),
    ];
    for (source, stream, resident) in changes {
        sim.after_pages(
            source,
            stream,
            2,
            Mutation::ChangePhone {
                source: source.into(),
                resident,
            },
        )
        .unwrap();
    }
    // A record of the first page is touched after page 3: it moves to the end of the order.
    let early_key = sim
        .record_key("eldercare", "elders", sim.residents_in("eldercare")[0])
        .unwrap();
    sim.after_pages(
        "eldercare",
        "service_orders",
        3,
        Mutation::Touch {
            source: "eldercare".into(),
            stream: "elders".into(),
            key: early_key,
        },
    )
    .unwrap();
    let first = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(first.failed_streams(), 0, "{:?}", first.streams);
    for (source, stream, _) in changes {
        assert!(
            sim.pages_served(source, stream).unwrap() > 3,
            "{source}/{stream} must span pages"
        );
    }
    // The changes happened after the first run's window closed: the next run catches them.
    let second = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(second.failed_streams(), 0, "{:?}", second.streams);
    let truth = sim.truth();
    for ((source, stream), n) in &truth.accepted {
        assert_eq!(
            kept(&ctx, source, stream),
            *n,
            "{source}/{stream}: store differs from the system"
        );
    }
    let persons = common::count(&ctx, "SELECT count(*) FROM persons WHERE retired = 0") as usize;
    assert_eq!(persons, truth.persons);
    // Every changed record carries its new (2026) change time in the store.
    for (source, stream, resident) in changes {
        let key = sim.record_key(source, stream, resident).unwrap();
        let g = ctx.store.lock().unwrap();
        let updated: String = g
            .conn()
            .query_row(
                "SELECT updated_at FROM source_records WHERE source = ?1 AND stream = ?2 AND source_key = ?3",
                [source, stream, key.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            updated.as_str() > "2026",
            "{source}/{stream}/{key}: change lost ({updated})"
        );
    }
    // Exactly one source record per key: nothing duplicated.
    let dupes = common::count(
        &ctx,
        "SELECT count(*) FROM (SELECT 1 FROM source_records GROUP BY source, stream, source_key HAVING count(*) > 1)",
    );
    assert_eq!(dupes, 0);
    assert_eq!(common::duplicate_event_ids(&ctx), 0, "no event id twice");
    // And a third run finds nothing new.
    let third = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert!(
        third.streams.iter().all(|s| s.stats.written() == 0),
        "{:?}",
        third.streams
    );
    assert_eq!(third.reconcile.events, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_stamped_at_the_cursor_is_still_caught() {
    let sim = common::sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    let first = pipeline::sync(&ctx, &opts()).await.unwrap();
    let cursor = first
        .streams
        .iter()
        .find(|s| s.source == "volunteer" && s.stream == "volunteers")
        .and_then(|s| s.cursor.clone())
        .unwrap();
    // A change committed late, stamped exactly at the cursor (the inclusive lower bound).
    let resident = sim
        .residents_in("volunteer")
        .into_iter()
        .find(|r| {
            sim.record_info("volunteer", *r)
                .is_some_and(|i| i.has_valid_id && !i.rejected)
        })
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(&cursor).unwrap();
    sim.mutate_at(
        Mutation::ChangePhone {
            source: "volunteer".into(),
            resident,
        },
        at,
    )
    .unwrap();
    let second = pipeline::sync(&ctx, &opts()).await.unwrap();
    let vols = second
        .streams
        .iter()
        .find(|s| s.stream == "volunteers")
        .unwrap();
    assert_eq!(vols.stats.updated, 1, "{vols:?}");
    assert_eq!(second.reconcile.persons_changed, 1);
    sim.shutdown().await;
}
