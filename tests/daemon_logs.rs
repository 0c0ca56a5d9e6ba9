//! Log formats as the service writes them: journald lines with syslog priority prefixes and no
//! timestamps, JSON for shippers; every line of a run carries its run id and source.

mod daemon_support;

use daemon_support::{Setup, BIN};

fn sync_with(setup: &Setup, envs: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config").arg(&setup.config).args(args);
    cmd.env_remove("RUST_LOG").env_remove("JOURNAL_STREAM");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_and_json_lines_carry_priority_run_id_and_source() {
    let sim = daemon_support::sim(80).await;
    let setup = Setup::new(&sim, "@hourly", "@hourly", 10);

    // Under systemd (JOURNAL_STREAM set, stderr not a terminal).
    let (ok, log) = sync_with(
        &setup,
        &[("JOURNAL_STREAM", "8:12345")],
        &["sync", "eldercare", "--no-push"],
    );
    assert!(ok, "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('<')).collect();
    assert!(!lines.is_empty(), "{log}");
    for l in &lines {
        let p = l.as_bytes()[1];
        assert!(
            (b'3'..=b'7').contains(&p) && l.as_bytes()[2] == b'>',
            "priority prefix: {l}"
        );
        assert!(
            !l.contains(" INFO ") && !l.contains("Z "),
            "no level word or timestamp: {l}"
        );
    }
    let run_lines: Vec<&&str> = lines.iter().filter(|l| l.contains("stream sync")).collect();
    assert_eq!(run_lines.len(), 4, "{log}");
    for l in run_lines {
        assert!(l.starts_with("<6>"), "{l}");
        assert!(
            l.contains("run_id=") && l.contains("source=eldercare"),
            "{l}"
        );
    }

    // JSON: one object per line, the run's span fields on each line of the run.
    let (ok, log) = sync_with(
        &setup,
        &[],
        &["--log-format", "json", "sync", "eldercare", "--no-push"],
    );
    assert!(ok, "{log}");
    let mut seen = 0;
    for l in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stream sync"))
        {
            assert!(
                v["span"]["run_id"].is_i64() || v["span"]["run_id"].is_u64(),
                "{l}"
            );
            assert_eq!(v["span"]["source"], "eldercare", "{l}");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "{log}");
    sim.shutdown().await;
}
