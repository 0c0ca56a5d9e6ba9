//! The tamper-evident audit trail: one row per push batch and per review decision, each row
//! holding the SM3 hash of the previous row and of its own content, so an edited, inserted or
//! deleted row breaks the chain. The table is append-only (triggers refuse UPDATE and DELETE);
//! ids are AUTOINCREMENT, so even a deleted last row is noticed (`sqlite_sequence`).
//!
//! Details must not hold personal data (event ids, keys, hashes, person ids are fine).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sm3::{Digest, Sm3};

use crate::store::{now_text, StoreError};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one row: SM3 over its canonical JSON `[id, at, kind, actor, details, prev_hash]`.
pub fn row_hash(
    id: i64,
    at: &str,
    kind: &str,
    actor: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([id, at, kind, actor, details, prev_hash]).to_string();
    hex::encode(Sm3::digest(canonical.as_bytes()))
}

/// Appends one row in the caller's transaction (so it commits with the change it records).
pub fn append(
    tx: &Transaction<'_>,
    kind: &str,
    actor: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let seq: i64 = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let prev = last.map(|l| l.1).unwrap_or_else(|| GENESIS.to_string());
    let id = seq.max(0) + 1;
    let at = now_text();
    let details = details.to_string();
    let hash = row_hash(id, &at, kind, actor, &details, &prev);
    tx.prepare_cached(
        "INSERT INTO audit (id, at, kind, actor, details, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![id, at, kind, actor, details, prev, hash])?;
    Ok(())
}

/// The details of a push-batch row: destination URL, idempotency key, event ids and the SHA-256
/// of the payloads in order (content, not personal data, is what the hash commits to).
pub fn push_batch_details(
    destination: &str,
    idempotency_key: &str,
    events: &[(&str, &str)],
) -> serde_json::Value {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (_, payload) in events {
        h.update(payload.as_bytes());
        h.update([0u8]);
    }
    serde_json::json!({
        "destination": destination,
        "idempotency_key": idempotency_key,
        "event_ids": events.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "content_sha256": hex::encode(h.finalize()),
    })
}

/// The operating-system user running this process (for review decisions).
pub fn os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| format!("uid:{u}")))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The row at which the break shows (or the expected id of a missing row).
    pub id: i64,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub rows: u64,
    pub head: Option<String>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the chain from the first row: every row's hash must match its content and the
/// previous row's hash, ids must be consecutive from 1, and no row may be missing at the end.
pub fn verify(conn: &Connection) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut stmt = conn
        .prepare("SELECT id, at, kind, actor, details, prev_hash, hash FROM audit ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut expected_id = 1i64;
    let mut prev = GENESIS.to_string();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let at: String = r.get(1)?;
        let kind: String = r.get(2)?;
        let actor: String = r.get(3)?;
        let details: String = r.get(4)?;
        let prev_hash: String = r.get(5)?;
        let hash: String = r.get(6)?;
        report.rows += 1;
        if id != expected_id {
            report.problems.push(Problem {
                id: expected_id,
                what: format!("rows {expected_id}..{} are missing (deleted)", id - 1),
            });
        }
        if prev_hash != prev {
            report.problems.push(Problem {
                id,
                what: "its prev_hash does not match the previous row's hash (a row before it was deleted, inserted or edited)".into(),
            });
        }
        if row_hash(id, &at, &kind, &actor, &details, &prev_hash) != hash {
            report.problems.push(Problem {
                id,
                what: "its content does not match its hash (the row was edited)".into(),
            });
        }
        prev = hash;
        expected_id = id + 1;
    }
    let seq: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if seq >= expected_id {
        report.problems.push(Problem {
            id: expected_id,
            what: format!("rows {expected_id}..{seq} at the end are missing (deleted)"),
        });
    }
    report.head = (report.rows > 0).then_some(prev);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    fn store_with_rows(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        for i in 0..n {
            let tx = s.conn_mut().transaction().unwrap();
            append(&tx, "push_batch", "community-sync", &json!({"batch": i})).unwrap();
            tx.commit().unwrap();
        }
        (dir, s)
    }

    fn unguard(s: &Store) {
        s.conn()
            .execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    #[test]
    fn push_batch_details_commit_to_content_not_personal_data() {
        let a = push_batch_details(
            "https://p/x",
            "k1",
            &[("e1", "{\"phone\":\"13800138000\"}")],
        );
        let b = push_batch_details(
            "https://p/x",
            "k1",
            &[("e1", "{\"phone\":\"13800138001\"}")],
        );
        assert_ne!(a["content_sha256"], b["content_sha256"]);
        assert!(!a.to_string().contains("13800138000"));
        assert_eq!(a["event_ids"][0], "e1");
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, s) = store_with_rows(5);
        let r = verify(s.conn()).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.rows, 5);
    }

    #[test]
    fn table_refuses_update_and_delete() {
        let (_d, s) = store_with_rows(2);
        assert!(s
            .conn()
            .execute("UPDATE audit SET actor = 'x'", [])
            .is_err());
        assert!(s.conn().execute("DELETE FROM audit", []).is_err());
    }

    #[test]
    fn edited_row_is_detected() {
        let (_d, s) = store_with_rows(5);
        unguard(&s);
        s.conn()
            .execute(
                "UPDATE audit SET details = '{\"batch\":99}' WHERE id = 3",
                [],
            )
            .unwrap();
        let r = verify(s.conn()).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.id == 3 && p.what.contains("edited")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn deleted_middle_and_last_rows_are_detected() {
        let (_d, s) = store_with_rows(5);
        unguard(&s);
        s.conn()
            .execute("DELETE FROM audit WHERE id = 2", [])
            .unwrap();
        let r = verify(s.conn()).unwrap();
        assert!(!r.ok());
        assert!(
            r.problems
                .iter()
                .any(|p| p.id == 2 && p.what.contains("missing")),
            "{:?}",
            r.problems
        );
        let (_d2, s2) = store_with_rows(5);
        unguard(&s2);
        s2.conn()
            .execute("DELETE FROM audit WHERE id = 5", [])
            .unwrap();
        let r2 = verify(s2.conn()).unwrap();
        assert!(
            r2.problems.iter().any(|p| p.what.contains("at the end")),
            "{:?}",
            r2.problems
        );
    }

    #[test]
    fn a_rewritten_chain_from_an_edited_row_still_breaks_at_the_next() {
        let (_d, s) = store_with_rows(3);
        unguard(&s);
        // The attacker recomputes row 2's own hash but cannot fix row 3 without rewriting it.
        let (at, kind, actor, prev): (String, String, String, String) = s
            .conn()
            .query_row(
                "SELECT at, kind, actor, prev_hash FROM audit WHERE id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        let h = row_hash(2, &at, &kind, &actor, "{}", &prev);
        s.conn()
            .execute(
                "UPDATE audit SET details = '{}', hash = ?1 WHERE id = 2",
                [h],
            )
            .unwrap();
        let r = verify(s.conn()).unwrap();
        assert!(r.problems.iter().any(|p| p.id == 3), "{:?}", r.problems);
    }
}
