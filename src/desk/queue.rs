//! What the desk reads from the store: the review items a reviewer may see, each item's
//! records side by side, the matcher's explanation, the decisions on it. Decisions themselves
//! go through `reconcile::review::decide` (the CLI's path); the desk adds only who may decide
//! what.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension};

use crate::config::Config;
use crate::model::{NormalizedRecord, PersonFields};
use crate::normalize::address;
use crate::reconcile::review::{self, Item};
use crate::store::{Codec, Store};

use super::accounts::Reviewer;
use super::DeskError;

/// One person-carrying source record as the desk shows it (values in the clear: the page
/// masks them unless revealed).
#[derive(Debug, Clone)]
pub struct RecordView {
    pub id: i64,
    pub source: String,
    pub stream: String,
    pub key: String,
    /// Updated at the source (else when the store last saw it change), RFC 3339.
    pub updated: String,
    pub person_id: Option<i64>,
    pub live: bool,
    pub fields: PersonFields,
    pub community: Option<String>,
}

/// The record's community: its own field, else the community part of its address.
fn community_of(p: &PersonFields) -> Option<String> {
    p.community
        .clone()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            p.address
                .as_deref()
                .and_then(|a| address::parse(a).community)
        })
}

const RECORD_SQL: &str = concat!(
    "SELECT id, source, stream, source_key, COALESCE(updated_at, last_changed), person_id,
            status = 'ok' AND deleted = 0, ",
    crate::store::normalized_of_record!(),
    " FROM source_records"
);

fn record_row(codec: &Codec, r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordView> {
    let normalized = codec.open(r.get_ref(7)?)?;
    let fields = normalized
        .and_then(|n| serde_json::from_str::<NormalizedRecord>(&n).ok())
        .map(|n| n.person)
        .unwrap_or_default();
    Ok(RecordView {
        id: r.get(0)?,
        source: r.get(1)?,
        stream: r.get(2)?,
        key: r.get(3)?,
        updated: r.get(4)?,
        person_id: r.get(5)?,
        live: r.get(6)?,
        community: community_of(&fields),
        fields,
    })
}

pub fn record(conn: &Connection, codec: &Codec, id: i64) -> Result<Option<RecordView>, DeskError> {
    Ok(conn
        .query_row(&format!("{RECORD_SQL} WHERE id = ?1"), [id], |r| {
            record_row(codec, r)
        })
        .optional()?)
}

/// A resident's live person-carrying records, oldest first.
pub fn records_of(
    conn: &Connection,
    codec: &Codec,
    pid: i64,
) -> Result<Vec<RecordView>, DeskError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{RECORD_SQL} WHERE person_id = ?1 AND status = 'ok' AND deleted = 0
           AND entity IN ('card_account', 'volunteer', 'elder', 'patient') ORDER BY id"
    ))?;
    let rows = stmt.query_map([pid], |r| record_row(codec, r))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An item with every record a reviewer sees on its page.
#[derive(Debug, Clone)]
pub struct Scope {
    pub item: Item,
    /// The record the item is about.
    pub record: Option<RecordView>,
    /// The resident that record is with now, and that resident's other records.
    pub own_person: Option<i64>,
    pub own_others: Vec<RecordView>,
    /// The item's resident (the candidate of a match; the resident of a conflict), following
    /// merges, and its records (without `record`).
    pub person: Option<i64>,
    pub person_records: Vec<RecordView>,
    /// Every community those records name.
    pub communities: BTreeSet<String>,
}

impl Scope {
    /// Every record shown, the item's first.
    pub fn all_records(&self) -> impl Iterator<Item = &RecordView> {
        self.record
            .iter()
            .chain(&self.person_records)
            .chain(&self.own_others)
    }

    /// The community shown for the item: its record's, else its resident's.
    pub fn community(&self) -> Option<&str> {
        self.record
            .as_ref()
            .and_then(|r| r.community.as_deref())
            .or_else(|| {
                self.person_records
                    .iter()
                    .find_map(|r| r.community.as_deref())
            })
    }
}

pub fn scope(conn: &Connection, codec: &Codec, item: Item) -> Result<Scope, DeskError> {
    let record = match item.record_id {
        Some(id) => record(conn, codec, id)?,
        None => None,
    };
    let person = match item.person_id {
        Some(p) => Some(review::follow_merges(conn, p)?),
        None => None,
    };
    let rid = record.as_ref().map(|r| r.id);
    let person_records: Vec<RecordView> = match person {
        Some(p) => records_of(conn, codec, p)?
            .into_iter()
            .filter(|r| Some(r.id) != rid)
            .collect(),
        None => vec![],
    };
    let own_person = record.as_ref().and_then(|r| r.person_id);
    let own_others: Vec<RecordView> = match own_person {
        Some(p) if Some(p) != person => records_of(conn, codec, p)?
            .into_iter()
            .filter(|r| Some(r.id) != rid)
            .collect(),
        _ => vec![],
    };
    let mut s = Scope {
        item,
        record,
        own_person,
        own_others,
        person,
        person_records,
        communities: BTreeSet::new(),
    };
    s.communities = s
        .all_records()
        .filter_map(|r| r.community.clone())
        .collect();
    Ok(s)
}

/// The list's filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub community: Option<String>,
    pub kind: Option<String>,
}

/// One row of the queue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub scope: Scope,
    /// The reviewer said "not sure" on it (their queue shows it last).
    pub skipped_by_me: bool,
}

/// The open items a reviewer may see, oldest first (those they skipped last), the filter
/// applied; and every community among the items they may see (for the filter's choices).
pub fn open_items(
    store: &Store,
    who: &Reviewer,
    filter: &Filter,
) -> Result<(Vec<Entry>, BTreeSet<String>), DeskError> {
    let conn = store.conn();
    let items = review::list(conn, None, usize::MAX >> 1)?;
    let skipped: BTreeSet<i64> = conn
        .prepare(
            "SELECT item_id FROM decisions WHERE action = 'skip' AND undone_by IS NULL AND by_user = ?1
               AND item_id IS NOT NULL",
        )?
        .query_map([who.actor()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let mut communities = BTreeSet::new();
    for it in items {
        let s = scope(conn, store.codec(), it)?;
        if !who.may_see(&s.communities) {
            continue;
        }
        communities.extend(s.communities.iter().cloned());
        let kind_ok = filter.kind.as_ref().is_none_or(|k| *k == s.item.kind);
        let comm_ok = filter
            .community
            .as_ref()
            .is_none_or(|c| s.communities.contains(c));
        if kind_ok && comm_ok {
            out.push(Entry {
                skipped_by_me: skipped.contains(&s.item.id),
                scope: s,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.skipped_by_me, &a.scope.item.created_at, a.scope.item.id).cmp(&(
            b.skipped_by_me,
            &b.scope.item.created_at,
            b.scope.item.id,
        ))
    });
    Ok((out, communities))
}

/// One item's scope, if the reviewer may see it (`None` also when it does not exist: the
/// desk answers both alike).
pub fn visible_item(store: &Store, who: &Reviewer, id: i64) -> Result<Option<Scope>, DeskError> {
    let Some(it) = review::get(store.conn(), id)? else {
        return Ok(None);
    };
    let s = scope(store.conn(), store.codec(), it)?;
    Ok(who.may_see(&s.communities).then_some(s))
}

/// One comparison of the matcher, as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub feature: String,
    pub outcome: String,
    pub weight: f64,
}

/// Why the matcher scored a record against a resident as it did: the facts `explain` gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub comparisons: Vec<Comparison>,
    pub total: f64,
    pub review_threshold: f64,
    pub link_threshold: f64,
    /// Why no automatic link is possible, whatever the score.
    pub veto: Option<String>,
}

/// The adapter between the matcher and the desk: the one place the desk reads how a record
/// scores against a resident (today `matching::score`, as `explain` prints it). When
/// `explain` returns a structured explanation, only this function changes.
pub fn explain(
    store: &Store,
    config: &Config,
    record: i64,
    person: i64,
) -> Result<Option<Explanation>, DeskError> {
    let Some(f) = crate::cli::review::record_features(store, record)? else {
        return Ok(None);
    };
    let m = crate::reconcile::model::active(store.conn(), &config.reconcile)?;
    let s = crate::reconcile::matching::score(store.conn(), &config.reconcile, &m, &f, person)?;
    Ok(Some(Explanation {
        comparisons: s
            .contributions
            .iter()
            .map(|c| Comparison {
                feature: c.feature.to_string(),
                outcome: c.agreement.clone(),
                weight: c.weight,
            })
            .collect(),
        total: s.total,
        review_threshold: config.reconcile.review_threshold,
        link_threshold: config.reconcile.link_threshold,
        veto: s.veto,
    }))
}

/// One decision as the desk lists it.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub id: i64,
    pub action: String,
    pub item: Option<i64>,
    pub person: Option<i64>,
    pub other_person: Option<i64>,
    pub by: String,
    pub at: String,
    pub reason: Option<String>,
    pub undone_by: Option<i64>,
}

const DECISION_SQL: &str =
    "SELECT id, action, item_id, person_id, other_person_id, by_user, at, reason, undone_by
     FROM decisions";

fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DecisionRow> {
    Ok(DecisionRow {
        id: r.get(0)?,
        action: r.get(1)?,
        item: r.get(2)?,
        person: r.get(3)?,
        other_person: r.get(4)?,
        by: r.get(5)?,
        at: r.get(6)?,
        reason: r.get(7)?,
        undone_by: r.get(8)?,
    })
}

/// The decisions on one item, oldest first.
pub fn decisions_on(conn: &Connection, item: i64) -> Result<Vec<DecisionRow>, DeskError> {
    let mut stmt =
        conn.prepare_cached(&format!("{DECISION_SQL} WHERE item_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([item], decision_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn decision(conn: &Connection, id: i64) -> Result<Option<DecisionRow>, DeskError> {
    Ok(conn
        .query_row(&format!("{DECISION_SQL} WHERE id = ?1"), [id], decision_row)
        .optional()?)
}

/// The communities a decision concerns: its item's, and those of the residents it names.
pub fn decision_communities(store: &Store, d: &DecisionRow) -> Result<BTreeSet<String>, DeskError> {
    let conn = store.conn();
    let mut out = BTreeSet::new();
    if let Some(it) = d.item.map(|i| review::get(conn, i)).transpose()?.flatten() {
        out.extend(scope(conn, store.codec(), it)?.communities);
    }
    for p in [d.person, d.other_person].into_iter().flatten() {
        for r in records_of(conn, store.codec(), p)? {
            out.extend(r.community);
        }
    }
    Ok(out)
}

/// The latest decisions, newest first.
pub fn latest_decisions(conn: &Connection, limit: usize) -> Result<Vec<DecisionRow>, DeskError> {
    let mut stmt = conn.prepare(&format!("{DECISION_SQL} ORDER BY id DESC LIMIT ?1"))?;
    let rows = stmt.query_map([limit as i64], decision_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest decisions a reviewer may see (made by anyone), newest first.
pub fn recent_decisions(
    store: &Store,
    who: &Reviewer,
    limit: usize,
) -> Result<Vec<DecisionRow>, DeskError> {
    let rows = latest_decisions(store.conn(), 2000)?;
    let mut out = Vec::new();
    for d in rows {
        if out.len() >= limit {
            break;
        }
        if who.communities.is_empty() || who.may_see(&decision_communities(store, &d)?) {
            out.push(d);
        }
    }
    Ok(out)
}
