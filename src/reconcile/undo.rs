//! Undoing a review decision.
//!
//! Each decision stores what it replaced (`decisions.undo`, JSON [`Prior`]): for every record
//! it (re)pinned, the resident the record was with and the pin it had; for a field lock, the
//! lock before and the record that supplied the golden value; for a merge, the pins and
//! phones it moved; for a split, the resident it created; and the open review items its
//! reconcile closed. No personal data: ids and blinded keys only.
//!
//! An undo puts that back the way reconcile itself would: each record is pinned, for the
//! length of the undo's transaction, to the resident it was with (a field, to the record that
//! supplied it), what changed is reconciled (records move back with their activity records,
//! residents are refreshed, revived or retired, events written), then those transient pins
//! and locks give way to the ones the decision had replaced, and the decision's item is open
//! again. A decision is not undone while a later one still stands on it (the same records;
//! for a merge or split, the same residents): that one is undone first.

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::reconcile::review::ReviewError;
use crate::reconcile::ReconcileStats;
use crate::store::{Codec, StoreError};

/// One pin row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct PinRow {
    record: i64,
    person: i64,
    decision: i64,
}

/// A record a decision (re)pinned, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PriorRecord {
    record: i64,
    person: Option<i64>,
    pin: Option<PinRow>,
}

/// A field lock a decision replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PriorLock {
    person: i64,
    field: String,
    /// The record that supplied the golden value before (`persons.provenance`).
    golden_from: Option<i64>,
    /// The lock before, if any: restored as a lock on its record (a value lock on the
    /// record that supplied the value it held).
    lock: Option<(Option<i64>, i64)>,
}

/// What a merge moved besides pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Merged {
    survivor: i64,
    other: i64,
    /// Pins of records not linked to `other` that pointed at it.
    redirected: Vec<PinRow>,
    /// `(phone_k, source)` of phone history moved to the survivor that it did not have.
    phones: Vec<(String, String)>,
}

/// What a decision replaced: `decisions.undo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Prior {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    records: Vec<PriorRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock: Option<PriorLock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merged: Option<Merged>,
    /// The resident a split created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Open review items the decision's reconcile closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    superseded: Vec<i64>,
}

impl Prior {
    /// Notes a record before the decision pins it.
    pub(crate) fn record(&mut self, tx: &Transaction<'_>, record: i64) -> Result<(), StoreError> {
        if self.records.iter().any(|r| r.record == record) {
            return Ok(());
        }
        let person: Option<i64> = tx
            .query_row(
                "SELECT person_id FROM source_records WHERE id = ?1",
                [record],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let pin = tx
            .query_row(
                "SELECT person_id, decision_id FROM pins WHERE record_id = ?1",
                [record],
                |r| {
                    Ok(PinRow {
                        record,
                        person: r.get(0)?,
                        decision: r.get(1)?,
                    })
                },
            )
            .optional()?;
        self.records.push(PriorRecord {
            record,
            person,
            pin,
        });
        Ok(())
    }

    /// Notes a resident's field lock and golden source before a decision replaces them.
    pub(crate) fn lock(
        &mut self,
        tx: &Transaction<'_>,
        person: i64,
        field: &str,
    ) -> Result<(), StoreError> {
        let provenance: Option<String> = tx
            .query_row(
                "SELECT provenance FROM persons WHERE id = ?1",
                [person],
                |r| r.get(0),
            )
            .optional()?;
        let golden_from = provenance
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|p| p.get(field).and_then(|v| v.as_i64()));
        let lock = tx
            .query_row(
                "SELECT record_id, decision_id FROM field_locks WHERE person_id = ?1 AND field = ?2",
                params![person, field],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
            .map(|(rec, d)| (rec.or(golden_from), d));
        self.lock = Some(PriorLock {
            person,
            field: field.to_string(),
            golden_from,
            lock,
        });
        Ok(())
    }

    /// Notes what a merge of `other` into `survivor` moves besides the pins of `other`'s
    /// records (call after those are noted and re-pinned, before the rest moves).
    pub(crate) fn merge(
        &mut self,
        tx: &Transaction<'_>,
        survivor: i64,
        other: i64,
    ) -> Result<(), StoreError> {
        let redirected = tx
            .prepare("SELECT record_id, decision_id FROM pins WHERE person_id = ?1")?
            .query_map([other], |r| {
                Ok(PinRow {
                    record: r.get(0)?,
                    person: other,
                    decision: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let phones = tx
            .prepare(
                "SELECT phone_k, source FROM phone_history o WHERE person_id = ?1 AND NOT EXISTS
                   (SELECT 1 FROM phone_history s WHERE s.person_id = ?2 AND s.phone_k = o.phone_k
                      AND s.source = o.source)",
            )?
            .query_map(params![other, survivor], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        self.merged = Some(Merged {
            survivor,
            other,
            redirected,
            phones,
        });
        Ok(())
    }

    /// Notes the items that were open before the decision and were closed by it (not the
    /// decided item itself, which is reopened by its decision id).
    pub(crate) fn note_superseded(
        &mut self,
        tx: &Transaction<'_>,
        open_before: &BTreeSet<i64>,
    ) -> Result<(), StoreError> {
        let open_after = open_items(tx)?;
        let mut stmt = tx.prepare_cached("SELECT state FROM review_items WHERE id = ?1")?;
        for id in open_before.difference(&open_after) {
            let state: Option<String> = stmt.query_row([id], |r| r.get(0)).optional()?;
            if state.as_deref() == Some("superseded") {
                self.superseded.push(*id);
            }
        }
        Ok(())
    }

    /// Stores this as the decision's `undo`.
    pub(crate) fn save(&self, tx: &Transaction<'_>, decision: i64) -> Result<(), StoreError> {
        let text = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        tx.execute(
            "UPDATE decisions SET undo = ?2 WHERE id = ?1",
            params![decision, text],
        )?;
        Ok(())
    }

    /// The residents and records a decision with this prior touched.
    fn touched(&self, row: &Target) -> (BTreeSet<i64>, BTreeSet<i64>) {
        let mut persons: BTreeSet<i64> = [row.person, row.other, row.item_person, self.created]
            .into_iter()
            .flatten()
            .collect();
        persons.extend(self.records.iter().filter_map(|r| r.person));
        persons.extend(self.lock.as_ref().map(|l| l.person));
        let mut records: BTreeSet<i64> = self.records.iter().map(|r| r.record).collect();
        records.extend(row.item_record);
        (persons, records)
    }
}

/// Ids of the open review items.
pub(crate) fn open_items(tx: &Transaction<'_>) -> Result<BTreeSet<i64>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT id FROM review_items WHERE state = 'open'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// A decision as an undo reads it.
struct Target {
    id: i64,
    action: String,
    item: Option<i64>,
    item_person: Option<i64>,
    item_record: Option<i64>,
    person: Option<i64>,
    other: Option<i64>,
    prior: Option<Prior>,
    undone_by: Option<i64>,
}

fn target(tx: &Transaction<'_>, id: i64) -> Result<Option<Target>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT d.action, d.item_id, i.person_id, i.record_id, d.person_id, d.other_person_id,
                    d.undo, d.undone_by
             FROM decisions d LEFT JOIN review_items i ON i.id = d.item_id WHERE d.id = ?1",
            [id],
            |r| {
                Ok(Target {
                    id,
                    action: r.get(0)?,
                    item: r.get(1)?,
                    item_person: r.get(2)?,
                    item_record: r.get(3)?,
                    person: r.get(4)?,
                    other: r.get(5)?,
                    prior: r
                        .get::<_, Option<String>>(6)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    undone_by: r.get(7)?,
                })
            },
        )
        .optional()?)
}

/// The review item of decision `id` (for the undo's own decision row).
pub(crate) fn item_of(tx: &Transaction<'_>, id: i64) -> Result<Option<i64>, ReviewError> {
    match target(tx, id)? {
        Some(t) => Ok(t.item),
        None => Err(ReviewError::NotUndoable(
            id,
            "no such decision (see `community-sync review decisions`)".into(),
        )),
    }
}

/// Why decision `t` cannot be undone now, if it cannot.
fn refusal(tx: &Transaction<'_>, t: &Target) -> Result<Option<String>, StoreError> {
    if t.action == "undo" {
        return Ok(Some(
            "it is itself an undo; decide the item again instead".into(),
        ));
    }
    if let Some(by) = t.undone_by {
        return Ok(Some(format!("it was already undone by decision {by}")));
    }
    let Some(prior) = &t.prior else {
        return Ok((t.action != "skip").then(|| {
            "it was recorded before decisions kept what they replaced; use merge or split".into()
        }));
    };
    if let Some(l) = &prior.lock {
        let holder: Option<i64> = tx
            .query_row(
                "SELECT decision_id FROM field_locks WHERE person_id = ?1 AND field = ?2",
                params![l.person, l.field],
                |r| r.get(0),
            )
            .optional()?;
        if holder.is_some_and(|h| h != t.id) {
            return Ok(Some(format!(
                "a later decision ({}) settled the same field; undo that one first",
                holder.unwrap_or_default()
            )));
        }
    }
    let (persons, records) = prior.touched(t);
    let later: Vec<Target> = tx
        .prepare("SELECT id FROM decisions WHERE id > ?1 AND undone_by IS NULL AND action NOT IN ('skip', 'undo') ORDER BY id")?
        .query_map([t.id], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|id| target(tx, id))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let structural = |a: &str| a == "merge" || a == "split";
    for l in later {
        let Some(lp) = &l.prior else { continue };
        let (lpersons, lrecords) = lp.touched(&l);
        let shares_records = !records.is_disjoint(&lrecords);
        let shares_persons =
            (structural(&t.action) || structural(&l.action)) && !persons.is_disjoint(&lpersons);
        if shares_records || shares_persons {
            return Ok(Some(format!(
                "the later decision {} ({}) stands on it; undo that one first",
                l.id, l.action
            )));
        }
    }
    Ok(None)
}

/// Undoes decision `target_id` as decision `did` (its row and audit entry already written).
pub(crate) fn undo(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    target_id: i64,
    did: i64,
    stats: &mut ReconcileStats,
) -> Result<(), ReviewError> {
    let t = target(tx, target_id)?
        .ok_or_else(|| ReviewError::NotUndoable(target_id, "no such decision".into()))?;
    if let Some(why) = refusal(tx, &t)? {
        return Err(ReviewError::NotUndoable(target_id, why));
    }
    let prior = t.prior.clone().unwrap_or_default();
    tx.execute(
        "DELETE FROM never_match WHERE decision_id = ?1",
        [target_id],
    )?;
    if let Some(m) = &prior.merged {
        tx.execute(
            "UPDATE persons SET merged_into = NULL WHERE id = ?1 AND merged_into = ?2",
            params![m.other, m.survivor],
        )?;
        for (phone_k, source) in &m.phones {
            tx.execute(
                "UPDATE OR IGNORE phone_history SET person_id = ?1
                 WHERE person_id = ?2 AND phone_k = ?3 AND source = ?4",
                params![m.other, m.survivor, phone_k, source],
            )?;
        }
    }
    // Transient pins and lock: each record back to the resident it was with, the field to the
    // record that supplied it.
    for r in &prior.records {
        match r.person {
            Some(p) => {
                tx.execute(
                    "INSERT OR REPLACE INTO pins (record_id, person_id, decision_id) VALUES (?1, ?2, ?3)",
                    params![r.record, p, did],
                )?;
            }
            None => {
                tx.execute("DELETE FROM pins WHERE record_id = ?1", [r.record])?;
            }
        }
        tx.execute(
            "UPDATE source_records SET dirty = 1 WHERE id = ?1",
            [r.record],
        )?;
    }
    if let Some(l) = &prior.lock {
        tx.execute(
            "DELETE FROM field_locks WHERE person_id = ?1 AND field = ?2",
            params![l.person, l.field],
        )?;
        if let Some(from) = l.golden_from {
            tx.execute(
                "INSERT INTO field_locks (person_id, field, record_id, value, decision_id)
                 VALUES (?1, ?2, ?3, NULL, ?4)",
                params![l.person, l.field, from, did],
            )?;
        }
    }
    let (refresh, _) = prior.touched(&t);
    crate::reconcile::run_in_tx(tx, codec, config, refresh, stats)?;
    restore(tx, &prior, target_id, did)?;
    tx.execute(
        "UPDATE decisions SET undone_by = ?2 WHERE id = ?1",
        params![target_id, did],
    )?;
    tx.execute(
        "UPDATE decisions SET undo = ?2 WHERE id = ?1",
        params![did, serde_json::json!({ "undoes": target_id }).to_string()],
    )?;
    Ok(())
}

/// After the undo's reconcile: the transient pins and lock give way to what the decision had
/// replaced, and the items it closed are open again.
fn restore(
    tx: &Transaction<'_>,
    prior: &Prior,
    target_id: i64,
    did: i64,
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM pins WHERE decision_id = ?1", [did])?;
    tx.execute("DELETE FROM field_locks WHERE decision_id = ?1", [did])?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO pins (record_id, person_id, decision_id) VALUES (?1, ?2, ?3)",
    )?;
    for pin in prior.records.iter().filter_map(|r| r.pin) {
        put.execute(params![pin.record, pin.person, pin.decision])?;
    }
    if let Some(m) = &prior.merged {
        for pin in &m.redirected {
            tx.execute(
                "UPDATE pins SET person_id = ?2 WHERE record_id = ?1 AND person_id = ?3",
                params![pin.record, pin.person, m.survivor],
            )?;
        }
    }
    if let Some(PriorLock {
        person,
        field,
        lock: Some((record, decision)),
        ..
    }) = &prior.lock
    {
        tx.execute(
            "INSERT OR REPLACE INTO field_locks (person_id, field, record_id, value, decision_id)
             VALUES (?1, ?2, ?3, NULL, ?4)",
            params![person, field, record, decision],
        )?;
    }
    let mut reopen = tx.prepare_cached(
        "UPDATE review_items SET state = 'open', decided_by = NULL, decided_at = NULL, decision_id = NULL
         WHERE id = ?1 AND state = 'superseded'",
    )?;
    for id in &prior.superseded {
        reopen.execute([id])?;
    }
    tx.execute(
        "UPDATE review_items SET state = 'open', decided_by = NULL, decided_at = NULL, decision_id = NULL
         WHERE decision_id = ?1",
        [target_id],
    )?;
    Ok(())
}
