//! A sync of the real binary killed with SIGKILL in the middle of a SQL stream and in the
//! middle of a ledger file loses nothing and ingests nothing twice: the next sync reads again
//! from the old cursor (or the same file), writes only what the killed one had not committed,
//! rewrites nothing, and the file is recorded and moved to done/ once.

mod ledger_gen;
mod services;
mod sources_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use community_sync::sim::sqldb::{SqlFlavor, SqlVendor, SqlVendorOptions};

fn spawn_sync(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "sync",
            "--no-push",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn store_count(store: &Path, sql: &str) -> i64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.busy_timeout(Duration::from_secs(5)).ok();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// Starts a sync and SIGKILLs it once at least `at_least` records are committed (and the
/// run is still going). Returns the records committed when it died.
fn kill_mid_ingest(config: &Path, store: &Path, at_least: i64) -> i64 {
    let mut child = spawn_sync(config);
    let started = Instant::now();
    loop {
        let n = store_count(store, "SELECT count(*) FROM source_records");
        if n >= at_least {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the sync ended ({status}) before {at_least} records were committed ({n}); make the data larger");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    store_count(store, "SELECT count(*) FROM source_records")
}

fn finish(config: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "sync",
            "--no-push",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last successful stream run's (inserted, updated).
fn last_run(store: &Path, stream: &str) -> (i64, i64) {
    let c = rusqlite::Connection::open(store).unwrap();
    c.query_row(
        "SELECT inserted, updated FROM runs WHERE stream = ?1 AND status = 'ok' ORDER BY id DESC LIMIT 1",
        [stream],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_sql_stream_loses_nothing_and_writes_nothing_twice() {
    if services::require(
        &services::MARIADB,
        "sigkill_during_a_sql_stream_loses_nothing_and_writes_nothing_twice",
    )
    .is_none()
    {
        return;
    }
    let v = SqlVendor::start(
        SqlFlavor::MariaDb,
        SqlVendorOptions {
            seed: 51,
            rows: 10_000,
            orders_per_elder: 0,
            insert_batch: 2_000,
        },
    )
    .await
    .unwrap();
    let truth = v.truth();
    let dir = tempfile::tempdir().unwrap();
    let config = sources_support::write_config(dir.path(), &v.source_toml("onecard_db", 500, 0));
    let store = dir.path().join("store.db");
    let committed = kill_mid_ingest(&config, &store, 1_500);
    assert!(
        committed < truth.rows as i64,
        "killed before the end ({committed})"
    );
    finish(&config);
    assert_eq!(
        store_count(&store, "SELECT count(*) FROM source_records"),
        truth.rows as i64
    );
    let (inserted, updated) = last_run(&store, "cards");
    assert_eq!(
        inserted,
        truth.rows as i64 - committed,
        "only what the killed run had not committed"
    );
    assert_eq!(updated, 0, "nothing written twice");
    assert_eq!(
        store_count(
            &store,
            "SELECT count(*) FROM runs WHERE status = 'interrupted'"
        ),
        1
    );
    assert_eq!(
        store_count(&store, "SELECT count(*) FROM (SELECT 1 FROM outbox GROUP BY entity, entity_key, version HAVING count(*) > 1)"),
        0
    );
    v.drop_tables().await.unwrap();
}

#[test]
fn sigkill_during_a_file_ingest_loses_nothing_and_ingests_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let folder = inbox.join("visits");
    std::fs::create_dir_all(&folder).unwrap();
    let ledger = ledger_gen::gbk_csv(&folder.join("走访台账.csv"), 61, 8_000);
    let rows = ledger.expect.len() as i64;
    let source = format!(
        r#"
[[sources]]
name = "ledgers"
type = "files"
[sources.files]
dir = "{}"
stable_secs = 0
{}"#,
        inbox.display(),
        ledger_gen::stream_toml("visits", "replace")
    );
    let config = sources_support::write_config(dir.path(), &source);
    let store = dir.path().join("store.db");
    let committed = kill_mid_ingest(&config, &store, 1_000);
    assert!(committed < rows, "killed before the end ({committed})");
    assert!(
        folder.join("走访台账.csv").exists(),
        "not moved before its records committed"
    );
    assert_eq!(
        store_count(&store, "SELECT count(*) FROM ingested_files"),
        0
    );
    finish(&config);
    assert_eq!(
        store_count(&store, "SELECT count(*) FROM source_records"),
        rows
    );
    let (inserted, updated) = last_run(&store, "visits");
    assert_eq!(inserted, rows - committed);
    assert_eq!(updated, 0);
    assert_eq!(
        store_count(&store, "SELECT count(*) FROM ingested_files"),
        1
    );
    assert_eq!(
        store_count(
            &store,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        0
    );
    assert!(!folder.join("走访台账.csv").exists());
    assert_eq!(std::fs::read_dir(folder.join("done")).unwrap().count(), 1);
    // Another sync finds nothing to do.
    finish(&config);
    assert_eq!(
        store_count(
            &store,
            "SELECT count(*) FROM runs WHERE stream = 'visits' AND status = 'ok'"
        ),
        1
    );
}
