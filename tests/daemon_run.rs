//! `run` as a service, the real binary against the simulator: per-second schedules, SIGHUP
//! reloads (valid and invalid), the Prometheus endpoint, SIGTERM.

mod daemon_support;

use daemon_support::{wait_for, Daemon, Setup};
use nix::sys::signal::Signal;

const EVERY_SECOND: &str = "*/1 * * * * *";
const YEARLY: &str = "0 0 0 1 1 *";

fn runs(setup: &Setup, source: &str) -> i64 {
    setup.count(&format!(
        "SELECT count(*) FROM runs WHERE kind = 'sync' AND source = '{source}' AND trigger = 'schedule'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_runs_happen_sighup_reloads_a_valid_config_and_keeps_the_old_on_an_invalid_one() {
    let sim = daemon_support::sim(200).await;
    let setup = Setup::new(&sim, EVERY_SECOND, EVERY_SECOND, 10);
    setup.write(&Setup::with_daemon_key(
        &setup.text,
        "metrics_listen = \"127.0.0.1:0\"",
    ));
    let daemon = Daemon::start(&setup, 1);

    // Scheduled runs happen, for every source, more than once.
    for source in ["onecard", "volunteer", "eldercare", "health"] {
        wait_for(&format!("two scheduled runs of {source}"), || {
            (runs(&setup, source) >= 2).then_some(())
        });
    }
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE status = 'failed'"),
        0,
        "{}",
        daemon.log_text()
    );
    let pong = daemon.ping();
    assert_eq!(pong["generation"], 0);
    assert!(pong["scheduled"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j == "source:eldercare"));

    // The metrics endpoint (loopback) has per-source counters and the store gauges.
    let addr = pong["metrics"]
        .as_str()
        .expect("metrics address in ping")
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let needles = [
        "community_sync_records_fetched_total{source=\"eldercare\"}",
        "community_sync_records_written_total{source=\"onecard\"}",
        "community_sync_run_duration_seconds",
        "community_sync_last_success_timestamp_seconds{source=\"health\"}",
        "community_sync_outbox_pending",
        "community_sync_dead_letters",
        "community_sync_review_queue",
    ];
    let mut body = String::new();
    for _ in 0..600 {
        body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if needles.iter().all(|n| body.contains(n)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for needle in needles {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }

    // SIGHUP with an invalid config: logged, the old config keeps running.
    setup.write("this is [not valid toml");
    daemon.signal(Signal::SIGHUP);
    wait_for("the failed reload", || {
        (daemon.ping()["reload_failures"] == 1).then_some(())
    });
    assert_eq!(daemon.ping()["generation"], 0);
    let before = runs(&setup, "eldercare");
    wait_for("scheduled runs to go on with the old config", || {
        (runs(&setup, "eldercare") >= before + 2).then_some(())
    });
    assert!(
        daemon
            .log_text()
            .contains("the new config is invalid, keeping the running one"),
        "{}",
        daemon.log_text()
    );

    // SIGHUP with a valid config that disables eldercare (it stops being scheduled) and turns
    // the log level to warn.
    let valid = Setup::with_disabled(&setup.text, "eldercare").replacen(
        "level = \"info\"",
        "level = \"warn\"",
        1,
    );
    assert!(valid.contains("level = \"warn\""));
    setup.write(&valid);
    daemon.signal(Signal::SIGHUP);
    wait_for("the reload", || {
        (daemon.ping()["generation"] == 1).then_some(())
    });
    let log_at_reload = daemon.log_text().len();
    let pong = daemon.ping();
    assert!(
        !pong["scheduled"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j == "source:eldercare"),
        "{pong}"
    );
    wait_for("eldercare's last run to end", || {
        let p = daemon.ping();
        let busy = p["running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j.as_str().unwrap_or("").contains("eldercare"));
        let open = setup
            .count("SELECT count(*) FROM runs WHERE source = 'eldercare' AND status = 'running'");
        (!busy && open == 0).then_some(())
    });
    let eldercare = runs(&setup, "eldercare");
    let onecard = runs(&setup, "onecard");
    wait_for("three more runs of onecard", || {
        (runs(&setup, "onecard") >= onecard + 3).then_some(())
    });
    assert_eq!(
        runs(&setup, "eldercare"),
        eldercare,
        "a disabled source is no longer scheduled"
    );
    let log = daemon.log_text();
    assert!(log.contains("SIGHUP: changing the log level"), "{log}");
    assert!(
        !log[log_at_reload..].contains("stream sync finished"),
        "info lines after the level became warn:\n{}",
        &log[log_at_reload..]
    );

    // Every line of a run carries its run id and source.
    let finished: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stream sync finished"))
        .collect();
    assert!(!finished.is_empty());
    for l in finished {
        assert!(l.contains("run_id=") && l.contains("source="), "{l}");
    }

    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    assert!(!setup.socket.exists(), "socket removed at exit");

    // A job never overlapped itself, though its per-second ticks came faster than it ran.
    for source in ["onecard", "volunteer", "eldercare", "health"] {
        let db = setup.db();
        let mut stmt = db
            .prepare("SELECT started_at, COALESCE(finished_at, '') FROM runs WHERE source = ?1 AND kind = 'sync' ORDER BY started_at, id")
            .unwrap();
        let runs: Vec<(String, String)> = stmt
            .query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for w in runs.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "overlapping runs of {source}: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_sync_exits_cleanly_and_the_next_start_resumes_from_the_cursor() {
    let sim = daemon_support::sim(600).await;
    let setup = Setup::new(&sim, EVERY_SECOND, YEARLY, 1);
    let mut text = setup.text.clone();
    for s in ["volunteer", "eldercare", "health"] {
        text = Setup::with_disabled(&text, s);
    }
    setup.write(&text);
    // A first sync in this process (no daemon answers): every stream has a cursor.
    let out = setup.command(&["sync", "onecard", "--no-push"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cursors_before = cursors(&setup);
    assert_eq!(cursors_before.len(), 2, "{cursors_before:?}");
    // Slow responses so that the one-card sync is in the middle when SIGTERM arrives and
    // cannot finish within the 1 s shutdown timeout.
    sim.source_chaos()
        .set_latency("onecard", std::time::Duration::from_millis(3000));
    let mut daemon = Daemon::start(&setup, 1);
    // SIGTERM while the first stream's run is open: its first page is 3 s away, so the run
    // cannot end within the shutdown timeout. (Waiting for a page to be served instead raced
    // with the end of a one-page stream under load.)
    wait_for("a run in progress", || {
        (setup.count("SELECT count(*) FROM runs WHERE status = 'running'") > 0).then_some(())
    });
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit();
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    assert!(
        daemon.log_text().contains("daemon stopped"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE status = 'running'"),
        0,
        "no run left open"
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE status NOT IN ('ok', 'interrupted')"),
        0,
        "runs end ok or interrupted"
    );
    assert!(
        setup.count("SELECT count(*) FROM runs WHERE status = 'interrupted'") >= 1,
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM leases"),
        0,
        "leases released"
    );
    // Cursors are kept (a stream that completed before the stop may have moved on).
    let cursors_after = cursors(&setup);
    for (k, v) in &cursors_before {
        let after = cursors_after.get(k).expect("cursor kept");
        assert!(after >= v, "cursor of {k} went back: {v} -> {after}");
    }

    // Next start: overdue, runs at once, from the cursors.
    sim.source_chaos()
        .set_latency("onecard", std::time::Duration::ZERO);
    let first_new_run = setup.count("SELECT max(id) FROM runs") + 1;
    let daemon = Daemon::start(&setup, 2);
    wait_for(
        "both one-card streams to complete after the restart",
        || {
            let ok = setup.count(&format!(
            "SELECT count(DISTINCT stream) FROM runs WHERE source = 'onecard' AND status = 'ok' AND id >= {first_new_run}"
        ));
            (ok == 2).then_some(())
        },
    );
    for (stream, cursor) in &cursors_after {
        let before: Option<String> = setup
            .db()
            .query_row(
                &format!(
                    "SELECT cursor_before FROM runs WHERE source = 'onecard' AND stream = '{stream}' AND id >= {first_new_run} ORDER BY id LIMIT 1"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            before.as_ref(),
            Some(cursor),
            "{stream} resumed from its cursor"
        );
    }
    assert!(daemon.stop().success());

    // Nothing lost, nothing twice: the same records as one clean sync into a fresh store.
    let reference = tempfile::tempdir().unwrap();
    let ctx = {
        let path = community_sync::cli::demo::write_sim_config(
            &sim,
            reference.path(),
            &reference.path().join("s.db"),
        )
        .unwrap();
        community_sync::pipeline::Context::open(
            community_sync::config::Config::load(&path).unwrap(),
        )
        .unwrap()
    };
    let opts = community_sync::pipeline::SyncOptions {
        sources: vec!["onecard".into()],
        trigger: "test".into(),
        ..Default::default()
    };
    let report = community_sync::pipeline::ingest_sources(&ctx, &opts)
        .await
        .unwrap();
    assert_eq!(report.failed_streams(), 0);
    for stream in ["cardholders", "transactions"] {
        let sql = format!(
            "SELECT count(*) FROM source_records WHERE source = 'onecard' AND stream = '{stream}'"
        );
        let want: i64 = ctx
            .store
            .lock()
            .unwrap()
            .conn()
            .query_row(&sql, [], |r| r.get(0))
            .unwrap();
        assert!(want > 0);
        assert_eq!(
            setup.count(&sql),
            want,
            "{stream}: same records as a clean sync"
        );
    }
    sim.shutdown().await;
}

fn cursors(setup: &Setup) -> std::collections::BTreeMap<String, String> {
    let db = setup.db();
    let mut stmt = db
        .prepare(
            "SELECT stream, cursor FROM sync_state WHERE source = 'onecard' AND cursor IS NOT NULL",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
