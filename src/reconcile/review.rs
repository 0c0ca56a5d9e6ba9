//! The review queue: what a machine should not decide.
//!
//! Items are raised by reconcile (`match`: a record that scored between the thresholds
//! against a resident; `conflict`: linked records disagree on a hard field; `gender_id`: a
//! stated gender contradicts the ID number). Human decisions are stored as pins (record →
//! resident), never-match pairs (record, resident) and field locks, and every reconcile run
//! applies them first, so a re-sync never undoes them. Every decision can be undone by a
//! later one (`Decision::Undo`, `reconcile::undo`).

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use crate::config::Config;
use crate::reconcile::{golden, person_key, undo, ReconcileStats};
use crate::store::{now_text, Codec, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("review item {0} does not exist (see `community-sync review list`)")]
    NoItem(i64),
    #[error("review item {0} was already decided ({1}); undo that decision first (`community-sync review decisions`, then `review undo ID`)")]
    Decided(i64, String),
    #[error("resident {0} does not exist or is retired")]
    NoPerson(String),
    #[error("residents {0} and {1} carry different ID numbers and are never merged")]
    DifferentIds(String, String),
    #[error("decision {0} cannot be undone: {1}")]
    NotUndoable(i64, String),
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for ReviewError {
    fn from(e: rusqlite::Error) -> Self {
        ReviewError::Store(StoreError::from(e))
    }
}

/// One item of the queue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    pub id: i64,
    /// `match`, `conflict` or `gender_id`.
    pub kind: String,
    pub record_id: Option<i64>,
    pub person_id: Option<i64>,
    pub field: Option<String>,
    pub score: Option<f64>,
    pub state: String,
    pub created_at: String,
    pub decided_by: Option<String>,
}

/// A human decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Accept a review item: link the record (match), take the record's value (conflict),
    /// acknowledge (gender_id).
    Accept { item: i64 },
    /// Reject a review item: never match this pair (match), keep the golden value (conflict),
    /// dismiss (gender_id).
    Reject { item: i64 },
    /// Fold `other` into `survivor`; `other` is retired and redirected.
    Merge { survivor: i64, other: i64 },
    /// Detach these source records from `person` into a new resident.
    Split { person: i64, records: Vec<i64> },
    /// Not sure: the item stays open; recorded (who, why) so that the reviewer's queue can
    /// put it last and a colleague can see someone hesitated.
    Skip { item: i64 },
    /// Reverse an earlier decision (see `reconcile::undo`): what it pinned, kept apart,
    /// locked or merged is put back as it was, its item is open again, and what changed is
    /// reconciled, with events.
    Undo { decision: i64 },
}

/// Who runs this process, from its credentials (`uid:N(name)`; `$USER` is the caller's to set).
pub fn acting_user() -> String {
    crate::audit::os_user()
}

/// Raises an item unless the same one exists (open or decided).
pub fn raise(
    tx: &Transaction<'_>,
    kind: &str,
    record_id: Option<i64>,
    person_id: Option<i64>,
    field: Option<&str>,
    score: Option<f64>,
    detail: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO review_items (kind, record_id, person_id, field, score, detail, state, created_at)
         VALUES (?1, ?2, ?3, COALESCE(?4, ''), ?5, ?6, 'open', ?7)",
    )?
    .execute(params![kind, record_id, person_id, field, score, detail, now_text()])?;
    Ok(())
}

/// Closes a record's open match items (it was linked by other evidence).
pub fn supersede_matches(tx: &Transaction<'_>, record_id: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE review_items SET state = 'superseded' WHERE record_id = ?1 AND kind = 'match' AND state = 'open'",
    )?
    .execute([record_id])?;
    Ok(())
}

/// Open items.
pub fn open_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM review_items WHERE state = 'open'",
        [],
        |r| r.get(0),
    )?)
}

/// Review load: open items per 1,000 live person records (None: no person records), the
/// figure docs/matching.md's thresholds are tuned against.
pub fn load_per_1000(conn: &Connection, open: i64) -> Result<Option<f64>, StoreError> {
    let records: i64 = conn.query_row("SELECT count(*) FROM match_features", [], |r| r.get(0))?;
    Ok((records > 0).then(|| open as f64 * 1000.0 / records as f64))
}

/// Items, newest first; `state` `None` = open only, `Some("all")` = every item.
pub fn list(conn: &Connection, state: Option<&str>, limit: usize) -> Result<Vec<Item>, StoreError> {
    let state = state.unwrap_or("open");
    let mut stmt = conn.prepare(
        "SELECT id, kind, record_id, person_id, NULLIF(field, ''), score, state, created_at, decided_by
         FROM review_items WHERE (?1 = 'all' OR state = ?1) ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![state, limit as i64], item_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Item>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, kind, record_id, person_id, NULLIF(field, ''), score, state, created_at, decided_by
             FROM review_items WHERE id = ?1",
            [id],
            item_row,
        )
        .optional()?)
}

fn item_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        id: r.get(0)?,
        kind: r.get(1)?,
        record_id: r.get(2)?,
        person_id: r.get(3)?,
        field: r.get(4)?,
        score: r.get(5)?,
        state: r.get(6)?,
        created_at: r.get(7)?,
        decided_by: r.get(8)?,
    })
}

/// The resident a pinned record belongs to, following merges.
pub fn pinned_person(conn: &Connection, record_id: i64) -> Result<Option<i64>, StoreError> {
    let pin: Option<i64> = conn
        .prepare_cached("SELECT person_id FROM pins WHERE record_id = ?1")?
        .query_row([record_id], |r| r.get(0))
        .optional()?;
    match pin {
        Some(p) => Ok(Some(follow_merges(conn, p)?)),
        None => Ok(None),
    }
}

/// The surviving resident of a chain of merges.
pub fn follow_merges(conn: &Connection, mut pid: i64) -> Result<i64, StoreError> {
    for _ in 0..64 {
        let next: Option<i64> = conn
            .prepare_cached("SELECT merged_into FROM persons WHERE id = ?1")?
            .query_row([pid], |r| r.get(0))
            .optional()?
            .flatten();
        match next {
            Some(n) if n != pid => pid = n,
            _ => break,
        }
    }
    Ok(pid)
}

fn live_person(tx: &Transaction<'_>, pid: i64) -> Result<(), ReviewError> {
    let ok: Option<i64> = tx
        .query_row(
            "SELECT id FROM persons WHERE id = ?1 AND retired = 0",
            [pid],
            |r| r.get(0),
        )
        .optional()?;
    ok.map(|_| ())
        .ok_or_else(|| ReviewError::NoPerson(person_key(pid)))
}

fn pin(tx: &Transaction<'_>, record_id: i64, pid: i64, decision: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO pins (record_id, person_id, decision_id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![record_id, pid, decision])?;
    tx.prepare_cached("UPDATE source_records SET dirty = 1 WHERE id = ?1")?
        .execute([record_id])?;
    Ok(())
}

/// Who decides, and why (free text, scrubbed of anything that looks like an ID number or a
/// phone before it is stored; see [`clean_reason`]).
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The audit actor: an OS user for the CLI, `desk:NAME` for a reviewer on the desk.
    pub actor: &'a str,
    pub reason: Option<&'a str>,
}

/// What a decision did: its id and the reconcile it caused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decided {
    pub decision: i64,
    pub stats: ReconcileStats,
}

/// The one entry point for a decision, from the CLI and from the review desk alike: opens an
/// IMMEDIATE transaction on the store (a concurrent sync waits instead of failing the
/// decision halfway), records and applies `d`, commits.
pub fn decide(
    store: &mut crate::store::Store,
    config: &Config,
    d: &Decision,
    by: &By<'_>,
) -> Result<Decided, ReviewError> {
    let codec = store.codec().clone();
    let mut stats = ReconcileStats::default();
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let decision = record_decision_by(&tx, &codec, config, d, by, &mut stats)?;
    tx.commit()?;
    Ok(Decided { decision, stats })
}

/// A reason as stored: trimmed, at most 500 characters, digit runs that could be an ID
/// number or a phone masked (the audit trail holds no personal data).
pub fn clean_reason(reason: Option<&str>) -> Option<String> {
    let r = reason?.trim();
    if r.is_empty() {
        return None;
    }
    let cut: String = r.chars().take(500).collect();
    Some(crate::mask::scrub_text(&cut))
}

/// [`record_decision_by`] without a reason.
pub fn record_decision(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    decision: &Decision,
    user: &str,
    stats: &mut ReconcileStats,
) -> Result<i64, ReviewError> {
    let by = By {
        actor: user,
        reason: None,
    };
    record_decision_by(tx, codec, config, decision, &by, stats)
}

/// Records one human decision and applies it: stores the decision (who, why, and what it
/// replaced, so that it can be undone), its pins / never-match pairs / field locks, and
/// reconciles what it changed, writing outbox events, all inside `tx`. Returns the decision
/// id. The one place where decisions are recorded.
pub fn record_decision_by(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    decision: &Decision,
    by: &By<'_>,
    stats: &mut ReconcileStats,
) -> Result<i64, ReviewError> {
    let (action, item_id, p1, p2, records) = match decision {
        Decision::Accept { item } => ("accept", Some(*item), None, None, vec![]),
        Decision::Reject { item } => ("reject", Some(*item), None, None, vec![]),
        Decision::Skip { item } => ("skip", Some(*item), None, None, vec![]),
        Decision::Merge { survivor, other } => {
            ("merge", None, Some(*survivor), Some(*other), vec![])
        }
        Decision::Split { person, records } => {
            ("split", None, Some(*person), None, records.clone())
        }
        Decision::Undo { decision } => ("undo", undo::item_of(tx, *decision)?, None, None, vec![]),
    };
    let item = match (decision, item_id) {
        (Decision::Undo { .. }, _) | (_, None) => None,
        (_, Some(id)) => {
            let it = get(tx, id)?.ok_or(ReviewError::NoItem(id))?;
            if it.state != "open" {
                return Err(ReviewError::Decided(id, it.state));
            }
            Some(it)
        }
    };
    let reason = clean_reason(by.reason);
    let undoes = match decision {
        Decision::Undo { decision } => Some(*decision),
        _ => None,
    };
    // The tamper-evident audit record of this decision, in the same transaction.
    let actor = if by.actor == crate::audit::os_user() {
        crate::audit::Actor::process()
    } else {
        crate::audit::Actor::named(by.actor)
    };
    crate::audit::append(
        tx,
        codec,
        "review_decision",
        &actor,
        &serde_json::json!({
            "action": action,
            "item": item_id,
            "person": p1,
            "other_person": p2,
            "records": records,
            "undoes": undoes,
            "reason": reason,
        }),
    )?;
    tx.execute(
        "INSERT INTO decisions (action, item_id, person_id, other_person_id, records, by_user, at, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            action,
            item_id,
            p1,
            p2,
            serde_json::to_string(&records).unwrap_or_default(),
            by.actor,
            now_text(),
            reason
        ],
    )?;
    let did = tx.last_insert_rowid();
    if let Decision::Undo { decision } = decision {
        undo::undo(tx, codec, config, *decision, did, stats)?;
        return Ok(did);
    }
    let open_before = undo::open_items(tx)?;
    let mut prior = undo::Prior::default();
    let mut refresh: BTreeSet<i64> = BTreeSet::new();
    match decision {
        Decision::Accept { .. } | Decision::Reject { .. } | Decision::Skip { .. } => {
            let Some(it) = item else {
                return Err(ReviewError::Invalid(
                    "accept, reject and skip need a review item".into(),
                ));
            };
            let accept = matches!(decision, Decision::Accept { .. });
            if !matches!(decision, Decision::Skip { .. }) {
                apply_item(tx, codec, &it, accept, did, &mut prior, &mut refresh)?;
                tx.execute(
                    "UPDATE review_items SET state = ?2, decided_by = ?3, decided_at = ?4, decision_id = ?5 WHERE id = ?1",
                    params![it.id, if accept { "accepted" } else { "rejected" }, by.actor, now_text(), did],
                )?;
            }
        }
        Decision::Merge { survivor, other } => {
            apply_merge(tx, *survivor, *other, did, &mut prior)?;
            refresh.insert(*survivor);
            refresh.insert(*other);
        }
        Decision::Split { person, records } => {
            let new = apply_split(tx, *person, records, did, &mut prior, stats)?;
            refresh.insert(*person);
            refresh.insert(new);
        }
        Decision::Undo { .. } => {}
    }
    crate::reconcile::run_in_tx(tx, codec, config, refresh, stats)?;
    prior.note_superseded(tx, &open_before)?;
    prior.save(tx, did)?;
    Ok(did)
}

/// Accept or reject of one item: a pin or a never-match pair (match), a field lock
/// (conflict); a gender/ID item is only closed.
fn apply_item(
    tx: &Transaction<'_>,
    codec: &Codec,
    it: &Item,
    accept: bool,
    did: i64,
    prior: &mut undo::Prior,
    refresh: &mut BTreeSet<i64>,
) -> Result<(), ReviewError> {
    match (it.kind.as_str(), it.record_id, it.person_id) {
        ("match", Some(rec), Some(p)) => {
            let p = follow_merges(tx, p)?;
            if accept {
                live_person(tx, p)?;
                prior.record(tx, rec)?;
                pin(tx, rec, p, did)?;
            } else {
                tx.execute(
                    "INSERT OR IGNORE INTO never_match (record_id, person_id, decision_id) VALUES (?1, ?2, ?3)",
                    params![rec, p, did],
                )?;
            }
        }
        ("conflict", rec, Some(p)) => {
            let field = it.field.clone().unwrap_or_default();
            if !golden::HARD_FIELDS.contains(&field.as_str()) {
                return Err(ReviewError::Invalid(format!(
                    "unknown conflict field {field:?}"
                )));
            }
            prior.lock(tx, p, &field)?;
            if accept {
                tx.execute(
                    "INSERT OR REPLACE INTO field_locks (person_id, field, record_id, value, decision_id)
                     VALUES (?1, ?2, ?3, NULL, ?4)",
                    params![p, field, rec, did],
                )?;
            } else {
                // `field` is one of HARD_FIELDS (checked above): a fixed column name.
                let current: Option<String> = tx
                    .query_row(
                        &format!("SELECT {field} FROM persons WHERE id = ?1"),
                        [p],
                        |r| Ok(codec.open(r.get_ref(0)?)?),
                    )
                    .optional()?
                    .flatten();
                tx.execute(
                    "INSERT OR REPLACE INTO field_locks (person_id, field, record_id, value, decision_id)
                     VALUES (?1, ?2, NULL, ?3, ?4)",
                    params![
                        p,
                        field,
                        codec.seal_opt(crate::store::codec::FIELD_LOCK_VALUE, current.as_deref()),
                        did
                    ],
                )?;
            }
            refresh.insert(follow_merges(tx, p)?);
        }
        _ => {}
    }
    Ok(())
}

/// Folds `other` into `survivor`: pins, `merged_into`, phone history, open match items
/// between the two.
fn apply_merge(
    tx: &Transaction<'_>,
    survivor: i64,
    other: i64,
    did: i64,
    prior: &mut undo::Prior,
) -> Result<(), ReviewError> {
    if survivor == other {
        return Err(ReviewError::Invalid(
            "a resident cannot be merged into itself".into(),
        ));
    }
    live_person(tx, survivor)?;
    live_person(tx, other)?;
    let ids: BTreeSet<String> = tx
        .prepare(
            "SELECT DISTINCT id_key FROM source_records WHERE person_id IN (?1, ?2) AND id_key IS NOT NULL
               AND status = 'ok' AND deleted = 0",
        )?
        .query_map(params![survivor, other], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.len() > 1 {
        return Err(ReviewError::DifferentIds(
            person_key(survivor),
            person_key(other),
        ));
    }
    let recs: Vec<i64> = tx
        .prepare("SELECT id FROM source_records WHERE person_id = ?1")?
        .query_map([other], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for r in recs {
        prior.record(tx, r)?;
        pin(tx, r, survivor, did)?;
    }
    prior.merge(tx, survivor, other)?;
    tx.execute(
        "UPDATE pins SET person_id = ?1 WHERE person_id = ?2",
        params![survivor, other],
    )?;
    tx.execute(
        "UPDATE persons SET merged_into = ?1 WHERE id = ?2",
        params![survivor, other],
    )?;
    tx.execute(
        "UPDATE OR IGNORE phone_history SET person_id = ?1 WHERE person_id = ?2",
        params![survivor, other],
    )?;
    tx.execute("DELETE FROM phone_history WHERE person_id = ?1", [other])?;
    tx.execute(
        "UPDATE review_items SET state = 'superseded' WHERE state = 'open' AND kind = 'match'
           AND ((person_id = ?1 AND record_id IN (SELECT id FROM source_records WHERE person_id = ?2))
             OR (person_id = ?2 AND record_id IN (SELECT id FROM source_records WHERE person_id = ?1)))",
        params![survivor, other],
    )?;
    Ok(())
}

/// Detaches `records` from `person` into a new resident; returns its id.
fn apply_split(
    tx: &Transaction<'_>,
    person: i64,
    records: &[i64],
    did: i64,
    prior: &mut undo::Prior,
    stats: &mut ReconcileStats,
) -> Result<i64, ReviewError> {
    live_person(tx, person)?;
    if records.is_empty() {
        return Err(ReviewError::Invalid(
            "split needs at least one source record id".into(),
        ));
    }
    let mut own = 0usize;
    for r in records {
        let on: Option<i64> = tx
            .query_row(
                "SELECT person_id FROM source_records WHERE id = ?1",
                [r],
                |x| x.get(0),
            )
            .optional()?
            .flatten();
        if on != Some(person) {
            return Err(ReviewError::Invalid(format!(
                "source record {r} does not belong to resident {}",
                person_key(person)
            )));
        }
        own += 1;
    }
    let total: i64 = tx.query_row(
        "SELECT count(*) FROM source_records WHERE person_id = ?1 AND status = 'ok' AND deleted = 0
           AND entity IN ('card_account', 'volunteer', 'elder', 'patient')",
        [person],
        |x| x.get(0),
    )?;
    if own as i64 >= total {
        return Err(ReviewError::Invalid(
            "split must leave at least one record with the resident".into(),
        ));
    }
    let new = golden::create_person(tx, stats)?;
    prior.created = Some(new);
    for r in records {
        prior.record(tx, *r)?;
        pin(tx, *r, new, did)?;
        tx.execute(
            "INSERT OR IGNORE INTO never_match (record_id, person_id, decision_id) VALUES (?1, ?2, ?3)",
            params![r, person, did],
        )?;
    }
    Ok(new)
}
