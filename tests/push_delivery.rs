//! Push delivery against the simulated platform: outages, random 503/429 with Retry-After,
//! per-event and whole-batch rejections, lost acknowledgements, bad credentials. Assertions are
//! on counts and states, never on timings.

mod common;

use std::sync::Arc;
use std::time::Duration;

use community_sync::pipeline::{self, Context, SyncOptions};

fn no_push() -> SyncOptions {
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

/// A context with small batches and quick retries, so failures show up in few requests.
fn ctx_with(
    sim: &community_sync::sim::Sim,
    dir: &std::path::Path,
    retries: u32,
    batch: usize,
) -> Context {
    let mut ctx = common::context(sim, dir);
    let cfg = Arc::make_mut(&mut ctx.config);
    cfg.platform.batch_size = batch;
    cfg.platform.http.retries = retries;
    cfg.platform.http.backoff_initial_ms = 1;
    cfg.platform.http.backoff_max_ms = 5;
    ctx
}

fn pending(ctx: &Context) -> i64 {
    common::count(ctx, "SELECT count(*) FROM outbox WHERE state = 'pending'")
}

/// Events coalesced into a newer version of the same entity (never sent, by design).
fn superseded(ctx: &Context) -> i64 {
    common::count(
        ctx,
        "SELECT count(*) FROM outbox WHERE state = 'superseded'",
    )
}

/// Every event the store holds as sent was applied exactly once, in order, and nothing is left.
fn assert_exactly_once(sim: &community_sync::sim::Sim, ctx: &Context) {
    let view = sim.platform();
    let sent = common::count(ctx, "SELECT count(*) FROM outbox WHERE state = 'sent'");
    assert_eq!(pending(ctx), 0);
    assert_eq!(
        view.applications.len() as i64,
        sent,
        "every sent event applied"
    );
    assert!(
        view.applications.values().all(|n| *n == 1),
        "each applied once"
    );
    assert_eq!(view.out_of_order, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_down_for_the_first_requests_then_drains_in_order() {
    let sim = common::sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with(&sim, dir.path(), 2, 50);
    pipeline::sync(&ctx, &no_push()).await.unwrap();
    let total = pending(&ctx);
    assert!(total > 100);
    // Down for 7 requests: the first push gives up after 3 attempts, keeping everything.
    sim.chaos().fail_next(7);
    let err = pipeline::push(&ctx).await.unwrap_err().to_string();
    assert!(
        err.contains("503") && err.contains("same Idempotency-Key"),
        "{err}"
    );
    assert_eq!(pending(&ctx), total);
    let keys_after_first = common::count(
        &ctx,
        "SELECT count(DISTINCT batch_key) FROM outbox WHERE batch_key IS NOT NULL",
    );
    let failed = common::count(
        &ctx,
        "SELECT count(*) FROM push_log WHERE outcome = 'failed'",
    );
    assert_eq!(failed, 1);
    // Still down: the second push fails too, re-sending under the same key (no new key made).
    let err = pipeline::push(&ctx).await.unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    let keys_after_second = common::count(
        &ctx,
        "SELECT count(DISTINCT batch_key) FROM outbox WHERE batch_key IS NOT NULL",
    );
    assert_eq!(keys_after_first, keys_after_second);
    // Status shows the backlog and the failure.
    {
        let g = ctx.store.lock().unwrap();
        let st = community_sync::cli::status::collect(&ctx.config, &g).unwrap();
        assert_eq!(st.outbox_pending, total);
        assert!(st.outbox_oldest_pending_age_secs.is_some());
        assert!(st.last_push.as_deref().unwrap_or("").contains("failed"));
    }
    // Back up (one more failure left): drains everything.
    let stats = pipeline::push(&ctx).await.unwrap();
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.sent as i64, total);
    assert_exactly_once(&sim, &ctx);
    assert_eq!(sim.platform().injected_failures, 7);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_503_and_429_with_retry_after_are_retried_and_nothing_is_applied_twice() {
    let sim = common::sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with(&sim, dir.path(), 20, 40);
    pipeline::sync(&ctx, &no_push()).await.unwrap();
    let total = pending(&ctx);
    // Retry-After: 0 keeps the test fast; the pusher still honours it over its own backoff.
    sim.chaos().set_random_failures(0.4, 0);
    let stats = pipeline::push(&ctx).await.unwrap();
    let view = sim.platform();
    assert!(view.injected_failures > 0);
    assert_eq!(
        stats.retries, view.injected_failures,
        "each injected failure cost one retry"
    );
    assert_eq!(view.requests, stats.batches + view.injected_failures);
    assert_eq!(stats.sent as i64, total);
    assert_exactly_once(&sim, &ctx);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_become_dead_letters_and_do_not_block_the_rest() {
    let sim = common::sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with(&sim, dir.path(), 1, 100);
    pipeline::sync(&ctx, &no_push()).await.unwrap();
    let total = pending(&ctx);
    let keys: Vec<String> = {
        let g = ctx.store.lock().unwrap();
        let mut stmt = g
            .conn()
            .prepare("SELECT DISTINCT entity_key FROM outbox WHERE entity = 'person' ORDER BY id LIMIT 6")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    sim.chaos().reject_keys(keys[..3].to_vec());
    sim.chaos().conflict_keys(keys[3..].to_vec());
    let stats = pipeline::push(&ctx).await.unwrap();
    let dead = common::count(&ctx, "SELECT count(*) FROM outbox WHERE state = 'dead'");
    assert_eq!(stats.dead as i64, dead);
    assert!(dead >= 6);
    assert_eq!(stats.sent as i64 + dead, total);
    let c422 = common::count(&ctx, "SELECT count(*) FROM dead_letters WHERE code = 422");
    let c409 = common::count(&ctx, "SELECT count(*) FROM dead_letters WHERE code = 409");
    assert!(c422 >= 3 && c409 >= 3);
    assert_eq!(c422 + c409, dead);
    assert_eq!(pending(&ctx), 0);
    {
        let g = ctx.store.lock().unwrap();
        let st = community_sync::cli::status::collect(&ctx.config, &g).unwrap();
        assert_eq!(st.dead_letters, dead);
        assert_eq!(st.outbox_pending, 0);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_is_resent_under_the_same_key_and_applied_once() {
    let sim = common::sim(200).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = ctx_with(&sim, dir.path(), 0, 50);
    Arc::make_mut(&mut ctx.config).platform.http.timeout_secs = 0.5;
    pipeline::sync(&ctx, &no_push()).await.unwrap();
    let total = pending(&ctx);
    sim.chaos().set_hang(Duration::from_secs(5));
    sim.chaos().drop_response_after_apply(1);
    // The platform applied the first batch but its answer never came: the push fails, the
    // batch stays pending with its key.
    let err = pipeline::push(&ctx).await.unwrap_err().to_string();
    assert!(err.contains("no answer within"), "{err}");
    assert_eq!(pending(&ctx), total);
    let applied_before = sim.platform().applications.len();
    assert!(applied_before > 0);
    // The next push re-sends it with the same key: a replay, nothing applied twice.
    let stats = pipeline::push(&ctx).await.unwrap();
    assert_eq!(stats.sent as i64, total);
    let view = sim.platform();
    assert_eq!(view.replays, 1);
    assert_eq!(view.dropped_answers, 1);
    assert_exactly_once(&sim, &ctx);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_stops_with_a_clear_message_and_a_refused_batch_is_dead_lettered() {
    let sim = common::sim(150).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = ctx_with(&sim, dir.path(), 3, 200);
    pipeline::sync(&ctx, &no_push()).await.unwrap();
    let total = pending(&ctx);
    // A wrong token: 401 at once (no retries), everything stays pending.
    let good = std::fs::read_to_string(dir.path().join("credentials/platform")).unwrap();
    std::fs::write(dir.path().join("credentials/platform"), "wrong-token").unwrap();
    let err = pipeline::push(&ctx).await.unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("[platform.auth]"),
        "{err}"
    );
    assert!(!err.contains("wrong-token"));
    assert_eq!(sim.platform().requests, 1);
    // Forming the batch coalesced the older versions in its window (a first load announces
    // some residents twice): those are settled, everything else stays pending.
    assert_eq!(pending(&ctx) + superseded(&ctx), total);
    std::fs::write(dir.path().join("credentials/platform"), good).unwrap();
    // The batch formed by the refused push keeps its key and its events (even with a smaller
    // batch size now). Refused whole with 422: all its events are dead letters, the rest goes on.
    let first = common::count(
        &ctx,
        "SELECT count(*) FROM outbox WHERE batch_key = (SELECT batch_key FROM outbox WHERE batch_key IS NOT NULL ORDER BY id LIMIT 1)",
    );
    assert!(first > 0 && first < total);
    Arc::make_mut(&mut ctx.config).platform.batch_size = 20;
    sim.chaos().refuse_next(1, 422);
    let stats = pipeline::push(&ctx).await.unwrap();
    assert_eq!(stats.dead as i64, first);
    let superseded = superseded(&ctx);
    assert_eq!(stats.sent as i64, total - first - superseded);
    let reasons = common::count(&ctx, "SELECT count(*) FROM dead_letters WHERE code = 422 AND reason LIKE 'batch refused with HTTP 422%'");
    assert_eq!(reasons, first);
    assert_eq!(pending(&ctx), 0);
    assert_eq!(
        sim.platform().applications.len() as i64,
        total - first - superseded
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_exposes_outbox_depth_oldest_age_and_dead_letters() {
    let sim = common::sim(150).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let config = community_sync::cli::demo::write_sim_config(&sim, dir.path(), &store).unwrap();
    let bin = env!("CARGO_BIN_EXE_community-sync");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["--log-level", "error"])
            .args(args)
            .output()
            .unwrap()
    };
    // The platform is down: sync goes on, the outbox keeps everything.
    sim.chaos().fail_next(1_000);
    let out = run(&["sync"]);
    assert!(out.status.code().is_some());
    let out = run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let depth = st["outbox_pending"].as_i64().unwrap();
    assert!(depth > 0);
    // The failed push formed its first batch, coalescing older versions in it: settled, not
    // pending.
    let events: i64 = community_sync::store::Store::open(&store)
        .unwrap()
        .conn()
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(st["outbox_oldest_pending_age_secs"].as_i64().is_some());
    assert_eq!(st["dead_letters"].as_i64(), Some(0));
    assert!(st["last_push"].as_str().unwrap().contains("failed"));
    assert_eq!(sim.platform().applications.len(), 0);
    // Recovery with some rejections: drained, dead letters counted.
    sim.chaos().reset();
    let key: String = {
        let s = community_sync::store::Store::open(&store).unwrap();
        s.conn()
            .query_row(
                "SELECT entity_key FROM outbox ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    sim.chaos().reject_keys([key]);
    assert!(run(&["push"]).status.success());
    let st: serde_json::Value = serde_json::from_slice(&run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st["outbox_pending"].as_i64(), Some(0));
    assert!(st["outbox_oldest_pending_age_secs"].is_null());
    let dead = st["dead_letters"].as_i64().unwrap();
    assert!(dead >= 1);
    let (sent, superseded): (i64, i64) = community_sync::store::Store::open(&store)
        .unwrap()
        .conn()
        .query_row(
            "SELECT sum(state = 'sent'), sum(state = 'superseded') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(sent + superseded + dead, events);
    assert_eq!(sim.platform().applications.len() as i64, sent);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_entity_order_holds_under_retries_lost_acks_and_rejections() {
    use community_sync::model::{Event, Op};
    let sim = common::sim(20).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = ctx_with(&sim, dir.path(), 30, 7);
    Arc::make_mut(&mut ctx.config).platform.http.timeout_secs = 0.5;
    // 20 entities, 5 versions each, interleaved: every window holds several entities.
    {
        let mut g = ctx.store.lock().unwrap();
        let codec = g.codec().clone();
        let tx = g.conn_mut().transaction().unwrap();
        for v in 1..=5 {
            for k in 0..20 {
                let key = format!("T{k:03}");
                let ev = Event::new(
                    "person",
                    &key,
                    v,
                    Op::Upsert,
                    vec!["name".into()],
                    Some(serde_json::json!({"v": v})),
                );
                community_sync::store::enqueue_event(&tx, &codec, &ev).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    sim.chaos().set_random_failures(0.3, 0);
    sim.chaos().set_hang(Duration::from_secs(2));
    sim.chaos().drop_response_after_apply(2);
    sim.chaos().reject_keys(["T007".to_string()]);
    // A push may give up after its retries; the next one resumes. Push until drained.
    let mut rounds = 0;
    while pending(&ctx) > 0 {
        rounds += 1;
        assert!(rounds < 20, "outbox does not drain");
        let _ = pipeline::push(&ctx).await;
    }
    let view = sim.platform();
    assert_eq!(
        view.out_of_order, 0,
        "a later version was delivered before an earlier one"
    );
    assert!(view.applications.values().all(|n| *n == 1));
    for k in 0..20 {
        let key = format!("T{k:03}");
        let applied = view.applied.get(&("person".to_string(), key.clone()));
        if k == 7 {
            assert!(applied.is_none());
        } else {
            assert_eq!(applied.map(|a| a.version), Some(5), "{key}");
        }
    }
    let dead = common::count(&ctx, "SELECT count(*) FROM outbox WHERE state = 'dead'");
    let superseded = common::count(
        &ctx,
        "SELECT count(*) FROM outbox WHERE state = 'superseded'",
    );
    let sent = common::count(&ctx, "SELECT count(*) FROM outbox WHERE state = 'sent'");
    assert_eq!(dead + superseded + sent, 100);
    assert_eq!(view.applications.len() as i64, sent);
    assert!(dead >= 1);
    sim.shutdown().await;
}
