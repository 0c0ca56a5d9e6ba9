//! The tamper-evident audit trail: one row per push batch, review decision, desk account
//! change and key rotation. Each row holds the previous row's hash and a MAC of its own content
//! (HMAC-SM3 under a key derived from the store key, [`crate::crypto::AuditKey`]), so an edited,
//! inserted or deleted row breaks the chain, and someone who can write the store file but does
//! not hold the store key cannot rebuild it. The table is append-only (triggers refuse UPDATE
//! and DELETE); ids are AUTOINCREMENT, so even a deleted last row is noticed
//! (`sqlite_sequence`). A store without a key (`Codec::Plain`) gets unkeyed SM3 rows, which
//! anyone with write access could recompute.
//!
//! The actor is who the process runs as (its uid, [`Actor::process`]) or a reviewer the review
//! desk authenticated ([`Actor::named`]); what the process cannot verify (`SUDO_USER`, `$USER`)
//! is recorded as claims beside it. Details must not hold personal data (event ids, keys,
//! hashes, person ids are fine).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sm3::{Digest, Sm3};

use crate::store::{now_text, Codec, StoreError};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something: a name that is not the caller's to choose, and claims that are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    name: String,
    claims: BTreeMap<String, String>,
}

impl Actor {
    /// The process's own credentials: `uid:N` (with the account name when the password file
    /// has it). `SUDO_USER`, `SUDO_UID`, `USER` and `LOGNAME` are claims, not the actor: the
    /// caller sets them.
    pub fn process() -> Actor {
        static PROCESS: std::sync::OnceLock<Actor> = std::sync::OnceLock::new();
        PROCESS
            .get_or_init(|| Actor {
                name: process_name(),
                claims: env_claims(),
            })
            .clone()
    }

    /// Someone the program itself authenticated (a review-desk reviewer, `desk:NAME`); the
    /// process's uid is kept as a claim beside the environment's.
    pub fn named(name: impl Into<String>) -> Actor {
        let mut claims = Actor::process().claims;
        claims.insert("process".into(), Actor::process().name);
        Actor {
            name: name.into(),
            claims,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn claims(&self) -> &BTreeMap<String, String> {
        &self.claims
    }
}

/// `uid:N(name)` of the process's real uid.
fn process_name() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    match account_name(uid) {
        Some(n) => format!("uid:{uid}({n})"),
        None => format!("uid:{uid}"),
    }
}

/// The account name of `uid` in /etc/passwd (accounts from elsewhere show as the bare uid).
fn account_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

fn env_claims() -> BTreeMap<String, String> {
    ["SUDO_USER", "SUDO_UID", "USER", "LOGNAME"]
        .into_iter()
        .filter_map(|v| {
            let value = std::env::var(v).ok().filter(|x| !x.is_empty())?;
            Some((v.to_ascii_lowercase(), value.chars().take(64).collect()))
        })
        .collect()
}

/// A stored row's content, read for re-keying.
struct Stored {
    id: i64,
    at: String,
    kind: String,
    actor: String,
    details: String,
    claims: String,
    key_id: Option<String>,
}

/// One row's content, as hashed.
struct Row<'a> {
    id: i64,
    at: &'a str,
    kind: &'a str,
    actor: &'a str,
    details: &'a str,
    prev_hash: &'a str,
    claims: &'a str,
    key_id: Option<&'a str>,
}

impl Row<'_> {
    /// The row's hash: HMAC-SM3 under `key` over its canonical JSON
    /// `[id, at, kind, actor, details, prev_hash, claims, key_id]`, or without a key plain SM3
    /// over it (rows from before the chain was keyed: `[id, at, kind, actor, details,
    /// prev_hash]`, when they have no claims).
    fn hash(&self, key: Option<&crate::crypto::AuditKey>) -> String {
        if key.is_none() && self.key_id.is_none() && self.claims == "{}" {
            return row_hash(
                self.id,
                self.at,
                self.kind,
                self.actor,
                self.details,
                self.prev_hash,
            );
        }
        let canonical = serde_json::json!([
            self.id,
            self.at,
            self.kind,
            self.actor,
            self.details,
            self.prev_hash,
            self.claims,
            self.key_id
        ])
        .to_string();
        match key {
            Some(k) => k.mac(canonical.as_bytes()),
            None => hex::encode(Sm3::digest(canonical.as_bytes())),
        }
    }
}

/// The unkeyed hash of a row without claims: SM3 over `[id, at, kind, actor, details,
/// prev_hash]` (the chain's form before it was keyed).
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

/// Appends one row in the caller's transaction (so it commits with the change it records),
/// MACed under `codec`'s active key.
pub fn append(
    tx: &Transaction<'_>,
    codec: &Codec,
    kind: &str,
    actor: &Actor,
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
    let key = codec.audit_key();
    let claims = serde_json::to_string(&actor.claims).unwrap_or_else(|_| "{}".into());
    let row = Row {
        id: seq.max(0) + 1,
        at: &now_text(),
        kind,
        actor: &actor.name,
        details: &details.to_string(),
        prev_hash: &prev,
        claims: &claims,
        key_id: key.as_ref().map(|(id, _)| id.as_str()),
    };
    let hash = row.hash(key.as_ref().map(|(_, k)| k));
    tx.prepare_cached(
        "INSERT INTO audit (id, at, kind, actor, details, prev_hash, hash, claims, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        row.id,
        row.at,
        row.kind,
        row.actor,
        row.details,
        row.prev_hash,
        hash,
        row.claims,
        row.key_id
    ])?;
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

/// The name of who runs this process ([`Actor::process`]), for `decisions.by_user`.
pub fn os_user() -> String {
    Actor::process().name
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
    /// Rows MACed with a store key (the rest are unkeyed SM3).
    pub keyed_rows: u64,
    pub head: Option<String>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the chain from the first row: every row's hash must match its content (its MAC under
/// the key it names, one of `codec`'s) and the previous row's hash, ids must be consecutive
/// from 1, and no row may be missing at the end. In an encrypted store every row must be keyed:
/// an unkeyed one was written, or the chain rebuilt, without the key.
pub fn verify(conn: &Connection, codec: &Codec) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut stmt = conn.prepare(
        "SELECT id, at, kind, actor, details, prev_hash, hash, claims, key_id FROM audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_id = 1i64;
    let mut prev = GENESIS.to_string();
    let sealed = codec.active_key().is_some();
    while let Some(r) = rows.next()? {
        let (id, hash): (i64, String) = (r.get(0)?, r.get(6)?);
        let text = |i| -> rusqlite::Result<String> { r.get(i) };
        let (at, kind, actor, details, prev_hash, claims) =
            (text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(7)?);
        let key_id: Option<String> = r.get(8)?;
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
        let row = Row {
            id,
            at: &at,
            kind: &kind,
            actor: &actor,
            details: &details,
            prev_hash: &prev_hash,
            claims: &claims,
            key_id: key_id.as_deref(),
        };
        if let Some(what) = check_row(&row, &hash, codec, sealed) {
            report.problems.push(Problem { id, what });
        }
        report.keyed_rows += u64::from(key_id.is_some());
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

const NOT_KEYED: &str = "not MACed with the store key";

/// What is wrong with one row's hash, if anything.
fn check_row(row: &Row<'_>, hash: &str, codec: &Codec, sealed: bool) -> Option<String> {
    match row.key_id {
        Some(k) => match codec.audit_key_of(k) {
            Some(key) if row.hash(Some(&key)) == hash => None,
            Some(_) => Some(
                "its content does not match its MAC (the row was edited, or the chain rebuilt without the store key)".into(),
            ),
            None => Some(format!(
                "it is MACed with key id {k}, which is not configured ([security] key_file or previous_key_files)"
            )),
        },
        None if row.hash(None) != hash => {
            Some("its content does not match its hash (the row was edited)".into())
        }
        None if sealed => Some(format!(
            "it is {NOT_KEYED} (written, or the chain rebuilt, without it)"
        )),
        None => None,
    }
}

/// Re-MACs the chain under `codec`'s active key, from the first row that is not under it, in
/// the caller's transaction (key rotation; the first keyed open of a store whose chain was
/// unkeyed). Returns how many rows were rewritten and the problems the chain had before
/// (unkeyed rows aside), which the caller records in the chain.
pub(crate) fn rekey(
    tx: &Transaction<'_>,
    codec: &Codec,
) -> Result<(u64, Vec<Problem>), StoreError> {
    let Some((key_id, key)) = codec.audit_key() else {
        return Ok((0, Vec::new()));
    };
    // Unkeyed rows are what is being keyed; any other break stays on record.
    let before: Vec<Problem> = verify(tx, codec)?
        .problems
        .into_iter()
        .filter(|p| !p.what.contains(NOT_KEYED))
        .collect();
    let rows: Vec<Stored> = tx
        .prepare("SELECT id, at, kind, actor, details, claims, key_id FROM audit ORDER BY id")?
        .query_map([], |r| {
            Ok(Stored {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                details: r.get(4)?,
                claims: r.get(5)?,
                key_id: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let Some(first) = rows
        .iter()
        .position(|r| r.key_id.as_deref() != Some(key_id.as_str()))
    else {
        return Ok((0, before));
    };
    tx.execute_batch("DROP TRIGGER IF EXISTS audit_no_update;")?;
    let mut prev = match first {
        0 => GENESIS.to_string(),
        i => tx.query_row(
            "SELECT hash FROM audit WHERE id = ?1",
            [rows[i - 1].id],
            |r| r.get(0),
        )?,
    };
    let mut upd =
        tx.prepare("UPDATE audit SET prev_hash = ?2, hash = ?3, key_id = ?4 WHERE id = ?1")?;
    let mut n = 0u64;
    for r in &rows[first..] {
        let row = Row {
            id: r.id,
            at: &r.at,
            kind: &r.kind,
            actor: &r.actor,
            details: &r.details,
            prev_hash: &prev,
            claims: &r.claims,
            key_id: Some(&key_id),
        };
        let hash = row.hash(Some(&key));
        upd.execute(params![r.id, prev, hash, key_id])?;
        prev = hash;
        n += 1;
    }
    drop(upd);
    tx.execute_batch(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;",
    )?;
    Ok((n, before))
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::crypto::{Algorithm, BlindAlgorithm, StoreKey};
    use crate::store::codec::{self, Keyring};
    use crate::store::Store;
    use serde_json::json;
    use std::sync::Arc;

    pub(super) fn store_with_rows(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        add_rows(&mut s, n);
        (dir, s)
    }

    pub(super) fn add_rows(s: &mut Store, n: usize) {
        let c = s.codec().clone();
        for i in 0..n {
            let tx = s.conn_mut().transaction().unwrap();
            append(
                &tx,
                &c,
                "push_batch",
                &Actor::process(),
                &json!({"batch": i}),
            )
            .unwrap();
            tx.commit().unwrap();
        }
    }

    pub(super) fn key(b: u8) -> StoreKey {
        StoreKey::from_bytes(&[b; 32], Algorithm::Aes256Gcm, BlindAlgorithm::HmacSm3)
    }

    pub(super) fn sealed(b: u8) -> Codec {
        Codec::Sealed(Arc::new(Keyring::new(key(b), vec![])))
    }

    /// A store keyed with key `b`, holding `n` rows.
    pub(super) fn keyed_store(b: u8, n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        codec::attach(&mut s, sealed(b)).unwrap();
        add_rows(&mut s, n);
        (dir, s)
    }

    pub(super) fn v(s: &Store) -> VerifyReport {
        verify(s.conn(), s.codec()).unwrap()
    }

    pub(super) fn unguard(s: &Store) {
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
        let r = v(&s);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.rows, 5);
        let (_d, s) = keyed_store(1, 5);
        let r = v(&s);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.rows, r.keyed_rows), (5, 5));
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
        let r = v(&s);
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
        let r = v(&s);
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
        let r2 = v(&s2);
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
        let r = v(&s);
        assert!(r.problems.iter().any(|p| p.id == 3), "{:?}", r.problems);
    }
}

#[cfg(test)]
mod keyed_tests {
    use super::tests_support::*;
    use super::*;
    use crate::store::codec::{self, Keyring};
    use crate::store::Store;
    use serde_json::json;

    #[test]
    fn a_chain_rebuilt_without_the_store_key_is_detected() {
        // Before the chain was keyed, recomputing the SM3 hashes from an edited row on passed
        // `audit verify`.
        for forge_with_other_key in [false, true] {
            let (_d, s) = keyed_store(1, 4);
            unguard(&s);
            let rows: Vec<(i64, String, String, String, String)> = s
                .conn()
                .prepare("SELECT id, at, kind, actor, claims FROM audit ORDER BY id")
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let other = super::tests_support::sealed(9).audit_key().unwrap();
            let mut prev = GENESIS.to_string();
            for (id, at, kind, actor, claims) in &rows {
                let details = if *id == 2 { "{\"batch\":99}" } else { "{}" };
                let key_id = forge_with_other_key.then(|| other.0.clone());
                let row = Row {
                    id: *id,
                    at,
                    kind,
                    actor,
                    details,
                    prev_hash: &prev,
                    claims,
                    key_id: key_id.as_deref(),
                };
                let hash = row.hash(forge_with_other_key.then_some(&other.1));
                s.conn()
                    .execute(
                        "UPDATE audit SET details = ?2, prev_hash = ?3, hash = ?4, key_id = ?5 WHERE id = ?1",
                        params![id, details, prev, hash, key_id],
                    )
                    .unwrap();
                prev = hash;
            }
            let r = verify(s.conn(), s.codec()).unwrap();
            assert!(!r.ok(), "a rebuilt chain verifies ({forge_with_other_key})");
            assert_eq!(r.problems.len(), rows.len(), "{:?}", r.problems);
        }
    }

    #[test]
    fn rotation_is_audited_and_the_chain_verifies_with_the_new_key_alone() {
        let (_d, mut s) = keyed_store(1, 3);
        let report =
            crate::store::codec::rotate(&mut s, Some(Keyring::new(key(1), vec![])), key(2), 10)
                .unwrap();
        assert_eq!(report.audit_rows_rekeyed, 3);
        s.set_codec(sealed(2));
        let r = verify(s.conn(), s.codec()).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.rows, r.keyed_rows), (4, 4));
        let (kind, details, actor): (String, String, String) = s
            .conn()
            .query_row(
                "SELECT kind, details, actor FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kind, "key_rotated");
        assert!(details.contains(&key(2).id_hex()), "{details}");
        assert_eq!(actor, Actor::process().name());
        // The old key alone no longer verifies it.
        s.set_codec(sealed(1));
        assert!(!verify(s.conn(), s.codec()).unwrap().ok());
    }

    #[test]
    fn the_actor_is_the_process_uid_and_the_environment_only_a_claim() {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let a = Actor::process();
        assert!(a.name().starts_with(&format!("uid:{uid}")), "{}", a.name());
        if let Ok(u) = std::env::var("USER") {
            assert_eq!(a.claims().get("user"), Some(&u));
        }
        let d = Actor::named("desk:alice");
        assert_eq!(d.name(), "desk:alice");
        assert_eq!(d.claims().get("process"), Some(&a.name().to_string()));
    }

    #[test]
    fn a_legacy_unkeyed_chain_is_keyed_once_by_the_first_keyed_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut s = Store::open(&path).unwrap();
        codec::attach(&mut s, sealed(1)).unwrap();
        // Rows as written before the keying (no key id, no claims).
        unguard(&s);
        s.conn().execute_batch("DELETE FROM audit;").unwrap();
        let mut prev = GENESIS.to_string();
        for id in 1..=2i64 {
            let h = row_hash(id, "t", "push_batch", "community-sync", "{}", &prev);
            s.conn()
                .execute(
                    "INSERT INTO audit (id, at, kind, actor, details, prev_hash, hash) VALUES (?1, 't', 'push_batch', 'community-sync', '{}', ?2, ?3)",
                    params![id, prev, h],
                )
                .unwrap();
            prev = h;
        }
        s.conn()
            .execute_batch(
                "ALTER TABLE audit DROP COLUMN key_id; ALTER TABLE audit DROP COLUMN claims;
                 DROP TABLE IF EXISTS matching_models; DROP TABLE IF EXISTS pending_rebuilds;
                 DROP INDEX match_features_syl_birth; DROP INDEX match_features_syl_comm;
                 ALTER TABLE match_features DROP COLUMN syl_k; ALTER TABLE match_features DROP COLUMN edit_k;
                 ALTER TABLE match_features DROP COLUMN birth_part_k; ALTER TABLE match_features DROP COLUMN shape_k;
                 ALTER TABLE match_features DROP COLUMN near_k;
                 ALTER TABLE match_features DROP COLUMN name_mask;
                 ALTER TABLE match_features DROP COLUMN mask_k; PRAGMA user_version = 13;",
            )
            .unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        codec::attach(&mut s, sealed(1)).unwrap();
        let r = verify(s.conn(), s.codec()).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.rows, r.keyed_rows), (3, 3));
        // An unkeyed row appended later (by someone without the key) is a break.
        drop(s);
        let mut s = Store::open(&path).unwrap();
        codec::attach(&mut s, sealed(1)).unwrap();
        let tx = s.conn_mut().transaction().unwrap();
        append(
            &tx,
            &Codec::Plain,
            "push_batch",
            &Actor::process(),
            &json!({}),
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(!verify(s.conn(), s.codec()).unwrap().ok());
    }
}
