//! Identity resolution for records without an ID link: match features per record (all
//! blinded through the codec, so only equality is ever compared), blocking by indexed keys,
//! and an explainable weighted score per candidate resident.
//!
//! Blocking keys (indexed in `match_features` / `phone_history`): phone; name syllables
//! (pinyin in sorted order, so a name in letters or with the given name first blocks with the
//! characters) + birth date; name syllables + community; (with phone history) any phone a
//! resident ever had. No record is ever compared with all others.
//!
//! Keys that hold several values (`edit_k`: the name with one character left out, once per
//! character; `birth_part_k`: month-day, year-month, year-day) are the blinded values joined
//! by spaces; they are only compared, never used for blocking.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::ReconcileConfig;
use crate::model::PersonFields;
use crate::normalize::address;
use crate::reconcile::model::{self, level, Gamma, Model};
use crate::reconcile::names::{self, NameAgreement};
use crate::store::{Codec, StoreError};

/// The blinded match features of one person-carrying record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub record_id: i64,
    pub name_k: Option<String>,
    pub py_k: Option<String>,
    /// Name syllables in sorted order ([`names::sound_keys`], second).
    pub syl_k: Option<String>,
    /// The name with one character left out, per character (blinded as names, joined by
    /// spaces: [`names::edit_variants`]).
    pub edit_k: Option<String>,
    /// The name with one look-alike character replaced by its group's marker, per position
    /// and group ([`crate::reconcile::lookalike::shape_variants`]), blinded and joined.
    pub shape_k: Option<String>,
    /// The name's fuzzy-pinyin reading ([`names::sound_keys`], third), blinded (short form).
    pub near_k: Option<String>,
    /// The name has a masked or unknown character ([`names::is_masked`]): not personal data.
    pub masked: bool,
    /// The name's first character and length, blinded ([`names::surname_pattern`]).
    pub mask_k: Option<String>,
    pub phone_k: Option<String>,
    pub birth_k: Option<String>,
    pub birth_swap_k: Option<String>,
    /// Two of the birth date's three parts (`md`, `ym`, `yd`), blinded, joined by spaces.
    pub birth_part_k: Option<String>,
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
        // The folded name at hand: as `names::name_masked` reads a stored record's.
        let masked = name.as_deref().is_some_and(names::is_masked);
        let pattern = name.as_deref().and_then(names::surname_pattern);
        let (py, syl, near) = match p.name.as_deref().map(names::sound_keys) {
            Some((py, syl, near)) if !py.is_empty() => (Some(py), Some(syl), vec![near]),
            _ => (None, None, Vec::new()),
        };
        let edits = p
            .name
            .as_deref()
            .map(names::edit_variants)
            .unwrap_or_default();
        let shapes = name
            .as_deref()
            .map(crate::reconcile::lookalike::shape_variants)
            .unwrap_or_default();
        let birth = p.birth_date.as_deref();
        let parts = birth.map(birth_parts).unwrap_or_default();
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
            syl_k: syl.map(|n| codec.blind(c::MATCH_SYLLABLES, &n)),
            edit_k: joined(codec, c::MATCH_NAME_EDITS, &edits),
            shape_k: joined(codec, c::MATCH_NAME_SHAPES, &shapes),
            near_k: joined(codec, c::MATCH_NEAR_SOUND, &near),
            masked,
            mask_k: pattern.map(|p| codec.blind(c::MATCH_NAME_PATTERN, &p)),
            phone_k: p.phone.as_deref().map(|ph| codec.blind(c::MATCH_PHONE, ph)),
            birth_k: birth.map(|b| codec.blind(c::MATCH_BIRTH, b)),
            birth_swap_k: swapped.map(|b| codec.blind(c::MATCH_BIRTH_SWAP, &b)),
            birth_part_k: joined(codec, c::MATCH_BIRTH_PARTS, &parts),
            gender: p.gender.filter(|g| *g == 1 || *g == 2),
            room_k: room.map(|r| codec.blind(c::MATCH_ROOM, &r)),
            bldg_k: bldg.map(|r| codec.blind(c::MATCH_BUILDING, &r)),
            comm_k: community.map(|r| codec.blind(c::MATCH_COMMUNITY, &r)),
            id_k: id_key.map(str::to_string),
            changed: changed.to_string(),
        }
    }
}

/// Hex digits kept of each blinded value in a multi-value key (48 bits: only a resident's few
/// records are ever compared, so a chance collision is out of reach; the row stays small).
const SHORT: usize = 12;

/// Several values blinded under one column, in one text: `keyid:h1 h2 h3` with each `h` the
/// first [`SHORT`] hex digits of a blind (the key id prefix keeps rotation's check working);
/// under the plain codec the values themselves, joined by spaces. None when there are none.
fn joined(
    codec: &Codec,
    col: crate::store::codec::BlindColumn,
    values: &[String],
) -> Option<String> {
    let blinds: Vec<String> = values.iter().map(|v| codec.blind(col, v)).collect();
    if matches!(codec, Codec::Plain) {
        return (!blinds.is_empty()).then(|| blinds.join(" "));
    }
    let (id, _) = blinds.first()?.split_once(':')?;
    let shorts: Vec<&str> = blinds.iter().map(|b| short(b)).collect();
    Some(format!("{id}:{}", shorts.join(" ")))
}

/// The compared part of one blind: [`SHORT`] hex digits of a `keyid:hex` blind, or the whole
/// value (plain codec).
fn short(blind: &str) -> &str {
    match blind.split_once(':') {
        Some((id, h))
            if id.len() == 8 && h.len() > SHORT && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            &h[..SHORT]
        }
        _ => blind,
    }
}

/// The values of a multi-value key (or of a single blind, shortened alike).
fn values_of(key: &str) -> impl Iterator<Item = &str> {
    let body = match key.split_once(':') {
        Some((id, rest)) if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) => rest,
        _ => key,
    };
    body.split(' ').map(|v| {
        if v.len() > SHORT && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            &v[..SHORT]
        } else {
            v
        }
    })
}

/// Whether two keys (multi-value or single blinds) share a value.
fn share(a: Option<&String>, b: Option<&String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => values_of(a).any(|x| values_of(b).any(|y| x == y)),
        _ => false,
    }
}

/// The birth date's parts two at a time: `1980-03-07` → `md|03-07`, `ym|1980-03`,
/// `yd|1980-07` (a date with one part off shares exactly one of them).
fn birth_parts(iso: &str) -> Vec<String> {
    let mut it = iso.splitn(3, '-');
    match (it.next(), it.next(), it.next()) {
        (Some(y), Some(m), Some(d)) => vec![
            format!("md|{m}-{d}"),
            format!("ym|{y}-{m}"),
            format!("yd|{y}-{d}"),
        ],
        _ => Vec::new(),
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

pub(crate) const F_COLS: &str =
    "f.record_id, f.name_k, f.py_k, f.phone_k, f.birth_k, f.birth_swap_k, f.gender, f.room_k, \
                      f.bldg_k, f.comm_k, f.id_k, f.changed, f.syl_k, f.edit_k, f.birth_part_k, f.shape_k, f.near_k, f.name_mask, f.mask_k";

/// Columns in [`F_COLS`] (a query selecting more puts them after these).
pub(crate) const F_COUNT: usize = 19;

pub(crate) fn row_features(r: &rusqlite::Row<'_>) -> rusqlite::Result<Features> {
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
        syl_k: r.get(12)?,
        edit_k: r.get(13)?,
        birth_part_k: r.get(14)?,
        shape_k: r.get(15)?,
        near_k: r.get(16)?,
        masked: r.get::<_, Option<bool>>(17)?.unwrap_or(false),
        mask_k: r.get(18)?,
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
                     gender, room_k, bldg_k, comm_k, id_k, changed, syl_k, edit_k, birth_part_k, shape_k, near_k,
                     name_mask, mask_k)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?
            .execute(params![
                record_id, f.name_k, f.py_k, f.phone_k, f.birth_k, f.birth_swap_k, f.gender, f.room_k, f.bldg_k,
                f.comm_k, f.id_k, f.changed, f.syl_k, f.edit_k, f.birth_part_k, f.shape_k, f.near_k,
                f.masked, f.mask_k
            ])?;
        }
    }
    Ok(())
}

/// One comparison's contribution to a score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Contribution {
    pub feature: &'static str,
    /// The comparison level, e.g. `exact`, `pinyin`, `current`, `earlier`, `household`, `room`.
    pub agreement: String,
    /// The level's m and u probabilities (model::Level).
    pub m: f64,
    pub u: f64,
    /// log2(m/u) plus the term-frequency adjustment, in bits.
    pub weight: f64,
    /// Term-frequency adjustment in bits (names only) and the count it came from.
    pub tf_bits: Option<f64>,
    pub tf_count: Option<u32>,
}

/// The score of one record against one candidate resident.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub person_id: i64,
    /// Match probability.
    pub total: f64,
    /// Match weight in bits (prior included): the log2 odds of `total`.
    pub bits: f64,
    pub prior_bits: f64,
    pub contributions: Vec<Contribution>,
    /// Why this candidate can never be linked automatically (different ID, rejected pair,
    /// different name, household phone with a different birth date).
    pub veto: Option<String>,
    /// Why this candidate can at most be a review item (names one character apart).
    pub hold: Option<String>,
    pub name: NameAgreement,
}

impl Scored {
    /// Whether the match probability reaches a threshold (compared as log2 odds, so that the
    /// hand-weight model's boundaries are exact).
    pub fn reaches(&self, threshold: f64) -> bool {
        self.bits >= model::logit2(threshold) - 1e-9
    }
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
    if let Some(syl) = &f.syl_k {
        let by_birth = format!("SELECT DISTINCT s.person_id FROM match_features f {live} AND f.syl_k = ?2 AND f.birth_k = ?3 LIMIT 50");
        for b in [&f.birth_k, &f.birth_swap_k].into_iter().flatten() {
            add(&by_birth, syl, Some(b))?;
        }
        if cfg.use_address {
            if let Some(c) = &f.comm_k {
                add(
                    &format!(
                        "SELECT DISTINCT s.person_id FROM match_features f {live} AND f.syl_k = ?2 AND f.comm_k = ?3 LIMIT 50"
                    ),
                    syl,
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

/// The comparison levels of a record against one resident, any hard veto (never linked nor
/// suggested) and any hold (never linked automatically, at most a review item).
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub gamma: Gamma,
    pub veto: Option<String>,
    pub hold: Option<String>,
    pub name: NameAgreement,
}

/// Compares a record with one resident's live records (no weights: see [`score`]).
pub fn compare(
    conn: &Connection,
    cfg: &ReconcileConfig,
    f: &Features,
    pid: i64,
) -> Result<Compared, StoreError> {
    let rows = person_features(conn, pid, f.record_id)?;
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
    let name = compare_name(cfg, f, &rows);
    let name_level = match name {
        NameAgreement::Exact => level::NAME_EXACT,
        NameAgreement::Pinyin | NameAgreement::LookAlike => level::NAME_PINYIN,
        NameAgreement::Swapped => level::NAME_SWAPPED,
        NameAgreement::OneEdit
        | NameAgreement::NearSound
        | NameAgreement::Masked
        | NameAgreement::LeftOut => level::NAME_ONE_EDIT,
        NameAgreement::Different if f.name_k.is_none() => 0,
        NameAgreement::Different => level::NAME_DIFFERENT,
    };
    let (phone, household) = compare_phone(conn, cfg, f, pid, &rows)?;
    let birth = compare_birth(f, &rows);
    let gender = match f.gender {
        Some(g) => {
            let known: Vec<u8> = rows.iter().filter_map(|r| r.gender).collect();
            match (known.is_empty(), known.contains(&g)) {
                (true, _) => 0,
                (false, true) => level::GENDER_SAME,
                (false, false) => level::GENDER_DIFFERENT,
            }
        }
        None => 0,
    };
    let address = if cfg.use_address {
        compare_address(f, &rows)
    } else {
        0
    };
    let gamma = [name_level, phone, birth, gender, address];
    let (rule_veto, hold) = guard(name, &gamma, household);
    Ok(Compared {
        gamma,
        veto: veto.or(rule_veto),
        hold,
        name,
    })
}

/// The vetoes (never linked nor suggested) and the hold (at most a review item) that no
/// weight overrides, from the comparison levels (docs/matching.md, "Identity rules").
fn guard(name: NameAgreement, g: &Gamma, household: bool) -> (Option<String>, Option<String>) {
    let [_, phone, birth, gender, address] = *g;
    let differs = [
        phone == level::PHONE_DIFFERENT,
        birth == level::BIRTH_DIFFERENT,
        gender == level::GENDER_DIFFERENT,
    ]
    .iter()
    .filter(|d| **d)
    .count();
    // Name and birth date are what namesakes born the same day share, and a common name
    // recurs in one building: a link needs a phone the resident carried or the same room.
    let confirmed = phone >= level::PHONE_EARLIER_HOUSEHOLD || address >= level::ADDRESS_ROOM;
    let veto = if name == NameAgreement::Different {
        Some("names differ")
    } else if household && birth == level::BIRTH_DIFFERENT {
        Some("household phone with a different birth date")
    } else if differs >= 2 {
        // Whatever else agrees (a namesake in the same building).
        Some("two of phone, birth date and gender differ")
    } else if name.one_character_apart()
        && (birth == level::BIRTH_DIFFERENT || gender == level::GENDER_DIFFERENT)
    {
        // A typo only when nothing else is off: else a sibling's (张子涵 / 张子轩).
        Some("names one character apart and the birth date or gender differs: a sibling")
    } else if name == NameAgreement::OneEdit {
        // Characters that neither sound nor look alike are not a typo's: the name of a twin
        // (same birth date, room and phone) or a sibling.
        Some("names one character apart that neither sound nor look alike: a twin's or sibling's name")
    } else if !confirmed && differs > 0 {
        Some("only the name and the neighbourhood agree, and the phone, birth date or gender differs")
    } else {
        None
    };
    // A character left out with everything else the resident's own (their phone, birth
    // date, room and gender) is a name cut short; a substituted one may be a twin's name.
    let own = phone >= level::PHONE_EARLIER
        && birth == level::BIRTH_EQUAL
        && address == level::ADDRESS_ROOM
        && gender != level::GENDER_DIFFERENT;
    let hold = if name == NameAgreement::NearSound {
        Some("names one character apart that sound nearly alike: a typo, or a sibling or twin")
    } else if name == NameAgreement::Masked && !own {
        Some("one name is masked, and not all else is the resident's own")
    } else if name == NameAgreement::LeftOut && !own {
        Some("one name has a character the other lacks, and not all else is the resident's own")
    } else if !confirmed {
        Some("no phone or address of the resident confirms it")
    } else {
        None
    };
    (veto.map(str::to_string), hold.map(str::to_string))
}

/// How the record's name agrees with any of the resident's names.
fn compare_name(cfg: &ReconcileConfig, f: &Features, rows: &[Features]) -> NameAgreement {
    // Two masked names say only what they keep: equal ones agree at most as `Masked`, and
    // they are compared in no other way (王*英 and 王*兰 share the variant 王*).
    let both_masked = |r: &Features| f.masked && r.masked;
    let plain = || rows.iter().filter(|r| !both_masked(r));
    let any = |get: fn(&Features) -> Option<&String>| {
        get(f).is_some() && plain().any(|r| get(r) == get(f))
    };
    // The shorter name must have two characters or more (variants exist): a surname alone
    // is not a name cut short.
    let left_out = |r: &Features| {
        (f.edit_k.is_some() && share(f.name_k.as_ref(), r.edit_k.as_ref()))
            || (r.edit_k.is_some() && share(f.edit_k.as_ref(), r.name_k.as_ref()))
    };
    let one_edit = |r: &Features| share(f.edit_k.as_ref(), r.edit_k.as_ref());
    // One side masked, every known character (or the surname and length) the other's.
    let masked = |r: &Features| {
        (f.masked || r.masked) && (one_edit(r) || share(f.mask_k.as_ref(), r.mask_k.as_ref()))
    };
    if any(|x| x.name_k.as_ref()) {
        NameAgreement::Exact
    } else if cfg.use_pinyin && any(|x| x.py_k.as_ref()) {
        NameAgreement::Pinyin
    } else if cfg.use_pinyin && any(|x| x.syl_k.as_ref()) {
        NameAgreement::Swapped
    } else if plain().any(left_out) {
        NameAgreement::LeftOut
    } else if plain().any(masked)
        || rows
            .iter()
            .any(|r| both_masked(r) && f.name_k.is_some() && r.name_k == f.name_k)
    {
        NameAgreement::Masked
    } else if plain().any(|r| share(f.shape_k.as_ref(), r.shape_k.as_ref())) {
        NameAgreement::LookAlike
    } else if plain().any(|r| one_edit(r) && share(f.near_k.as_ref(), r.near_k.as_ref())) {
        NameAgreement::NearSound
    } else if plain().any(one_edit) {
        NameAgreement::OneEdit
    } else {
        NameAgreement::Different
    }
}

/// Phone level (model::COMPARISONS) and whether the phone is a household phone. The current
/// phone is the phone of the resident's most recently changed record; a phone the resident
/// never had is `family` when another resident of the resident's room carries it.
fn compare_phone(
    conn: &Connection,
    cfg: &ReconcileConfig,
    f: &Features,
    pid: i64,
    rows: &[Features],
) -> Result<(u8, bool), StoreError> {
    let Some(ph) = &f.phone_k else {
        return Ok((0, false));
    };
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
                    // Not the record's own phones: what its own source wrote into the history
                    // of the resident it is linked to is no evidence for that link.
                    "SELECT 1 FROM phone_history h WHERE h.person_id = ?1 AND h.phone_k = ?2
                        AND NOT EXISTS (SELECT 1 FROM source_records s
                                         WHERE s.id = ?3 AND s.person_id = h.person_id AND s.source = h.source)
                      LIMIT 1",
                )?
                .exists(params![pid, ph, f.record_id])?);
    let household = (current == Some(ph) || earlier)
        && cfg.household_phones
        && phone_owners(conn, ph, f.record_id, 2)? > 1;
    Ok(match (current == Some(ph), earlier, household) {
        (true, _, true) => (level::PHONE_HOUSEHOLD, true),
        (true, _, false) => (level::PHONE_CURRENT, false),
        (false, true, true) => (level::PHONE_EARLIER_HOUSEHOLD, true),
        (false, true, false) => (level::PHONE_EARLIER, false),
        _ if current.is_none() => (0, false),
        _ if cfg.household_phones && roommate_phone(conn, ph, pid, f.record_id, rows)? => {
            (level::PHONE_FAMILY, false)
        }
        _ => (level::PHONE_DIFFERENT, false),
    })
}

/// Whether another live resident living in one of the resident's rooms carries the phone on
/// a record other than `except` (the scored record's own resident lives there too).
fn roommate_phone(
    conn: &Connection,
    phone_k: &str,
    pid: i64,
    except: i64,
    rows: &[Features],
) -> Result<bool, StoreError> {
    let rooms: BTreeSet<&String> = rows.iter().filter_map(|r| r.room_k.as_ref()).collect();
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM match_features f JOIN source_records s ON s.id = f.record_id
          WHERE f.phone_k = ?1 AND f.room_k = ?2 AND s.person_id IS NOT NULL AND s.person_id != ?3
            AND f.record_id != ?4 AND s.status = 'ok' AND s.deleted = 0 LIMIT 1",
    )?;
    for room in rooms {
        if stmt.exists(params![phone_k, room, pid, except])? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn compare_birth(f: &Features, rows: &[Features]) -> u8 {
    let Some(b) = &f.birth_k else {
        return 0;
    };
    let known: Vec<&Features> = rows.iter().filter(|r| r.birth_k.is_some()).collect();
    if known.iter().any(|r| r.birth_k.as_ref() == Some(b)) {
        level::BIRTH_EQUAL
    } else if f
        .birth_swap_k
        .as_ref()
        .is_some_and(|s| known.iter().any(|r| r.birth_k.as_ref() == Some(s)))
    {
        level::BIRTH_SWAPPED
    } else if known
        .iter()
        .any(|r| share(f.birth_part_k.as_ref(), r.birth_part_k.as_ref()))
    {
        level::BIRTH_ONE_PART
    } else if known.is_empty() {
        0
    } else {
        level::BIRTH_DIFFERENT
    }
}

fn compare_address(f: &Features, rows: &[Features]) -> u8 {
    let same = |get: fn(&Features) -> Option<&String>| {
        get(f).is_some() && rows.iter().any(|r| get(r) == get(f))
    };
    if same(|x| x.room_k.as_ref()) {
        level::ADDRESS_ROOM
    } else if same(|x| x.bldg_k.as_ref()) {
        level::ADDRESS_BUILDING
    } else if same(|x| x.comm_k.as_ref()) {
        level::ADDRESS_COMMUNITY
    } else if f.comm_k.is_some() && rows.iter().any(|r| r.comm_k.is_some()) {
        level::ADDRESS_DIFFERENT
    } else {
        0
    }
}

/// Residents of the record's community (other than the record's own) whose names have its
/// syllables, at least 1, at most 50 (the name term frequency within the block).
pub fn name_count(conn: &Connection, f: &Features) -> Result<Option<u32>, StoreError> {
    let (Some(py), Some(comm)) = (&f.syl_k, &f.comm_k) else {
        return Ok(None);
    };
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT DISTINCT s.person_id FROM match_features f
               JOIN source_records s ON s.id = f.record_id
              WHERE f.syl_k = ?1 AND f.comm_k = ?2 AND f.record_id != ?3
                AND s.person_id IS NOT NULL AND s.status = 'ok' AND s.deleted = 0 LIMIT 50)",
        )?
        .query_row(params![py, comm, f.record_id], |r| r.get(0))?;
    Ok(Some(u32::try_from(n.max(1)).unwrap_or(1)))
}

/// Scores a record against one resident: each comparison's level, m, u and bits, the name's
/// term-frequency adjustment, and the match probability.
pub fn score(
    conn: &Connection,
    cfg: &ReconcileConfig,
    m: &Model,
    f: &Features,
    pid: i64,
) -> Result<Scored, StoreError> {
    let cmp = compare(conn, cfg, f, pid)?;
    let tf = match (&m.tf, cmp.gamma[model::NAME]) {
        (Some(tf), l) if l >= level::NAME_SWAPPED => name_count(conn, f)?.map(|c| (tf.bits(c), c)),
        _ => None,
    };
    let mut contributions = Vec::new();
    for (c, (feature, labels)) in model::COMPARISONS.iter().enumerate() {
        let l = cmp.gamma[c];
        if l == 0 {
            continue;
        }
        let lv = m.level(c, l);
        let tf = if c == model::NAME { tf } else { None };
        // The name's level lumps kinds of typo together; say which one it was.
        let agreement = match (c, cmp.name) {
            (model::NAME, NameAgreement::LookAlike) => "look-alike",
            (model::NAME, NameAgreement::NearSound) => "near sound",
            (model::NAME, NameAgreement::Masked) => "masked",
            _ => labels[usize::from(l)],
        };
        contributions.push(Contribution {
            feature,
            agreement: agreement.to_string(),
            m: lv.m,
            u: lv.u,
            weight: m.bits(c, l) + tf.map_or(0.0, |t| t.0),
            tf_bits: tf.map(|t| t.0),
            tf_count: tf.map(|t| t.1),
        });
    }
    let bits = m.weight(&cmp.gamma, tf.map_or(0.0, |t| t.0));
    Ok(Scored {
        person_id: pid,
        total: (model::probability(bits) * 1e6).round() / 1e6,
        bits,
        prior_bits: m.prior_bits(),
        contributions,
        veto: cmp.veto,
        hold: cmp.hold,
        name: cmp.name,
    })
}

/// Distinct live residents whose records other than `except` carry this phone (stops
/// counting at `cap`): the scored record's own phone makes no household of its own resident.
fn phone_owners(
    conn: &Connection,
    phone_k: &str,
    except: i64,
    cap: i64,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT DISTINCT s.person_id FROM match_features f
               JOIN source_records s ON s.id = f.record_id
              WHERE f.phone_k = ?1 AND f.record_id != ?2 AND s.person_id IS NOT NULL
                AND s.status = 'ok' AND s.deleted = 0 LIMIT ?3)",
        )?
        .query_row(params![phone_k, except, cap], |r| r.get(0))?)
}

/// Scores every candidate, best first.
pub fn rank(
    conn: &Connection,
    cfg: &ReconcileConfig,
    m: &Model,
    f: &Features,
    self_person: Option<i64>,
) -> Result<Vec<Scored>, StoreError> {
    let mut out = Vec::new();
    for pid in candidates(conn, cfg, f, self_person)? {
        out.push(score(conn, cfg, m, f, pid)?);
    }
    out.sort_by(|a, b| {
        b.bits
            .partial_cmp(&a.bits)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.person_id.cmp(&b.person_id))
    });
    Ok(out)
}

/// The decision from ranked candidates. Among the candidates strong enough to link, the one
/// with the strictly best name agreement links (an exact name beats a homophone or a name one
/// character off, whatever the other comparisons add) — unless it is held to review, or
/// another strong candidate's name is as good.
pub fn decide(cfg: &ReconcileConfig, ranked: &[Scored]) -> Outcome {
    let eligible: Vec<&Scored> = ranked.iter().filter(|s| s.veto.is_none()).collect();
    let strong: Vec<&Scored> = eligible
        .iter()
        .copied()
        .filter(|s| s.reaches(cfg.link_threshold))
        .collect();
    if let Some(top) = strong
        .iter()
        .copied()
        .reduce(|a, b| if b.name > a.name { b } else { a })
    {
        let rivals = strong.iter().filter(|s| s.name >= top.name).count();
        if top.hold.is_none() && rivals == 1 {
            return Outcome::Link(top.person_id);
        }
    }
    let review: Vec<i64> = eligible
        .iter()
        .filter(|s| s.reaches(cfg.review_threshold))
        .map(|s| s.person_id)
        .collect();
    if review.is_empty() {
        Outcome::New
    } else {
        Outcome::Review(review)
    }
}

/// Explanation text of one scored candidate (for `review show` and `explain`): a waterfall
/// from the prior through each comparison's level, m, u and bits (with the name's
/// term-frequency adjustment) to the match probability against the thresholds.
pub fn describe(cfg: &ReconcileConfig, s: &Scored) -> String {
    let mut out = format!(
        "    {:<11} {:<18} {:>8} {:>8} {:>7} {:>8}  {}\n",
        "comparison", "level", "m", "u", "bits", "running", "probability"
    );
    let mut running = s.prior_bits;
    out.push_str(&format!(
        "    {:<11} {:<18} {:>8} {:>8} {:>+7.2} {:>+8.2}  {:.4}\n",
        "prior",
        "",
        "",
        "",
        s.prior_bits,
        running,
        model::probability(running)
    ));
    for c in &s.contributions {
        running += c.weight;
        out.push_str(&format!(
            "    {:<11} {:<18} {:>8.5} {:>8.5} {:>+7.2} {:>+8.2}  {:.4}\n",
            c.feature,
            c.agreement,
            c.m,
            c.u,
            c.weight - c.tf_bits.unwrap_or(0.0),
            running - c.tf_bits.unwrap_or(0.0),
            model::probability(running - c.tf_bits.unwrap_or(0.0))
        ));
        if let (Some(tf), Some(n)) = (c.tf_bits, c.tf_count) {
            out.push_str(&format!(
                "    {:<11} {:<18} {:>8} {:>8} {:>+7.2} {:>+8.2}  {:.4}\n",
                "  tf adjust",
                format!("{n} in community"),
                "",
                "",
                tf,
                running,
                model::probability(running)
            ));
        }
    }
    out.push_str(&format!(
        "    total: match weight {:+.2} bits, probability {:.4} (link at >= {:.2}, review at >= {:.2}): {}",
        s.bits,
        s.total,
        cfg.link_threshold,
        cfg.review_threshold,
        if s.reaches(cfg.link_threshold) {
            "link"
        } else if s.reaches(cfg.review_threshold) {
            "review"
        } else {
            "below review"
        }
    ));
    if let Some(v) = &s.veto {
        out.push_str(&format!("; never linked automatically: {v}"));
    } else if let Some(h) = &s.hold {
        out.push_str(&format!("; at most a review item: {h}"));
    }
    out
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

    #[test]
    fn one_edit_names_and_one_part_off_birth_dates_are_found_through_blinded_keys() {
        use crate::crypto::{Algorithm, BlindAlgorithm, StoreKey};
        use crate::store::codec::Keyring;
        let sealed = Codec::Sealed(std::sync::Arc::new(Keyring::new(
            StoreKey::from_bytes(&[7; 32], Algorithm::Aes256Gcm, BlindAlgorithm::HmacSha256),
            vec![],
        )));
        for codec in [Codec::Plain, sealed] {
            let person = |name: &str, birth: &str| PersonFields {
                name: Some(name.into()),
                birth_date: Some(birth.into()),
                ..PersonFields::default()
            };
            let f = |id, name: &str, birth: &str| {
                Features::of(&codec, id, &person(name, birth), None, "t")
            };
            let cfg = ReconcileConfig::default();
            let a = f(1, "王秀英", "1950-03-07");
            let check = |base: &Features, cases: &[(&str, NameAgreement)]| {
                for (other, want) in cases {
                    let got = compare_name(&cfg, base, &[f(2, other, "1950-03-07")]);
                    assert_eq!(got, *want, "{other}");
                }
            };
            check(
                &a,
                &[
                    ("王桂英", NameAgreement::OneEdit),
                    ("王季英", NameAgreement::LookAlike),
                    ("王秀荚", NameAgreement::LookAlike),
                    ("王秀鹰", NameAgreement::Pinyin),
                    ("王秀银", NameAgreement::NearSound),
                    ("王*英", NameAgreement::Masked),
                    ("王?英", NameAgreement::Masked),
                    ("王**", NameAgreement::Masked),
                    ("王*", NameAgreement::Different),
                    ("王***", NameAgreement::Different),
                    ("李*英", NameAgreement::Different),
                    ("王秀", NameAgreement::LeftOut),
                    ("王秀英子", NameAgreement::LeftOut),
                    ("王", NameAgreement::Different),
                    ("王秀英", NameAgreement::Exact),
                    ("Wang Xiuying", NameAgreement::Pinyin),
                    ("Xiuying WANG", NameAgreement::Swapped),
                    ("李季英", NameAgreement::Different),
                ],
            );
            // Two masked names: equal ones are at most `Masked`, others differ (王*英 and
            // 王*兰 share the variant 王*: twins in a desensitised export).
            check(
                &f(3, "王*英", "1950-03-07"),
                &[
                    ("王*英", NameAgreement::Masked),
                    ("王*兰", NameAgreement::Different),
                    ("李*英", NameAgreement::Different),
                    ("王**", NameAgreement::Different),
                ],
            );
            for (other, want) in [
                ("1951-03-07", level::BIRTH_ONE_PART),
                ("1950-07-03", level::BIRTH_SWAPPED),
                ("1950-03-07", level::BIRTH_EQUAL),
                ("1961-11-20", level::BIRTH_DIFFERENT),
            ] {
                assert_eq!(compare_birth(&a, &[f(2, "王秀英", other)]), want, "{other}");
            }
        }
    }

    fn scored(pid: i64, total: f64, name: NameAgreement, veto: Option<&str>) -> Scored {
        Scored {
            person_id: pid,
            total,
            bits: model::logit2(total),
            prior_bits: 0.0,
            contributions: vec![],
            veto: veto.map(str::to_string),
            hold: None,
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
        // A strong candidate one character off (held to review) does not stop the exact
        // name from linking, even when its other comparisons add more.
        let mut held = scored(2, 1.0, NameAgreement::OneEdit, None);
        held.hold = Some("names one character apart".into());
        held.bits += 10.0;
        assert_eq!(
            decide(
                &cfg,
                &[held.clone(), scored(1, 0.99, NameAgreement::Exact, None)]
            ),
            Outcome::Link(1)
        );
        // Alone, it is a review item however strong.
        assert_eq!(decide(&cfg, &[held]), Outcome::Review(vec![2]));
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

    /// A live person record `rec` of resident `pid`.
    fn insert_record(conn: &Connection, rec: i64, pid: i64) {
        conn.execute(
            "INSERT INTO source_records (id, source, stream, source_key, entity, status, content_hash,
                 person_id, dirty, first_seen, last_changed)
             VALUES (?1, 's', 't', ?1, 'card_account', 'ok', x'00', ?2, 0, 'x', 'x')",
            params![rec, pid],
        )
        .unwrap();
    }

    /// A store with residents 1..: (person, record, name key, birth, room) in community c1.
    fn store(rows: &[(i64, i64, &str, &str, &str)]) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        for (pid, rec, name, birth, room) in rows {
            insert_record(&conn, *rec, *pid);
            let f = Features {
                record_id: *rec,
                name_k: Some(format!("n-{name}")),
                py_k: Some(format!("p-{name}")),
                syl_k: Some(format!("s-{name}")),
                birth_k: Some(birth.to_string()),
                room_k: Some(format!("c1|b|{room}")),
                bldg_k: Some("c1|b".into()),
                comm_k: Some("c1".into()),
                changed: "2024-01-01T00:00:00Z".into(),
                ..Features::default()
            };
            store_features(&conn, *rec, Some(&f)).unwrap();
        }
        conn
    }

    /// The ID-less record: same name, birth date and room as resident 1, no phone.
    fn newcomer(name: &str) -> Features {
        Features {
            record_id: 100,
            name_k: Some(format!("n-{name}")),
            py_k: Some(format!("p-{name}")),
            syl_k: Some(format!("s-{name}")),
            birth_k: Some("1950-01-02".into()),
            room_k: Some("c1|b|101".into()),
            bldg_k: Some("c1|b".into()),
            comm_k: Some("c1".into()),
            changed: "2024-02-01T00:00:00Z".into(),
            ..Features::default()
        }
    }

    fn model_with_tf() -> Model {
        let mut m = Model::from_hand_weights(&ReconcileConfig::default());
        m.tf = Some(model::TermFrequency {
            expected: 2.0,
            min_bits: -4.0,
            max_bits: 2.0,
        });
        m
    }

    /// A store of residents from person fields (plain codec): (person, record, name, birth,
    /// phone), all in one room.
    fn store_of(rows: &[(i64, i64, &str, &str, &str)]) -> Connection {
        let conn = store(&[]);
        for (pid, rec, name, birth, phone) in rows {
            insert_record(&conn, *rec, *pid);
            store_features(&conn, *rec, Some(&person(*rec, name, birth, phone))).unwrap();
        }
        conn
    }

    fn person(rec: i64, name: &str, birth: &str, phone: &str) -> Features {
        let p = PersonFields {
            name: Some(name.into()),
            birth_date: Some(birth.into()),
            phone: Some(phone.into()),
            gender: Some(1),
            address: Some("江西省南昌市东湖区阳明路社区3栋2单元501室".into()),
            ..PersonFields::default()
        };
        Features::of(&Codec::Plain, rec, &p, None, "2024-01-01T00:00:00Z")
    }

    #[test]
    fn a_name_one_character_off_is_held_and_with_another_birth_date_is_a_sibling() {
        let cfg = ReconcileConfig::default();
        let m = model_with_tf();
        let conn = store_of(&[
            (1, 1, "张子涵", "2001-04-05", "13800000001"),
            (2, 2, "李玉兰", "1950-03-07", "13800000002"),
            (3, 3, "刘兰", "1948-11-02", "13800000003"),
        ]);
        // Same birth date, phone and room, characters that neither sound nor look alike: a
        // twin's name, not suggested.
        let twin = person(100, "张子洒", "2001-04-05", "13800000001");
        let s = score(&conn, &cfg, &m, &twin, 1).unwrap();
        assert_eq!(s.name, NameAgreement::OneEdit, "{s:?}");
        assert!(s.veto.as_deref().unwrap().contains("twin"), "{s:?}");
        assert_eq!(decide(&cfg, &[s]), Outcome::New);
        // A look-alike (玉/王) with all else the resident's own: a misread, linked.
        let misread = person(101, "李王兰", "1950-03-07", "13800000002");
        let s = score(&conn, &cfg, &m, &misread, 2).unwrap();
        assert_eq!(
            (s.name, &s.veto, &s.hold),
            (NameAgreement::LookAlike, &None, &None)
        );
        assert_eq!(decide(&cfg, &[s]), Outcome::Link(2));
        // Nearly the same sound (lan/nan, a southern speaker's typo — or a sibling's name):
        // a person decides.
        let heard = person(102, "刘南", "1948-11-02", "13800000003");
        let s = score(&conn, &cfg, &m, &heard, 3).unwrap();
        assert_eq!(
            (s.name, &s.veto),
            (NameAgreement::NearSound, &None),
            "{s:?}"
        );
        assert!(s.hold.is_some());
        assert_eq!(decide(&cfg, &[s]), Outcome::Review(vec![3]));
        // Another birth date: a sibling, not suggested.
        let sibling = person(101, "张子轩", "2006-09-10", "13800000001");
        let s = score(&conn, &cfg, &m, &sibling, 1).unwrap();
        assert!(s.veto.as_deref().unwrap().contains("a sibling"), "{s:?}");
        assert_eq!(decide(&cfg, &[s]), Outcome::New);
    }

    #[test]
    fn a_name_cut_short_links_when_all_else_is_the_residents_own_and_else_is_held() {
        let cfg = ReconcileConfig::default();
        let m = model_with_tf();
        let roomed = |rec, name, birth| {
            let mut f = person(rec, name, birth, "13800000001");
            (f.room_k, f.bldg_k, f.comm_k) = (
                Some("c1|3|501".into()),
                Some("c1|3".into()),
                Some("c1".into()),
            );
            f
        };
        let conn = store(&[]);
        insert_record(&conn, 1, 1);
        store_features(&conn, 1, Some(&roomed(1, "欧阳明月", "2001-04-05"))).unwrap();
        // The name field held three characters: phone, birth date, room and gender agree.
        let cut = roomed(100, "欧阳明", "2001-04-05");
        let s = score(&conn, &cfg, &m, &cut, 1).unwrap();
        assert_eq!(
            (s.name, &s.veto, &s.hold),
            (NameAgreement::LeftOut, &None, &None),
            "{:?}",
            s.contributions
        );
        assert_eq!(decide(&cfg, &[s]), Outcome::Link(1));
        // No birth date to confirm it: a person decides.
        let no_birth = |rec, name| {
            let mut f = roomed(rec, name, "2001-04-05");
            (f.birth_k, f.birth_swap_k, f.birth_part_k) = (None, None, None);
            f
        };
        let s = score(&conn, &cfg, &m, &no_birth(101, "欧阳明"), 1).unwrap();
        assert!(s.hold.as_deref().unwrap().contains("lacks"), "{s:?}");
        assert_eq!(decide(&cfg, &[s]), Outcome::Review(vec![1]));
        // Another birth date: a sibling.
        let sibling = roomed(102, "欧阳明", "2006-09-10");
        let s = score(&conn, &cfg, &m, &sibling, 1).unwrap();
        assert!(s.veto.as_deref().unwrap().contains("a sibling"), "{s:?}");
        // A desensitised export (`欧阳*月`, or `欧阳?月` from a system without the
        // character) is compared the same way: linked when all else is the resident's own,
        // held without a birth date.
        let masked = roomed(103, "欧阳*月", "2001-04-05");
        let s = score(&conn, &cfg, &m, &masked, 1).unwrap();
        assert_eq!(
            (s.name, &s.veto, &s.hold),
            (NameAgreement::Masked, &None, &None)
        );
        assert_eq!(decide(&cfg, &[s]), Outcome::Link(1));
        let s = score(&conn, &cfg, &m, &no_birth(104, "欧阳?月"), 1).unwrap();
        assert!(s.hold.as_deref().unwrap().contains("masked"), "{s:?}");
        assert_eq!(decide(&cfg, &[s]), Outcome::Review(vec![1]));
    }

    #[test]
    fn a_namesake_with_only_name_and_community_is_never_suggested_and_name_plus_birth_is_held() {
        let cfg = ReconcileConfig::default();
        let m = model_with_tf();
        let conn = store(&[(1, 1, "rare", "1950-01-02", "101")]);
        // Same name and birth date, community only (another building), no phone: held.
        let mut f = newcomer("rare");
        f.room_k = Some("c1|x|909".into());
        f.bldg_k = Some("c1|x".into());
        let s = score(&conn, &cfg, &m, &f, 1).unwrap();
        assert!(s.veto.is_none(), "{s:?}");
        assert!(
            s.hold.as_deref().unwrap().contains("no phone or address"),
            "{s:?}"
        );
        assert!(!matches!(decide(&cfg, &[s]), Outcome::Link(_)));
        // The same with another birth date: not even a review item.
        f.birth_k = Some("1961-07-08".into());
        let s = score(&conn, &cfg, &m, &f, 1).unwrap();
        assert!(
            s.veto
                .as_deref()
                .unwrap()
                .contains("only the name and the neighbourhood"),
            "{s:?}"
        );
        assert_eq!(decide(&cfg, &[s]), Outcome::New);
    }

    #[test]
    fn a_rare_name_at_the_same_room_links_and_a_common_one_goes_to_review() {
        let cfg = ReconcileConfig::default();
        let m = model_with_tf();
        let rare = store(&[(1, 1, "rare", "1950-01-02", "101")]);
        let ranked = rank(&rare, &cfg, &m, &newcomer("rare"), None).unwrap();
        assert_eq!(decide(&cfg, &ranked), Outcome::Link(1), "{ranked:?}");
        // The same evidence, for a name three residents of the community carry.
        let common = store(&[
            (1, 1, "wangfang", "1950-01-02", "101"),
            (2, 2, "wangfang", "1961-05-06", "202"),
            (3, 3, "wangfang", "1972-07-08", "303"),
        ]);
        let ranked = rank(&common, &cfg, &m, &newcomer("wangfang"), None).unwrap();
        assert_eq!(
            decide(&cfg, &ranked),
            Outcome::Review(vec![1]),
            "{ranked:?}"
        );
        let name = |s: &Scored| s.contributions[0].clone();
        assert!(name(&ranked[0]).tf_bits.unwrap() < 0.0);
        // Without name frequencies (the untrained model) both are review items.
        let hand = Model::from_hand_weights(&cfg);
        let ranked = rank(&rare, &cfg, &hand, &newcomer("rare"), None).unwrap();
        assert_eq!(decide(&cfg, &ranked), Outcome::Review(vec![1]));
    }

    #[test]
    fn describe_shows_levels_m_u_bits_tf_and_the_probability_against_the_thresholds() {
        let cfg = ReconcileConfig::default();
        let m = model_with_tf();
        let conn = store(&[(1, 1, "rare", "1950-01-02", "101")]);
        let s = score(&conn, &cfg, &m, &newcomer("rare"), 1).unwrap();
        let text = describe(&cfg, &s);
        for want in [
            "comparison",
            "level",
            " m ",
            " u ",
            "bits",
            "prior",
            "name",
            "exact",
            "birth_date",
            "equal",
            "address",
            "same room",
            "tf adjust",
            "1 in community",
            "+1.00",
            "match weight",
            "probability",
            "link at >= 0.90",
            "review at >= 0.60",
            ": link",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let name = &s.contributions[0];
        assert_eq!((name.feature, name.agreement.as_str()), ("name", "exact"));
        let lv = m.level(model::NAME, level::NAME_EXACT);
        assert_eq!((name.m, name.u), (lv.m, lv.u));
        assert!(text.contains(&format!("{:.5}", lv.m)) && text.contains(&format!("{:.5}", lv.u)));
        // The waterfall ends where the score is.
        assert!((model::probability(s.bits) - s.total).abs() < 1e-6);
    }
}
