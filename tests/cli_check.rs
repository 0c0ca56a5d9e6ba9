//! `community-sync check` on good and broken configs.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_community-sync"))
}

const EXAMPLE: &str = include_str!("../config/community-sync.toml");

#[test]
fn check_accepts_the_example_config() {
    let out = bin()
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/community-sync.toml"), "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 sources"));
}

fn check_broken(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();
    let out = bin().args(["--config", path.to_str().unwrap(), "check"]).output().unwrap();
    assert!(!out.status.success(), "a broken config must fail check");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("broken.toml"), "error names the file: {err}");
    err
}

#[test]
fn check_names_the_key_of_a_bad_schedule() {
    let err = check_broken(&EXAMPLE.replacen("schedule = \"*/5 * * * *\"", "schedule = \"every five minutes\"", 1));
    assert!(err.contains("sources[onecard].schedule"), "{err}");
}

#[test]
fn check_names_an_unknown_canonical_field() {
    let err = check_broken(&EXAMPLE.replacen("card_no = \"kh\"", "card_number = \"kh\"", 1));
    assert!(err.contains("sources[onecard].streams[cardholders].fields.card_number"), "{err}");
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
    let err = check_broken(&EXAMPLE.replacen("batch_size = 2000", "batch_size = \"lots\"", 1));
    assert!(err.contains("batch_size"), "{err}");
}
