//! One masking layer everywhere: after a full demo at trace level, neither the demo's output
//! nor `status`, `status --json` or `rejects` shows a full ID number, phone or secret of the
//! simulated population.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    (
        out.status.code().is_some_and(|c| c <= 1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_status_and_rejects_at_trace_level_show_no_pii() {
    let residents = 500;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, demo) = run(&[
        "demo",
        "--residents",
        &residents.to_string(),
        "--seed",
        &common::SEED.to_string(),
        "--dir",
        d,
    ]);
    assert!(ok, "demo failed:\n{demo}");
    let config = dir.path().join("community-sync.toml");
    let c = config.to_str().unwrap();
    let (ok1, status) = run(&["--config", c, "status"]);
    let (ok2, status_json) = run(&["--config", c, "status", "--json"]);
    let (ok3, rejects) = run(&["--config", c, "rejects", "--limit", "100000"]);
    assert!(ok1 && ok2 && ok3, "{status}\n{status_json}\n{rejects}");
    assert!(
        rejects.contains("(masked)") && rejects.lines().count() > 4,
        "rejects lists the quarantine:\n{rejects}"
    );
    let sim = common::sim(residents).await;
    let secrets = sim.truth().sensitive_values;
    for (what, text) in [
        ("demo", &demo),
        ("status", &status),
        ("status --json", &status_json),
        ("rejects", &rejects),
    ] {
        let leaked = secrets.iter().filter(|s| text.contains(s.as_str())).count();
        assert_eq!(leaked, 0, "{what} shows {leaked} ID numbers or phones");
        for secret in [
            "ykt-demo-secret",
            "vol-demo-secret",
            "eld-demo-key",
            "health-demo-pass",
            "platform-demo-token",
        ] {
            assert!(!text.contains(secret), "{what} shows a secret");
        }
        let key =
            std::fs::read_to_string(dir.path().join("credentials").join("store-key")).unwrap();
        assert!(!text.contains(key.trim()), "{what} shows the store key");
    }
    sim.shutdown().await;
}
