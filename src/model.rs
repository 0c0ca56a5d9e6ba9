//! The canonical data model every stage speaks.
//!
//! Sources deliver vendor JSON; `normalize` turns it into [`NormalizedRecord`]s; `store` keeps
//! them; `reconcile` folds them into golden persons and domain rows; `push` sends [`Event`]s.
//! Nothing in here does I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a stream's records describe. Decides which canonical fields are allowed and which
/// domain table the record lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A one-card account; carries the holder's person fields.
    CardAccount,
    /// A one-card transaction; links to its account by `card_no`.
    CardTransaction,
    /// A registered volunteer; carries person fields.
    Volunteer,
    /// One volunteer service (hours worked); links to the volunteer.
    VolunteerService,
    /// An elder enrolled in home care; carries person fields.
    Elder,
    /// One home elder-care service order; links to the elder.
    EldercareOrder,
    /// A patient of the community health service; carries person fields.
    Patient,
    /// One health follow-up visit; links to the patient.
    HealthFollowup,
}

impl EntityKind {
    pub const ALL: [EntityKind; 8] = [
        EntityKind::CardAccount,
        EntityKind::CardTransaction,
        EntityKind::Volunteer,
        EntityKind::VolunteerService,
        EntityKind::Elder,
        EntityKind::EldercareOrder,
        EntityKind::Patient,
        EntityKind::HealthFollowup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::CardAccount => "card_account",
            EntityKind::CardTransaction => "card_transaction",
            EntityKind::Volunteer => "volunteer",
            EntityKind::VolunteerService => "volunteer_service",
            EntityKind::Elder => "elder",
            EntityKind::EldercareOrder => "eldercare_order",
            EntityKind::Patient => "patient",
            EntityKind::HealthFollowup => "health_followup",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Records of this kind describe a person (and so take part in identity resolution).
    pub fn carries_person(self) -> bool {
        matches!(
            self,
            EntityKind::CardAccount
                | EntityKind::Volunteer
                | EntityKind::Elder
                | EntityKind::Patient
        )
    }

    /// The canonical domain fields a stream of this kind may map (besides the person fields).
    pub fn domain_fields(self) -> &'static [DomainField] {
        use FieldType::*;
        match self {
            EntityKind::CardAccount => {
                const F: &[DomainField] = &[
                    df("card_no", Text),
                    df("balance_fen", Money),
                    df("card_status", Text),
                    df("opened_at", DateTime),
                ];
                F
            }
            EntityKind::CardTransaction => {
                const F: &[DomainField] = &[
                    df("card_no", Text),
                    df("amount_fen", Money),
                    df("occurred_at", DateTime),
                    df("merchant", Text),
                ];
                F
            }
            EntityKind::Volunteer => {
                const F: &[DomainField] = &[
                    df("volunteer_no", Text),
                    df("registered_at", DateTime),
                    df("volunteer_status", Text),
                ];
                F
            }
            EntityKind::VolunteerService => {
                const F: &[DomainField] = &[
                    df("volunteer_no", Text),
                    df("activity", Text),
                    df("service_date", Date),
                    df("minutes", Minutes),
                ];
                F
            }
            EntityKind::Elder => {
                const F: &[DomainField] = &[df("elder_no", Text), df("care_level", Integer)];
                F
            }
            EntityKind::EldercareOrder => {
                const F: &[DomainField] = &[
                    df("elder_no", Text),
                    df("service_type", Text),
                    df("amount_fen", Money),
                    df("served_at", DateTime),
                    df("order_status", Text),
                ];
                F
            }
            EntityKind::Patient => {
                const F: &[DomainField] = &[df("health_record_no", Text)];
                F
            }
            EntityKind::HealthFollowup => {
                const F: &[DomainField] = &[
                    df("patient_ref", Text),
                    df("followup_type", Text),
                    df("followup_date", Date),
                    df("systolic", Integer),
                    df("diastolic", Integer),
                ];
                F
            }
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a canonical field's raw value is cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Integer,
    /// Integer fen (1 yuan = 100 fen); never floating point.
    Money,
    /// ISO date (YYYY-MM-DD).
    Date,
    /// ISO 8601 date-time with offset, Asia/Shanghai unless the value carries one.
    DateTime,
    /// A duration in whole minutes (source may give hours as a decimal).
    Minutes,
}

#[derive(Debug, Clone, Copy)]
pub struct DomainField {
    pub name: &'static str,
    pub ty: FieldType,
}

/// A domain field, written short in the tables below.
const fn df(name: &'static str, ty: FieldType) -> DomainField {
    DomainField { name, ty }
}

/// The person fields a record may carry. Names of the canonical person fields in config.
pub const PERSON_FIELDS: [&str; 7] = [
    "name",
    "id_number",
    "gender",
    "birth_date",
    "phone",
    "address",
    "community",
];

/// GB/T 2261.1-2003 human sex codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Gender {
    /// 0 未知的性别
    Unknown = 0,
    /// 1 男性
    Male = 1,
    /// 2 女性
    Female = 2,
    /// 9 未说明的性别
    Unstated = 9,
}

impl Gender {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Gender> {
        match code {
            0 => Some(Gender::Unknown),
            1 => Some(Gender::Male),
            2 => Some(Gender::Female),
            9 => Some(Gender::Unstated),
            _ => None,
        }
    }
}

/// The person part of a normalized record. Every field is already clean.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 18-digit GB 11643 number, check digit verified, `X` upper-case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// GB/T 2261.1 code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<u8>,
    /// ISO date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// 11-digit mainland mobile, or a landline as `0791-86123456`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
}

impl PersonFields {
    pub fn is_empty(&self) -> bool {
        *self == PersonFields::default()
    }

    pub fn get(&self, field: &str) -> Option<String> {
        match field {
            "name" => self.name.clone(),
            "id_number" => self.id_number.clone(),
            "gender" => self.gender.map(|g| g.to_string()),
            "birth_date" => self.birth_date.clone(),
            "phone" => self.phone.clone(),
            "address" => self.address.clone(),
            "community" => self.community.clone(),
            _ => None,
        }
    }

    pub fn set(&mut self, field: &str, value: Option<String>) {
        match field {
            "name" => self.name = value,
            "id_number" => self.id_number = value,
            "gender" => self.gender = value.and_then(|v| v.parse().ok()),
            "birth_date" => self.birth_date = value,
            "phone" => self.phone = value,
            "address" => self.address = value,
            "community" => self.community = value,
            _ => {}
        }
    }
}

/// A domain field value after cleaning: a JSON integer or string in the stored form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Int(i64),
    Text(String),
}

/// By hand rather than `untagged`: that buffers each value and tries the variants in turn,
/// and every text field first failed as an integer, building an error message that was then
/// thrown away (~4 % of the activity phase's CPU, BENCHMARKS.md).
impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FieldValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FieldValue, E> {
                Ok(FieldValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FieldValue, E> {
                i64::try_from(v).map(FieldValue::Int).map_err(|_| {
                    E::invalid_value(serde::de::Unexpected::Unsigned(v), &"a 64-bit integer")
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldValue, E> {
                Ok(FieldValue::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FieldValue, E> {
                Ok(FieldValue::Text(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl FieldValue {
    pub fn as_text(&self) -> String {
        match self {
            FieldValue::Int(i) => i.to_string(),
            FieldValue::Text(s) => s.clone(),
        }
    }
}

/// One source record after normalisation: what the store keeps as the record's normalized
/// form and what reconcile reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedRecord {
    pub entity: EntityKind,
    /// Key of the record inside its (source, stream).
    pub source_key: String,
    #[serde(default, skip_serializing_if = "PersonFields::is_empty")]
    pub person: PersonFields,
    /// Canonical domain fields (see [`EntityKind::domain_fields`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldValue>,
    /// For activity records: the source key, in the linked stream, of the record that
    /// identifies the person (e.g. the card number of a transaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_ref: Option<String>,
    /// When the source last changed the record (ISO 8601), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Field-level problems that did not cost the record its place (bad optional field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_rejects: Vec<FieldReject>,
}

/// Why a record or a field was quarantined. The code is stable: operators filter on it and
/// the simulator's ground truth is expressed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RejectReason {
    /// ID number has the wrong length or characters.
    IdNumberFormat,
    /// ID number's ISO 7064 MOD 11-2 check digit does not match.
    IdNumberCheckDigit,
    /// ID number's birth date is not a real date, in the future or before 1900.
    IdNumberBirthDate,
    /// ID number's province prefix is not a Chinese province.
    IdNumberRegion,
    /// Phone is neither a mainland mobile nor a landline with area code.
    PhoneInvalid,
    /// A date or time could not be read.
    DateInvalid,
    /// A gender value is not one of the known spellings.
    GenderInvalid,
    /// A money amount could not be read exactly.
    MoneyInvalid,
    /// A number could not be read.
    NumberInvalid,
    /// A value is not in its configured code table.
    CodeUnknown,
    /// Neither an ID number nor a name with a phone: the record cannot be tied to a person.
    IdentityMissing,
    /// The record's key field is missing or empty.
    KeyMissing,
    /// The record is not a JSON object, or a field has an impossible shape.
    RecordMalformed,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::IdNumberFormat,
        RejectReason::IdNumberCheckDigit,
        RejectReason::IdNumberBirthDate,
        RejectReason::IdNumberRegion,
        RejectReason::PhoneInvalid,
        RejectReason::DateInvalid,
        RejectReason::GenderInvalid,
        RejectReason::MoneyInvalid,
        RejectReason::NumberInvalid,
        RejectReason::CodeUnknown,
        RejectReason::IdentityMissing,
        RejectReason::KeyMissing,
        RejectReason::RecordMalformed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RejectReason::IdNumberFormat => "id_number.format",
            RejectReason::IdNumberCheckDigit => "id_number.check_digit",
            RejectReason::IdNumberBirthDate => "id_number.birth_date",
            RejectReason::IdNumberRegion => "id_number.region",
            RejectReason::PhoneInvalid => "phone.invalid",
            RejectReason::DateInvalid => "date.invalid",
            RejectReason::GenderInvalid => "gender.invalid",
            RejectReason::MoneyInvalid => "money.invalid",
            RejectReason::NumberInvalid => "number.invalid",
            RejectReason::CodeUnknown => "code.unknown",
            RejectReason::IdentityMissing => "identity.missing",
            RejectReason::KeyMissing => "key.missing",
            RejectReason::RecordMalformed => "record.malformed",
        }
    }

    pub fn parse(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected value: the reason and a human explanation. `detail` never holds the full raw
/// value of a sensitive field (the raw value is stored separately, masked on display).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

impl std::error::Error for Reject {}

/// A field that was dropped from an otherwise good record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldReject {
    pub field: String,
    pub reason: RejectReason,
    pub detail: String,
    /// The raw value as received (sensitive: masked whenever shown).
    pub raw: String,
}

/// Operation of an outbox event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Upsert,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

/// One change announced to the platform (see docs/platform-api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `{entity}:{key}:{version}`: unique and stable, so a re-send is recognisable.
    pub event_id: String,
    /// `person` or an [`EntityKind`] name.
    pub entity: String,
    pub key: String,
    pub version: i64,
    pub op: Op,
    /// Fields whose value changed with this version.
    pub changed: Vec<String>,
    /// The full current record (`null` for deletions).
    pub record: Option<serde_json::Value>,
    pub emitted_at: String,
}

impl Event {
    pub fn new(
        entity: &str,
        key: &str,
        version: i64,
        op: Op,
        changed: Vec<String>,
        record: Option<serde_json::Value>,
    ) -> Event {
        Event {
            event_id: format!("{entity}:{key}:{version}"),
            entity: entity.to_string(),
            key: key.to_string(),
            version,
            op,
            changed,
            record,
            emitted_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FieldValue;

    #[test]
    fn field_values_read_back_as_written_and_anything_else_is_refused() {
        for v in [
            FieldValue::Int(-42),
            FieldValue::Int(i64::MAX),
            FieldValue::Text("42".into()),
            FieldValue::Text("社区卫生服务中心 \"东湖\"".into()),
        ] {
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(
                serde_json::from_str::<FieldValue>(&text).unwrap(),
                v,
                "{text}"
            );
        }
        // A string of digits stays text; a number stays a number.
        assert_eq!(
            serde_json::to_string(&FieldValue::Text("7".into())).unwrap(),
            "\"7\""
        );
        assert_eq!(serde_json::to_string(&FieldValue::Int(7)).unwrap(), "7");
        for bad in ["1.5", "true", "null", "[1]", "{}", "18446744073709551615"] {
            assert!(serde_json::from_str::<FieldValue>(bad).is_err(), "{bad}");
        }
    }
}
