//! Review actions (accept, reject, merge, split), that decisions survive a full re-sync and a
//! full re-reconcile, explain on a linked record / a review item / a rejected pair, and that
//! a no-change reconcile writes nothing.

mod common;

use std::sync::Arc;

use community_sync::cli::review::{decide, explain_text};
use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::reconcile::review::{self, Decision};
use community_sync::reconcile::{self, person_key};
use community_sync::sim::{Sim, SimOptions};

fn opts(full: bool) -> SyncOptions {
    SyncOptions {
        progress: None,
        sources: vec![],
        full,
        trigger: "test".into(),
        push: false,
        confirm_deletes: false,
        stop: None,
    }
}

/// Hard-case population with the link threshold out of reach, so every scored record
/// becomes a review item.
async fn setup(dir: &std::path::Path) -> (Sim, Context) {
    let sim = Sim::start(SimOptions {
        seed: 5,
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
    pipeline::sync(&ctx, &opts(false)).await.unwrap();
    (sim, ctx)
}

fn person_of(ctx: &Context, record: i64) -> Option<i64> {
    let g = ctx.store.lock().unwrap();
    g.conn()
        .query_row(
            "SELECT person_id FROM source_records WHERE id = ?1",
            [record],
            |r| r.get(0),
        )
        .unwrap()
}

fn open_match_items(ctx: &Context) -> Vec<review::Item> {
    let g = ctx.store.lock().unwrap();
    review::list(g.conn(), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == "match")
        .collect()
}

/// Full re-sync, then every record dirty again and reconciled from scratch.
async fn resync_everything(ctx: &Context) {
    pipeline::sync(ctx, &opts(true)).await.unwrap();
    let mut g = ctx.store.lock().unwrap();
    g.conn()
        .execute("UPDATE source_records SET dirty = 1", [])
        .unwrap();
    reconcile::reconcile(&mut g, &ctx.config).unwrap();
}

fn decide_now(ctx: &Context, d: Decision) -> reconcile::ReconcileStats {
    let mut g = ctx.store.lock().unwrap();
    decide(&mut g, &ctx.config, &d).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_review_action_survives_a_full_resync() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ctx) = setup(dir.path()).await;
    let items = open_match_items(&ctx);
    assert!(
        items.len() >= 4,
        "scored records became review items ({})",
        items.len()
    );
    let outbox = || common::count(&ctx, "SELECT count(*) FROM outbox");

    // accept: the record joins the candidate resident, with events.
    let a = &items[0];
    let (a_rec, a_person) = (a.record_id.unwrap(), a.person_id.unwrap());
    let before = outbox();
    let stats = decide_now(&ctx, Decision::Accept { item: a.id });
    assert!(stats.events > 0);
    assert_eq!(outbox() - before, stats.events as i64);
    assert_eq!(person_of(&ctx, a_rec), Some(a_person));
    // A decided item cannot be decided again.
    {
        let mut g = ctx.store.lock().unwrap();
        assert!(decide(&mut g, &ctx.config, &Decision::Reject { item: a.id }).is_err());
    }

    // reject: remembered as never-match.
    let r = items
        .iter()
        .find(|i| i.record_id != Some(a_rec) && i.person_id != Some(a_person))
        .unwrap();
    let (r_rec, r_person) = (r.record_id.unwrap(), r.person_id.unwrap());
    decide_now(&ctx, Decision::Reject { item: r.id });
    assert_ne!(person_of(&ctx, r_rec), Some(r_person));

    // merge: the record's own resident folds into the candidate; delete + upsert pushed.
    let m = items
        .iter()
        .find(|i| {
            ![Some(a_rec), Some(r_rec)].contains(&i.record_id)
                && ![Some(a_person), Some(r_person)].contains(&i.person_id)
        })
        .unwrap();
    let (m_rec, survivor) = (m.record_id.unwrap(), m.person_id.unwrap());
    let other = person_of(&ctx, m_rec).unwrap();
    assert_ne!(other, survivor);
    let before = outbox();
    decide_now(&ctx, Decision::Merge { survivor, other });
    assert_eq!(person_of(&ctx, m_rec), Some(survivor));
    let deletes = common::count(
        &ctx,
        &format!(
            "SELECT count(*) FROM outbox WHERE id > {before} AND entity = 'person' AND op = 'delete' AND entity_key = '{}'",
            person_key(other)
        ),
    );
    assert_eq!(deletes, 1, "the retired key is deleted on the platform");
    let upserts = common::count(
        &ctx,
        &format!(
            "SELECT count(*) FROM outbox WHERE id > {before} AND entity = 'person' AND op = 'upsert' AND entity_key = '{}'",
            person_key(survivor)
        ),
    );
    assert_eq!(upserts, 1);
    assert_eq!(
        common::count(
            &ctx,
            &format!("SELECT merged_into FROM persons WHERE id = {other}")
        ),
        survivor
    );

    // split: the merged record leaves the survivor again under a new resident id.
    decide_now(
        &ctx,
        Decision::Split {
            person: survivor,
            records: vec![m_rec],
        },
    );
    let split_to = person_of(&ctx, m_rec).unwrap();
    assert!(split_to != survivor && split_to != other);
    // Splitting every record away is refused.
    {
        let mut g = ctx.store.lock().unwrap();
        assert!(decide(
            &mut g,
            &ctx.config,
            &Decision::Split {
                person: split_to,
                records: vec![m_rec]
            }
        )
        .is_err());
    }
    let decisions = common::count(&ctx, "SELECT count(*) FROM decisions");
    assert_eq!(decisions, 4);
    // Each decision is in the tamper-evident audit chain, with who made it.
    assert_eq!(
        common::count(
            &ctx,
            "SELECT count(*) FROM audit WHERE kind = 'review_decision' AND actor != ''"
        ),
        4
    );

    // Nothing a re-sync or a full re-reconcile does undoes a decision.
    resync_everything(&ctx).await;
    assert_eq!(person_of(&ctx, a_rec), Some(a_person));
    assert_ne!(person_of(&ctx, r_rec), Some(r_person));
    assert_eq!(person_of(&ctx, m_rec), Some(split_to));
    assert_eq!(
        common::count(
            &ctx,
            &format!("SELECT retired FROM persons WHERE id = {other}")
        ),
        1
    );
    let decided_again = common::count(
        &ctx,
        &format!("SELECT count(*) FROM review_items WHERE record_id = {r_rec} AND person_id = {r_person} AND state = 'open'"),
    );
    assert_eq!(decided_again, 0, "a rejected pair is not raised again");
    // Decisions, merges, splits and full re-reconciles all bumped versions: no id twice.
    assert_eq!(common::duplicate_event_ids(&ctx), 0);

    // explain: a linked record, a review item and a rejected pair.
    explain_checks(&ctx, r_rec, r_person);
    sim.shutdown().await;
}

fn explain_checks(ctx: &Context, r_rec: i64, r_person: i64) {
    let g = ctx.store.lock().unwrap();
    let key = |rec: i64| -> (String, String) {
        g.conn()
            .query_row(
                "SELECT source, source_key FROM source_records WHERE id = ?1",
                [rec],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (s, k): (String, String) = g
        .conn()
        .query_row(
            "SELECT source, source_key FROM source_records WHERE id_key IS NOT NULL AND status = 'ok' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let linked = explain_text(&g, &ctx.config, &s, &k).unwrap();
    assert!(linked.contains("linked by its ID number"), "{linked}");
    let open = review::list(g.conn(), None, 10_000).unwrap();
    let item = open.iter().find(|i| i.kind == "match").unwrap();
    let (s, k) = key(item.record_id.unwrap());
    let text = explain_text(&g, &ctx.config, &s, &k).unwrap();
    assert!(
        text.contains(&format!("review item #{}", item.id)),
        "{text}"
    );
    assert!(
        text.contains("total") && text.contains("link at >= 5.00"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "candidate {}",
            person_key(item.person_id.unwrap())
        )),
        "{text}"
    );
    let (s, k) = key(r_rec);
    let text = explain_text(&g, &ctx.config, &s, &k).unwrap();
    assert!(
        text.contains(&format!("never matched with {}", person_key(r_person))),
        "{text}"
    );
    assert!(text.contains("a reviewer rejected this pair"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_change_reconcile_writes_nothing_and_emits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ctx) = setup(dir.path()).await;
    no_change_checks(&ctx);
    sim.shutdown().await;
}

fn no_change_checks(ctx: &Context) {
    let mut g = ctx.store.lock().unwrap();
    let before_changes = g.conn().total_changes();
    let outbox: i64 = g
        .conn()
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    let stats = reconcile::reconcile(&mut g, &ctx.config).unwrap();
    assert_eq!(stats.events, 0);
    assert_eq!(stats.records, 0);
    assert_eq!(g.conn().total_changes(), before_changes, "no row written");
    let after: i64 = g
        .conn()
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, outbox);
}
