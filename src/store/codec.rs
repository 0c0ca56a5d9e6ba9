//! The one seam through which personal data enters and leaves the store's columns.
//!
//! Every column that can hold personal data (raw payloads, normalized records, golden person
//! fields, outbox payloads, quarantined raw values) is written with [`Codec::seal`] and read with
//! [`Codec::open`]; every match key (ID number, name + phone) is written with [`Codec::blind`],
//! so lookups are equality on the blinded value.
//!
//! `Plain` stores values as they are; `Sealed` encrypts each value (SM4-GCM or AES-256-GCM, see
//! [`crate::crypto`]) and blinds match keys with a keyed hash. The store remembers which key
//! is active (table `security_keys`), so a store cannot be opened with the wrong key or none,
//! and [`rotate`] re-encrypts a live store in small transactions.

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::config::Config;
use crate::crypto::{KeyError, OpenProblem, StoreKey};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a stored value cannot be decrypted ({0}); is the right key file configured?")]
    Open(String),
}

/// Why a store could not be opened with the configured keys, or a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store {path} is encrypted (key id {key_id}) but no key is configured: set [security] key_file to the store's key file")]
    NoKey { path: String, key_id: String },
    #[error("store {path} is encrypted with key id {store_key}, but [security] key_file holds key id {config_key}: configure the store's key (after `rotate-key`, the new one)")]
    WrongKey {
        path: String,
        store_key: String,
        config_key: String,
    },
    #[error("store {path} holds unencrypted personal data but [security] asks for encryption: encrypt it with `community-sync rotate-key --new-key KEYFILE` (it reads the store as it is), then configure that key")]
    PlainData { path: String },
    #[error("store {path}: a key rotation to key id {key_id} is unfinished: run `community-sync rotate-key --new-key FILE` again with that key to finish it")]
    Rotating { path: String, key_id: String },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("rotate-key: {0}")]
    Rotate(String),
}

/// The configured keys: the active one seals and blinds, previous ones only open.
#[derive(Debug)]
pub struct Keyring {
    active: StoreKey,
    previous: Vec<StoreKey>,
    /// Text values are taken as not yet encrypted (only while rotating a plain store).
    accept_plaintext: bool,
}

impl Keyring {
    pub fn new(active: StoreKey, previous: Vec<StoreKey>) -> Keyring {
        Keyring {
            active,
            previous,
            accept_plaintext: false,
        }
    }

    pub fn active(&self) -> &StoreKey {
        &self.active
    }

    fn find(&self, id: &[u8]) -> Option<&StoreKey> {
        std::iter::once(&self.active)
            .chain(self.previous.iter())
            .find(|k| k.id() == id)
    }
}

/// How personal data is stored.
#[derive(Debug, Clone, Default)]
pub enum Codec {
    /// Stored as is (tests, and deployments that rely on disk encryption).
    #[default]
    Plain,
    /// Encrypted per value, match keys blinded with a keyed hash.
    Sealed(Arc<Keyring>),
}

impl Codec {
    /// The codec `[security]` asks for, with its keys loaded (key files relative to the config).
    pub fn from_config(config: &Config) -> Result<Codec, KeyError> {
        let s = &config.security;
        if !s.encrypt_enabled() {
            return Ok(Codec::Plain);
        }
        let base = config.path.parent().unwrap_or(Path::new("."));
        let Some(file) = &s.key_file else {
            return Ok(Codec::Plain);
        };
        let active = StoreKey::load(file, base, s.algorithm, s.blind_algorithm)?;
        let mut previous = Vec::new();
        for f in &s.previous_key_files {
            previous.push(StoreKey::load(f, base, s.algorithm, s.blind_algorithm)?);
        }
        Ok(Codec::Sealed(Arc::new(Keyring::new(active, previous))))
    }

    /// Whether `other` is this very codec (a clone of it): what one seals, the other would.
    pub fn is(&self, other: &Codec) -> bool {
        match (self, other) {
            (Codec::Plain, Codec::Plain) => true,
            (Codec::Sealed(a), Codec::Sealed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The active key (None for `Plain`).
    pub fn active_key(&self) -> Option<&StoreKey> {
        match self {
            Codec::Plain => None,
            Codec::Sealed(k) => Some(&k.active),
        }
    }

    /// The stored form of a sensitive text.
    pub fn seal(&self, plaintext: &str) -> ToSqlOutput<'static> {
        match self {
            Codec::Plain => ToSqlOutput::Owned(Value::Text(plaintext.to_string())),
            Codec::Sealed(k) => {
                ToSqlOutput::Owned(Value::Blob(k.active.seal(plaintext.as_bytes())))
            }
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
            (Codec::Sealed(k), ValueRef::Blob(b)) => {
                let id = crate::crypto::sealed_key_id(b)
                    .ok_or_else(|| CodecError::Open("a stored value is not in the sealed format".into()))?;
                let key = k.find(&id).ok_or_else(|| {
                    CodecError::Open(format!(
                        "it is sealed under key id {}, which is neither [security] key_file nor in previous_key_files",
                        hex::encode(id)
                    ))
                })?;
                let bytes = key.open(b).map_err(|p| {
                    CodecError::Open(match p {
                        OpenProblem::Tampered => "authentication failed: the value was modified".into(),
                        OpenProblem::Malformed => "not in the sealed format".into(),
                        OpenProblem::UnknownKey(id) => format!("unknown key id {id}"),
                    })
                })?;
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| CodecError::Open("decrypted value is not UTF-8".into()))
            }
            (Codec::Sealed(k), ValueRef::Text(t)) if k.accept_plaintext => {
                Ok(Some(String::from_utf8_lossy(t).into_owned()))
            }
            (Codec::Sealed(_), ValueRef::Text(_)) => Err(CodecError::Open(
                "a value is stored unencrypted in an encrypted store; run `community-sync rotate-key` to encrypt it".into(),
            )),
            (_, other) => Ok(Some(match other {
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
                _ => String::new(),
            })),
        }
    }

    /// The lookup form of a match key: equal inputs give equal outputs, and nothing else can
    /// be learned from it once keyed.
    pub fn blind(&self, kind: &str, value: &str) -> String {
        match self {
            Codec::Plain => value.to_string(),
            Codec::Sealed(k) => k.active.blind(kind, value),
        }
    }
}

impl From<CodecError> for rusqlite::Error {
    fn from(e: CodecError) -> Self {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    }
}

/// Columns that hold sealed personal data, per table (fixed names, never from input).
pub const SEALED_COLUMNS: &[(&str, &[&str])] = &[
    ("record_payloads", &["raw", "normalized"]),
    ("rejects", &["raw_value"]),
    (
        "persons",
        &[
            "name",
            "id_number",
            "gender",
            "birth_date",
            "phone",
            "address",
            "community",
        ],
    ),
    ("outbox_payloads", &["payload"]),
];

fn store_state(store: &Store) -> Result<(Option<String>, Option<String>), SecurityError> {
    let c = store.conn();
    let active = c
        .query_row(
            "SELECT key_id FROM security_keys WHERE state = 'active'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let rotating = c
        .query_row(
            "SELECT key_id FROM security_keys WHERE state = 'rotating'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok((active, rotating))
}

fn holds_personal_data(store: &Store) -> Result<bool, SecurityError> {
    let c = store.conn();
    let n: i64 = c.query_row(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM source_records LIMIT 1))
              + (SELECT count(*) FROM (SELECT 1 FROM persons LIMIT 1))
              + (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 1))",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

impl Store {
    /// Opens the store at `[store] path` with the codec `[security]` asks for, checking that
    /// the configured key is the store's key (a fresh store records it).
    pub fn open_configured(config: &Config) -> Result<Store, SecurityError> {
        let codec = Codec::from_config(config)?;
        if matches!(codec, Codec::Plain) {
            tracing::warn!(
                store = %config.store.path.display(),
                "personal data in the store is NOT encrypted: set [security] key_file (see docs/security.md)"
            );
        }
        let mut store = Store::open(&config.store.path)?;
        attach(&mut store, codec)?;
        Ok(store)
    }
}

/// Checks `codec` against the key the store records and installs it.
pub fn attach(store: &mut Store, codec: Codec) -> Result<(), SecurityError> {
    let path = store.path().display().to_string();
    let (active, rotating) = store_state(store)?;
    match codec.active_key() {
        None => {
            if let Some(key_id) = active {
                return Err(SecurityError::NoKey { path, key_id });
            }
        }
        Some(key) => {
            let id = key.id_hex();
            match active {
                Some(a) if a == id => {
                    if let Some(r) = rotating {
                        return Err(SecurityError::Rotating { path, key_id: r });
                    }
                    let stale: i64 = store.conn().query_row(
                        "SELECT count(*) FROM source_records
                         WHERE (id_key IS NOT NULL AND (id_key < ?1 OR id_key >= ?2))
                            OR (np_key IS NOT NULL AND (np_key < ?1 OR np_key >= ?2))",
                        params![format!("{id}:"), format!("{id};")],
                        |r| r.get(0),
                    )?;
                    if stale > 0 {
                        tracing::warn!(
                            records = stale,
                            "records were written under an older key after the last rotation; run `community-sync rotate-key --new-key <key_file>` again so they match"
                        );
                    }
                }
                Some(a) => {
                    if rotating.as_deref() == Some(id.as_str()) {
                        return Err(SecurityError::Rotating { path, key_id: id });
                    }
                    return Err(SecurityError::WrongKey {
                        path,
                        store_key: a,
                        config_key: id,
                    });
                }
                None => {
                    if holds_personal_data(store)? {
                        return Err(SecurityError::PlainData { path });
                    }
                    store.conn().execute(
                        "INSERT OR REPLACE INTO security_keys (key_id, algorithm, blind_algorithm, state, added_at)
                         VALUES (?1, ?2, ?3, 'active', ?4)",
                        params![id, key.algorithm().as_str(), key.blind_algorithm().as_str(), super::now_text()],
                    )?;
                }
            }
        }
    }
    store.set_codec(codec);
    Ok(())
}

/// What a rotation did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RotateReport {
    pub old_key: Option<String>,
    pub new_key: String,
    pub values_resealed: u64,
    pub rows_rewritten: u64,
    pub blinds_recomputed: u64,
    pub passes: u32,
}

/// Re-encrypts every sealed column and recomputes every blinded match key under `new_key`,
/// `chunk` rows per transaction, so a daemon may keep writing meanwhile (WAL). `old` holds
/// the keys the store's values are under now (`None`: the store is unencrypted). Repeats
/// until a pass finds nothing left under another key, then records `new_key` as the store's
/// active key in the transaction of that last check.
pub fn rotate(
    store: &mut Store,
    old: Option<Keyring>,
    new_key: StoreKey,
    chunk: usize,
) -> Result<RotateReport, SecurityError> {
    let new_id = new_key.id_hex();
    let (active, _) = store_state(store)?;
    let old_ids: Vec<String> = old
        .as_ref()
        .map(|k| {
            std::iter::once(&k.active)
                .chain(k.previous.iter())
                .map(|k| k.id_hex())
                .collect()
        })
        .unwrap_or_default();
    match (&active, &old) {
        (Some(a), None) if *a != new_id => {
            return Err(SecurityError::NoKey {
                path: store.path().display().to_string(),
                key_id: a.clone(),
            })
        }
        (Some(a), Some(_)) if *a != new_id && !old_ids.contains(a) => {
            return Err(SecurityError::WrongKey {
                path: store.path().display().to_string(),
                store_key: a.clone(),
                config_key: old_ids.join(", "),
            })
        }
        _ => {}
    }
    let mut previous: Vec<StoreKey> = Vec::new();
    if let Some(o) = old {
        previous.push(o.active);
        previous.extend(o.previous);
    }
    let ring = Keyring {
        active: new_key,
        previous,
        accept_plaintext: true,
    };
    let reader = Codec::Sealed(Arc::new(ring));
    let mut report = RotateReport {
        old_key: active.clone(),
        new_key: new_id.clone(),
        ..RotateReport::default()
    };
    store.conn().execute(
        "INSERT INTO security_keys (key_id, algorithm, blind_algorithm, state, added_at)
         VALUES (?1, ?2, ?3, 'rotating', ?4)
         ON CONFLICT (key_id) DO UPDATE SET state = CASE state WHEN 'active' THEN 'active' ELSE 'rotating' END",
        params![
            new_id,
            reader.active_key().map(|k| k.algorithm().as_str()),
            reader.active_key().map(|k| k.blind_algorithm().as_str()),
            super::now_text()
        ],
    )?;
    let chunk = chunk.max(1);
    loop {
        report.passes += 1;
        let mut changed = 0u64;
        for (table, cols) in SEALED_COLUMNS {
            changed += rotate_table(store, &reader, table, cols, chunk, &mut report)?;
        }
        if changed == 0 {
            let now = super::now_text();
            let tx = store.conn_mut().transaction()?;
            // Nothing was left in the last pass; close the rotation atomically.
            tx.execute(
                "UPDATE security_keys SET state = 'retired', retired_at = ?2 WHERE key_id != ?1 AND state != 'retired'",
                params![new_id, now],
            )?;
            tx.execute(
                "UPDATE security_keys SET state = 'active' WHERE key_id = ?1",
                [&new_id],
            )?;
            tx.commit()?;
            break;
        }
        if report.passes > 20 {
            return Err(SecurityError::Rotate(
                "rows keep being written under the old key after 20 passes; restart the daemon with the new key_file (old key in previous_key_files) and run rotate-key again".into(),
            ));
        }
    }
    store.set_codec(Codec::Sealed(match reader {
        Codec::Sealed(r) => {
            let r = Arc::try_unwrap(r)
                .map_err(|_| SecurityError::Rotate("keyring still shared".into()))?;
            Arc::new(Keyring {
                accept_plaintext: false,
                ..r
            })
        }
        Codec::Plain => {
            return Err(SecurityError::Rotate(
                "internal: reader is not sealed".into(),
            ))
        }
    }));
    Ok(report)
}

fn under_key(v: &ValueRef<'_>, id: [u8; 4]) -> bool {
    match v {
        ValueRef::Null => true,
        ValueRef::Blob(b) => crate::crypto::sealed_key_id(b) == Some(id),
        _ => false,
    }
}

fn rotate_table(
    store: &mut Store,
    reader: &Codec,
    table: &str,
    cols: &[&str],
    chunk: usize,
    report: &mut RotateReport,
) -> Result<u64, SecurityError> {
    let Some(key) = reader.active_key() else {
        return Ok(0);
    };
    let id = key.id();
    let prefix = format!("{}:", key.id_hex());
    // The payloads' match keys live beside them in source_records and are recomputed with
    // the new key in the same transaction.
    let is_records = table == "record_payloads";
    let (extra, from) = if is_records {
        (
            ", s.id_key, s.np_key",
            "record_payloads JOIN source_records s USING (id)",
        )
    } else {
        ("", table)
    };
    // Table and column names come from SEALED_COLUMNS, a fixed list.
    let select = format!(
        "SELECT id, {}{extra} FROM {from} WHERE id > ?1 ORDER BY id LIMIT ?2",
        cols.join(", ")
    );
    let sets: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect();
    let update = format!("UPDATE {table} SET {} WHERE id = ?1", sets.join(", "));
    let update_blinds = "UPDATE source_records SET id_key = ?2, np_key = ?3 WHERE id = ?1";
    let mut last = 0i64;
    let mut changed = 0u64;
    loop {
        let tx = store.conn_mut().transaction()?;
        let mut rows_seen = 0usize;
        {
            let mut sel = tx.prepare(&select)?;
            let mut upd = tx.prepare(&update)?;
            let mut upd_blinds = tx.prepare(update_blinds)?;
            let mut rows = sel.query(params![last, chunk as i64])?;
            while let Some(r) = rows.next()? {
                rows_seen += 1;
                let rid: i64 = r.get(0)?;
                last = rid;
                let mut stale = false;
                for i in 0..cols.len() {
                    if !under_key(&r.get_ref(i + 1)?, id) {
                        stale = true;
                    }
                }
                let (idk, npk): (Option<String>, Option<String>) = if is_records {
                    (r.get(cols.len() + 1)?, r.get(cols.len() + 2)?)
                } else {
                    (None, None)
                };
                if idk.as_deref().is_some_and(|k| !k.starts_with(&prefix))
                    || npk.as_deref().is_some_and(|k| !k.starts_with(&prefix))
                {
                    stale = true;
                }
                if !stale {
                    continue;
                }
                let mut values: Vec<Option<String>> = Vec::with_capacity(cols.len());
                for i in 0..cols.len() {
                    values.push(
                        reader.open(r.get_ref(i + 1)?).map_err(|e| {
                            SecurityError::Rotate(format!("{table} row {rid}: {e}"))
                        })?,
                    );
                }
                let mut bound: Vec<ToSqlOutput<'static>> =
                    vec![ToSqlOutput::Owned(Value::Integer(rid))];
                for v in &values {
                    if v.is_some() {
                        report.values_resealed += 1;
                    }
                    bound.push(reader.seal_opt(v.as_deref()));
                }
                if is_records {
                    let (new_id_key, new_np_key) =
                        blinds_of(reader, values.get(1).cloned().flatten().as_deref());
                    if idk.is_some() || npk.is_some() {
                        report.blinds_recomputed += 1;
                    }
                    upd_blinds.execute(params![rid, new_id_key, new_np_key])?;
                }
                upd.execute(rusqlite::params_from_iter(bound.iter()))?;
                report.rows_rewritten += 1;
                changed += 1;
            }
        }
        tx.commit()?;
        if rows_seen < chunk {
            break;
        }
    }
    Ok(changed)
}

/// The match keys of a normalized record, exactly as the ingest computes them.
fn blinds_of(codec: &Codec, normalized: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(rec) =
        normalized.and_then(|n| serde_json::from_str::<crate::model::NormalizedRecord>(n).ok())
    else {
        return (None, None);
    };
    let p = &rec.person;
    (
        p.id_number.as_deref().map(|i| codec.blind("id", i)),
        match (&p.name, &p.phone) {
            (Some(n), Some(ph)) => Some(codec.blind("np", &format!("{n}|{ph}"))),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, BlindAlgorithm};

    fn ring(b: u8) -> Keyring {
        Keyring::new(
            StoreKey::from_bytes(&[b; 32], Algorithm::Sm4Gcm, BlindAlgorithm::HmacSm3),
            vec![],
        )
    }

    #[test]
    fn sealed_codec_round_trips_and_plain_cannot_read_it() {
        let c = Codec::Sealed(Arc::new(ring(1)));
        let ToSqlOutput::Owned(v) = c.seal("110101199003071234") else {
            panic!()
        };
        let Value::Blob(b) = &v else {
            panic!("sealed values are blobs")
        };
        assert_eq!(
            c.open(ValueRef::Blob(b)).unwrap().as_deref(),
            Some("110101199003071234")
        );
        assert!(Codec::Plain.open(ValueRef::Blob(b)).is_err());
        let other = Codec::Sealed(Arc::new(ring(2)));
        let e = other.open(ValueRef::Blob(b)).unwrap_err().to_string();
        assert!(e.contains("key id"), "{e}");
        assert!(
            c.open(ValueRef::Text(b"plain")).is_err(),
            "unencrypted text in an encrypted store is an error"
        );
        assert_eq!(c.blind("id", "a"), c.blind("id", "a"));
        assert_ne!(c.blind("id", "a"), "a");
    }

    #[test]
    fn store_remembers_its_key_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut s = Store::open(&path).unwrap();
        attach(&mut s, Codec::Sealed(Arc::new(ring(1)))).unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let e = attach(&mut s, Codec::Plain).unwrap_err();
        assert!(matches!(e, SecurityError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains("key_file"));
        let e = attach(&mut s, Codec::Sealed(Arc::new(ring(2)))).unwrap_err();
        assert!(matches!(e, SecurityError::WrongKey { .. }), "{e}");
        attach(&mut s, Codec::Sealed(Arc::new(ring(1)))).unwrap();
    }

    #[test]
    fn plain_store_with_data_is_not_silently_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = Store::open(&path).unwrap();
        s.conn()
            .execute(
                "INSERT INTO persons (version, name, created_at, updated_at) VALUES (1, '张三', 'x', 'x')",
                [],
            )
            .unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let e = attach(&mut s, Codec::Sealed(Arc::new(ring(1)))).unwrap_err();
        assert!(e.to_string().contains("rotate-key"), "{e}");
        // rotate-key encrypts it in place.
        let r = rotate(
            &mut s,
            None,
            StoreKey::from_bytes(&[1; 32], Algorithm::Sm4Gcm, BlindAlgorithm::HmacSm3),
            1,
        )
        .unwrap();
        assert_eq!(r.rows_rewritten, 1);
        let kind: String = s
            .conn()
            .query_row("SELECT typeof(name) FROM persons", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "blob");
        drop(s);
        let mut s = Store::open(&path).unwrap();
        attach(&mut s, Codec::Sealed(Arc::new(ring(1)))).unwrap();
        let name = s
            .conn()
            .query_row("SELECT name FROM persons", [], |r| {
                Ok(s.codec().open(r.get_ref(0)?)?)
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some("张三"));
    }
}
