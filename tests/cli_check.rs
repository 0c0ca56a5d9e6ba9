//! `community-sync check` on good and broken configs.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_community-sync"))
}

const EXAMPLE: &str = include_str!("../config/community-sync.toml");

#[test]
fn check_accepts_the_example_config() {
    let out = bin()
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/community-sync.toml"),
            "check",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 sources"));
}

fn check_broken(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();
    let out = bin()
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken config must fail check");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("broken.toml"), "error names the file: {err}");
    err
}

#[test]
fn check_names_the_key_of_a_bad_schedule() {
    let err = check_broken(&EXAMPLE.replacen(
        "schedule = \"*/5 * * * *\"",
        "schedule = \"every five minutes\"",
        1,
    ));
    assert!(err.contains("sources[onecard].schedule"), "{err}");
}

#[test]
fn check_names_an_unknown_canonical_field() {
    let err = check_broken(&EXAMPLE.replacen("card_no = \"kh\"", "card_number = \"kh\"", 1));
    assert!(
        err.contains("sources[onecard].streams[cardholders].fields.card_number"),
        "{err}"
    );
}

#[test]
fn check_names_a_link_to_a_missing_stream() {
    let err = check_broken(&EXAMPLE.replacen(
        "link = { stream = \"cardholders\", field = \"card_no\" }",
        "link = { stream = \"holders\", field = \"card_no\" }",
        1,
    ));
    assert!(err.contains("streams[transactions].link.stream"), "{err}");
}

#[test]
fn check_reports_toml_type_errors_with_the_key() {
    let err = check_broken(&EXAMPLE.replacen("batch_size = 500", "batch_size = \"lots\"", 1));
    assert!(err.contains("batch_size"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_every_stream_and_names_a_bad_secret() {
    let sim = community_sync::sim::Sim::start(community_sync::sim::SimOptions {
        seed: 3,
        residents: 200,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        community_sync::cli::demo::write_sim_config(&sim, dir.path(), &dir.path().join("s.db"))
            .unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in [
        "cardholders",
        "transactions",
        "volunteers",
        "service_records",
        "elders",
        "service_orders",
        "patients",
        "followups",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(stream) && l.contains(" ok ")),
            "{stream} not ok in:\n{stdout}"
        );
    }
    // A wrong secret for one source: that source fails with the reason, the others still pass.
    std::fs::write(dir.path().join("credentials/eldercare"), "wrong-key").unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let elders = stdout.lines().find(|l| l.contains("elders")).unwrap();
    assert!(
        elders.contains("FAILED") && elders.contains("credentials"),
        "{elders}"
    );
    assert!(stdout
        .lines()
        .any(|l| l.contains("patients") && l.contains(" ok ")));
    assert!(
        !stdout.contains("wrong-key"),
        "the secret must not be printed"
    );
    sim.shutdown().await;
}
