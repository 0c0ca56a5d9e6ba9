//! Golden records: each person field chosen from the linked source records by a survivorship
//! rule, with provenance (which source record supplied it).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{json, Value};

use crate::config::Config;
use crate::model::{Event, Op, PersonFields, PERSON_FIELDS};
use crate::reconcile::{person_key, ReconcileStats};
use crate::store::{self, codec, now_text, Codec, StoreError};

/// Survivorship rules (see ARCHITECTURE.md): the default is `most_recent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    MostRecent,
    SourcePriority,
    MostFrequent,
    /// The value most records agree on; ties: an ID-bearing record's, then the most recent.
    /// The default for the name (one typo'd record must not win by being the newest).
    Agreement,
}

impl Rule {
    pub fn for_field(config: &Config, field: &str) -> Rule {
        match config.reconcile.survivorship.get(field).map(String::as_str) {
            Some("source_priority") => Rule::SourcePriority,
            Some("most_frequent") => Rule::MostFrequent,
            Some("agreement") => Rule::Agreement,
            Some(_) => Rule::MostRecent,
            None if field == "name" => Rule::Agreement,
            None => Rule::MostRecent,
        }
    }
}

/// One linked record's view, as survivorship needs it.
pub struct Candidate {
    pub record_id: i64,
    pub source: String,
    /// Source's own change time, else when we saw the change.
    pub changed: String,
    pub person: crate::model::PersonFields,
}

pub fn create_person(tx: &Transaction<'_>, stats: &mut ReconcileStats) -> Result<i64, StoreError> {
    let now = now_text();
    tx.prepare_cached("INSERT INTO persons (version, created_at, updated_at) VALUES (0, ?1, ?1)")?
        .execute([now])?;
    stats.persons_created += 1;
    Ok(tx.last_insert_rowid())
}

/// Whether a resident waits for its first golden record (created, version 0, not retired):
/// the residents a first load creates in record order (reconcile's golden phase).
pub fn is_pending(tx: &Transaction<'_>, pid: i64) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT version = 0 AND retired = 0 FROM persons WHERE id = ?1")?
        .query_row([pid], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// Chooses a value per field. Deterministic: ties break on source priority, then record id.
pub fn choose(config: &Config, candidates: &[Candidate]) -> BTreeMap<&'static str, (String, i64)> {
    let priority = |source: &str| {
        config
            .reconcile
            .source_priority
            .iter()
            .position(|s| s == source)
            .unwrap_or(usize::MAX)
    };
    let mut out = BTreeMap::new();
    for field in PERSON_FIELDS {
        let mut values: Vec<(&Candidate, String)> = candidates
            .iter()
            .filter_map(|c| c.person.get(field).map(|v| (c, v)))
            .collect();
        if values.is_empty() {
            continue;
        }
        let rule = Rule::for_field(config, field);
        values.sort_by(|(a, _), (b, _)| match rule {
            Rule::SourcePriority => priority(&a.source)
                .cmp(&priority(&b.source))
                .then_with(|| b.changed.cmp(&a.changed))
                .then_with(|| a.record_id.cmp(&b.record_id)),
            _ => b
                .changed
                .cmp(&a.changed)
                .then_with(|| priority(&a.source).cmp(&priority(&b.source)))
                .then_with(|| a.record_id.cmp(&b.record_id)),
        });
        let chosen = match rule {
            Rule::MostFrequent | Rule::Agreement => most_agreed(&values, rule == Rule::Agreement),
            _ => values.first().map(|(c, v)| (v.clone(), c.record_id)),
        };
        if let Some(c) = chosen {
            out.insert(field, c);
        }
    }
    out
}

/// The value most records carry (`values` in recency order); among the most frequent, with
/// `id_breaks_ties` one an ID-bearing record carries, then the first in recency order.
fn most_agreed(values: &[(&Candidate, String)], id_breaks_ties: bool) -> Option<(String, i64)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in values {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let best = counts.values().copied().max().unwrap_or(0);
    let top = |(_, v): &&(&Candidate, String)| counts.get(v.as_str()) == Some(&best);
    let with_id = values
        .iter()
        .filter(top)
        .find(|(c, _)| id_breaks_ties && c.person.id_number.is_some());
    with_id
        .or_else(|| values.iter().find(top))
        .map(|(c, v)| (v.clone(), c.record_id))
}

/// Recomputes one person's golden record; on change bumps the version and enqueues an event.
/// `opened` holds the person fields of records the caller already opened in this transaction
/// (a reconcile chunk: most of a resident's records are in the same chunk); only the others
/// are read from `record_payloads` and decrypted.
pub fn refresh_person(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    pid: i64,
    opened: &HashMap<i64, &PersonFields>,
    out: &mut store::OutboxBatch,
    stats: &mut ReconcileStats,
) -> Result<(), StoreError> {
    let Some(current) = load_golden(tx, codec, pid)? else {
        return Ok(());
    };
    let candidates = linked_records(tx, codec, pid, opened)?;
    record_phone_history(tx, codec, pid, &candidates)?;
    if candidates.is_empty() {
        return retire_emptied(tx, pid, &current, out, stats);
    }
    let mut chosen = choose(config, &candidates);
    hard_fields(
        tx,
        codec,
        pid,
        current.version,
        &current.fields,
        &candidates,
        &mut chosen,
    )?;
    derive_from_id_number(&mut chosen);
    let new: Vec<Option<String>> = PERSON_FIELDS
        .iter()
        .map(|f| chosen.get(f).map(|(v, _)| v.clone()))
        .collect();
    let sources: Vec<Value> = {
        let mut s: Vec<&str> = candidates.iter().map(|c| c.source.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s.into_iter().map(|x| json!(x)).collect()
    };
    let provenance: BTreeMap<&str, i64> = chosen.iter().map(|(f, (_, id))| (*f, *id)).collect();
    let provenance_text = serde_json::to_string(&provenance).unwrap_or_default();
    let changed: Vec<String> = PERSON_FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| current.fields[*i] != new[*i])
        .map(|(_, f)| f.to_string())
        .collect();
    let sources_text = Value::Array(sources.clone()).to_string();
    let sources_changed = current.sources != sources_text;
    if changed.is_empty() && !current.retired && current.version > 0 && !sources_changed {
        if provenance_text != current.provenance {
            tx.prepare_cached("UPDATE persons SET provenance = ?2 WHERE id = ?1")?
                .execute(params![pid, provenance_text])?;
        }
        return Ok(());
    }
    let v = current.version + 1;
    tx.prepare_cached(
        "UPDATE persons SET version = ?2, name = ?3, id_number = ?4, gender = ?5, birth_date = ?6,
                phone = ?7, address = ?8, community = ?9, provenance = ?10, retired = 0, updated_at = ?11,
                sources = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        pid,
        v,
        codec.seal_opt(codec::PERSON_COLUMNS[0], new[0].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[1], new[1].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[2], new[2].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[3], new[3].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[4], new[4].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[5], new[5].as_deref()),
        codec.seal_opt(codec::PERSON_COLUMNS[6], new[6].as_deref()),
        provenance_text,
        now_text(),
        sources_text
    ])?;
    let mut changed = changed;
    let record = person_record(pid, &current.fields, &new, sources, &mut changed);
    if sources_changed {
        changed.push("sources".into());
    }
    out.push(Event::new(
        "person",
        &person_key(pid),
        v,
        Op::Upsert,
        changed,
        Some(record),
    ));
    if current.version > 0 {
        stats.persons_changed += 1; // (a new resident is counted in persons_created)
    }
    stats.events += 1;
    Ok(())
}

/// A resident's golden record as stored.
struct Golden {
    version: i64,
    retired: bool,
    fields: [Option<String>; 7],
    provenance: String,
    sources: String,
}

fn load_golden(
    tx: &Transaction<'_>,
    codec: &Codec,
    pid: i64,
) -> Result<Option<Golden>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT version, retired, name, id_number, gender, birth_date, phone, address, community,
                    provenance, sources
             FROM persons WHERE id = ?1",
        )?
        .query_row([pid], |r| {
            Ok(Golden {
                version: r.get(0)?,
                retired: r.get(1)?,
                fields: [
                    codec.open(r.get_ref(2)?)?,
                    codec.open(r.get_ref(3)?)?,
                    codec.open(r.get_ref(4)?)?,
                    codec.open(r.get_ref(5)?)?,
                    codec.open(r.get_ref(6)?)?,
                    codec.open(r.get_ref(7)?)?,
                    codec.open(r.get_ref(8)?)?,
                ],
                provenance: r.get(9)?,
                sources: r.get(10)?,
            })
        })
        .optional()?)
}

/// A resident's live person records. Only person records hold a resident (as in
/// `has_other_records`): a cancelled card's transactions stay linked to the resident, but they
/// neither keep it alive nor blank its golden record. Records in `opened` are not read again.
fn linked_records(
    tx: &Transaction<'_>,
    codec: &Codec,
    pid: i64,
    opened: &HashMap<i64, &PersonFields>,
) -> Result<Vec<Candidate>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, source, COALESCE(updated_at, last_changed) FROM source_records
         WHERE person_id = ?1 AND status = 'ok' AND deleted = 0
           AND entity IN ('card_account', 'volunteer', 'elder', 'patient') ORDER BY id",
    )?;
    let mut payload = tx.prepare_cached(store::SELECT_NORMALIZED_BY_ID)?;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut rows = stmt.query([pid])?;
    while let Some(r) = rows.next()? {
        let record_id: i64 = r.get(0)?;
        let person = match opened.get(&record_id) {
            Some(p) => (*p).clone(),
            None => {
                let sealed: Option<rusqlite::types::Value> =
                    payload.query_row([record_id], |p| p.get(0)).optional()?;
                match &sealed {
                    Some(v) => person_of_sealed(codec, v.into())?,
                    None => PersonFields::default(),
                }
            }
        };
        candidates.push(Candidate {
            record_id,
            source: r.get(1)?,
            changed: r.get(2)?,
            person,
        });
    }
    Ok(candidates)
}

/// A resident without live person records: retired (with a delete event once published).
fn retire_emptied(
    tx: &Transaction<'_>,
    pid: i64,
    current: &Golden,
    out: &mut store::OutboxBatch,
    stats: &mut ReconcileStats,
) -> Result<(), StoreError> {
    if !current.retired && current.version > 0 {
        let v = current.version + 1;
        tx.prepare_cached(
            "UPDATE persons SET retired = 1, version = ?2, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![pid, v, now_text()])?;
        out.push(Event::new(
            "person",
            &person_key(pid),
            v,
            Op::Delete,
            vec![],
            None,
        ));
        stats.persons_retired += 1;
        stats.events += 1;
    } else if current.version == 0 {
        // Created and emptied in the same pass: nobody ever heard of it.
        tx.prepare_cached("UPDATE persons SET retired = 1 WHERE id = ?1")?
            .execute([pid])?;
    }
    Ok(())
}

/// A golden record as the platform receives it: the person fields (gender as its GB/T 2261.1
/// number), `region_code` from the ID number (listed in `changed` when it changes) and the
/// systems the resident appears in.
fn person_record(
    pid: i64,
    old: &[Option<String>; 7],
    new: &[Option<String>],
    sources: Vec<Value>,
    changed: &mut Vec<String>,
) -> Value {
    let mut record = serde_json::Map::new();
    record.insert("person".into(), json!(person_key(pid)));
    for (i, f) in PERSON_FIELDS.iter().enumerate() {
        let value = match (*f, &new[i]) {
            ("gender", Some(g)) => json!(g.parse::<u8>().unwrap_or(0)),
            (_, Some(s)) => json!(s),
            (_, None) => Value::Null,
        };
        record.insert((*f).into(), value);
    }
    let (old_region, new_region) = (
        region_code(old[1].as_deref()),
        region_code(new[1].as_deref()),
    );
    if old_region != new_region {
        changed.push("region_code".into());
    }
    record.insert("region_code".into(), json!(new_region));
    record.insert("sources".into(), Value::Array(sources));
    Value::Object(record)
}

/// Birth date and gender from the golden ID number (GB 11643: digits 7–14 are the birth date,
/// the 17th is odd for men and even for women) when no linked record states them. A stated
/// value is never replaced: one that contradicts the ID number is a review item
/// (`gender_id`, or a `conflict` between records) as before. Provenance points at the record
/// whose ID number the value was read from.
fn derive_from_id_number(chosen: &mut BTreeMap<&'static str, (String, i64)>) {
    let Some((id, record)) = chosen.get("id_number").cloned() else {
        return;
    };
    let Ok(parsed) = crate::normalize::id_number::normalize(&id) else {
        return;
    };
    chosen
        .entry("birth_date")
        .or_insert_with(|| (parsed.birth_date.to_string(), record));
    chosen
        .entry("gender")
        .or_insert_with(|| (parsed.gender.code().to_string(), record));
}

/// The GB/T 2260 county code of first issue: the first six digits of an ID number.
fn region_code(id: Option<&str>) -> Option<String> {
    id.and_then(|i| i.get(..6))
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .map(String::from)
}

/// The person part of a record's sealed normalized form (`record_payloads.normalized`);
/// empty when the record has none.
pub fn person_of_sealed(
    codec: &Codec,
    sealed: rusqlite::types::ValueRef<'_>,
) -> Result<PersonFields, StoreError> {
    let normalized = codec.open(sealed).map_err(rusqlite::Error::from)?;
    Ok(normalized
        .and_then(|n| serde_json::from_str::<PersonOnly>(&n).ok())
        .map(|n| n.person)
        .unwrap_or_default())
}

/// Only the person part of a stored normalized record (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct PersonOnly {
    #[serde(default)]
    person: crate::model::PersonFields,
}

/// Fields a machine never changes on its own once set: a disagreement raises a review item
/// and the golden value stays until a person decides.
pub const HARD_FIELDS: [&str; 3] = ["birth_date", "gender", "id_number"];

/// Applies field locks (human decisions) and the hard-field rule to the survivorship choice.
fn hard_fields(
    tx: &Transaction<'_>,
    codec: &Codec,
    pid: i64,
    version: i64,
    old: &[Option<String>; 7],
    candidates: &[Candidate],
    chosen: &mut BTreeMap<&'static str, (String, i64)>,
) -> Result<(), StoreError> {
    for field in HARD_FIELDS {
        let idx = PERSON_FIELDS.iter().position(|f| *f == field).unwrap_or(0);
        let lock: Option<(Option<i64>, Option<String>)> = tx
            .prepare_cached(
                "SELECT record_id, value FROM field_locks WHERE person_id = ?1 AND field = ?2",
            )?
            .query_row(params![pid, field], |r| {
                Ok((r.get(0)?, codec.open(r.get_ref(1)?)?))
            })
            .optional()?;
        if let Some((rec, value)) = lock {
            let from_record = rec.and_then(|id| {
                candidates
                    .iter()
                    .find(|c| c.record_id == id)
                    .and_then(|c| c.person.get(field).map(|v| (v, id)))
            });
            match (from_record, value) {
                (Some(v), _) => {
                    chosen.insert(field, v);
                }
                (None, Some(v)) => {
                    let src = chosen.get(field).map(|(_, id)| *id).unwrap_or(0);
                    chosen.insert(field, (v, src));
                }
                (None, None) => {}
            }
            continue;
        }
        let mut values: Vec<(String, i64)> = candidates
            .iter()
            .filter_map(|c| c.person.get(field).map(|v| (v, c.record_id)))
            .collect();
        values.sort();
        let distinct = values.windows(2).filter(|w| w[0].0 != w[1].0).count()
            + usize::from(!values.is_empty());
        if distinct <= 1 {
            continue;
        }
        // Keep the previous golden value while it is still supplied by some record.
        let keep = old[idx]
            .as_ref()
            .filter(|_| version > 0)
            .and_then(|o| values.iter().find(|(v, _)| v == o).cloned());
        if let Some(k) = &keep {
            chosen.insert(field, k.clone());
        }
        let current = chosen.get(field).map(|(v, _)| v.clone());
        for (v, rec) in &values {
            if Some(v) != current.as_ref() {
                let detail = format!(
                    "linked records disagree on {field}; the golden value is kept until decided"
                );
                crate::reconcile::review::raise(
                    tx,
                    "conflict",
                    Some(*rec),
                    Some(pid),
                    Some(field),
                    None,
                    &detail,
                )?;
            }
        }
    }
    // A stated gender that contradicts the record's own ID number.
    for c in candidates {
        if let (Some(g), Some(id)) = (c.person.gender, c.person.id_number.as_deref()) {
            let stated =
                crate::model::Gender::from_code(g).unwrap_or(crate::model::Gender::Unknown);
            if crate::normalize::gender::contradicts_id_number(stated, id) {
                crate::reconcile::review::raise(
                    tx,
                    "gender_id",
                    Some(c.record_id),
                    Some(pid),
                    Some("gender"),
                    None,
                    "the stated gender contradicts the gender encoded in the ID number",
                )?;
            }
        }
    }
    Ok(())
}

/// Keeps every phone the resident's records carry, with first and last seen per source.
fn record_phone_history(
    tx: &Transaction<'_>,
    codec: &Codec,
    pid: i64,
    candidates: &[Candidate],
) -> Result<(), StoreError> {
    for c in candidates {
        let Some(phone) = c.person.phone.as_deref() else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO phone_history (person_id, phone_k, source, phone, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (person_id, phone_k, source) DO UPDATE
               SET first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)
             WHERE excluded.first_seen < first_seen OR excluded.last_seen > last_seen",
        )?
        .execute(params![
            pid,
            codec.blind(codec::PHONE_HISTORY_PHONE_K, phone),
            c.source,
            codec.seal(codec::PHONE_HISTORY_PHONE, phone),
            c.changed
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(record_id: i64, changed: &str, name: &str, id: Option<&str>) -> Candidate {
        Candidate {
            record_id,
            source: format!("s{record_id}"),
            changed: changed.into(),
            person: PersonFields {
                name: Some(name.into()),
                id_number: id.map(str::to_string),
                ..PersonFields::default()
            },
        }
    }

    #[test]
    fn the_golden_name_is_the_spelling_most_records_agree_on() {
        let example = include_str!("../../config/community-sync.toml");
        let path = std::path::Path::new("c.toml");
        let mut config = Config::from_toml(example, path).unwrap();
        config.reconcile.survivorship.remove("name"); // the default
                                                      // The newest record has a typo: two records agree on the right spelling.
        let c = [
            cand(1, "2024-01-01", "张三", Some("x")),
            cand(2, "2024-02-01", "张三", None),
            cand(3, "2024-03-01", "张叁", None),
        ];
        assert_eq!(choose(&config, &c)["name"], ("张三".to_string(), 1));
        // A tie: the ID-bearing record's spelling, not the newest.
        let c = [
            cand(1, "2024-01-01", "李四", Some("x")),
            cand(2, "2024-03-01", "李泗", None),
        ];
        assert_eq!(choose(&config, &c)["name"], ("李四".to_string(), 1));
        // Configured otherwise, the newest wins.
        let mut config = Config::from_toml(example, path).unwrap();
        config
            .reconcile
            .survivorship
            .insert("name".into(), "most_recent".into());
        assert_eq!(choose(&config, &c)["name"], ("李泗".to_string(), 2));
    }

    #[test]
    fn birth_date_and_gender_come_from_the_id_number_only_when_nobody_states_them() {
        // 360102 19800101 123 + check: born 1980-01-01, 17th digit 3 (odd): male.
        let first17 = "36010219800101123";
        let id = format!(
            "{first17}{}",
            crate::normalize::id_number::check_char(first17).unwrap()
        );
        let mut chosen: BTreeMap<&'static str, (String, i64)> = BTreeMap::new();
        chosen.insert("id_number", (id.clone(), 7));
        derive_from_id_number(&mut chosen);
        assert_eq!(chosen["birth_date"], ("1980-01-01".to_string(), 7));
        assert_eq!(chosen["gender"], ("1".to_string(), 7));
        // A stated value stays, even one the ID contradicts (that is a review item).
        let mut chosen: BTreeMap<&'static str, (String, i64)> = BTreeMap::new();
        chosen.insert("id_number", (id, 7));
        chosen.insert("birth_date", ("1980-02-02".to_string(), 9));
        chosen.insert("gender", ("2".to_string(), 9));
        derive_from_id_number(&mut chosen);
        assert_eq!(chosen["birth_date"].0, "1980-02-02");
        assert_eq!(chosen["gender"].0, "2");
        // No ID number: nothing to derive.
        let mut none: BTreeMap<&'static str, (String, i64)> = BTreeMap::new();
        derive_from_id_number(&mut none);
        assert!(none.is_empty());
        assert_eq!(region_code(Some(first17)).as_deref(), Some("360102"));
        assert_eq!(region_code(None), None);
    }
}
