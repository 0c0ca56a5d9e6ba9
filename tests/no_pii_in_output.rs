//! A full demo at trace level prints no ID number or phone of the simulated population.

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_output_at_trace_level_has_no_id_number_or_phone() {
    let residents = 1200;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args([
            "demo",
            "--residents",
            &residents.to_string(),
            "--seed",
            &common::SEED.to_string(),
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .env("RUST_LOG", "debug,community_sync=trace")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    assert!(
        text.lines().count() > 50,
        "expected debug output, got:\n{text}"
    );
    // The same seed gives the same population: its truth lists every sensitive value.
    let sim = common::sim(residents).await;
    let secrets = sim.truth().sensitive_values;
    assert!(
        secrets.len() > residents,
        "truth lists ID numbers and phones"
    );
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} sensitive values leaked, e.g. a value of length {}",
        leaked.len(),
        leaked[0].len()
    );
    for secret in [
        "ykt-demo-secret",
        "vol-demo-secret",
        "eld-demo-key",
        "health-demo-pass",
        "platform-demo-token",
    ] {
        assert!(!text.contains(secret), "a secret leaked into the output");
    }
    sim.shutdown().await;
}
