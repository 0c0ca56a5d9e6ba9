//! Undoing review decisions (`review undo`, the desk's undo): a merge and a split are put
//! back with events, a later decision that stands on an earlier one blocks its undo, and an
//! undone decision stays undone through a full re-reconcile.

mod common;

use std::sync::Arc;

use community_sync::cli::review::decide_by;
use community_sync::pipeline::{self, Context};
use community_sync::reconcile::review::{self, Decision};
use community_sync::reconcile::{self, person_key};
use community_sync::sim::{Sim, SimOptions};

async fn setup(dir: &std::path::Path) -> (Sim, Context) {
    let sim = Sim::start(SimOptions {
        seed: 11,
        residents: 200,
        hard_cases: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let base = common::context(&sim, dir);
    let mut config = (*base.config).clone();
    config.reconcile.link_threshold = 5.0;
    let ctx = Context {
        config: Arc::new(config),
        store: base.store.clone(),
    };
    pipeline::sync(&ctx, &common::sync_options(false))
        .await
        .unwrap();
    (sim, ctx)
}

fn decide(ctx: &Context, d: Decision) -> anyhow::Result<i64> {
    let mut g = ctx.store.lock().unwrap();
    Ok(decide_by(&mut g, &ctx.config, &d, Some("test"))?.decision)
}

fn person_of(ctx: &Context, rec: i64) -> i64 {
    common::count(
        ctx,
        &format!("SELECT person_id FROM source_records WHERE id = {rec}"),
    )
}

fn retired(ctx: &Context, pid: i64) -> bool {
    common::count(
        ctx,
        &format!("SELECT retired FROM persons WHERE id = {pid}"),
    ) == 1
}

fn events_for(ctx: &Context, pid: i64, after: i64, op: &str) -> i64 {
    common::count(
        ctx,
        &format!(
            "SELECT count(*) FROM outbox WHERE id > {after} AND entity = 'person' AND entity_key = '{}' AND op = '{op}'",
            person_key(pid)
        ),
    )
}

fn re_reconcile(ctx: &Context) {
    let mut g = ctx.store.lock().unwrap();
    g.conn()
        .execute("UPDATE source_records SET dirty = 1", [])
        .unwrap();
    reconcile::reconcile(&mut g, &ctx.config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_split_are_put_back_with_events() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, ctx) = setup(dir.path()).await;
    let items: Vec<review::Item> = {
        let g = ctx.store.lock().unwrap();
        review::list(g.conn(), None, 100_000).unwrap()
    };
    let m = items
        .iter()
        .find(|i| i.kind == "match")
        .expect("a match item");
    let (rec, survivor) = (m.record_id.unwrap(), m.person_id.unwrap());
    let other = person_of(&ctx, rec);
    let outbox = || common::count(&ctx, "SELECT coalesce(max(id), 0) FROM outbox");

    let merged = decide(&ctx, Decision::Merge { survivor, other }).unwrap();
    assert_eq!(person_of(&ctx, rec), survivor);
    assert!(retired(&ctx, other));
    let before = outbox();
    decide(&ctx, Decision::Undo { decision: merged }).unwrap();
    assert_eq!(
        person_of(&ctx, rec),
        other,
        "the record is back with its resident"
    );
    assert!(!retired(&ctx, other), "the merged resident is back");
    assert_eq!(
        events_for(&ctx, other, before, "upsert"),
        1,
        "the platform hears it is back"
    );
    assert_eq!(
        common::count(
            &ctx,
            &format!("SELECT count(*) FROM persons WHERE merged_into IS NOT NULL AND id = {other}")
        ),
        0
    );
    assert_eq!(
        common::count(
            &ctx,
            &format!(
                "SELECT count(*) FROM review_items WHERE id = {} AND state = 'open'",
                m.id
            )
        ),
        1,
        "the match item the merge closed is open again"
    );
    re_reconcile(&ctx);
    assert_eq!(person_of(&ctx, rec), other, "and stays so");

    // Split: accept the item (two records on one resident), split the record off, undo.
    let accepted = decide(&ctx, Decision::Accept { item: m.id }).unwrap();
    assert_eq!(person_of(&ctx, rec), survivor);
    let split = decide(
        &ctx,
        Decision::Split {
            person: survivor,
            records: vec![rec],
        },
    )
    .unwrap();
    let new = person_of(&ctx, rec);
    assert_ne!(new, survivor);
    // The accept cannot be undone while the split stands on it.
    let err = decide(&ctx, Decision::Undo { decision: accepted }).unwrap_err();
    assert!(err.to_string().contains("undo that one first"), "{err}");
    let before = outbox();
    decide(&ctx, Decision::Undo { decision: split }).unwrap();
    assert_eq!(
        person_of(&ctx, rec),
        survivor,
        "back with the resident it was split from"
    );
    assert!(retired(&ctx, new), "the resident the split made is gone");
    assert_eq!(events_for(&ctx, new, before, "delete"), 1);
    assert_eq!(
        common::count(&ctx, &format!("SELECT count(*) FROM never_match WHERE record_id = {rec} AND person_id = {survivor}")),
        0,
        "the split's never-match pair is gone"
    );
    // Now the accept can go too, and the record returns to its own resident.
    decide(&ctx, Decision::Undo { decision: accepted }).unwrap();
    assert_eq!(person_of(&ctx, rec), other);
    let err = decide(&ctx, Decision::Undo { decision: accepted }).unwrap_err();
    assert!(err.to_string().contains("already undone"), "{err}");
    re_reconcile(&ctx);
    assert_eq!(person_of(&ctx, rec), other);
    let chain = {
        let g = ctx.store.lock().unwrap();
        community_sync::audit::verify(g.conn(), g.codec()).unwrap()
    };
    assert!(chain.ok(), "{:?}", chain.problems);
    assert_eq!(common::duplicate_event_ids(&ctx), 0);
}
