//! The one seam through which personal data enters and leaves the store's columns.
//!
//! Every column that can hold personal data is listed once, in [`COLUMNS`]: the sealed ones
//! (raw payloads, normalized records, golden person fields, outbox payloads, quarantined raw
//! values, phone history, field-lock values) and the blinded ones (match keys and match
//! features, equality-only). A value is written with [`Codec::seal`] or [`Codec::blind`], which
//! take a [`SealedColumn`] / [`BlindColumn`] handle; the handles exist only as constants of that
//! list (the [`columns!`] macro makes both), so nothing can be sealed or blinded outside it, and
//! [`rotate`], which walks it, re-seals and re-blinds everything. Values are read with
//! [`Codec::open`].
//!
//! `Plain` stores values as they are; `Sealed` encrypts each value (AES-256-GCM or SM4-GCM, see
//! [`crate::crypto`]) and blinds match keys with a keyed hash. The store remembers which key
//! is active (table `security_keys`), so a store cannot be opened with the wrong key or none,
//! and [`rotate`] re-encrypts a store in one transaction.

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

    /// The stored form of a sensitive text for column `column`.
    pub fn seal(&self, column: SealedColumn, plaintext: &str) -> ToSqlOutput<'static> {
        // The column is not part of the stored format (values sealed before the handles open
        // unchanged); taking the handle is what ties every sealed write to COLUMNS.
        let _ = column;
        match self {
            Codec::Plain => ToSqlOutput::Owned(Value::Text(plaintext.to_string())),
            Codec::Sealed(k) => {
                ToSqlOutput::Owned(Value::Blob(k.active.seal(plaintext.as_bytes())))
            }
        }
    }

    /// Like [`Codec::seal`], passing `None` through.
    pub fn seal_opt(&self, column: SealedColumn, plaintext: Option<&str>) -> ToSqlOutput<'static> {
        match plaintext {
            Some(p) => self.seal(column, p),
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

    /// The lookup form of a match key for column `column`: equal inputs give equal outputs,
    /// and nothing else can be learned from it once keyed. The column's kind separates the
    /// domains (an ID number and a phone never blind alike).
    pub fn blind(&self, column: BlindColumn, value: &str) -> String {
        match self {
            Codec::Plain => value.to_string(),
            Codec::Sealed(k) => k.active.blind(column.kind, value),
        }
    }

    /// The audit chain's key, derived from the active store key (`None` for `Plain`).
    pub(crate) fn audit_key(&self) -> Option<(String, crate::crypto::AuditKey)> {
        self.active_key().map(|k| (k.id_hex(), k.audit_key()))
    }

    /// The audit key of key id `id`, active or previous.
    pub(crate) fn audit_key_of(&self, id: &str) -> Option<crate::crypto::AuditKey> {
        match self {
            Codec::Plain => None,
            Codec::Sealed(k) => std::iter::once(&k.active)
                .chain(k.previous.iter())
                .find(|k| k.id_hex() == id)
                .map(|k| k.audit_key()),
        }
    }
}

impl From<CodecError> for rusqlite::Error {
    fn from(e: CodecError) -> Self {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    }
}

/// A column holding sealed personal data: the only way to call [`Codec::seal`]. Made only by
/// [`columns!`], so every such column is in [`COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    table: &'static str,
    column: &'static str,
}

/// Where [`rotate`] finds the plaintext a blinded column was computed from (a keyed hash cannot
/// be re-keyed without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlindSource {
    /// The person fields of the record's normalized payload (`record_payloads.normalized` of
    /// the row's record), computed as the ingest and matching do ([`record_blinds`]).
    RecordPerson,
    /// A sealed column of the same row.
    Row(SealedColumn),
}

/// A column holding blinded (keyed-hash) match keys: the only way to call [`Codec::blind`].
/// Made only by [`columns!`], so every such column is in [`COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlindColumn {
    table: &'static str,
    column: &'static str,
    /// The keyed hash's domain label (columns of one kind hold comparable values).
    kind: &'static str,
    source: BlindSource,
}

impl SealedColumn {
    pub fn table(&self) -> &'static str {
        self.table
    }
    pub fn column(&self) -> &'static str {
        self.column
    }
}

impl BlindColumn {
    pub fn table(&self) -> &'static str {
        self.table
    }
    pub fn column(&self) -> &'static str {
        self.column
    }
    pub fn source(&self) -> BlindSource {
        self.source
    }
}

/// Every column that holds personal data, sealed or blinded (fixed names, never from input).
#[derive(Debug)]
pub struct Columns {
    pub sealed: &'static [SealedColumn],
    pub blinded: &'static [BlindColumn],
}

impl Columns {
    /// The tables with sealed columns, each once, in list order.
    pub fn sealed_tables(&self) -> Vec<&'static str> {
        let mut t: Vec<&'static str> = Vec::new();
        for c in self.sealed {
            if !t.contains(&c.table) {
                t.push(c.table);
            }
        }
        t
    }
}

/// Declares the column handles and [`COLUMNS`] from one list, so a handle cannot exist
/// without being in the list that [`rotate`] walks.
macro_rules! columns {
    (
        sealed { $( $(#[$sm:meta])* $s:ident = $st:literal . $sc:literal; )* }
        blinded { $( $(#[$bm:meta])* $b:ident = $bt:literal . $bc:literal, $kind:literal, $src:expr; )* }
    ) => {
        $( $(#[$sm])* pub const $s: SealedColumn = SealedColumn { table: $st, column: $sc }; )*
        $( $(#[$bm])* pub const $b: BlindColumn =
            BlindColumn { table: $bt, column: $bc, kind: $kind, source: $src }; )*
        /// The one list of columns holding personal data: [`rotate`] re-seals and re-blinds
        /// exactly these, and the handles [`Codec::seal`] / [`Codec::blind`] take are its
        /// entries.
        pub const COLUMNS: Columns = Columns {
            sealed: &[$($s),*],
            blinded: &[$($b),*],
        };
    };
}

columns! {
    sealed {
        /// The record as fetched.
        RECORD_RAW = "record_payloads"."raw";
        /// The normalized record (JSON).
        RECORD_NORMALIZED = "record_payloads"."normalized";
        /// A quarantined raw value.
        REJECT_RAW = "rejects"."raw_value";
        PERSON_NAME = "persons"."name";
        PERSON_ID_NUMBER = "persons"."id_number";
        PERSON_GENDER = "persons"."gender";
        PERSON_BIRTH_DATE = "persons"."birth_date";
        PERSON_PHONE = "persons"."phone";
        PERSON_ADDRESS = "persons"."address";
        PERSON_COMMUNITY = "persons"."community";
        /// The event sent to the platform.
        OUTBOX_PAYLOAD = "outbox_payloads"."payload";
        /// A phone a resident had.
        PHONE_HISTORY_PHONE = "phone_history"."phone";
        /// The value a reviewer locked a field to.
        FIELD_LOCK_VALUE = "field_locks"."value";
    }
    blinded {
        /// The ID number.
        RECORD_ID_KEY = "source_records"."id_key", "id", BlindSource::RecordPerson;
        /// Name and phone (`name|phone`).
        RECORD_NP_KEY = "source_records"."np_key", "np", BlindSource::RecordPerson;
        MATCH_NAME = "match_features"."name_k", "name", BlindSource::RecordPerson;
        MATCH_PINYIN = "match_features"."py_k", "pinyin", BlindSource::RecordPerson;
        MATCH_PHONE = "match_features"."phone_k", "phone", BlindSource::RecordPerson;
        MATCH_BIRTH = "match_features"."birth_k", "birth", BlindSource::RecordPerson;
        MATCH_BIRTH_SWAP = "match_features"."birth_swap_k", "birth", BlindSource::RecordPerson;
        /// Name syllables in sorted order.
        MATCH_SYLLABLES = "match_features"."syl_k", "pinyin", BlindSource::RecordPerson;
        /// The name with one character left out (several, space-joined), blinded as names
        /// so that a variant equals the `name_k` of the name it is.
        MATCH_NAME_EDITS = "match_features"."edit_k", "name", BlindSource::RecordPerson;
        /// Two of three birth-date parts (several, space-joined).
        MATCH_BIRTH_PARTS = "match_features"."birth_part_k", "birth", BlindSource::RecordPerson;
        /// The name with one look-alike character replaced by its group's marker (several,
        /// space-joined).
        MATCH_NAME_SHAPES = "match_features"."shape_k", "name", BlindSource::RecordPerson;
        /// The name's fuzzy-pinyin reading (one value, short form).
        MATCH_NEAR_SOUND = "match_features"."near_k", "pinyin", BlindSource::RecordPerson;
        /// The name's first character and length (`王|3`).
        MATCH_NAME_PATTERN = "match_features"."mask_k", "name", BlindSource::RecordPerson;
        MATCH_ROOM = "match_features"."room_k", "addr", BlindSource::RecordPerson;
        MATCH_BUILDING = "match_features"."bldg_k", "addr", BlindSource::RecordPerson;
        MATCH_COMMUNITY = "match_features"."comm_k", "addr", BlindSource::RecordPerson;
        /// A copy of the record's `id_key`.
        MATCH_ID = "match_features"."id_k", "id", BlindSource::RecordPerson;
        PHONE_HISTORY_PHONE_K = "phone_history"."phone_k", "phone", BlindSource::Row(PHONE_HISTORY_PHONE);
    }
}

/// The sealed golden-record columns, in [`crate::model::PERSON_FIELDS`] order.
pub const PERSON_COLUMNS: [SealedColumn; 7] = [
    PERSON_NAME,
    PERSON_ID_NUMBER,
    PERSON_GENDER,
    PERSON_BIRTH_DATE,
    PERSON_PHONE,
    PERSON_ADDRESS,
    PERSON_COMMUNITY,
];

/// A record's match keys (`id_key`, `np_key`) from its person fields: the ingest's and
/// [`rotate`]'s one way to compute them.
pub fn record_keys(
    codec: &Codec,
    person: &crate::model::PersonFields,
) -> (Option<String>, Option<String>) {
    (
        person
            .id_number
            .as_deref()
            .map(|i| codec.blind(RECORD_ID_KEY, i)),
        match (&person.name, &person.phone) {
            (Some(n), Some(p)) => Some(codec.blind(RECORD_NP_KEY, &format!("{n}|{p}"))),
            _ => None,
        },
    )
}

/// Every [`BlindSource::RecordPerson`] column of a record, under `codec`'s active key:
/// `source_records`' keys and the `match_features` matching computes.
pub fn record_blinds(
    codec: &Codec,
    record_id: i64,
    person: &crate::model::PersonFields,
    changed: &str,
) -> Vec<(BlindColumn, Option<String>)> {
    let (id_key, np_key) = record_keys(codec, person);
    let f = crate::reconcile::matching::Features::of(
        codec,
        record_id,
        person,
        id_key.as_deref(),
        changed,
    );
    vec![
        (RECORD_ID_KEY, id_key),
        (RECORD_NP_KEY, np_key),
        (MATCH_NAME, f.name_k),
        (MATCH_PINYIN, f.py_k),
        (MATCH_PHONE, f.phone_k),
        (MATCH_BIRTH, f.birth_k),
        (MATCH_BIRTH_SWAP, f.birth_swap_k),
        (MATCH_SYLLABLES, f.syl_k),
        (MATCH_NAME_EDITS, f.edit_k),
        (MATCH_BIRTH_PARTS, f.birth_part_k),
        (MATCH_NAME_SHAPES, f.shape_k),
        (MATCH_NEAR_SOUND, f.near_k),
        (MATCH_NAME_PATTERN, f.mask_k),
        (MATCH_ROOM, f.room_k),
        (MATCH_BUILDING, f.bldg_k),
        (MATCH_COMMUNITY, f.comm_k),
        (MATCH_ID, f.id_k),
    ]
}

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
                    key_audit_chain(store, &codec)?;
                }
            }
            if store.audit_unkeyed_legacy() {
                key_audit_chain(store, &codec)?;
            }
        }
    }
    store.set_codec(codec);
    rebuild_match_keys(store)
}

/// MACs an unkeyed audit chain with the store key and records that (`audit_keyed`): when a
/// store first gets a key, and when this open migrated a keyed store's chain from unkeyed SM3.
/// Nothing is written when every row is keyed already.
fn key_audit_chain(store: &mut Store, codec: &Codec) -> Result<(), SecurityError> {
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let unkeyed: i64 =
        tx.query_row("SELECT count(*) FROM audit WHERE key_id IS NULL", [], |r| {
            r.get(0)
        })?;
    if unkeyed == 0 {
        return Ok(());
    }
    let (rekeyed, problems) = crate::audit::rekey(&tx, codec)?;
    crate::audit::append(
        &tx,
        codec,
        "audit_keyed",
        &crate::audit::Actor::process(),
        &serde_json::json!({ "rows_keyed": rekeyed, "problems_before": problems }),
    )?;
    tx.commit()?;
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
    /// Blinded values whose plaintext was nowhere to be found (a phone-history row without its
    /// sealed phone): removed, since under the old key they could never match again.
    pub blinds_dropped: u64,
    /// Audit rows whose MAC was recomputed under the new key.
    pub audit_rows_rekeyed: u64,
}

/// Re-encrypts every sealed column and recomputes every blinded column of [`COLUMNS`] under
/// `new_key`, re-keys the audit chain and records the rotation in it (`key_rotated`), and marks
/// `new_key` active: all in one transaction, so the store is entirely under one key or the
/// other and reconcile never sees old and new blinds side by side. `old` holds the keys the
/// store's values are under now (`None`: the store is unencrypted). `chunk` is how many rows
/// are read at a time. A daemon writing meanwhile waits for the transaction (stop it first:
/// it would go on writing under its old key).
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
    let reader = Codec::Sealed(Arc::new(Keyring {
        active: new_key,
        previous,
        accept_plaintext: true,
    }));
    let mut report = RotateReport {
        old_key: active.clone(),
        new_key: new_id.clone(),
        ..RotateReport::default()
    };
    let chunk = chunk.max(1);
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for table in COLUMNS.sealed_tables() {
        reseal_table(&tx, &reader, table, chunk, &mut report)?;
    }
    let force = rebuild_pending(&tx)?;
    reblind_records(&tx, &reader, chunk, force, &mut report)?;
    tx.execute(
        "DELETE FROM pending_rebuilds WHERE what = 'match_features'",
        [],
    )?;
    let (rekeyed, problems) = crate::audit::rekey(&tx, &reader)?;
    report.audit_rows_rekeyed = rekeyed;
    crate::audit::append(
        &tx,
        &reader,
        "key_rotated",
        &crate::audit::Actor::process(),
        &serde_json::json!({
            "old_key": report.old_key,
            "new_key": report.new_key,
            "rows_rewritten": report.rows_rewritten,
            "values_resealed": report.values_resealed,
            "blinds_recomputed": report.blinds_recomputed,
            "blinds_dropped": report.blinds_dropped,
            "audit_rows_rekeyed": report.audit_rows_rekeyed,
            "audit_problems_before": problems,
        }),
    )?;
    let now = super::now_text();
    tx.execute(
        "INSERT INTO security_keys (key_id, algorithm, blind_algorithm, state, added_at)
         VALUES (?1, ?2, ?3, 'active', ?4)
         ON CONFLICT (key_id) DO UPDATE SET state = 'active', retired_at = NULL",
        params![
            new_id,
            reader.active_key().map(|k| k.algorithm().as_str()),
            reader.active_key().map(|k| k.blind_algorithm().as_str()),
            now
        ],
    )?;
    tx.execute(
        "UPDATE security_keys SET state = 'retired', retired_at = ?2 WHERE key_id != ?1 AND state != 'retired'",
        params![new_id, now],
    )?;
    tx.commit()?;
    store.set_codec(match reader {
        Codec::Sealed(r) => {
            let r = Arc::try_unwrap(r)
                .map_err(|_| SecurityError::Rotate("keyring still shared".into()))?;
            Codec::Sealed(Arc::new(Keyring {
                accept_plaintext: false,
                ..r
            }))
        }
        Codec::Plain => Codec::Plain,
    });
    Ok(report)
}

fn under_key(v: &ValueRef<'_>, id: [u8; 4]) -> bool {
    match v {
        ValueRef::Null => true,
        ValueRef::Blob(b) => crate::crypto::sealed_key_id(b) == Some(id),
        _ => false,
    }
}

/// Whether a blinded value is under the key with hex id `id` (NULL is under every key).
fn blind_under_key(v: Option<&str>, id: &str) -> bool {
    v.is_none_or(|v| v.len() > id.len() && v.starts_with(id) && v.as_bytes()[id.len()] == b':')
}

/// Re-seals one table's sealed columns, and recomputes its [`BlindSource::Row`] blinds from
/// them, for every row with a value not under the new key.
fn reseal_table(
    tx: &rusqlite::Transaction<'_>,
    reader: &Codec,
    table: &str,
    chunk: usize,
    report: &mut RotateReport,
) -> Result<(), SecurityError> {
    let Some(key) = reader.active_key() else {
        return Ok(());
    };
    let (id, id_hex) = (key.id(), key.id_hex());
    let cols: Vec<SealedColumn> = COLUMNS
        .sealed
        .iter()
        .filter(|c| c.table == table)
        .copied()
        .collect();
    let blinds: Vec<(BlindColumn, usize)> = COLUMNS
        .blinded
        .iter()
        .filter(|b| b.table == table)
        .map(|b| match b.source {
            BlindSource::Row(from) => cols
                .iter()
                .position(|c| *c == from)
                .map(|i| (*b, i))
                .ok_or_else(|| internal(b)),
            BlindSource::RecordPerson => Err(internal(b)),
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = cols
        .iter()
        .map(|c| c.column)
        .chain(blinds.iter().map(|(b, _)| b.column))
        .collect();
    // Table and column names come from COLUMNS, a fixed list.
    let select = format!(
        "SELECT rowid, {} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        names.join(", ")
    );
    let sets: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect();
    let update = format!(
        "UPDATE OR REPLACE {table} SET {} WHERE rowid = ?1",
        sets.join(", ")
    );
    let mut sel = tx.prepare(&select)?;
    let mut upd = tx.prepare(&update)?;
    let mut drop_row = tx.prepare(&format!("DELETE FROM {table} WHERE rowid = ?1"))?;
    let mut last = 0i64;
    loop {
        let mut rows = sel.query(params![last, chunk as i64])?;
        let mut seen = 0usize;
        while let Some(r) = rows.next()? {
            seen += 1;
            let rid: i64 = r.get(0)?;
            last = rid;
            let mut stale = false;
            for i in 0..cols.len() {
                stale |= !under_key(&r.get_ref(i + 1)?, id);
            }
            for j in 0..blinds.len() {
                let v: Option<String> = r.get(1 + cols.len() + j)?;
                stale |= !blind_under_key(v.as_deref(), &id_hex);
            }
            if !stale {
                continue;
            }
            let mut values: Vec<Option<String>> = Vec::with_capacity(cols.len());
            for i in 0..cols.len() {
                values.push(
                    reader
                        .open(r.get_ref(i + 1)?)
                        .map_err(|e| SecurityError::Rotate(format!("{table} row {rid}: {e}")))?,
                );
            }
            let mut bound: Vec<ToSqlOutput<'static>> =
                vec![ToSqlOutput::Owned(Value::Integer(rid))];
            for (c, v) in cols.iter().zip(&values) {
                report.values_resealed += u64::from(v.is_some());
                bound.push(reader.seal_opt(*c, v.as_deref()));
            }
            let mut lost = false;
            for (j, (b, from)) in blinds.iter().enumerate() {
                let had: Option<String> = r.get(1 + cols.len() + j)?;
                let new = values[*from].as_deref().map(|v| reader.blind(*b, v));
                lost |= had.is_some() && new.is_none();
                report.blinds_recomputed += u64::from(new.is_some());
                bound.push(ToSqlOutput::Owned(new.map_or(Value::Null, Value::Text)));
            }
            if lost {
                drop_row.execute([rid])?;
                report.blinds_dropped += 1;
                continue;
            }
            upd.execute(rusqlite::params_from_iter(bound.iter()))?;
            report.rows_rewritten += 1;
        }
        if seen < chunk {
            return Ok(());
        }
    }
}

fn internal(b: &BlindColumn) -> SecurityError {
    SecurityError::Rotate(format!(
        "internal: {}.{} has no way to be recomputed",
        b.table, b.column
    ))
}

/// Whether the match keys wait to be recomputed (a migration changed them).
fn rebuild_pending(conn: &rusqlite::Connection) -> Result<bool, SecurityError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM pending_rebuilds WHERE what = 'match_features'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Recomputes the match keys of every record after a migration changed what they are (the
/// `pending_rebuilds` row), with the codec this open attached; one transaction.
fn rebuild_match_keys(store: &mut Store) -> Result<(), SecurityError> {
    if !rebuild_pending(store.conn())? {
        return Ok(());
    }
    let codec = store.codec().clone();
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut report = RotateReport::default();
    reblind_records(&tx, &codec, 10_000, true, &mut report)?;
    tx.execute(
        "DELETE FROM pending_rebuilds WHERE what = 'match_features'",
        [],
    )?;
    tx.commit()?;
    tracing::info!(
        records = report.rows_rewritten,
        "recomputed the match keys of every record (this version compares names and birth dates in more ways)"
    );
    Ok(())
}

/// Recomputes every [`BlindSource::RecordPerson`] column (tables `source_records` and
/// `match_features`) from each record's normalized payload: for records with a blind not under
/// the reader's key, or for every record when `force`.
fn reblind_records(
    tx: &rusqlite::Transaction<'_>,
    reader: &Codec,
    chunk: usize,
    force: bool,
    report: &mut RotateReport,
) -> Result<(), SecurityError> {
    let id_hex = reader.active_key().map(StoreKey::id_hex);
    if id_hex.is_none() && !force {
        return Ok(());
    }
    let of = |t: &str| -> Vec<BlindColumn> {
        COLUMNS
            .blinded
            .iter()
            .filter(|b| b.table == t && b.source == BlindSource::RecordPerson)
            .copied()
            .collect()
    };
    let (rec_cols, feat_cols) = (of("source_records"), of("match_features"));
    if let Some(b) = COLUMNS.blinded.iter().find(|b| {
        b.source == BlindSource::RecordPerson
            && b.table != "source_records"
            && b.table != "match_features"
    }) {
        return Err(internal(b));
    }
    let list = |cols: &[BlindColumn], alias: &str| -> String {
        cols.iter()
            .map(|c| format!("{alias}.{}", c.column))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Column names come from COLUMNS, a fixed list.
    let select = format!(
        "SELECT s.id, p.normalized, f.record_id IS NOT NULL, f.changed, {}, {}
         FROM source_records s LEFT JOIN record_payloads p ON p.id = s.id
              LEFT JOIN match_features f ON f.record_id = s.id
         WHERE s.id > ?1 ORDER BY s.id LIMIT ?2",
        list(&rec_cols, "s"),
        list(&feat_cols, "f")
    );
    let sets = |cols: &[BlindColumn]| -> String {
        cols.iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", c.column, i + 2))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sel = tx.prepare(&select)?;
    let mut upd_rec = tx.prepare(&format!(
        "UPDATE source_records SET {} WHERE id = ?1",
        sets(&rec_cols)
    ))?;
    let mut upd_feat = tx.prepare(&format!(
        "UPDATE match_features SET {} WHERE record_id = ?1",
        sets(&feat_cols)
    ))?;
    // Not a blind, but derived from the name like the keys (`reconcile::names::is_masked`).
    let mut upd_mask =
        tx.prepare("UPDATE match_features SET name_mask = ?2 WHERE record_id = ?1")?;
    let n_blinds = rec_cols.len() + feat_cols.len();
    let mut last = 0i64;
    loop {
        let mut rows = sel.query(params![last, chunk as i64])?;
        let mut seen = 0usize;
        while let Some(r) = rows.next()? {
            seen += 1;
            let rid: i64 = r.get(0)?;
            last = rid;
            let mut stale = force;
            for i in 0..n_blinds {
                let v: Option<String> = r.get(4 + i)?;
                stale |= id_hex
                    .as_deref()
                    .is_some_and(|id| !blind_under_key(v.as_deref(), id));
            }
            if !stale {
                continue;
            }
            let normalized = reader
                .open(r.get_ref(1)?)
                .map_err(|e| SecurityError::Rotate(format!("record {rid}: {e}")))?;
            let person = normalized
                .and_then(|n| serde_json::from_str::<crate::model::NormalizedRecord>(&n).ok())
                .map(|n| n.person)
                .unwrap_or_default();
            let has_features: bool = r.get(2)?;
            let changed: Option<String> = r.get(3)?;
            let new = record_blinds(reader, rid, &person, changed.as_deref().unwrap_or(""));
            let value = |c: &BlindColumn| -> Result<Option<String>, SecurityError> {
                new.iter()
                    .find(|(b, _)| b == c)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| internal(c))
            };
            let mut bind = |cols: &[BlindColumn]| -> Result<Vec<Value>, SecurityError> {
                let mut bound = vec![Value::Integer(rid)];
                for c in cols {
                    let v = value(c)?;
                    report.blinds_recomputed += u64::from(v.is_some());
                    bound.push(v.map_or(Value::Null, Value::Text));
                }
                Ok(bound)
            };
            upd_rec.execute(rusqlite::params_from_iter(bind(&rec_cols)?))?;
            if has_features {
                upd_feat.execute(rusqlite::params_from_iter(bind(&feat_cols)?))?;
                let masked = crate::reconcile::names::name_masked(person.name.as_deref());
                upd_mask.execute(params![rid, masked])?;
            }
            report.rows_rewritten += 1;
        }
        if seen < chunk {
            return Ok(());
        }
    }
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
        let ToSqlOutput::Owned(v) = c.seal(PERSON_ID_NUMBER, "110101199003071234") else {
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
        assert_eq!(c.blind(RECORD_ID_KEY, "a"), c.blind(MATCH_ID, "a"));
        assert_ne!(c.blind(RECORD_ID_KEY, "a"), "a");
        assert_ne!(c.blind(RECORD_ID_KEY, "a"), c.blind(MATCH_PHONE, "a"));
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

    /// A store written before issue 36's match keys: its rows have no syllable, one-edit or
    /// birth-part keys and the old pinyin key; the first keyed open recomputes them all.
    #[test]
    fn an_upgraded_store_recomputes_its_match_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let codec = || Codec::Sealed(Arc::new(ring(1)));
        let mut s = Store::open(&path).unwrap();
        attach(&mut s, codec()).unwrap();
        let person = crate::model::PersonFields {
            name: Some("张伟".into()),
            birth_date: Some("1980-03-07".into()),
            ..Default::default()
        };
        let rec = crate::model::NormalizedRecord {
            entity: crate::model::EntityKind::CardAccount,
            source_key: "k1".into(),
            person: person.clone(),
            fields: Default::default(),
            person_ref: None,
            updated_at: None,
            field_rejects: Default::default(),
        };
        let sealed = s
            .codec()
            .seal(RECORD_NORMALIZED, &serde_json::to_string(&rec).unwrap());
        let c = s.conn();
        c.execute(
            "INSERT INTO source_records (id, source, stream, source_key, entity, status, content_hash,
                 dirty, first_seen, last_changed)
             VALUES (1, 's', 't', 'k1', 'card_account', 'ok', x'00', 0, 'x', 'x')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO record_payloads (id, raw, normalized) VALUES (1, '{}', ?1)",
            [sealed],
        )
        .unwrap();
        // As an older version left it: an old-form pinyin key, no new keys.
        c.execute(
            "INSERT INTO match_features (record_id, name_k, py_k, changed) VALUES (1, 'old', 'old', 'x')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO pending_rebuilds (what, since) VALUES ('match_features', 'x')",
            [],
        )
        .unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        attach(&mut s, codec()).unwrap();
        let want = crate::reconcile::matching::Features::of(s.codec(), 1, &person, None, "x");
        let got: (String, String, String, String, i64) = s
            .conn()
            .query_row(
                "SELECT name_k, py_k, syl_k, birth_part_k, (SELECT count(*) FROM pending_rebuilds)
                   FROM match_features WHERE record_id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(got.0, want.name_k.unwrap());
        assert_eq!(got.1, want.py_k.unwrap());
        assert_eq!(got.2, want.syl_k.unwrap());
        assert_eq!(got.3, want.birth_part_k.unwrap());
        assert_eq!(got.4, 0, "done once");
    }
}
