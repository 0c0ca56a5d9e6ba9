//! `status` exit codes, for monitoring: 0 healthy; 3 degraded, when a stream failed but fewer
//! than `unhealthy_after_failures` runs in a row (each stream shows its count toward it); 1
//! unhealthy, when a stream failed its last N runs or has had no successful run within its
//! max_lag_secs.

mod daemon_support;

use community_sync::store::{IngestStats, Store};
use daemon_support::Setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exit_code_is_0_when_healthy_3_when_degraded_and_1_after_failed_runs_or_when_stale()
{
    let sim = daemon_support::sim(50).await;
    let setup = Setup::new(&sim, "@hourly", "@hourly", 10);
    let status = |setup: &Setup| {
        let out = setup.command(&["status"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };

    // A fresh store: nothing has failed, nothing is late.
    Store::open(&setup.store).unwrap();
    let (code, out) = status(&setup);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("health: ok"), "{out}");

    // eldercare/elders succeeds, then fails three times in a row (unhealthy_after_failures = 3).
    ok_run(&setup);
    assert_eq!(status(&setup).0, Some(0));
    {
        let mut store = Store::open(&setup.store).unwrap();
        for _ in 0..2 {
            let run = store
                .begin_run("eldercare", "elders", "sync", "schedule")
                .unwrap();
            store
                .fail_run(run, "HTTP 503", 0, 0, &IngestStats::default())
                .unwrap();
        }
    }
    let (code, out) = status(&setup);
    assert_eq!(
        code,
        Some(3),
        "two failures: degraded, not yet unhealthy: {out}"
    );
    assert!(out.contains("health: degraded (exit 3)"), "{out}");
    assert!(
        out.contains("eldercare/elders: 2 of 3 failed runs in a row"),
        "why: {out}"
    );
    let elders = out
        .lines()
        .find(|l| l.starts_with("eldercare  elders"))
        .unwrap_or_default();
    assert!(
        elders.contains("failed") && elders.contains(" 2/3 "),
        "the count toward unhealthy_after_failures: {elders}"
    );
    let json = setup.command(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["health"], "degraded");
    assert_eq!(v["unhealthy_after_failures"], 3);
    {
        let mut store = Store::open(&setup.store).unwrap();
        let run = store
            .begin_run("eldercare", "elders", "sync", "schedule")
            .unwrap();
        store
            .fail_run(run, "HTTP 503", 0, 0, &IngestStats::default())
            .unwrap();
    }
    let (code, out) = status(&setup);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("eldercare/elders: last 3 runs failed"),
        "{out}"
    );
    assert!(out.contains("health: UNHEALTHY (exit 1)"), "{out}");
    let json = setup.command(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["health"], "unhealthy");

    // A success clears it ...
    let ok_run = ok_run(&setup);
    assert_eq!(status(&setup).0, Some(0));
    // ... until it is older than max_lag_secs (7200 for eldercare).
    setup
        .db()
        .execute(
            "UPDATE runs SET finished_at = ?2 WHERE id = ?1",
            rusqlite::params![
                ok_run,
                (chrono::Utc::now() - chrono::Duration::hours(3))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ],
        )
        .unwrap();
    let (code, out) = status(&setup);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("eldercare/elders: no successful run within max_lag_secs"),
        "{out}"
    );
    sim.shutdown().await;
}

/// A successful run of eldercare/elders finished now.
fn ok_run(setup: &Setup) -> i64 {
    let mut store = Store::open(&setup.store).unwrap();
    let run = store
        .begin_run("eldercare", "elders", "sync", "schedule")
        .unwrap();
    store
        .conn()
        .execute(
            "UPDATE runs SET status = 'ok', finished_at = ?2 WHERE id = ?1",
            rusqlite::params![run, community_sync::store::now_text()],
        )
        .unwrap();
    run
}
