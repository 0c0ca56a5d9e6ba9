//! File sources: ledgers as community workers keep them (tests/ledger_gen) are ingested with
//! every valid row kept and every bad row quarantined under its reason, naming file and row;
//! a file is ingested once; `replace` deletes what a new version no longer lists; a file that
//! cannot be read goes to `failed/` with the reason beside it; a file not yet ready is left.

mod ledger_gen;
mod sources_support;

use std::path::Path;

use community_sync::pipeline::{self, SyncOptions};
use ledger_gen::Outcome;
use sources_support::{context, count, opts};

fn source(inbox: &Path, ready: &str, streams: &str) -> String {
    format!(
        r#"
[[sources]]
name = "ledgers"
type = "files"
[sources.files]
dir = "{}"
ready = "{ready}"
stable_secs = 0
{streams}"#,
        inbox.display()
    )
}

fn rejects_of(ctx: &pipeline::Context, stream: &str) -> Vec<(String, String, bool)> {
    let g = ctx.store.lock().unwrap();
    let mut st = g
        .conn()
        .prepare("SELECT reason, detail, whole_record FROM rejects WHERE stream = ?1")
        .unwrap();
    st.query_map([stream], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn check_ledger(ctx: &pipeline::Context, stream: &str, file: &str, ledger: &ledger_gen::Ledger) {
    let rejects = rejects_of(ctx, stream);
    let mut whole = 0;
    for e in &ledger.expect {
        let at = format!("{file} row {}: ", e.row);
        match &e.outcome {
            Outcome::Kept | Outcome::FieldRejected(_) => {
                let ok = count(
                    ctx,
                    &format!(
                        "SELECT count(*) FROM source_records WHERE stream = '{stream}' AND source_key = '{}' AND status = 'ok'",
                        e.key
                    ),
                );
                assert_eq!(ok, 1, "row {} ({}) kept", e.row, e.key);
                if let Outcome::FieldRejected(reason) = &e.outcome {
                    assert!(
                        rejects
                            .iter()
                            .any(|(r, d, w)| r == reason && d.starts_with(&at) && !w),
                        "row {}: field reject {reason} naming the row; rejects: {rejects:?}",
                        e.row
                    );
                }
            }
            Outcome::Rejected(reason) => {
                whole += 1;
                assert!(
                    rejects
                        .iter()
                        .any(|(r, d, w)| r == reason && d.starts_with(&at) && *w),
                    "row {}: {reason} naming the row; rejects: {rejects:?}",
                    e.row
                );
            }
        }
    }
    let kept = ledger
        .expect
        .iter()
        .filter(|e| !matches!(e.outcome, Outcome::Rejected(_)))
        .count();
    assert_eq!(
        count(
            ctx,
            &format!(
                "SELECT count(*) FROM source_records WHERE stream = '{stream}' AND status = 'ok'"
            )
        ),
        kept as i64
    );
    assert_eq!(
        rejects.iter().filter(|r| r.2).count(),
        whole,
        "no other row rejected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_and_gbk_csv_ledgers_keep_every_good_row_and_name_every_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(inbox.join("visits_xlsx")).unwrap();
    std::fs::create_dir_all(inbox.join("visits_csv")).unwrap();
    let xlsx = ledger_gen::xlsx(&inbox.join("visits_xlsx/高龄老人走访台账.xlsx"), 21, 230);
    let csv = ledger_gen::gbk_csv(&inbox.join("visits_csv/走访台账-GBK.csv"), 22, 230);
    let streams = ledger_gen::stream_toml("visits_xlsx", "append")
        + &ledger_gen::stream_toml("visits_csv", "append");
    let ctx = context(dir.path(), &source(&inbox, "stable", &streams));
    let r = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    check_ledger(&ctx, "visits_xlsx", "高龄老人走访台账.xlsx", &xlsx);
    check_ledger(&ctx, "visits_csv", "走访台账-GBK.csv", &csv);
    // Dates in three spellings (date cells, bare serials, 年月日) all reached the records.
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM persons WHERE birth_date IS NULL AND retired = 0"
        ),
        0
    );
    // Both files went to done/ and are recorded by hash.
    assert_eq!(count(&ctx, "SELECT count(*) FROM ingested_files"), 2);
    for s in ["visits_xlsx", "visits_csv"] {
        let done: Vec<_> = std::fs::read_dir(inbox.join(s).join("done"))
            .unwrap()
            .collect();
        assert_eq!(done.len(), 1, "{s}/done");
        let left = std::fs::read_dir(inbox.join(s))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count();
        assert_eq!(left, 0, "{s} emptied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_ingested_once_and_replace_deletes_what_the_new_version_drops() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let folder = inbox.join("elders");
    std::fs::create_dir_all(&folder).unwrap();
    let ctx = context(
        dir.path(),
        &source(
            &inbox,
            "stable",
            &ledger_gen::stream_toml("elders", "replace"),
        ),
    );
    ledger_gen::xlsx(&folder.join("台账.xlsx"), 31, 60);
    pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    let kept = count(
        &ctx,
        "SELECT count(*) FROM source_records WHERE status = 'ok'",
    );
    let runs = count(&ctx, "SELECT count(*) FROM runs");
    // The same bytes dropped again: moved to done/ unread, no run.
    let done = std::fs::read_dir(folder.join("done"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&done, folder.join("台账(1).xlsx")).unwrap();
    pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM runs"),
        runs,
        "a known file starts no run"
    );
    assert_eq!(std::fs::read_dir(folder.join("done")).unwrap().count(), 2);
    // A new version without its last 10 rows: 10 of 60 records is more than max_delete (10 %),
    // so the deletions are held and the file stays in the inbox until an operator confirms.
    ledger_gen::xlsx(&folder.join("台账-新.xlsx"), 31, 50);
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 1, "{:?}", r.streams);
    assert_eq!(r.streams[0].stats.held, 10, "{:?}", r.streams);
    assert_eq!(r.streams[0].stats.deleted, 0, "{:?}", r.streams);
    assert!(
        folder.join("台账-新.xlsx").exists(),
        "a held file stays in the inbox"
    );
    // Confirmed: those records are deleted, nothing else.
    let confirmed = SyncOptions {
        confirm_deletes: true,
        ..opts()
    };
    let r = pipeline::ingest_sources(&ctx, &confirmed).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    // Rows 51..60 of the old version: every record of them is deleted, no other.
    let dropped = "source_key LIKE 'LR-%' AND CAST(substr(source_key, 4) AS INTEGER) > 50";
    assert_eq!(
        count(
            &ctx,
            &format!("SELECT count(*) FROM source_records WHERE deleted = 0 AND {dropped}")
        ),
        0
    );
    assert_eq!(
        count(
            &ctx,
            &format!("SELECT count(*) FROM source_records WHERE deleted = 1 AND NOT ({dropped})")
        ),
        0
    );
    let gone = count(
        &ctx,
        &format!("SELECT count(*) FROM source_records WHERE status = 'ok' AND {dropped}"),
    );
    assert!(gone >= 8, "{gone}");
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE status = 'ok' AND deleted = 0"
        ),
        kept - gone
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_goes_to_failed_and_an_unfinished_one_waits() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let folder = inbox.join("elders");
    std::fs::create_dir_all(&folder).unwrap();
    let ctx = context(
        dir.path(),
        &source(
            &inbox,
            "marker",
            &ledger_gen::stream_toml("elders", "append"),
        ),
    );
    // Headers that are not the ones mapped.
    let (bytes, _, _) = encoding_rs::GBK.encode("名字,证件\r\n张三,1\r\n");
    std::fs::write(folder.join("wrong.csv"), &bytes).unwrap();
    std::fs::write(folder.join("wrong.csv.ready"), b"").unwrap();
    // Being written: no marker yet.
    ledger_gen::xlsx(&folder.join("pending.xlsx"), 41, 10);
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 1);
    let failed: Vec<_> = std::fs::read_dir(folder.join("failed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let sidecar = failed
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".error.txt"))
        .expect("sidecar");
    let why = std::fs::read_to_string(sidecar).unwrap();
    assert!(
        why.contains("档案编号") && why.contains("header_row"),
        "{why}"
    );
    assert!(
        folder.join("pending.xlsx").exists(),
        "not ready: left alone"
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM source_records"), 0);
    std::fs::write(folder.join("pending.xlsx.ready"), b"").unwrap();
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    assert!(!folder.join("pending.xlsx").exists() && !folder.join("pending.xlsx.ready").exists());
    assert!(count(&ctx, "SELECT count(*) FROM source_records") >= 9);
}
