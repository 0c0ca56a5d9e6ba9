//! The one seam through which personal data enters and leaves the store's columns.
//!
//! Every column that can hold personal data (raw payloads, normalized records, golden person
//! fields, outbox payloads, quarantined raw values) is written with [`Codec::seal`] and read with
//! [`Codec::open`]; every match key (ID number, name + phone) is written with [`Codec::blind`],
//! so lookups are equality on the blinded value. `Plain` stores values as they are; an
//! encrypting codec replaces it without touching the stages.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a stored value cannot be decrypted ({0}); is the right key file configured?")]
    Open(String),
}

/// How personal data is stored.
#[derive(Debug, Clone, Default)]
pub enum Codec {
    /// Stored as is (tests, and deployments that rely on disk encryption).
    #[default]
    Plain,
}

impl Codec {
    /// The stored form of a sensitive text.
    pub fn seal(&self, plaintext: &str) -> ToSqlOutput<'static> {
        match self {
            Codec::Plain => ToSqlOutput::Owned(Value::Text(plaintext.to_string())),
        }
    }

    /// Like [`Codec::seal`], passing `None` through.
    pub fn seal_opt(&self, plaintext: Option<&str>) -> ToSqlOutput<'static> {
        match plaintext {
            Some(p) => self.seal(p),
            None => ToSqlOutput::Owned(Value::Null),
        }
    }

    /// The text behind a stored value (`None` for NULL).
    pub fn open(&self, stored: ValueRef<'_>) -> Result<Option<String>, CodecError> {
        match (self, stored) {
            (_, ValueRef::Null) => Ok(None),
            (Codec::Plain, ValueRef::Text(t)) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
            (Codec::Plain, ValueRef::Blob(_)) => Err(CodecError::Open(
                "the store holds encrypted values but no key is configured".into(),
            )),
            (Codec::Plain, other) => Ok(Some(match other {
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
                _ => String::new(),
            })),
        }
    }

    /// The lookup form of a match key: equal inputs give equal outputs, and nothing else can
    /// be learned from it once keyed.
    pub fn blind(&self, kind: &str, value: &str) -> String {
        let _ = kind;
        match self {
            Codec::Plain => value.to_string(),
        }
    }
}

impl From<CodecError> for rusqlite::Error {
    fn from(e: CodecError) -> Self {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    }
}
