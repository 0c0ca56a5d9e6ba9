//! `community-sync backup FILE` while a sync is writing: the copy is a consistent store.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use community_sync::pipeline::{self, SyncOptions};
use community_sync::progress::{Progress, ProgressEvent};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_community-sync");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_taken_mid_sync_is_a_consistent_store() {
    let sim = common::sim(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    let config = dir.path().join("community-sync.toml");
    let backup = dir.path().join("backup.db");

    // On the first page of a stream after some other stream has finished (so there are
    // committed records, this stream's run is open and other sources are still writing), run
    // the real `backup` command.
    let taken = Arc::new(AtomicBool::new(false));
    let one_finished = Arc::new(AtomicBool::new(false));
    let outcome: Arc<Mutex<Option<(i32, String, String)>>> = Arc::default();
    let progress = {
        let (taken, outcome, config, backup) = (
            taken.clone(),
            outcome.clone(),
            config.clone(),
            backup.clone(),
        );
        Progress::new(move |e| {
            if let ProgressEvent::StreamFinished { ok: true, .. } = e {
                one_finished.store(true, Ordering::SeqCst);
            }
            if let ProgressEvent::Page { .. } = e {
                if one_finished.load(Ordering::SeqCst) && !taken.swap(true, Ordering::SeqCst) {
                    let out = Command::new(BIN)
                        .arg("--config")
                        .arg(&config)
                        .arg("backup")
                        .arg(&backup)
                        .output()
                        .expect("binary runs");
                    *outcome.lock().unwrap() = Some((
                        out.status.code().unwrap_or(-1),
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ));
                }
            }
        })
    };
    let opts = SyncOptions {
        progress: Some(progress),
        sources: vec![],
        full: false,
        trigger: "test".into(),
        push: true,
        confirm_deletes: false,
        stop: None,
    };
    let report = pipeline::sync(&ctx, &opts).await.unwrap();
    assert_eq!(report.failed_streams(), 0);
    let (code, stdout, stderr) = outcome
        .lock()
        .unwrap()
        .clone()
        .expect("backup was taken during the sync");
    assert_eq!(code, 0, "backup failed: {stderr}");
    assert!(stdout.contains("integrity check ok"), "{stdout}");

    let copy = Connection::open(&backup).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let fk_violations: i64 = copy
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |_| Ok(()))
        .unwrap()
        .count() as i64;
    assert_eq!(fk_violations, 0, "every reference in the copy resolves");
    let journal: String = copy
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete", "the copy is one self-standing file");

    // Taken mid-way: some run still open, fewer records than at the end.
    let running: i64 = copy
        .query_row(
            "SELECT count(*) FROM runs WHERE status = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(running >= 1, "the copy shows the sync in progress");
    let count = |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let copied = count(&copy, "SELECT count(*) FROM source_records");
    let final_count = common::count(&ctx, "SELECT count(*) FROM source_records");
    assert!(
        copied > 0 && copied < final_count,
        "copied {copied} of {final_count}"
    );

    // Coherent: each stream whose run had finished in the copy holds exactly the records it
    // holds at the end, and its cursor is there; rejects only point at copied records.
    let mut stmt = copy
        .prepare("SELECT source, stream FROM runs WHERE kind = 'sync' AND status = 'ok'")
        .unwrap();
    let finished: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (source, stream) in &finished {
        let q = format!(
            "SELECT count(*) FROM source_records WHERE source = '{source}' AND stream = '{stream}'"
        );
        assert_eq!(
            count(&copy, &q),
            common::count(&ctx, &q),
            "{source}/{stream} in the copy"
        );
        let cursor = format!(
            "SELECT count(*) FROM sync_state WHERE source = '{source}' AND stream = '{stream}'"
        );
        assert_eq!(
            count(&copy, &cursor),
            1,
            "{source}/{stream} cursor in the copy"
        );
    }
    let orphans = count(
        &copy,
        "SELECT count(*) FROM rejects WHERE record_id IS NOT NULL AND record_id NOT IN (SELECT id FROM source_records)",
    );
    assert_eq!(orphans, 0);
    drop(stmt);
    drop(copy);

    // The copy works as a store: the real binary reads it.
    let restored_cfg = dir.path().join("restored.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("{:?}", dir.path().join("store.db").display().to_string()),
        &format!("{:?}", backup.display().to_string()),
    );
    assert!(text.contains("backup.db"));
    std::fs::write(&restored_cfg, text).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&restored_cfg)
        .args(["report", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"].as_i64(), Some(copied));

    // Refuses to overwrite without --force.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("backup")
        .arg(&backup)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let _: PathBuf = backup;
    sim.shutdown().await;
}
