//! Stopping the daemon in the middle of a manual sync, and the sync's progress read from a
//! pipe.
//!
//! - After SIGTERM no new stream starts: the one under way finishes, the next one of the same
//!   source never begins, and the client is told so: exit 4 and the streams that completed.
//! - When the shutdown timeout abandons a sync, the client still hears which streams
//!   completed (exit 4, not "nothing was synced").
//! - Through the control socket into a pipe, progress is one line per stream when it starts,
//!   at most one every 5 seconds while it runs, and one when it ends: not one per page.

mod daemon_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{wait_for, wait_idle, Daemon, Setup, BIN};
use nix::sys::signal::Signal;

const YEARLY: &str = "0 0 0 1 1 *";

fn spawn_sync(setup: &Setup, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .arg("sync")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sync runs")
}

fn manual_runs(setup: &Setup, source: &str, stream: &str) -> i64 {
    setup.count(&format!(
        "SELECT count(*) FROM runs WHERE source = '{source}' AND stream = '{stream}' AND trigger = 'manual'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigterm_no_new_stream_starts_and_the_client_hears_what_completed() {
    let sim = daemon_support::sim(200).await;
    // Time enough for the stream under way to finish.
    let setup = Setup::new(&sim, YEARLY, YEARLY, 60);
    let mut daemon = Daemon::start(&setup, 1);
    wait_idle(&setup, &daemon);
    // Each health page takes a while: patients is under way when SIGTERM arrives.
    sim.source_chaos()
        .set_latency("health", Duration::from_millis(1500));
    let client = spawn_sync(&setup, &["health", "--full"]);
    wait_for("health/patients under way", || {
        (setup.count(
            "SELECT count(*) FROM runs WHERE source = 'health' AND stream = 'patients' AND trigger = 'manual' AND status = 'running'",
        ) == 1)
            .then_some(())
    });
    daemon.signal(Signal::SIGTERM);
    let out = client.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("completed: health/patients (ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not completed: health/followups"),
        "{stdout}"
    );
    let status = daemon.wait_exit();
    assert!(status.success(), "{}", daemon.log_text());
    // The stream under way finished; the next one never started.
    assert_eq!(
        setup.count(
            "SELECT count(*) FROM runs WHERE source = 'health' AND stream = 'patients' AND trigger = 'manual' AND status = 'ok'"
        ),
        1
    );
    assert_eq!(
        manual_runs(&setup, "health", "followups"),
        0,
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("this stream does not start"),
        "{}",
        daemon.log_text()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_abandoned_at_the_shutdown_timeout_lists_the_streams_that_completed() {
    let sim = daemon_support::sim(200).await;
    let setup = Setup::new(&sim, YEARLY, YEARLY, 1);
    let mut daemon = Daemon::start(&setup, 1);
    wait_idle(&setup, &daemon);
    // Elder care completes at once; health hangs past the 1 s shutdown timeout.
    sim.source_chaos()
        .set_latency("health", Duration::from_secs(8));
    let client = spawn_sync(&setup, &["eldercare", "health", "--full"]);
    wait_for("elder care done, health under way", || {
        let elder_ok = setup.count(
            "SELECT count(*) FROM runs WHERE source = 'eldercare' AND trigger = 'manual' AND status = 'ok'",
        );
        let health = manual_runs(&setup, "health", "patients");
        (elder_ok == 2 && health == 1).then_some(())
    });
    daemon.signal(Signal::SIGTERM);
    let out = client.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    for done in ["eldercare/elders", "eldercare/service_orders"] {
        assert!(
            stdout.contains(&format!("completed: {done} (ok")),
            "{stdout}"
        );
    }
    for not in ["health/patients", "health/followups"] {
        assert!(
            stdout.contains(&format!("not completed: {not}")),
            "{stdout}"
        );
    }
    assert!(!stderr.contains("nothing was synced"), "{stderr}");
    assert!(daemon.wait_exit().success(), "{}", daemon.log_text());
    sim.source_chaos().reset();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_through_the_daemon_into_a_pipe_is_a_line_per_stream_every_5_seconds() {
    let sim = daemon_support::sim(200).await;
    let setup = Setup::new(&sim, YEARLY, YEARLY, 10);
    // Patients in pages of 5: some twenty pages, each a little slow.
    let text = setup.text.replacen(
        "pagination = { type = \"next_link\", fhir = true, size_param = \"_count\", size = 200 }",
        "pagination = { type = \"next_link\", fhir = true, size_param = \"_count\", size = 5 }",
        1,
    );
    assert_ne!(text, setup.text);
    setup.write(&text);
    let daemon = Daemon::start(&setup, 1);
    wait_idle(&setup, &daemon);
    sim.source_chaos()
        .set_latency("health", Duration::from_millis(250));
    let pages_before = sim.pages_served("health", "patients").unwrap();
    let started = Instant::now();
    let out = spawn_sync(&setup, &["health", "--full"])
        .wait_with_output()
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let pages = sim.pages_served("health", "patients").unwrap() - pages_before;
    assert!(pages >= 15, "pages of 5: {pages}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("health/patients"))
        .collect();
    // Started, done, and at most one line per 5 s in between.
    let periodic = lines.len().saturating_sub(2);
    assert!(
        periodic as f64 <= (elapsed / 5.0).ceil(),
        "{} lines for {pages} pages in {elapsed:.1}s:\n{stderr}",
        lines.len()
    );
    assert!(lines.iter().any(|l| l.contains("sync started")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("done")), "{stderr}");
    // Rates are whole numbers, and no line carries a control character (no bar in a pipe).
    for l in &lines {
        assert!(!l.chars().any(|c| c.is_control()), "{l:?}");
        if let Some(rate) = l.split(", ").find(|p| p.ends_with("records/s")) {
            assert!(!rate.contains('.'), "{l}");
        }
    }
    // The summary table starts on a line of its own.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("source "), "{stdout}");
    sim.source_chaos().reset();
    assert!(daemon.stop().success());
    sim.shutdown().await;
}
