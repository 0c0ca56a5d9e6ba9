//! The declarative field mapping: applies a stream's `fields` table to one raw vendor record
//! and yields a [`NormalizedRecord`], or the reason the record is quarantined whole.
//!
//! Paths (see [`super::path`]) and predicates (see [`super::predicate`]) are compiled once per
//! stream. A field may name fallback paths (the first with a value wins), and any field, person
//! fields included, may translate its value through a code table (`map`). `deleted_when` (or
//! its shorthand `deleted_flag`) marks a record deleted at the source; `skip_when` names
//! records to ignore altogether (test accounts).

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde_json::Value;

use crate::config::{Config, FieldSpec, StreamConfig};
use crate::model::{
    EntityKind, FieldReject, FieldType, FieldValue, NormalizedRecord, PersonFields, Reject,
    RejectReason,
};
pub use crate::normalize::path::{scalar_text, FieldPath, FieldPaths};
use crate::normalize::predicate::{self, Predicate};
use crate::normalize::{datetime, gender, id_number, money, name, phone, text};

/// What a run saw of each mapped field (see [`Mapping::observe`]).
#[derive(Debug, Clone, Default)]
pub struct FieldProfile {
    pub records: u64,
    /// Canonical field names, in the order of `fields`.
    pub names: Vec<String>,
    pub fields: Vec<FieldSeen>,
    /// What the stream's deletion predicate saw (when it has one).
    pub deletion: DeletionSeen,
}

/// What a run saw at the paths of a stream's deletion predicate: whether it ever matched,
/// and the distinct values (a few, masked when they look personal) when it did not.
#[derive(Debug, Clone, Default)]
pub struct DeletionSeen {
    /// Records the predicate marked deleted.
    pub matched: u64,
    /// Records in which some path of the predicate had a value.
    pub present: u64,
    /// Distinct values seen (at most [`DeletionSeen::MAX_VALUES`], each shortened).
    pub values: std::collections::BTreeSet<String>,
    /// Some value seen cannot mean what the predicate tests (see [`Mapping::observe`]).
    pub unreadable: bool,
}

impl DeletionSeen {
    pub const MAX_VALUES: usize = 8;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FieldSeen {
    /// Records in which the field had a non-null value.
    pub present: u64,
    /// Bit set of JSON types seen (see [`json_type_name`]).
    pub types: u8,
}

fn json_type_bit(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 4,
        Value::Array(_) => 8,
        Value::Object(_) => 16,
    }
}

/// Names of the JSON types in a type bit set, e.g. `string|number`.
pub fn json_type_name(types: u8) -> String {
    let names = [
        (1, "boolean"),
        (2, "number"),
        (4, "string"),
        (8, "array"),
        (16, "object"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| types & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "absent".into()
    } else {
        v.join("|")
    }
}

/// A record quarantined whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReject {
    /// The record's key when it could be read.
    pub source_key: Option<String>,
    /// Canonical field at fault (`id_number`), or `record`.
    pub field: String,
    pub reason: RejectReason,
    pub detail: String,
    /// The offending raw value (sensitive: masked when shown).
    pub raw: String,
}

struct CompiledField {
    name: String,
    path: FieldPaths,
    spec: FieldSpec,
    ty: FieldKind,
    code_table: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Copy)]
enum FieldKind {
    Person,
    Domain(FieldType),
}

/// A stream's mapping, compiled once and applied to every record.
pub struct Mapping {
    entity: EntityKind,
    /// The key's paths: one, or the parts of a composite key (joined by `|`).
    key: Vec<FieldPath>,
    fields: Vec<CompiledField>,
    link_field: Option<String>,
    cursor: Option<(FieldPath, Option<String>)>,
    deleted: Option<Predicate>,
    skip: Option<Predicate>,
    tz: Tz,
}

/// The outcome of mapping one record.
pub enum Mapped {
    Ok(Box<NormalizedRecord>, bool),
    Rejected(RecordReject),
}

impl Mapping {
    /// Compiles a stream's mapping. The config was validated when it loaded (every path and
    /// predicate parses); a path that would not parse here maps nothing.
    pub fn compile(config: &Config, stream: &StreamConfig) -> Mapping {
        let tz: Tz = config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
        let domain = stream.entity.domain_fields();
        let fields = stream
            .fields
            .iter()
            .map(|(name, mapping)| {
                let spec = mapping.spec();
                let ty = domain
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| FieldKind::Domain(f.ty))
                    .unwrap_or(FieldKind::Person);
                CompiledField {
                    name: name.clone(),
                    path: spec.path.compile().unwrap_or_else(|_| never_paths()),
                    code_table: spec
                        .map
                        .as_ref()
                        .and_then(|t| config.code_tables.get(t))
                        .cloned(),
                    spec,
                    ty,
                }
            })
            .collect();
        let predicate = |spec: Option<crate::normalize::predicate::PredicateSpec>| {
            spec.and_then(|s| Predicate::compile(&s).ok())
        };
        Mapping {
            entity: stream.entity,
            key: stream
                .key_paths()
                .into_iter()
                .map(|p| FieldPath::parse(p).unwrap_or_else(|_| never_path()))
                .collect(),
            fields,
            link_field: stream.link.as_ref().map(|l| l.field.clone()),
            cursor: stream.incremental.as_ref().map(|i| {
                (
                    FieldPath::parse(&i.cursor_field).unwrap_or_else(|_| never_path()),
                    i.cursor_format.clone(),
                )
            }),
            deleted: predicate(stream.deleted_predicate()),
            skip: predicate(stream.skip_when.clone()),
            tz,
        }
    }

    /// Whether `skip_when` says to ignore this raw record (it is neither stored nor counted
    /// as seen by a full refresh).
    pub fn skips(&self, raw: &Value) -> bool {
        self.skip.as_ref().is_some_and(|p| p.eval(raw))
    }

    /// A warning when the run's deletion predicate never matched although its path was there
    /// with values it cannot mean to test (a status such as `正常`/`注销` read as a flag, or
    /// `0`/`1` compared with `false`): the deletions of this stream are probably not seen.
    pub fn deletion_warning(&self, profile: &FieldProfile) -> Option<String> {
        let p = self.deleted.as_ref()?;
        let d = &profile.deletion;
        if d.matched > 0 || d.present == 0 || !d.unreadable {
            return None;
        }
        let values: Vec<&str> = d.values.iter().map(String::as_str).collect();
        let path = p.leaf_paths().first().map(|p| p.text()).unwrap_or_default();
        Some(format!(
            "the deletion test ({p}) matched none of {} records, and {path} holds values it cannot mean: {}; if one of them means deleted, write deleted_when = {{ path = {path:?}, in = [\"…\"] }}",
            d.present,
            values.join(", ")
        ))
    }

    /// Names of the mapped canonical fields, in the order [`Mapping::observe`] reports them.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// Notes, per mapped field, whether the raw record has it and as which JSON type; the
    /// pipeline compares a run's profile with earlier runs to spot schema drift. Also notes
    /// what the deletion predicate saw (see [`Mapping::deletion_warning`]).
    pub fn observe(&self, raw: &Value, profile: &mut FieldProfile) {
        if profile.fields.len() != self.fields.len() {
            profile.fields = vec![FieldSeen::default(); self.fields.len()];
            profile.names = self.fields.iter().map(|f| f.name.clone()).collect();
        }
        profile.records += 1;
        for (f, seen) in self.fields.iter().zip(profile.fields.iter_mut()) {
            match f.path.get(raw) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    seen.present += 1;
                    seen.types |= json_type_bit(v);
                }
            }
        }
        if let Some(p) = &self.deleted {
            observe_deletion(p, raw, &mut profile.deletion);
        }
    }

    /// Maps one raw record. The bool in `Mapped::Ok` is the source's deleted flag.
    pub fn apply(&self, raw: &Value) -> Mapped {
        if !raw.is_object() {
            return Mapped::Rejected(RecordReject {
                source_key: None,
                field: "record".into(),
                reason: RejectReason::RecordMalformed,
                detail: "record is not a JSON object".into(),
                raw: truncate(&raw.to_string(), 64),
            });
        }
        let mut parts = Vec::with_capacity(self.key.len());
        for path in &self.key {
            match path.get(raw).and_then(scalar_text) {
                Some(k) if !k.trim().is_empty() => parts.push(text::clean(&k)),
                _ => {
                    return Mapped::Rejected(RecordReject {
                        source_key: None,
                        field: "key".into(),
                        reason: RejectReason::KeyMissing,
                        detail: format!("key field {:?} is missing or empty", path.as_str()),
                        raw: String::new(),
                    })
                }
            }
        }
        let source_key = parts.join("|");
        let mut rec = NormalizedRecord {
            entity: self.entity,
            source_key,
            person: PersonFields::default(),
            fields: BTreeMap::new(),
            person_ref: None,
            updated_at: None,
            field_rejects: Vec::new(),
        };
        for f in &self.fields {
            let value = match f.path.get(raw) {
                Some(Value::Null) | None => f.spec.default.clone(),
                Some(v) => match scalar_text(v) {
                    Some(s) => Some(s),
                    None => {
                        rec.field_rejects.push(FieldReject {
                            field: f.name.clone(),
                            reason: RejectReason::RecordMalformed,
                            detail: format!(
                                "{:?} is an object or array, expected a value",
                                f.path.text()
                            ),
                            raw: truncate(&v.to_string(), 64),
                        });
                        continue;
                    }
                },
            };
            let Some(mut value) = value else { continue };
            if let Some(prefix) = &f.spec.strip_prefix {
                if let Some(rest) = value.strip_prefix(prefix.as_str()) {
                    value = rest.to_string();
                }
            }
            if value.trim().is_empty() {
                continue;
            }
            let result = map_code(&value, &f.spec, f.code_table.as_ref()).and_then(|value| match f
                .ty
            {
                FieldKind::Person => self.person_field(&mut rec.person, &f.name, &value, &f.spec),
                FieldKind::Domain(ty) => self.domain_value(ty, &value, f).map(|v| {
                    rec.fields.insert(f.name.clone(), v);
                }),
            });
            if let Err(reject) = result {
                if f.name == "id_number" {
                    return Mapped::Rejected(RecordReject {
                        source_key: Some(rec.source_key),
                        field: f.name.clone(),
                        reason: reject.reason,
                        detail: reject.detail,
                        raw: value,
                    });
                }
                rec.field_rejects.push(FieldReject {
                    field: f.name.clone(),
                    reason: reject.reason,
                    detail: reject.detail,
                    raw: value,
                });
            }
        }
        if self.entity.carries_person()
            && rec.person.id_number.is_none()
            && (rec.person.name.is_none() || rec.person.phone.is_none())
        {
            return Mapped::Rejected(RecordReject {
                source_key: Some(rec.source_key),
                field: "identity".into(),
                reason: RejectReason::IdentityMissing,
                detail: "no ID number, and no name with a phone: cannot tell whose record this is"
                    .into(),
                raw: String::new(),
            });
        }
        if let Some(link) = &self.link_field {
            rec.person_ref = rec.fields.get(link).map(FieldValue::as_text);
        }
        if let Some((path, format)) = &self.cursor {
            if let Some(v) = path.get(raw).and_then(scalar_text) {
                rec.updated_at = cursor_text(&v, format.as_deref(), self.tz);
            }
        }
        let deleted = self.deleted.as_ref().is_some_and(|p| p.eval(raw));
        Mapped::Ok(Box::new(rec), deleted)
    }

    fn person_field(
        &self,
        person: &mut PersonFields,
        field: &str,
        value: &str,
        spec: &FieldSpec,
    ) -> Result<(), Reject> {
        match field {
            "name" => person.name = Some(name::normalize(value)?),
            "id_number" => person.id_number = Some(id_number::normalize(value)?.value),
            "gender" => person.gender = Some(gender::normalize(value)?.code()),
            "birth_date" => {
                person.birth_date =
                    Some(datetime::parse_date(value, spec.format.as_deref())?.to_string())
            }
            "phone" => person.phone = Some(phone::normalize(value)?),
            "address" => person.address = Some(text::clean(value)),
            "community" => person.community = Some(text::clean(value)),
            _ => {}
        }
        Ok(())
    }

    fn domain_value(
        &self,
        ty: FieldType,
        value: &str,
        f: &CompiledField,
    ) -> Result<FieldValue, Reject> {
        Ok(match ty {
            FieldType::Text => FieldValue::Text(text::clean(value)),
            FieldType::Integer => FieldValue::Int(
                text::clean(value)
                    .parse::<i64>()
                    .map_err(|_| Reject::new(RejectReason::NumberInvalid, "not a whole number"))?,
            ),
            FieldType::Money => {
                let unit = match f.spec.unit.as_deref() {
                    Some("yuan") => money::MoneyUnit::Yuan,
                    _ => money::MoneyUnit::Fen,
                };
                FieldValue::Int(money::to_fen(value, unit)?)
            }
            FieldType::Date => {
                FieldValue::Text(datetime::parse_date(value, f.spec.format.as_deref())?.to_string())
            }
            FieldType::DateTime => FieldValue::Text(
                datetime::parse_datetime(value, f.spec.format.as_deref(), self.tz)?.to_rfc3339(),
            ),
            FieldType::Minutes => FieldValue::Int(match f.spec.unit.as_deref() {
                Some("hours") => hours_to_minutes(value)?,
                _ => text::clean(value)
                    .parse::<i64>()
                    .map_err(|_| Reject::new(RejectReason::NumberInvalid, "not whole minutes"))?,
            }),
        })
    }
}

/// A value through the field's code table, if it has one (borrowed when it has none).
fn map_code<'v>(
    value: &'v str,
    spec: &FieldSpec,
    table: Option<&BTreeMap<String, String>>,
) -> Result<std::borrow::Cow<'v, str>, Reject> {
    match (table, &spec.map) {
        (Some(t), Some(name)) => {
            let key = text::clean(value);
            t.get(&key)
                .cloned()
                .map(std::borrow::Cow::Owned)
                .ok_or_else(|| {
                    Reject::new(
                        RejectReason::CodeUnknown,
                        format!("code {key:?} is not in code table {name:?}"),
                    )
                })
        }
        _ => Ok(std::borrow::Cow::Borrowed(value)),
    }
}

/// Decimal hours ("2.5") to whole minutes, exactly (via money's decimal reader: 2.50 h = 250
/// "fen-hours" = 150 min).
fn hours_to_minutes(value: &str) -> Result<i64, Reject> {
    let hundredths = money::to_fen(value, money::MoneyUnit::Yuan)
        .map_err(|_| Reject::new(RejectReason::NumberInvalid, "not a number of hours"))?;
    Ok(hundredths * 60 / 100)
}

/// A cursor value in canonical text: RFC 3339 for times, decimal for integer versions.
pub fn cursor_text(value: &str, format: Option<&str>, tz: Tz) -> Option<String> {
    if format == Some("integer") {
        return text::clean(value)
            .parse::<i64>()
            .ok()
            .map(|i| i.to_string());
    }
    datetime::parse_datetime(value, format, tz)
        .ok()
        .map(|d| d.to_rfc3339())
}

/// Records what a deletion predicate sees at its paths: whether it matches, and the distinct
/// values when they cannot mean what it tests.
fn observe_deletion(p: &Predicate, raw: &Value, seen: &mut DeletionSeen) {
    if p.eval(raw) {
        seen.matched += 1;
    }
    let mut present = false;
    for paths in p.leaf_paths() {
        let Some(v) = paths.get(raw).filter(|v| !v.is_null()) else {
            continue;
        };
        present = true;
        if !readable_by(p, v) {
            seen.unreadable = true;
        }
        if seen.values.len() < DeletionSeen::MAX_VALUES {
            let text = scalar_text(v).unwrap_or_else(|| json_type_name(json_type_bit(v)));
            let text = truncate(text.trim(), 16);
            let text = if crate::mask::is_sensitive_looking(&text) {
                crate::mask::generic(&text)
            } else {
                text
            };
            seen.values.insert(format!("{text:?}"));
        }
    }
    if present {
        seen.present += 1;
    }
}

/// Whether a value at a deletion predicate's path can mean what the predicate tests: for a
/// flag (`truthy`), a plainly true or false value; for `equals`/`in`, a value of the same kind
/// (boolean, number or text) as some value it is compared with.
fn readable_by(p: &Predicate, v: &Value) -> bool {
    use crate::normalize::predicate::Test;
    fn kind(v: &Value) -> u8 {
        match v {
            Value::Bool(_) => 1,
            Value::String(s)
                if matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "false") =>
            {
                1
            }
            Value::Number(_) => 2,
            Value::String(s) if s.trim().parse::<f64>().is_ok() => 2,
            _ => 4,
        }
    }
    match p {
        Predicate::Leaf(_, Test::Truthy(_)) => predicate::is_truthy(v) || predicate::is_falsy(v),
        Predicate::Leaf(_, Test::Equals(w)) => kind(w) == kind(v),
        Predicate::Leaf(_, Test::In(ws)) => ws.iter().any(|w| kind(w) == kind(v)),
        Predicate::Leaf(..) => true,
        Predicate::Any(ps) | Predicate::All(ps) => ps.iter().any(|q| readable_by(q, v)),
        Predicate::Not(q) => readable_by(q, v),
    }
}

fn never_path() -> FieldPath {
    FieldPath::never()
}

fn never_paths() -> FieldPaths {
    FieldPaths::one(FieldPath::never())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(stream_extra: &str, fields: &str) -> (Config, StreamConfig) {
        let text = format!(
            r#"
[platform]
url = "http://127.0.0.1:9/e"
[code_tables.sex]
"M" = "1"
"F" = "2"
[code_tables.kzt]
"正常" = "active"
"挂失" = "lost"
"注销" = "closed"
[[sources]]
name = "s"
base_url = "http://127.0.0.1:9"
[[sources.streams]]
name = "t"
entity = "card_account"
path = "/x"
key = "kh"
mode = "full_refresh"
pagination = {{ type = "none" }}
{stream_extra}
[sources.streams.fields]
card_no = "kh"
{fields}
"#
        );
        let c = Config::from_toml(&text, std::path::Path::new("t.toml")).unwrap();
        let stream = c.sources[0].streams[0].clone();
        (c, stream)
    }

    fn mapped(m: &Mapping, raw: &Value) -> (Box<NormalizedRecord>, bool) {
        match m.apply(raw) {
            Mapped::Ok(r, d) => (r, d),
            Mapped::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }

    #[test]
    fn fallback_paths_and_code_tables_on_person_fields() {
        let (c, t) = config(
            "",
            r#"name = "xm"
phone = ["mobile", "telecom[system=phone].value"]
gender = { path = "xb", map = "sex" }
card_status = { path = "kzt", map = "kzt" }"#,
        );
        let m = Mapping::compile(&c, &t);
        let (r, _) = mapped(
            &m,
            &json!({"kh": "1", "xm": "张三", "mobile": "", "telecom": [{"system": "phone", "value": "13800138000"}], "xb": "F", "kzt": "挂失"}),
        );
        assert_eq!(r.person.phone.as_deref(), Some("13800138000"));
        assert_eq!(
            r.person.gender,
            Some(2),
            "the code table applies to a person field"
        );
        assert_eq!(r.fields["card_status"].as_text(), "lost");
        let (r, _) = mapped(
            &m,
            &json!({"kh": "2", "xm": "李四", "mobile": "13900139000", "xb": "X"}),
        );
        assert_eq!(r.person.phone.as_deref(), Some("13900139000"));
        assert_eq!(r.person.gender, None);
        assert_eq!(r.field_rejects[0].reason, RejectReason::CodeUnknown);
    }

    #[test]
    fn status_values_and_fhir_active_mark_deletions_and_skip_ignores() {
        let (c, t) = config(
            r#"deleted_when = { any = [ { path = "zt", in = ["注销"] }, { path = "active", equals = false } ] }
skip_when = { path = "xm", contains = "测试" }"#,
            r#"name = "xm"
phone = "sjhm""#,
        );
        let m = Mapping::compile(&c, &t);
        let rec = |zt: &str| json!({"kh": "1", "xm": "张三", "sjhm": "13800138000", "zt": zt});
        assert!(!mapped(&m, &rec("正常")).1);
        assert!(!mapped(&m, &rec("挂失")).1);
        assert!(mapped(&m, &rec("注销")).1);
        assert!(
            mapped(
                &m,
                &json!({"kh": "2", "xm": "王五", "sjhm": "13800138001", "active": false})
            )
            .1
        );
        assert!(
            !mapped(
                &m,
                &json!({"kh": "3", "xm": "王六", "sjhm": "13800138002", "active": true})
            )
            .1
        );
        assert!(m.skips(&json!({"kh": "4", "xm": "测试账户"})));
        assert!(!m.skips(&rec("正常")));
    }

    #[test]
    fn a_flag_that_never_matches_status_values_is_reported_once_with_the_values() {
        // `deleted_flag` pointed at a status field: 正常/挂失/注销 are no flag values.
        let (c, t) = config(
            r#"deleted_flag = "zt""#,
            r#"name = "xm"
phone = "sjhm""#,
        );
        let m = Mapping::compile(&c, &t);
        let mut profile = FieldProfile::default();
        for (i, zt) in ["正常", "挂失", "注销", "正常"].iter().enumerate() {
            let raw = json!({"kh": i.to_string(), "xm": "张三", "sjhm": "13800138000", "zt": zt});
            m.observe(&raw, &mut profile);
            assert!(!mapped(&m, &raw).1);
        }
        let w = m.deletion_warning(&profile).expect("a warning");
        assert!(w.contains("\"注销\"") && w.contains("\"正常\""), "{w}");
        assert!(w.contains("deleted_when = { path = \"zt\", in = ["), "{w}");
        // A real flag that is simply never set says nothing.
        let (c, t) = config(
            r#"deleted_flag = "scbz""#,
            r#"name = "xm"
phone = "sjhm""#,
        );
        let m = Mapping::compile(&c, &t);
        let mut profile = FieldProfile::default();
        m.observe(&json!({"kh": "1", "scbz": "0"}), &mut profile);
        m.observe(&json!({"kh": "2", "scbz": 0}), &mut profile);
        assert_eq!(m.deletion_warning(&profile), None);
        // `active == false` against 0/1: it can never match.
        let (c, t) = config(
            r#"deleted_when = { path = "active", equals = false }"#,
            r#"name = "xm"
phone = "sjhm""#,
        );
        let m = Mapping::compile(&c, &t);
        let mut profile = FieldProfile::default();
        m.observe(&json!({"kh": "1", "active": 0}), &mut profile);
        m.observe(&json!({"kh": "2", "active": 1}), &mut profile);
        assert!(m.deletion_warning(&profile).is_some());
        // Values that look personal are masked.
        let (c, t) = config(
            r#"deleted_flag = "zt""#,
            r#"name = "xm"
phone = "sjhm""#,
        );
        let m = Mapping::compile(&c, &t);
        let mut profile = FieldProfile::default();
        m.observe(&json!({"kh": "1", "zt": "13800138000"}), &mut profile);
        let w = m.deletion_warning(&profile).unwrap();
        assert!(!w.contains("13800138000"), "{w}");
    }

    #[test]
    fn hours_are_exact_minutes() {
        assert_eq!(hours_to_minutes("2.5").unwrap(), 150);
        assert_eq!(hours_to_minutes("0.25").unwrap(), 15);
        assert_eq!(hours_to_minutes("3").unwrap(), 180);
    }
}
