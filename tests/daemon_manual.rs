//! Manual syncs while the daemon runs: handed over the control socket with streamed progress
//! and outcome, and never overlapping another sync of the same source, whoever started it.

mod daemon_support;

use daemon_support::{request, wait_idle, Daemon, Setup};

const YEARLY: &str = "0 0 0 1 1 *";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manual_sync_runs_in_the_daemon_and_streams_its_result() {
    let sim = daemon_support::sim(200).await;
    let setup = Setup::new(&sim, YEARLY, YEARLY, 10);
    let daemon = Daemon::start(&setup, 1);
    wait_idle(&setup, &daemon);

    // The command line hands the job over and prints progress and the outcome.
    let out = setup.command(&["sync", "eldercare"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("handing the sync to the running daemon"),
        "{stderr}"
    );
    assert!(
        stderr.contains("eldercare/elders: sync started"),
        "{stderr}"
    );
    assert!(
        stderr.contains("eldercare/service_orders: done"),
        "{stderr}"
    );
    assert!(
        stdout.contains("eldercare") && stdout.contains("reconcile:"),
        "{stdout}"
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE source = 'eldercare' AND trigger = 'manual' AND status = 'ok'"),
        2
    );
    // The daemon did it: its log has the job.
    assert!(
        daemon.log_text().contains("trigger=\"manual\""),
        "{}",
        daemon.log_text()
    );

    // The socket protocol: progress lines, then the result with the report.
    let lines = request(
        &setup.socket,
        r#"{"cmd":"sync","sources":["health"],"full":true,"push":false}"#,
    )
    .unwrap();
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "result", "{lines:?}");
    assert_eq!(last["ok"], true);
    assert_eq!(last["report"]["streams"].as_array().unwrap().len(), 2);
    let events: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "progress")
        .filter_map(|l| l["progress"]["event"].as_str())
        .collect();
    assert!(
        events.contains(&"stream_started")
            && events.contains(&"stream_finished")
            && events.contains(&"reconciled"),
        "{events:?}"
    );

    // An unknown source is refused with a message and a non-zero exit.
    let out = setup.command(&["sync", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown source"),
        "{out:?}"
    );

    // A failing sync exits non-zero.
    sim.source_chaos().fail_next("volunteer", 1_000_000);
    let out = setup.command(&["sync", "volunteer", "--no-push"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    sim.source_chaos().fail_next("volunteer", 0);

    assert!(daemon.stop().success());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_syncs_of_one_source_never_overlap_whoever_starts_them() {
    let sim = daemon_support::sim(300).await;
    let setup = Setup::new(&sim, YEARLY, YEARLY, 10);
    let daemon = Daemon::start(&setup, 1);
    wait_idle(&setup, &daemon);
    // Slow responses so that the syncs would overlap without the lease.
    sim.source_chaos()
        .set_latency("eldercare", std::time::Duration::from_millis(150));
    // A second config on the same store whose socket nobody answers: that sync runs in its
    // own process.
    let alt = setup.dir.path().join("alt.toml");
    let alt_text = setup.text.replace(
        &format!("control_socket = {:?}", setup.socket.display().to_string()),
        &format!(
            "control_socket = {:?}",
            setup.dir.path().join("nobody.sock").display().to_string()
        ),
    );
    assert_ne!(alt_text, setup.text);
    std::fs::write(&alt, alt_text).unwrap();

    let spawn = |config: &std::path::Path| {
        std::process::Command::new(daemon_support::BIN)
            .arg("--config")
            .arg(config)
            .args(["sync", "eldercare", "--no-push"])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = vec![spawn(&setup.config), spawn(&setup.config), spawn(&alt)];
    let mut outputs = Vec::new();
    for c in children {
        outputs.push(c.wait_with_output().unwrap());
    }
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let handed = outputs
        .iter()
        .filter(|o| {
            String::from_utf8_lossy(&o.stderr).contains("handing the sync to the running daemon")
        })
        .count();
    assert_eq!(handed, 2, "two through the daemon, one in its own process");
    assert_eq!(
        setup.count("SELECT count(*) FROM runs WHERE source = 'eldercare' AND trigger = 'manual' AND status = 'ok'"),
        6
    );
    // Runs of eldercare, in start order: each starts after the previous one finished.
    let db = setup.db();
    let mut stmt = db
        .prepare("SELECT started_at, finished_at FROM runs WHERE source = 'eldercare' AND kind = 'sync' ORDER BY started_at, id")
        .unwrap();
    let runs: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs.len(), 8);
    for w in runs.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "overlapping runs of eldercare: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    assert!(daemon.stop().success());
    sim.shutdown().await;
}
