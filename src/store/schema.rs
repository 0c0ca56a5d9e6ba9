//! Versioned schema migrations (rusqlite_migration: `user_version` based, each step runs in a
//! transaction). Append new steps; never edit a released one.

use rusqlite_migration::{Migrations, M};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(V1),
        M::up(V_DRIFT),
        M::up(V_DAEMON),
        M::up(V_MATCHING),
        M::up(V_SECURITY),
        M::up(V_DIRTY_BY_ID),
        M::up(V_PAYLOADS),
        M::up(V_OUTBOX_PAYLOADS),
        M::up_with_hook("", rebuild_outbox_without_event_id).foreign_key_check(),
        M::up(V_PENDING_PERSONS),
        M::up(V_REVIEW_DESK),
        M::up(V_INGESTED_FILES),
        M::up(V_HELD_DELETIONS),
        M::up(V_AUDIT_KEYED),
        M::up(V_MATCHING_MODELS),
        M::up(V_MATCH_KEYS_2),
        M::up(V_MATCH_KEYS_3),
    ])
}

/// The schema version from which audit rows are MACed with a key derived from the store key
/// (the migration count up to and including [`V_AUDIT_KEYED`]).
pub const AUDIT_KEYED_VERSION: i64 = 14;

/// Brings a connection's schema up to date. Foreign keys are off while it migrates (a table
/// rebuild needs that, see [`V_OUTBOX_DERIVED_ID`]) and on again afterwards, whatever the
/// outcome.
pub fn migrate(conn: &mut rusqlite::Connection) -> Result<(), rusqlite_migration::Error> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = migrations().to_latest(conn);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

/// Migration 9: refuses to run with foreign keys on, where dropping the old outbox would
/// delete every payload with it.
fn rebuild_outbox_without_event_id(
    tx: &rusqlite::Transaction<'_>,
) -> rusqlite_migration::HookResult {
    let foreign_keys: i64 = tx.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if foreign_keys != 0 {
        return Err(rusqlite_migration::HookError::Hook(
            "migration 9 rebuilds the outbox and must run with foreign keys off \
             (store::schema::migrate does that)"
                .into(),
        ));
    }
    tx.execute_batch(V_OUTBOX_DERIVED_ID)?;
    Ok(())
}

const V1: &str = r#"
-- Every record fetched from a department system, raw and normalized. The content hash makes a
-- re-fetch of an unchanged record a no-op.
CREATE TABLE source_records (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    source_key    TEXT NOT NULL,
    entity        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('ok', 'rejected')),
    raw           TEXT NOT NULL,
    normalized    TEXT,
    content_hash  BLOB NOT NULL,
    updated_at    TEXT,
    deleted       INTEGER NOT NULL DEFAULT 0,
    -- Match keys (blocking) of person-carrying records.
    id_key        TEXT,
    np_key        TEXT,
    -- For activity records: the key of the parent record in the linked stream.
    link_stream   TEXT,
    person_ref    TEXT,
    -- Set by reconcile.
    person_id     INTEGER,
    dirty         INTEGER NOT NULL DEFAULT 1,
    first_seen    TEXT NOT NULL,
    last_changed  TEXT NOT NULL,
    UNIQUE (source, stream, source_key)
);
CREATE INDEX source_records_dirty ON source_records (dirty) WHERE dirty = 1;
CREATE INDEX source_records_person ON source_records (person_id);
CREATE INDEX source_records_id_key ON source_records (id_key) WHERE id_key IS NOT NULL;
CREATE INDEX source_records_np_key ON source_records (np_key) WHERE np_key IS NOT NULL;
CREATE INDEX source_records_ref ON source_records (source, link_stream, person_ref) WHERE person_ref IS NOT NULL;

-- Quarantine: one row per rejected record (field = 'record'/'identity'/'id_number'/...) or
-- rejected field of a kept record.
CREATE TABLE rejects (
    id            INTEGER PRIMARY KEY,
    record_id     INTEGER REFERENCES source_records (id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    source_key    TEXT,
    field         TEXT NOT NULL,
    whole_record  INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    raw_value     TEXT NOT NULL,
    run_id        INTEGER,
    at            TEXT NOT NULL
);
CREATE INDEX rejects_record ON rejects (record_id);
CREATE INDEX rejects_reason ON rejects (source, reason);

-- Golden records: one resident each.
CREATE TABLE persons (
    id            INTEGER PRIMARY KEY,
    version       INTEGER NOT NULL,
    name          TEXT,
    id_number     TEXT,
    gender        INTEGER,
    birth_date    TEXT,
    phone         TEXT,
    address       TEXT,
    community     TEXT,
    -- JSON object: field -> source record id that supplied it.
    provenance    TEXT NOT NULL DEFAULT '{}',
    -- JSON array of the sources the resident appears in.
    sources       TEXT NOT NULL DEFAULT '[]',
    retired       INTEGER NOT NULL DEFAULT 0,
    merged_into   INTEGER REFERENCES persons (id),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Application domains, one table each, linked to persons. record_id is the source record.
CREATE TABLE card_accounts (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    card_no TEXT, balance_fen INTEGER, card_status TEXT, opened_at TEXT
);
CREATE TABLE card_transactions (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    card_no TEXT, amount_fen INTEGER, occurred_at TEXT, merchant TEXT
);
CREATE TABLE volunteers (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    volunteer_no TEXT, registered_at TEXT, volunteer_status TEXT
);
CREATE TABLE volunteer_services (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    volunteer_no TEXT, activity TEXT, service_date TEXT, minutes INTEGER
);
CREATE TABLE elders (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    elder_no TEXT, care_level INTEGER
);
CREATE TABLE eldercare_orders (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    elder_no TEXT, service_type TEXT, amount_fen INTEGER, served_at TEXT, order_status TEXT
);
CREATE TABLE patients (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    health_record_no TEXT
);
CREATE TABLE health_followups (
    record_id INTEGER PRIMARY KEY REFERENCES source_records (id),
    person_id INTEGER, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    patient_ref TEXT, followup_type TEXT, followup_date TEXT, systolic INTEGER, diastolic INTEGER
);

-- Per-stream incremental cursor. Written only in the transaction that commits the records it
-- covers.
CREATE TABLE sync_state (
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    cursor        TEXT,
    last_run_id   INTEGER,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (source, stream)
);

-- One row per stream run (and per reconcile/push run, with stream = '*').
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'sync',
    trigger       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    pages         INTEGER NOT NULL DEFAULT 0,
    fetched       INTEGER NOT NULL DEFAULT 0,
    inserted      INTEGER NOT NULL DEFAULT 0,
    updated       INTEGER NOT NULL DEFAULT 0,
    unchanged     INTEGER NOT NULL DEFAULT 0,
    rejected      INTEGER NOT NULL DEFAULT 0,
    deleted       INTEGER NOT NULL DEFAULT 0,
    cursor_before TEXT,
    cursor_after  TEXT,
    error         TEXT
);
CREATE INDEX runs_source ON runs (source, stream, id);

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    entity        TEXT NOT NULL,
    entity_key    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sent', 'dead', 'superseded')),
    batch_key     TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    sent_at       TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
CREATE INDEX outbox_entity ON outbox (entity, entity_key, version);

-- Events the platform refused for good, with its reason.
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY,
    outbox_id     INTEGER NOT NULL REFERENCES outbox (id),
    event_id      TEXT NOT NULL,
    code          INTEGER,
    reason        TEXT NOT NULL,
    at            TEXT NOT NULL
);

-- Push attempts, for status.
CREATE TABLE push_log (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    batch_key     TEXT NOT NULL,
    events        INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    detail        TEXT
);
"#;

/// What each stream's mapped fields looked like (for schema drift), and the drift found.
const V_DRIFT: &str = r#"
CREATE TABLE stream_fields (
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    field         TEXT NOT NULL,
    json_types    INTEGER NOT NULL,
    last_seen_run INTEGER NOT NULL,
    PRIMARY KEY (source, stream, field)
);
CREATE TABLE schema_drift (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    stream        TEXT NOT NULL,
    field         TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('missing', 'type_changed')),
    detail        TEXT NOT NULL,
    run_id        INTEGER NOT NULL,
    at            TEXT NOT NULL
);
CREATE INDEX schema_drift_stream ON schema_drift (source, stream, id);
"#;

/// The daemon's bookkeeping: leases (two syncs of one source never overlap, whichever process
/// started them) and the last scheduled/finished time of each scheduled job (an overdue job
/// runs once at start after downtime).
pub(crate) const V_DAEMON: &str = r#"
CREATE TABLE leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    acquired_at   TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE TABLE schedule_state (
    job           TEXT PRIMARY KEY,
    last_due      TEXT,
    last_started  TEXT,
    last_finished TEXT,
    last_ok       INTEGER
);
"#;

/// Matching (branch `matching`): match features per record, phone history, the review queue
/// and the human decisions reconcile re-applies on every run.
const V_MATCHING: &str = r#"
-- Blinded match features of live person-carrying records (equality only).
CREATE TABLE match_features (
    record_id     INTEGER PRIMARY KEY REFERENCES source_records (id),
    name_k        TEXT,
    py_k          TEXT,
    phone_k       TEXT,
    birth_k       TEXT,
    birth_swap_k  TEXT,
    gender        INTEGER,
    room_k        TEXT,
    bldg_k        TEXT,
    comm_k        TEXT,
    id_k          TEXT,
    changed       TEXT NOT NULL
);
CREATE INDEX match_features_phone ON match_features (phone_k) WHERE phone_k IS NOT NULL;
CREATE INDEX match_features_py_birth ON match_features (py_k, birth_k) WHERE py_k IS NOT NULL;
CREATE INDEX match_features_py_comm ON match_features (py_k, comm_k) WHERE py_k IS NOT NULL;

-- Every phone a resident has had in any system, with when it was seen.
CREATE TABLE phone_history (
    person_id     INTEGER NOT NULL,
    phone_k       TEXT NOT NULL,
    source        TEXT NOT NULL,
    phone         TEXT,
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    PRIMARY KEY (person_id, phone_k, source)
);
CREATE INDEX phone_history_phone ON phone_history (phone_k);

-- The review queue.
CREATE TABLE review_items (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('match', 'conflict', 'gender_id')),
    record_id     INTEGER,
    person_id     INTEGER,
    field         TEXT NOT NULL DEFAULT '',
    score         REAL,
    detail        TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open'
                  CHECK (state IN ('open', 'accepted', 'rejected', 'superseded')),
    created_at    TEXT NOT NULL,
    decided_at    TEXT,
    decided_by    TEXT,
    decision_id   INTEGER,
    UNIQUE (kind, record_id, person_id, field)
);
CREATE INDEX review_items_open ON review_items (state) WHERE state = 'open';

-- Human decisions and what they pin down.
CREATE TABLE decisions (
    id              INTEGER PRIMARY KEY,
    action          TEXT NOT NULL,
    item_id         INTEGER,
    person_id       INTEGER,
    other_person_id INTEGER,
    records         TEXT NOT NULL DEFAULT '[]',
    by_user         TEXT NOT NULL,
    at              TEXT NOT NULL
);
CREATE TABLE pins (
    record_id     INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL,
    decision_id   INTEGER NOT NULL
);
CREATE INDEX pins_person ON pins (person_id);
CREATE TABLE never_match (
    record_id     INTEGER NOT NULL,
    person_id     INTEGER NOT NULL,
    decision_id   INTEGER,
    PRIMARY KEY (record_id, person_id)
);
CREATE TABLE field_locks (
    person_id     INTEGER NOT NULL,
    field         TEXT NOT NULL,
    record_id     INTEGER,
    value         TEXT,
    decision_id   INTEGER NOT NULL,
    PRIMARY KEY (person_id, field)
);
"#;

/// Security: which store key is active (values record their key id; the key itself is never
/// stored), and the hash-chained, append-only audit trail.
const V_SECURITY: &str = r#"
CREATE TABLE security_keys (
    key_id          TEXT PRIMARY KEY,
    algorithm       TEXT,
    blind_algorithm TEXT,
    state           TEXT NOT NULL CHECK (state IN ('active', 'rotating', 'retired')),
    added_at        TEXT NOT NULL,
    retired_at      TEXT
);

-- AUTOINCREMENT: ids are never reused, so a deleted last row still leaves a trace in
-- sqlite_sequence.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
"#;

/// Reconcile reads dirty ID-bearing person records in ID order, a chunk at a time: this index
/// hands them over in that order (and holds only dirty rows), instead of a scan and sort of
/// every dirty row per chunk.
///
/// `outbox_entity` goes: nothing reads the outbox by entity, and it cost every event a fourth
/// b-tree insert.
const V_DIRTY_BY_ID: &str = r#"
CREATE INDEX source_records_dirty_id_key ON source_records (id_key, id)
    WHERE dirty = 1 AND id_key IS NOT NULL;
DROP INDEX outbox_entity;
"#;

/// The sealed payloads (the record as fetched, its normalized form) move out of
/// `source_records` into a table of their own, keyed by the same id. `source_records` is
/// read and rewritten row by row in a random order (by ID key) during reconcile; with ~2 KiB of
/// payload in each row every such touch was a page of its own, read, rewritten into the WAL
/// and checkpointed. Narrow, a page holds a dozen records. The payloads are written once per
/// change, in id order, and read once per reconcile.
const V_PAYLOADS: &str = r#"
CREATE TABLE record_payloads (
    id            INTEGER PRIMARY KEY REFERENCES source_records (id) ON DELETE CASCADE,
    raw           TEXT NOT NULL,
    normalized    TEXT
);
INSERT INTO record_payloads (id, raw, normalized) SELECT id, raw, normalized FROM source_records;
ALTER TABLE source_records DROP COLUMN raw;
ALTER TABLE source_records DROP COLUMN normalized;
"#;

/// Outbox payloads (the sealed event, ~500 bytes) move beside the outbox rows, keyed by the same
/// id. Push rewrites every outbox row twice (keyed into a batch, then acknowledged); with the
/// payload inline each rewrite copied the payload too. The payload is written once and read
/// once per send.
const V_OUTBOX_PAYLOADS: &str = r#"
CREATE TABLE outbox_payloads (
    id            INTEGER PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
    payload       TEXT NOT NULL
);
INSERT INTO outbox_payloads (id, payload) SELECT id, payload FROM outbox;
ALTER TABLE outbox DROP COLUMN payload;
"#;

/// The outbox drops its stored `event_id` and that column's unique index. The id is
/// `{entity}:{key}:{version}` (`store::event_id_of_outbox!`), and a key's version is read
/// from its row and bumped in the same transaction that writes the event (no row is ever
/// deleted), so two events can never share one: the index guarded nothing, yet it was a
/// random-order b-tree insert per event and the largest index of a first load (20 MiB of
/// 680 at 300k records; each chunk of reconcile dirtied ~2,000 of its pages). The platform
/// still deduplicates by event id (docs/platform-api.md).
///
/// SQLite cannot drop a UNIQUE column, so the table is rebuilt by SQLite's procedure for
/// such changes (create, copy, drop, rename), which needs foreign keys off: with them on,
/// dropping the old table would cascade into `outbox_payloads` (and renaming rewrites the
/// references). [`migrate`] turns them off around the migrations; the step refuses to run
/// with them on ([`rebuild_outbox_without_event_id`]) and checks them before it commits.
const V_OUTBOX_DERIVED_ID: &str = r#"
CREATE TABLE outbox_v9 (
    id            INTEGER PRIMARY KEY,
    entity        TEXT NOT NULL,
    entity_key    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    created_at    TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sent', 'dead', 'superseded')),
    batch_key     TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    sent_at       TEXT
);
INSERT INTO outbox_v9 (id, entity, entity_key, version, op, created_at, state, batch_key,
                       attempts, last_error, sent_at)
    SELECT id, entity, entity_key, version, op, created_at, state, batch_key,
           attempts, last_error, sent_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v9 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
"#;

/// Residents whose golden record is still to be computed: created (version 0) and neither
/// refreshed nor retired yet. A first load links its ID-bearing records in record order and
/// computes the golden records of the residents it created afterwards, in resident order
/// (reconcile::Phase::Golden); between the two, and after a crash in between, this index is
/// how reconcile finds them. It holds an entry only for that while: a resident created
/// elsewhere is refreshed in the transaction that creates it.
const V_PENDING_PERSONS: &str = r#"
CREATE INDEX persons_pending ON persons (id) WHERE version = 0 AND retired = 0;
"#;

/// The review desk (`community-sync review serve`, src/desk): reviewer accounts, their
/// one-time sign-in links and their sessions (tokens stored only as SHA-256 hashes), and what
/// a decision needs to be undone: who gave which reason, what it replaced (`undo`, JSON
/// without personal data) and which later decision undid it.
const V_REVIEW_DESK: &str = r#"
CREATE TABLE reviewers (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    -- Argon2id PHC string; NULL until the reviewer sets one through a one-time link.
    password_hash  TEXT,
    -- JSON array of community names the reviewer may see; empty: every community.
    communities    TEXT NOT NULL DEFAULT '[]',
    disabled       INTEGER NOT NULL DEFAULT 0,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   TEXT,
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL
);
CREATE TABLE reviewer_links (
    token_hash     TEXT PRIMARY KEY,
    reviewer_id    INTEGER NOT NULL REFERENCES reviewers (id) ON DELETE CASCADE,
    expires_at     TEXT NOT NULL,
    used_at        TEXT
);
CREATE TABLE desk_sessions (
    token_hash     TEXT PRIMARY KEY,
    reviewer_id    INTEGER NOT NULL REFERENCES reviewers (id) ON DELETE CASCADE,
    csrf           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);
CREATE INDEX desk_sessions_reviewer ON desk_sessions (reviewer_id);
ALTER TABLE decisions ADD COLUMN reason TEXT;
ALTER TABLE decisions ADD COLUMN undo TEXT;
ALTER TABLE decisions ADD COLUMN undone_by INTEGER;
CREATE INDEX decisions_item ON decisions (item_id) WHERE item_id IS NOT NULL;
"#;

/// Ledger files ingested by file sources, by content hash: written in the transaction that
/// commits a file's last records, so a file is ingested once whatever crashes around it.
const V_INGESTED_FILES: &str = r#"
CREATE TABLE ingested_files (
    source      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    name        TEXT NOT NULL,
    records     INTEGER NOT NULL,
    run_id      INTEGER NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (source, stream, sha256)
);
"#;

/// Deletions a full refresh found but did not apply because they exceeded the stream's
/// `max_delete` (one row per stream, the latest such run): `status` reports them until a run
/// applies or no longer finds them (`sync SOURCE --full --confirm-deletes`). And notes about a
/// stream said once (`Store::note_once`).
const V_HELD_DELETIONS: &str = r#"
CREATE TABLE held_deletions (
    source       TEXT NOT NULL,
    stream       TEXT NOT NULL,
    run_id       INTEGER NOT NULL,
    would_delete INTEGER NOT NULL,
    live         INTEGER NOT NULL,
    max_delete   TEXT NOT NULL,
    at           TEXT NOT NULL,
    PRIMARY KEY (source, stream)
);

-- Findings about a stream worth saying once (a deletion test that never matches what the
-- system sends): logged when first found, listed by `status` under the stream.
CREATE TABLE stream_notes (
    source  TEXT NOT NULL,
    stream  TEXT NOT NULL,
    topic   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL,
    run_id  INTEGER NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (source, stream, topic, kind)
);
"#;

/// The audit chain is keyed (`crate::audit`): each row records the id of the store key whose
/// derived key MACs it (NULL: an unkeyed SM3 row, as before, or a store without a key), and the
/// claims about who acted that the process could not verify (`SUDO_USER`, `$USER`), as JSON.
const V_AUDIT_KEYED: &str = r#"
ALTER TABLE audit ADD COLUMN key_id TEXT;
ALTER TABLE audit ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
"#;

/// Trained match models (reconcile::model), versioned: parameters as JSON, when, and a
/// summary of the data they came from (records, pairs sampled, seed, iterations).
const V_MATCHING_MODELS: &str = r#"
CREATE TABLE matching_models (
    version     INTEGER PRIMARY KEY AUTOINCREMENT,
    trained_at  TEXT NOT NULL,
    params      TEXT NOT NULL,
    summary     TEXT NOT NULL
);
"#;

/// Issue 36's match keys: name syllables in sorted order (blocking now uses them instead of
/// the pinyin key), one-edit name variants, birth-date parts. Rows written before hold none,
/// and the pinyin key changed its form (letters only), so every row's keys are recomputed
/// from the record when a key is at hand (`store::codec::attach`, the `pending_rebuilds`
/// row).
const V_MATCH_KEYS_2: &str = r#"
ALTER TABLE match_features ADD COLUMN syl_k TEXT;
ALTER TABLE match_features ADD COLUMN edit_k TEXT;
ALTER TABLE match_features ADD COLUMN birth_part_k TEXT;
DROP INDEX IF EXISTS match_features_py_birth;
DROP INDEX IF EXISTS match_features_py_comm;
CREATE INDEX match_features_syl_birth ON match_features (syl_k, birth_k) WHERE syl_k IS NOT NULL;
CREATE INDEX match_features_syl_comm ON match_features (syl_k, comm_k) WHERE syl_k IS NOT NULL;
-- Derived data to recompute at the next open with the store key (one row per kind of work).
CREATE TABLE pending_rebuilds (
    what   TEXT PRIMARY KEY,
    since  TEXT NOT NULL
);
INSERT INTO pending_rebuilds (what, since)
    SELECT 'match_features', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
    WHERE EXISTS (SELECT 1 FROM match_features);
"#;

/// Look-alike and near-sound name keys (`reconcile::lookalike`, `names::sound_keys`) and
/// whether the name is masked (`names::is_masked`; not personal data, stored plain).
/// Rows written before hold none: every row's keys are recomputed from the record at the
/// next open with the store key, as for [`V_MATCH_KEYS_2`].
const V_MATCH_KEYS_3: &str = r#"
ALTER TABLE match_features ADD COLUMN shape_k TEXT;
ALTER TABLE match_features ADD COLUMN near_k TEXT;
ALTER TABLE match_features ADD COLUMN name_mask INTEGER;
ALTER TABLE match_features ADD COLUMN mask_k TEXT;
INSERT OR IGNORE INTO pending_rebuilds (what, since)
    SELECT 'match_features', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
    WHERE EXISTS (SELECT 1 FROM match_features);
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// The column names of `table`.
    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        conn.prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap()
            .query_map([table], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A connection as [`migrate`] hands it to the migrations: foreign keys off.
    fn bare() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        conn
    }

    #[test]
    fn migrations_run_and_migrate_turns_foreign_keys_back_on() {
        // What `Migrations::validate` did, on a connection with foreign keys off (its own has
        // them on: the bundled SQLite's default, which migration 9 refuses).
        migrations().to_latest(&mut bare()).unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn the_outbox_rebuild_refuses_to_run_with_foreign_keys_on() {
        let mut conn = bare();
        migrations().to_version(&mut conn, 8).unwrap();
        conn.execute_batch(
            "INSERT INTO outbox (id, event_id, entity, entity_key, version, op, created_at)
                 VALUES (1, 'person:p1:1', 'person', 'p1', 1, 'upsert', 't');
             INSERT INTO outbox_payloads (id, payload) VALUES (1, 'A');
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
        let err = migrations().to_latest(&mut conn).unwrap_err();
        assert!(err.to_string().contains("foreign keys off"), "{err}");
        // Nothing was lost or changed: still version 8, the payload still there.
        let (v, n): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), count(*) FROM outbox_payloads",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((v, n), (8, 1));
    }

    #[test]
    fn payloads_move_out_of_source_records_intact() {
        let mut conn = bare();
        migrations().to_version(&mut conn, 6).unwrap();
        conn.execute(
            "INSERT INTO source_records (id, source, stream, source_key, entity, status, raw,
                 normalized, content_hash, first_seen, last_changed)
             VALUES (7, 'onecard', 'cardholders', 'k1', 'card_account', 'ok', 'RAW', 'NORM', x'00', 't', 't'),
                    (9, 'onecard', 'cardholders', 'k2', 'card_account', 'rejected', 'RAW2', NULL, x'01', 't', 't')",
            [],
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let rows: Vec<(i64, String, Option<String>)> = conn
            .prepare("SELECT id, raw, normalized FROM record_payloads ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (7, "RAW".into(), Some("NORM".into())),
                (9, "RAW2".into(), None)
            ]
        );
        let cols = columns(&conn, "source_records");
        assert!(
            !cols.iter().any(|c| c == "raw" || c == "normalized"),
            "{cols:?}"
        );
        assert!(cols.iter().any(|c| c == "content_hash"));
    }

    #[test]
    fn outbox_payloads_move_beside_the_outbox_intact() {
        let mut conn = bare();
        migrations().to_version(&mut conn, 7).unwrap();
        conn.execute(
            "INSERT INTO outbox (id, event_id, entity, entity_key, version, op, payload, created_at, state, batch_key)
             VALUES (3, 'e3', 'person', 'p1', 1, 'upsert', x'0102', 't', 'sent', 'cs-1'),
                    (4, 'e4', 'person', 'p2', 2, 'delete', 'PLAIN', 't', 'pending', NULL)",
            [],
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let rows: Vec<(i64, rusqlite::types::Value, String)> = conn
            .prepare(
                "SELECT id, payload, state FROM outbox JOIN outbox_payloads USING (id) ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        use rusqlite::types::Value;
        assert_eq!(
            rows,
            vec![
                (3, Value::Blob(vec![1, 2]), "sent".into()),
                (4, Value::Text("PLAIN".into()), "pending".into())
            ]
        );
        let cols = columns(&conn, "outbox");
        assert!(!cols.iter().any(|c| c == "payload"), "{cols:?}");
    }

    #[test]
    fn the_outbox_loses_its_stored_event_id_and_keeps_every_row_payload_and_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            migrations().to_version(&mut conn, 8).unwrap();
            conn.execute_batch(
                "INSERT INTO outbox (id, event_id, entity, entity_key, version, op, created_at, state, batch_key, attempts, last_error, sent_at)
                 VALUES (3, 'person:p1:1', 'person', 'p1', 1, 'upsert', 't1', 'sent', 'cs-1', 1, NULL, 't2'),
                        (4, 'person:p2:2', 'person', 'p2', 2, 'delete', 't3', 'dead', 'cs-2', 2, 'refused', NULL),
                        (5, 'elder:eldercare/elders/E:1:4', 'elder', 'eldercare/elders/E:1', 4, 'upsert', 't4', 'pending', NULL, 0, NULL, NULL);
                 INSERT INTO outbox_payloads (id, payload) VALUES (3, 'A'), (4, 'B'), (5, 'C');
                 INSERT INTO dead_letters (outbox_id, event_id, code, reason, at) VALUES (4, 'person:p2:2', 422, 'bad', 't5');",
            )
            .unwrap();
        }
        // As a daemon upgrading in place opens it (foreign keys on in every connection, off
        // only while migrating): the rebuild must not have cascaded into the payloads.
        let store = crate::store::Store::open(&path).unwrap();
        let conn = store.conn();
        let rows: Vec<(i64, String, String, String)> = conn
            .prepare(concat!(
                "SELECT id, ",
                crate::store::event_id_of_outbox!(),
                ", state, payload FROM outbox JOIN outbox_payloads USING (id) ORDER BY id"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (3, "person:p1:1".into(), "sent".into(), "A".into()),
                (4, "person:p2:2".into(), "dead".into(), "B".into()),
                (
                    5,
                    "elder:eldercare/elders/E:1:4".into(),
                    "pending".into(),
                    "C".into()
                ),
            ]
        );
        let dead: (i64, String) = conn
            .query_row("SELECT outbox_id, reason FROM dead_letters", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(dead, (4, "bad".into()));
        let cols = columns(conn, "outbox");
        assert!(!cols.iter().any(|c| c == "event_id"), "{cols:?}");
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_list('outbox') ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["outbox_pending"]);
        let fk_on: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk_on, 1, "foreign keys are enforced once the store is open");
        // The references still resolve to the rebuilt table: a payload of no row is refused.
        assert!(conn
            .execute(
                "INSERT INTO outbox_payloads (id, payload) VALUES (99, 'X')",
                []
            )
            .is_err());
    }
}
