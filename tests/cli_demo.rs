//! `community-sync demo` as a new user runs it: from some directory, with the default
//! (relative) `--dir`, twice, and then `status` with the relative config path the README shows.

use std::process::Command;

fn bin_in(cwd: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_community-sync"));
    c.current_dir(cwd).env_remove("COMMUNITY_SYNC_CONFIG");
    c
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn demo_with_the_default_relative_dir_runs_twice_and_status_reads_its_store() {
    let cwd = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        // The second run finds the key and credentials the first one wrote.
        let out = bin_in(cwd.path())
            .args(["demo", "--residents", "300", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "demo run {run} failed:\n{}",
            text(&out)
        );
    }
    let demo_dir = cwd.path().join("community-sync-demo");
    assert!(demo_dir.join("store.db").is_file());
    assert!(
        !demo_dir.join("community-sync-demo").exists(),
        "paths were resolved twice against the demo directory"
    );
    let config = std::fs::read_to_string(demo_dir.join("community-sync.toml")).unwrap();
    let store_line = config
        .lines()
        .find(|l| l.starts_with("path = "))
        .expect("a store path");
    assert!(
        store_line.contains(&*demo_dir.to_string_lossy()),
        "the written config names absolute paths: {store_line}"
    );

    let out = bin_in(cwd.path())
        .args([
            "--config",
            "community-sync-demo/community-sync.toml",
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "status failed:\n{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let persons = status["persons"].as_i64().unwrap_or(0);
    assert!(persons > 200, "status read the demo's store: {status}");
}

#[test]
fn a_relative_store_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("etc");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let text = include_str!("../config/community-sync.toml").replace(
        "path = \"/var/lib/community-sync/store.db\"",
        "path = \"state/store.db\"",
    );
    let path = conf_dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = community_sync::config::Config::load(&path).unwrap();
    assert_eq!(config.store.path, conf_dir.join("state/store.db"));
}
