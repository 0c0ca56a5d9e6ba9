//! Identity resolution for records without an ID link: match features per record (all
//! blinded through the codec, so only equality is ever compared), blocking by indexed keys,
//! and an explainable weighted score per candidate resident.
//!
//! Blocking keys (indexed in `match_features` / `phone_history`): phone; pinyin name + birth
//! date; pinyin name + community; (with phone history) any phone a resident ever had. No
//! record is ever compared with all others.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::ReconcileConfig;
use crate::model::PersonFields;
use crate::normalize::address;
use crate::reconcile::names::{self, NameAgreement};
use crate::store::{Codec, StoreError};

/// The blinded match features of one person-carrying record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub record_id: i64,
    pub name_k: Option<String>,
    pub py_k: Option<String>,
    pub phone_k: Option<String>,
    pub birth_k: Option<String>,
    pub birth_swap_k: Option<String>,
    pub gender: Option<u8>,
    pub room_k: Option<String>,
    pub bldg_k: Option<String>,
    pub comm_k: Option<String>,
    pub id_k: Option<String>,
    /// Source change time (RFC 3339), for "current" phone.
    pub changed: String,
}

impl Features {
    /// Features of a record's person fields. `id_key` is the store's blinded ID key.
    pub fn of(
        codec: &Codec,
        record_id: i64,
        p: &PersonFields,
        id_key: Option<&str>,
        changed: &str,
    ) -> Features {
        use crate::store::codec as c;
        let name = p.name.as_deref().map(names::fold).filter(|n| !n.is_empty());
        let py = p
            .name
            .as_deref()
            .map(names::pinyin_key)
            .filter(|n| !n.is_empty());
        let birth = p.birth_date.as_deref();
        let swapped = birth.and_then(swap_day_month);
        let addr = p.address.as_deref().map(address::parse).unwrap_or_default();
        let community = addr
            .community
            .clone()
            .or_else(|| p.community.clone())
            .filter(|c| !c.is_empty());
        let bldg = match (&community, &addr.building) {
            (Some(c), Some(b)) => Some(format!("{c}|{b}")),
            _ => None,
        };
        let room = match (&bldg, &addr.room) {
            (Some(b), Some(r)) => Some(format!("{b}|{}|{r}", addr.unit.as_deref().unwrap_or(""))),
            _ => None,
        };
        Features {
            record_id,
            name_k: name.map(|n| codec.blind(c::MATCH_NAME, &n)),
            py_k: py.map(|n| codec.blind(c::MATCH_PINYIN, &n)),
            phone_k: p.phone.as_deref().map(|ph| codec.blind(c::MATCH_PHONE, ph)),
            birth_k: birth.map(|b| codec.blind(c::MATCH_BIRTH, b)),
            birth_swap_k: swapped.map(|b| codec.blind(c::MATCH_BIRTH_SWAP, &b)),
            gender: p.gender.filter(|g| *g == 1 || *g == 2),
            room_k: room.map(|r| codec.blind(c::MATCH_ROOM, &r)),
            bldg_k: bldg.map(|r| codec.blind(c::MATCH_BUILDING, &r)),
            comm_k: community.map(|r| codec.blind(c::MATCH_COMMUNITY, &r)),
            id_k: id_key.map(str::to_string),
            changed: changed.to_string(),
        }
    }
}

/// `1980-03-07` → `1980-07-03` (None when the swap is no date or the same date).
fn swap_day_month(iso: &str) -> Option<String> {
    let (y, rest) = iso.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    let (mi, di) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
    if mi == di || di > 12 {
        return None;
    }
    Some(format!("{y}-{d}-{m}"))
}

const F_COLS: &str =
    "f.record_id, f.name_k, f.py_k, f.phone_k, f.birth_k, f.birth_swap_k, f.gender, f.room_k, \
                      f.bldg_k, f.comm_k, f.id_k, f.changed";

fn row_features(r: &rusqlite::Row<'_>) -> rusqlite::Result<Features> {
    Ok(Features {
        record_id: r.get(0)?,
        name_k: r.get(1)?,
        py_k: r.get(2)?,
        phone_k: r.get(3)?,
        birth_k: r.get(4)?,
        birth_swap_k: r.get(5)?,
        gender: r.get(6)?,
        room_k: r.get(7)?,
        bldg_k: r.get(8)?,
        comm_k: r.get(9)?,
        id_k: r.get(10)?,
        changed: r.get(11)?,
    })
}

/// Writes (or replaces) a record's features; `None` removes them (record gone).
pub fn store_features(
    conn: &Connection,
    record_id: i64,
    f: Option<&Features>,
) -> Result<(), StoreError> {
    match f {
        None => {
            conn.prepare_cached("DELETE FROM match_features WHERE record_id = ?1")?
                .execute([record_id])?;
        }
        Some(f) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO match_features (record_id, name_k, py_k, phone_k, birth_k, birth_swap_k,
                     gender, room_k, bldg_k, comm_k, id_k, changed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                record_id, f.name_k, f.py_k, f.phone_k, f.birth_k, f.birth_swap_k, f.gender, f.room_k, f.bldg_k,
                f.comm_k, f.id_k, f.changed
            ])?;
        }
    }
    Ok(())
}

/// One feature's contribution to a score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Contribution {
    pub feature: &'static str,
    /// What was found, e.g. `exact`, `pinyin`, `current`, `earlier`, `household`, `room`.
    pub agreement: String,
    pub weight: f64,
}

/// The score of one record against one candidate resident.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub person_id: i64,
    pub total: f64,
    pub contributions: Vec<Contribution>,
    /// Why this candidate can never be linked automatically (different ID, rejected pair,
    /// different name, household phone with a different birth date).
    pub veto: Option<String>,
    pub name: NameAgreement,
}

/// What to do with a record, from its candidates.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Link(i64),
    /// No automatic link; raise review items for these candidates.
    Review(Vec<i64>),
    New,
}

/// Candidate residents for a record, by blocking keys; `self_person` is excluded.
pub fn candidates(
    conn: &Connection,
    cfg: &ReconcileConfig,
    f: &Features,
    self_person: Option<i64>,
) -> Result<BTreeSet<i64>, StoreError> {
    let mut out = BTreeSet::new();
    let live = "JOIN source_records s ON s.id = f.record_id
                WHERE s.person_id IS NOT NULL AND s.status = 'ok' AND s.deleted = 0 AND f.record_id != ?1";
    let mut add = |sql: &str, a: &str, b: Option<&str>| -> Result<(), StoreError> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows: Vec<i64> = match b {
            Some(b) => stmt
                .query_map(params![f.record_id, a, b], |r| r.get::<_, i64>(0))?
                .collect::<Result<_, _>>()?,
            None => stmt
                .query_map(params![f.record_id, a], |r| r.get::<_, i64>(0))?
                .collect::<Result<_, _>>()?,
        };
        out.extend(rows);
        Ok(())
    };
    if let Some(ph) = &f.phone_k {
        add(&format!("SELECT DISTINCT s.person_id FROM match_features f {live} AND f.phone_k = ?2 LIMIT 50"), ph, None)?;
        if cfg.use_phone_history {
            add(
                "SELECT DISTINCT h.person_id FROM phone_history h JOIN persons p ON p.id = h.person_id
                 WHERE ?1 = ?1 AND h.phone_k = ?2 AND p.retired = 0 LIMIT 50",
                ph,
                None,
            )?;
        }
    }
    if let Some(py) = &f.py_k {
        if let Some(b) = &f.birth_k {
            add(
                &format!("SELECT DISTINCT s.person_id FROM match_features f {live} AND f.py_k = ?2 AND f.birth_k = ?3 LIMIT 50"),
                py,
                Some(b),
            )?;
        }
        if let Some(b) = &f.birth_swap_k {
            add(
                &format!("SELECT DISTINCT s.person_id FROM match_features f {live} AND f.py_k = ?2 AND f.birth_k = ?3 LIMIT 50"),
                py,
                Some(b),
            )?;
        }
        if cfg.use_address {
            if let Some(c) = &f.comm_k {
                add(
                    &format!(
                        "SELECT DISTINCT s.person_id FROM match_features f {live} AND f.py_k = ?2 AND f.comm_k = ?3 LIMIT 50"
                    ),
                    py,
                    Some(c),
                )?;
            }
        }
    }
    if let Some(p) = self_person {
        out.remove(&p);
    }
    Ok(out)
}

/// Live features of a resident's records (excluding `except`).
fn person_features(conn: &Connection, pid: i64, except: i64) -> Result<Vec<Features>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {F_COLS} FROM source_records s JOIN match_features f ON f.record_id = s.id
         WHERE s.person_id = ?1 AND s.status = 'ok' AND s.deleted = 0 AND s.id != ?2"
    ))?;
    let rows = stmt.query_map(params![pid, except], row_features)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Scores a record against one resident, with every feature's contribution.
pub fn score(
    conn: &Connection,
    cfg: &ReconcileConfig,
    f: &Features,
    pid: i64,
) -> Result<Scored, StoreError> {
    let w = &cfg.weights;
    let rows = person_features(conn, pid, f.record_id)?;
    let mut c: Vec<Contribution> = Vec::new();
    let mut veto: Option<String> = None;
    let never: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM never_match WHERE record_id = ?1 AND person_id = ?2")?
        .query_row(params![f.record_id, pid], |r| r.get(0))
        .optional()?;
    if never.is_some() {
        veto = Some("a reviewer rejected this pair".into());
    }
    if let Some(id) = &f.id_k {
        if rows
            .iter()
            .any(|r| r.id_k.as_ref().is_some_and(|o| o != id))
        {
            veto = Some("different ID numbers".into());
        }
    }
    // Name.
    let name = if f.name_k.is_some() && rows.iter().any(|r| r.name_k == f.name_k) {
        NameAgreement::Exact
    } else if cfg.use_pinyin && f.py_k.is_some() && rows.iter().any(|r| r.py_k == f.py_k) {
        NameAgreement::Pinyin
    } else {
        NameAgreement::Different
    };
    match name {
        NameAgreement::Exact => c.push(contrib("name", "exact", w.name_exact)),
        NameAgreement::Pinyin => c.push(contrib("name", "pinyin", w.name_pinyin)),
        NameAgreement::Different => {
            c.push(contrib("name", "different", 0.0));
            veto.get_or_insert_with(|| "names differ".into());
        }
    }
    // Phone: current = the phone of the resident's most recently changed record.
    let mut household = false;
    if let Some(ph) = &f.phone_k {
        let current = rows
            .iter()
            .filter(|r| r.phone_k.is_some())
            .max_by(|a, b| {
                a.changed
                    .cmp(&b.changed)
                    .then(a.record_id.cmp(&b.record_id))
            })
            .and_then(|r| r.phone_k.as_ref());
        let earlier = cfg.use_phone_history
            && (rows.iter().any(|r| r.phone_k.as_ref() == Some(ph))
                || conn
                    .prepare_cached(
                        "SELECT 1 FROM phone_history WHERE person_id = ?1 AND phone_k = ?2 LIMIT 1",
                    )?
                    .query_row(params![pid, ph], |r| r.get::<_, i64>(0))
                    .optional()?
                    .is_some());
        let agrees = current == Some(ph) || earlier;
        if agrees {
            household = cfg.household_phones && phone_owners(conn, ph, 2)? > 1;
        }
        if current == Some(ph) {
            if household {
                c.push(contrib("phone", "household", w.phone_household));
            } else {
                c.push(contrib("phone", "current", w.phone_current));
            }
        } else if earlier {
            let wt = if household {
                w.phone_household.min(w.phone_earlier)
            } else {
                w.phone_earlier
            };
            c.push(contrib(
                "phone",
                if household {
                    "earlier household"
                } else {
                    "earlier"
                },
                wt,
            ));
        }
    }
    // Birth date.
    if let Some(b) = &f.birth_k {
        let known: Vec<&String> = rows.iter().filter_map(|r| r.birth_k.as_ref()).collect();
        if known.contains(&b) {
            c.push(contrib("birth_date", "equal", w.birth_equal));
        } else if f.birth_swap_k.as_ref().is_some_and(|s| known.contains(&s)) {
            c.push(contrib("birth_date", "day/month swapped", w.birth_swapped));
        } else if !known.is_empty() {
            c.push(contrib("birth_date", "different", w.birth_differs));
            if household {
                veto.get_or_insert_with(|| "household phone with a different birth date".into());
            }
        }
    }
    // Gender.
    if let Some(g) = f.gender {
        let known: Vec<u8> = rows.iter().filter_map(|r| r.gender).collect();
        if !known.is_empty() && !known.contains(&g) {
            c.push(contrib("gender", "different", w.gender_differs));
        }
    }
    // Address, graded.
    if cfg.use_address {
        let same = |get: fn(&Features) -> Option<&String>| {
            get(f).is_some() && rows.iter().any(|r| get(r) == get(f))
        };
        if same(|x| x.room_k.as_ref()) {
            c.push(contrib("address", "same room", w.address_room));
        } else if same(|x| x.bldg_k.as_ref()) {
            c.push(contrib("address", "same building", w.address_building));
        } else if same(|x| x.comm_k.as_ref()) {
            c.push(contrib("address", "same community", w.address_community));
        }
    }
    let total: f64 = c.iter().map(|x| x.weight).sum();
    let total = (total * 1000.0).round() / 1000.0;
    Ok(Scored {
        person_id: pid,
        total,
        contributions: c,
        veto,
        name,
    })
}

fn contrib(feature: &'static str, agreement: &str, weight: f64) -> Contribution {
    Contribution {
        feature,
        agreement: agreement.to_string(),
        weight,
    }
}

/// Distinct live residents whose records carry this phone (stops counting at `cap`).
fn phone_owners(conn: &Connection, phone_k: &str, cap: i64) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT DISTINCT s.person_id FROM match_features f
               JOIN source_records s ON s.id = f.record_id
              WHERE f.phone_k = ?1 AND s.person_id IS NOT NULL AND s.status = 'ok' AND s.deleted = 0 LIMIT ?2)",
        )?
        .query_row(params![phone_k, cap], |r| r.get(0))?)
}

/// Scores every candidate, best first.
pub fn rank(
    conn: &Connection,
    cfg: &ReconcileConfig,
    f: &Features,
    self_person: Option<i64>,
) -> Result<Vec<Scored>, StoreError> {
    let mut out = Vec::new();
    for pid in candidates(conn, cfg, f, self_person)? {
        out.push(score(conn, cfg, f, pid)?);
    }
    out.sort_by(|a, b| {
        b.total
            .partial_cmp(&a.total)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.person_id.cmp(&b.person_id))
    });
    Ok(out)
}

/// The decision from ranked candidates.
pub fn decide(cfg: &ReconcileConfig, ranked: &[Scored]) -> Outcome {
    let eligible: Vec<&Scored> = ranked.iter().filter(|s| s.veto.is_none()).collect();
    let Some(best) = eligible.first() else {
        return Outcome::New;
    };
    if best.total >= cfg.link_threshold {
        // Two residents both strong enough: only a strictly better name decides.
        let rival = eligible
            .get(1)
            .filter(|s| s.total >= cfg.link_threshold && s.name >= best.name);
        if rival.is_none() {
            return Outcome::Link(best.person_id);
        }
    }
    let review: Vec<i64> = eligible
        .iter()
        .filter(|s| s.total >= cfg.review_threshold)
        .map(|s| s.person_id)
        .collect();
    if review.is_empty() {
        Outcome::New
    } else {
        Outcome::Review(review)
    }
}

/// Explanation text of one scored candidate (for `review show` and `explain`).
pub fn describe(cfg: &ReconcileConfig, s: &Scored) -> String {
    let mut out = String::new();
    for c in &s.contributions {
        out.push_str(&format!(
            "    {:<11} {:<22} {:+.2}\n",
            c.feature, c.agreement, c.weight
        ));
    }
    out.push_str(&format!(
        "    total {:.2} (link at >= {:.2}, review at >= {:.2})",
        s.total, cfg.link_threshold, cfg.review_threshold
    ));
    if let Some(v) = &s.veto {
        out.push_str(&format!("; never linked automatically: {v}"));
    }
    out
}

/// Weights summary per feature name, for reports.
pub fn weights_table(cfg: &ReconcileConfig) -> BTreeMap<&'static str, f64> {
    let w = &cfg.weights;
    BTreeMap::from([
        ("name_exact", w.name_exact),
        ("name_pinyin", w.name_pinyin),
        ("phone_current", w.phone_current),
        ("phone_earlier", w.phone_earlier),
        ("phone_household", w.phone_household),
        ("birth_equal", w.birth_equal),
        ("birth_swapped", w.birth_swapped),
        ("birth_differs", w.birth_differs),
        ("gender_differs", w.gender_differs),
        ("address_room", w.address_room),
        ("address_building", w.address_building),
        ("address_community", w.address_community),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_month_swap() {
        assert_eq!(swap_day_month("1980-03-07").as_deref(), Some("1980-07-03"));
        assert_eq!(swap_day_month("1980-03-17"), None);
        assert_eq!(swap_day_month("1980-05-05"), None);
    }

    fn scored(pid: i64, total: f64, name: NameAgreement, veto: Option<&str>) -> Scored {
        Scored {
            person_id: pid,
            total,
            contributions: vec![],
            veto: veto.map(str::to_string),
            name,
        }
    }

    #[test]
    fn decide_links_reviews_and_creates() {
        let cfg = ReconcileConfig::default();
        assert_eq!(
            decide(&cfg, &[scored(1, 1.0, NameAgreement::Exact, None)]),
            Outcome::Link(1)
        );
        assert_eq!(
            decide(&cfg, &[scored(1, 0.7, NameAgreement::Exact, None)]),
            Outcome::Review(vec![1])
        );
        assert_eq!(
            decide(&cfg, &[scored(1, 0.2, NameAgreement::Exact, None)]),
            Outcome::New
        );
        // A veto never links, however high the score.
        assert_eq!(
            decide(
                &cfg,
                &[scored(
                    1,
                    1.2,
                    NameAgreement::Exact,
                    Some("different ID numbers")
                )]
            ),
            Outcome::New
        );
        // Two equally strong residents: review, not a guess.
        assert_eq!(
            decide(
                &cfg,
                &[
                    scored(1, 1.0, NameAgreement::Exact, None),
                    scored(2, 1.0, NameAgreement::Exact, None)
                ]
            ),
            Outcome::Review(vec![1, 2])
        );
        // An exact name beats a homophone.
        assert_eq!(
            decide(
                &cfg,
                &[
                    scored(1, 1.0, NameAgreement::Exact, None),
                    scored(2, 0.95, NameAgreement::Pinyin, None)
                ]
            ),
            Outcome::Link(1)
        );
    }
}
