//! The declarative field mapping: applies a stream's `fields` table to one raw vendor record
//! and yields a [`NormalizedRecord`], or the reason the record is quarantined whole.
//!
//! Paths are compiled once per stream. A path is a JSON pointer (`/data/xm`) or dotted
//! (`name.0.text`); a segment may select the first array element with a matching member:
//! `identifier[system=urn:oid:2.16.156.10011.1.1].value` (the FHIR way of naming an ID).

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde_json::Value;

use crate::config::{Config, FieldSpec, StreamConfig};
use crate::model::{
    EntityKind, FieldReject, FieldType, FieldValue, NormalizedRecord, PersonFields, Reject,
    RejectReason,
};
use crate::normalize::{datetime, gender, id_number, money, name, phone, text};

/// One compiled path segment.
#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
    /// First element of an array whose member `.0` equals `.1`.
    Filter(String, String),
}

/// A compiled field path.
#[derive(Debug, Clone)]
pub struct FieldPath {
    segments: Vec<Segment>,
    text: String,
}

impl FieldPath {
    pub fn parse(path: &str) -> FieldPath {
        let text = path.to_string();
        let mut segments = Vec::new();
        let parts: Vec<String> = if let Some(p) = path.strip_prefix('/') {
            p.split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect()
        } else {
            split_dotted(path)
        };
        for part in parts {
            if let Some((key, rest)) = part.split_once('[') {
                if let Some((k, v)) = rest.trim_end_matches(']').split_once('=') {
                    if !key.is_empty() {
                        segments.push(Segment::Key(key.to_string()));
                    }
                    segments.push(Segment::Filter(k.to_string(), v.to_string()));
                    continue;
                }
            }
            match part.parse::<usize>() {
                Ok(i) => segments.push(Segment::Index(i)),
                Err(_) => segments.push(Segment::Key(part)),
            }
        }
        FieldPath { segments, text }
    }

    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut v = value;
        for seg in &self.segments {
            v = match seg {
                Segment::Key(k) => match v {
                    Value::Object(m) => m.get(k)?,
                    _ => return None,
                },
                Segment::Index(i) => match v {
                    Value::Array(a) => a.get(*i)?,
                    Value::Object(m) => m.get(&i.to_string())?,
                    _ => return None,
                },
                Segment::Filter(k, want) => match v {
                    Value::Array(a) => a
                        .iter()
                        .find(|e| e.get(k).and_then(Value::as_str) == Some(want.as_str()))?,
                    _ => return None,
                },
            };
        }
        Some(v)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Splits on dots that are not inside `[...]` (filter values may hold dots, as OIDs do).
fn split_dotted(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                depth -= 1;
                cur.push(c)
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// What a run saw of each mapped field (see [`Mapping::observe`]).
#[derive(Debug, Clone, Default)]
pub struct FieldProfile {
    pub records: u64,
    /// Canonical field names, in the order of `fields`.
    pub names: Vec<String>,
    pub fields: Vec<FieldSeen>,
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
    path: FieldPath,
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
    deleted_flag: Option<FieldPath>,
    tz: Tz,
}

/// The outcome of mapping one record.
pub enum Mapped {
    Ok(Box<NormalizedRecord>, bool),
    Rejected(RecordReject),
}

impl Mapping {
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
                    path: FieldPath::parse(&spec.path),
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
        Mapping {
            entity: stream.entity,
            key: stream
                .key_paths()
                .into_iter()
                .map(FieldPath::parse)
                .collect(),
            fields,
            link_field: stream.link.as_ref().map(|l| l.field.clone()),
            cursor: stream
                .incremental
                .as_ref()
                .map(|i| (FieldPath::parse(&i.cursor_field), i.cursor_format.clone())),
            deleted_flag: stream.deleted_flag.as_deref().map(FieldPath::parse),
            tz,
        }
    }

    /// Names of the mapped canonical fields, in the order [`Mapping::observe`] reports them.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// Notes, per mapped field, whether the raw record has it and as which JSON type; the
    /// pipeline compares a run's profile with earlier runs to spot schema drift.
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
                                f.path.as_str()
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
            let result = match f.ty {
                FieldKind::Person => self.person_field(&mut rec.person, &f.name, &value, &f.spec),
                FieldKind::Domain(ty) => self.domain_value(ty, &value, f).map(|v| {
                    rec.fields.insert(f.name.clone(), v);
                }),
            };
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
        let deleted = self
            .deleted_flag
            .as_ref()
            .and_then(|p| p.get(raw))
            .map(is_truthy)
            .unwrap_or(false);
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
            "gender" => {
                let mapped = map_code(value, spec, None)?;
                person.gender = Some(gender::normalize(&mapped)?.code())
            }
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
        let value = map_code(value, &f.spec, f.code_table.as_ref())?;
        Ok(match ty {
            FieldType::Text => FieldValue::Text(text::clean(&value)),
            FieldType::Integer => FieldValue::Int(
                text::clean(&value)
                    .parse::<i64>()
                    .map_err(|_| Reject::new(RejectReason::NumberInvalid, "not a whole number"))?,
            ),
            FieldType::Money => {
                let unit = match f.spec.unit.as_deref() {
                    Some("yuan") => money::MoneyUnit::Yuan,
                    _ => money::MoneyUnit::Fen,
                };
                FieldValue::Int(money::to_fen(&value, unit)?)
            }
            FieldType::Date => FieldValue::Text(
                datetime::parse_date(&value, f.spec.format.as_deref())?.to_string(),
            ),
            FieldType::DateTime => FieldValue::Text(
                datetime::parse_datetime(&value, f.spec.format.as_deref(), self.tz)?.to_rfc3339(),
            ),
            FieldType::Minutes => FieldValue::Int(match f.spec.unit.as_deref() {
                Some("hours") => hours_to_minutes(&value)?,
                _ => text::clean(&value)
                    .parse::<i64>()
                    .map_err(|_| Reject::new(RejectReason::NumberInvalid, "not whole minutes"))?,
            }),
        })
    }
}

fn map_code(
    value: &str,
    spec: &FieldSpec,
    table: Option<&BTreeMap<String, String>>,
) -> Result<String, Reject> {
    match (table, &spec.map) {
        (Some(t), Some(name)) => {
            let key = text::clean(value);
            t.get(&key).cloned().ok_or_else(|| {
                Reject::new(
                    RejectReason::CodeUnknown,
                    format!("code {key:?} is not in code table {name:?}"),
                )
            })
        }
        _ => Ok(value.to_string()),
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

/// A JSON scalar as text; `None` for objects and arrays.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        _ => None,
    }
}

fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
        Value::String(s) => matches!(
            s.trim().to_lowercase().as_str(),
            "1" | "true" | "y" | "yes" | "deleted" | "是"
        ),
        _ => false,
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_pointer_dotted_and_filter() {
        let v = json!({"identifier": [{"system": "a", "value": "1"}, {"system": "urn:oid:2.16.156", "value": "2"}], "name": [{"text": "张三"}]});
        assert_eq!(
            FieldPath::parse("/name/0/text").get(&v),
            Some(&json!("张三"))
        );
        assert_eq!(
            FieldPath::parse("name.0.text").get(&v),
            Some(&json!("张三"))
        );
        assert_eq!(
            FieldPath::parse("identifier[system=urn:oid:2.16.156].value").get(&v),
            Some(&json!("2"))
        );
        assert_eq!(
            FieldPath::parse("identifier[system=zzz].value").get(&v),
            None
        );
    }

    #[test]
    fn hours_are_exact_minutes() {
        assert_eq!(hours_to_minutes("2.5").unwrap(), 150);
        assert_eq!(hours_to_minutes("0.25").unwrap(), 15);
        assert_eq!(hours_to_minutes("3").unwrap(), 180);
    }
}
