//! The end-to-end path against the simulator: full sync, no-op re-sync, one change, delivery.

mod common;

use community_sync::pipeline::{self, SyncOptions};

fn opts() -> SyncOptions {
    common::sync_options(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_matches_ground_truth_and_platform_gets_every_event() {
    let sim = common::sim(1500).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = community_sync::cli::demo::run_with(&sim, dir.path())
        .await
        .unwrap();
    let truth = &summary.truth;
    for (stream, [_, kept, _]) in &summary.records {
        assert_eq!(
            truth.accepted.get(stream),
            Some(kept),
            "kept records of {stream}"
        );
    }
    assert_eq!(
        summary.rejected_records_by_reason,
        truth.rejected_records_by_reason
    );
    assert_eq!(
        summary.rejected_fields_by_reason,
        truth.rejected_fields_by_reason
    );
    assert_eq!(summary.persons, truth.persons);
    assert_eq!(summary.persons_by_systems, truth.persons_by_systems);
    assert!(summary.matches_truth);
    assert!(summary.events_pushed > 0);
    // Every event pushed was applied by the platform exactly once.
    let platform = sim.platform();
    assert_eq!(platform.applications.len() as u64, summary.events_pushed);
    assert_eq!(platform.applications.values().max(), Some(&1));
    assert_eq!(platform.out_of_order, 0);
    // Every acknowledged batch left a link in the audit chain, and the chain verifies.
    let conn = rusqlite::Connection::open(&summary.store).unwrap();
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE kind = 'push_batch'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audited > 0, "push batches are audited");
    let config =
        community_sync::config::Config::load(std::path::Path::new(&summary.config)).unwrap();
    let codec = community_sync::store::Codec::from_config(&config).unwrap();
    let report = community_sync::audit::verify(&conn, &codec).unwrap();
    assert_eq!(
        report.keyed_rows, report.rows,
        "the demo store's chain is keyed"
    );
    assert!(report.ok(), "{report:?}");
    // The first load deferred the match-key indexes; reconcile built all four again.
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'source_records_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 6, "dirty, person and the four match-key indexes");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sync_writes_nothing_and_emits_nothing() {
    let sim = common::sim(800).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    let first = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(first.failed_streams(), 0, "{:?}", first.streams);
    let before = common::table_counts(&ctx);
    let changes_before = ctx.store.lock().unwrap().conn().total_changes();
    let second = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(second.failed_streams(), 0);
    for s in &second.streams {
        assert_eq!(
            s.stats.written(),
            0,
            "{}/{} wrote records on a no-change sync",
            s.source,
            s.stream
        );
    }
    assert_eq!(second.reconcile.events, 0);
    assert_eq!(second.push.map(|p| p.sent), Some(0));
    assert_eq!(common::table_counts(&ctx), before);
    // Only bookkeeping rows (runs, cursors of empty runs) may be written.
    let data_changes = ctx.store.lock().unwrap().conn().total_changes() - changes_before;
    assert!(
        data_changes <= 3 * second.streams.len() as u64 + 4,
        "{data_changes} row changes"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_yields_one_new_version_and_one_event() {
    let sim = common::sim(800).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    pipeline::sync(&ctx, &opts()).await.unwrap();
    let outbox_before = common::count(&ctx, "SELECT count(*) FROM outbox");
    // A resident known to the eldercare system by ID number changes phone there.
    let resident = sim.residents_in("eldercare")[0];
    sim.mutate(community_sync::sim::Mutation::ChangePhone {
        source: "eldercare".into(),
        resident,
    })
    .unwrap();
    let report = pipeline::sync(&ctx, &opts()).await.unwrap();
    let changed: u64 = report.streams.iter().map(|s| s.stats.updated).sum();
    assert_eq!(changed, 1, "exactly the changed record is rewritten");
    assert_eq!(report.reconcile.persons_changed, 1);
    assert_eq!(report.reconcile.events, 1);
    assert_eq!(
        common::count(&ctx, "SELECT count(*) FROM outbox") - outbox_before,
        1
    );
    let (entity, version, previous): (String, i64, i64) = {
        let g = ctx.store.lock().unwrap();
        g.conn()
            .query_row(
                "SELECT entity, version,
                        (SELECT max(version) FROM outbox o WHERE o.entity = last.entity
                           AND o.entity_key = last.entity_key AND o.id < last.id)
                 FROM outbox last ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(entity, "person");
    // How many versions the first load took depends on where its chunks ended; the change
    // is exactly one more.
    assert_eq!(version, previous + 1);
    assert_eq!(report.push.map(|p| p.sent), Some(1));
    sim.shutdown().await;
}

/// The four match-key indexes a first load defers (`store::first_load::MATCH_INDEXES`).
fn match_indexes(ctx: &community_sync::pipeline::Context) -> i64 {
    common::count(
        ctx,
        "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN
             ('source_records_id_key', 'source_records_np_key', 'source_records_ref',
              'source_records_dirty_id_key')",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_stopped_before_reconcile_still_reaches_ground_truth() {
    let sim = common::sim(600).await;
    let dir = tempfile::tempdir().unwrap();
    // A first load that stops after ingest (as a crash would): the indexes are still deferred.
    {
        let ctx = common::context(&sim, dir.path());
        assert_eq!(match_indexes(&ctx), 4, "a fresh store has them");
        let ingest = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
        assert_eq!(ingest.failed_streams(), 0, "{:?}", ingest.streams);
        assert_eq!(match_indexes(&ctx), 0, "deferred on the empty store");
    }
    // The next sync finds records, defers nothing, writes no record again, and its reconcile
    // builds the indexes before it links anyone.
    let ctx = common::context(&sim, dir.path());
    let again = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(again.failed_streams(), 0, "{:?}", again.streams);
    assert!(again.streams.iter().all(|s| s.stats.written() == 0));
    assert_eq!(match_indexes(&ctx), 4);
    let truth = sim.truth();
    let persons = common::count(&ctx, "SELECT count(*) FROM persons WHERE retired = 0") as usize;
    assert_eq!(persons, truth.persons);
    let unlinked = common::count(
        &ctx,
        "SELECT count(*) FROM source_records WHERE status = 'ok' AND deleted = 0 AND person_id IS NULL
             AND id_key IS NOT NULL",
    );
    assert_eq!(unlinked, 0, "every ID-bearing record is linked");
    let check: String = ctx
        .store
        .lock()
        .unwrap()
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    sim.shutdown().await;
}
