//! Store stage: the unified SQLite store. Owns the schema, the ingest of normalized records
//! (idempotent by content hash), cursors, runs and the quarantine. It does not decide who a
//! person is (reconcile) nor talk to the platform (push).
//!
//! One `Store` wraps one connection; the pipeline serialises writers behind a mutex.
//! Statements run one at a time on that connection, so the pure CPU work around them runs on
//! every core (rayon) before the connection is taken: at ingest the content hashes and the
//! sealing of changed records ([`Prepared`]; a batch is sealed ahead only when the stream's
//! last batch was mostly new or changed, so a poll that re-reads unchanged records seals
//! nothing); at reconcile the opening of a chunk's records and the sealing of its outbox
//! events ([`OutboxBatch`], flushed in the chunk's own transaction).
//!
//! `source_records` holds what is indexed and rewritten (keys, flags, match keys, links) and
//! stays narrow; sealed payloads live beside it in `record_payloads` (same id), written once
//! per change. Queries outside `store` reach a record's normalized form only through
//! `normalized_of_record!`. The outbox is split the same way (`outbox`: state, batch key,
//! attempts; `outbox_payloads`: the sealed event), both appended in id order, so an event
//! costs no random b-tree insert. Event ids are derived in SQL (`event_id_of_outbox!`) from
//! each key's version, bumped in the transaction that writes the event.
//!
//! Migrations run with foreign keys off ([`schema`]): a table rebuild must drop the old table
//! without cascading; the step that rebuilds checks the keys before it commits.

pub mod checkpoint;
pub mod codec;
pub mod first_load;
pub mod lease;
pub mod schema;

pub use codec::Codec;

use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use crate::model::NormalizedRecord;
use crate::normalize::mapping::RecordReject;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: cannot create its directory: {source}. Check permissions of the parent directory.")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: cannot open: {source}. Check the path in [store] path and that the disk is not full.")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: schema migration failed: {message}. Restore the last backup or contact support.")]
    Migrate { path: PathBuf, message: String },
    #[error("store is locked by another process (another community-sync, or a tool holding it open): {0}. Stop that process or wait for it to finish, then run the command again.")]
    Locked(rusqlite::Error),
    #[error("store write failed: {0}. If the disk is full, free space on the store's disk and run again; the sync resumes from its cursor and nothing half-written is kept.")]
    Sql(#[from] rusqlite::Error),
    #[error("store: a writer thread panicked while holding the store; restart community-sync (nothing is lost: the last transaction rolled back)")]
    Poisoned,
    #[error("store: cannot set permissions on {path}: {source}. Run as the user that owns the store (the service's user) or fix the file's ownership.")]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// 16 bytes of SHA-256 over a raw record's JSON text (serde_json writes object keys sorted).
fn hash_text(text: &str) -> [u8; 16] {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// SQL for a `source_records` row's sealed normalized record, which lives beside it in
/// `record_payloads`: the one place a query outside the store names that table. A macro so
/// that it can be spliced into `concat!` statement literals (no string built per call).
macro_rules! normalized_of_record {
    () => {
        "(SELECT normalized FROM record_payloads p WHERE p.id = source_records.id)"
    };
}
pub(crate) use normalized_of_record;

/// SQL for an `outbox` row's event id, `{entity}:{key}:{version}` as in
/// [`crate::model::Event`]. Derived, not stored: a key's version is read from its row and
/// bumped in the transaction that writes its event, so the id is unique by construction
/// (migration 9). A macro for `concat!`, like [`normalized_of_record`].
macro_rules! event_id_of_outbox {
    () => {
        "(outbox.entity || ':' || outbox.entity_key || ':' || outbox.version)"
    };
}
pub(crate) use event_id_of_outbox;

/// One record's sealed normalized payload by record id (`?1`).
pub(crate) const SELECT_NORMALIZED_BY_ID: &str =
    "SELECT normalized FROM record_payloads WHERE id = ?1";

pub struct Store {
    conn: Connection,
    path: PathBuf,
    codec: Codec,
    checkpointer: checkpoint::Checkpointer,
    /// This open migrated the store to keyed audit rows: its unkeyed rows predate the keying
    /// and the first keyed attach MACs them ([`codec::attach`]).
    audit_unkeyed_legacy: bool,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Before the connection closes (its close copies what is left of the WAL).
        self.checkpointer.detach(&self.conn);
    }
}

/// One fetched record on its way into the store. `raw` is the record's JSON text as
/// serde_json writes it (object keys sorted): what is hashed and stored. Text, not a
/// `Value`: a batch of parsed trees would be several times its size in memory.
pub enum Ingest {
    Ok {
        record: Box<NormalizedRecord>,
        deleted: bool,
        raw: String,
    },
    Rejected {
        reject: RecordReject,
        raw: String,
    },
}

impl Ingest {
    /// The record's JSON text.
    pub fn raw(&self) -> &str {
        match self {
            Ingest::Ok { raw, .. } | Ingest::Rejected { raw, .. } => raw,
        }
    }
}

/// What an ingest batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestStats {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub deleted: u64,
    /// Records fetched twice in one run with different content: they changed while the run
    /// paged, so offsets may have shifted and a neighbour may have been skipped.
    pub moved: u64,
    /// Records a full refresh did not see but did not delete: more than its `max_delete`
    /// (see [`DeleteGuard`]).
    pub held: u64,
}

impl IngestStats {
    pub fn add(&mut self, o: &IngestStats) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
        self.deleted += o.deleted;
        self.moved += o.moved;
        self.held += o.held;
    }

    pub fn written(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// A change in the shape of a stream's records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// The canonical field whose source path drifted.
    pub field: String,
    /// `missing` or `type_changed`.
    pub kind: String,
    pub detail: String,
}

/// Identifies the stream a batch belongs to.
#[derive(Debug, Clone)]
pub struct StreamRef<'a> {
    pub source: &'a str,
    pub stream: &'a str,
    pub run_id: i64,
    pub link_stream: Option<&'a str>,
    /// True during a full refresh: seen records are remembered (in a TEMP table, so the
    /// store itself is not written) for delete detection.
    pub full_refresh: bool,
    /// The stream's entity (rejected records keep it too).
    pub entity: crate::model::EntityKind,
    /// When the run started (`now_text()` form): a record already changed since then was
    /// fetched twice in this run.
    pub run_started: &'a str,
}

/// Closing a stream run in the same transaction as its last batch.
#[derive(Debug, Clone)]
pub struct Finish {
    /// New cursor; `None` leaves it as it was.
    pub cursor: Option<String>,
    pub pages: u64,
    pub fetched: u64,
    pub totals: IngestStats,
    /// A complete full refresh: records of the stream not seen in it are deleted, within this
    /// limit (else held). `None` for every other run: nothing is deleted for not being seen.
    pub complete_full_refresh: Option<DeleteGuard>,
    /// The ledger file (name, SHA-256) whose records this run committed: recorded in the
    /// same transaction, so that it is never ingested twice.
    pub file: Option<(String, String)>,
}

/// How many unseen records a complete full refresh may delete.
#[derive(Debug, Clone, Copy)]
pub struct DeleteGuard {
    pub max: crate::config::MaxDelete,
    /// The operator confirmed this run's deletions (`sync --confirm-deletes`).
    pub confirmed: bool,
}

/// Deletions a full refresh held back (see [`DeleteGuard`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldDeletion {
    pub source: String,
    pub stream: String,
    pub run_id: i64,
    pub would_delete: u64,
    pub live: u64,
    pub max_delete: String,
    pub at: String,
}

impl HeldDeletion {
    /// What happened and what to do, for the run's error and `status`.
    pub fn describe(&self) -> String {
        let pct = if self.live > 0 {
            self.would_delete as f64 * 100.0 / self.live as f64
        } else {
            100.0
        };
        format!(
            "{}/{}: a full refresh would delete {} of {} records ({pct:.0}%, more than max_delete = {}); nothing was deleted. Check that the system answered everything, then apply them with `community-sync sync {} --full --confirm-deletes`",
            self.source, self.stream, self.would_delete, self.live, self.max_delete, self.source
        )
    }
}

impl Store {
    /// Opens (creating with owner-only permissions) and migrates the store.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
                set_mode(dir, 0o700)?;
            }
        }
        let existed = path.exists();
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if !existed {
            set_mode(path, 0o600)?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Reconcile alone uses a few dozen distinct statements per record; with rusqlite's
        // default of 16 cached statements they would be re-parsed over and over.
        conn.set_prepared_statement_cache_capacity(128);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Temporary b-trees (a first load's index sort, a full refresh's seen set, large sorts)
        // in files, which SQLite never syncs and the OS caches: in memory they would hold the
        // whole sort (~50 MiB for a million-record index build) in the daemon's RSS.
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.pragma_update(None, "cache_size", -16_000)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        // Also turns foreign keys on (off only while it migrates).
        schema::migrate(&mut conn).map_err(|e| StoreError::Migrate {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Checkpoints run on a thread of their own (store::checkpoint), replacing SQLite's
        // automatic ones inside the writer's commits. When the WAL starts over, its file is
        // cut back to what the writer's limit keeps it near.
        let thresholds = checkpoint::Thresholds::default();
        conn.pragma_update(None, "journal_size_limit", thresholds.wal_bytes())?;
        // SAFETY: the Store owns `conn` and detaches the Checkpointer in its `drop`, before
        // `conn` closes; both are used only through `&mut Store` or one thread at a time.
        let checkpointer = unsafe { checkpoint::Checkpointer::start(&conn, path, thresholds) };
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            codec: Codec::default(),
            checkpointer,
            audit_unkeyed_legacy: version > 0 && version < schema::AUDIT_KEYED_VERSION,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How personal data is sealed in this store's columns.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Whether this open migrated the audit trail to keyed rows (see [`codec::attach`]).
    pub(crate) fn audit_unkeyed_legacy(&self) -> bool {
        self.audit_unkeyed_legacy
    }

    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Copies every committed page still only in the WAL into the database file, after the
    /// checkpoint thread's copy under way (if any). Bulk work need not call it; the benchmark
    /// does, so that its timings include all the copying their writes caused.
    pub fn checkpoint_wal(&self) -> Result<()> {
        Ok(self.checkpointer.catch_up(&self.conn)?)
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Runs left `running` by a process that died are marked `interrupted`.
    pub fn mark_interrupted_runs(&self) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
            [now_text()],
        )?)
    }

    pub fn begin_run(
        &mut self,
        source: &str,
        stream: &str,
        kind: &str,
        trigger: &str,
    ) -> Result<i64> {
        let cursor = self.cursor(source, stream)?;
        self.conn.execute(
            "INSERT INTO runs (source, stream, kind, trigger, started_at, status, cursor_before)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![source, stream, kind, trigger, now_text(), cursor],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn cursor(&self, source: &str, stream: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT cursor FROM sync_state WHERE source = ?1 AND stream = ?2",
                params![source, stream],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// When a ledger file with these bytes was ingested into the stream, if ever: (file
    /// name, time, run).
    pub fn ingested_file(
        &self,
        source: &str,
        stream: &str,
        sha256: &str,
    ) -> Result<Option<(String, String, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, at, run_id FROM ingested_files WHERE source = ?1 AND stream = ?2 AND sha256 = ?3",
                params![source, stream, sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Prepares delete detection for a full refresh of one stream.
    pub fn begin_full_refresh(&mut self, run_id: i64) -> Result<()> {
        self.conn.execute_batch(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS seen_{run_id} (id INTEGER PRIMARY KEY)"
        ))?;
        Ok(())
    }

    /// Writes one batch in one transaction; with `finish`, the cursor advances and the run
    /// closes in that same transaction.
    pub fn ingest(
        &mut self,
        at: &StreamRef<'_>,
        batch: &[Ingest],
        finish: Option<&Finish>,
    ) -> Result<IngestStats> {
        let prepared = Prepared::new(&self.codec, batch, false);
        self.ingest_prepared(at, prepared, finish)
    }

    /// [`Store::ingest`] with the batch's CPU work already done ([`Prepared::new`], with this
    /// store's codec): a caller that shares the store between writers does it before taking
    /// the store, so the store is held only for the SQL.
    pub fn ingest_prepared(
        &mut self,
        at: &StreamRef<'_>,
        prepared: Prepared<'_>,
        finish: Option<&Finish>,
    ) -> Result<IngestStats> {
        let now = now_text();
        let tx = self.conn.transaction().map_err(classify)?;
        let mut stats = ingest_in(&tx, &self.codec, at, prepared, &now)?;
        if let Some(f) = finish {
            let mut held = None;
            // A record that changed while the refresh paged moved in the system's order, so a
            // neighbour may have slipped past a page boundary: deleting the unseen is unsafe
            // this time (the next refresh does it).
            let moved = f.totals.moved + stats.moved > 0;
            if moved && f.complete_full_refresh.is_some() {
                tracing::warn!(
                    source = at.source, stream = at.stream, run_id = at.run_id,
                    "records changed while this full refresh paged; delete detection waits for the next refresh"
                );
            }
            if let Some(guard) = f.complete_full_refresh.filter(|_| !moved) {
                match delete_unseen(&tx, at, guard, &now)? {
                    Ok(n) => stats.deleted += n,
                    Err(h) => {
                        stats.held = h.would_delete;
                        held = Some(h);
                    }
                }
            }
            let mut totals = f.totals;
            totals.add(&stats);
            if let Some(h) = held {
                // The run ends failed: its records are kept, nothing is deleted, the cursor
                // (a full refresh has none) stays.
                close_run(
                    &tx,
                    at.run_id,
                    "failed",
                    Some(&h.describe()),
                    f,
                    &totals,
                    None,
                    &now,
                )?;
                tx.commit().map_err(classify)?;
                self.drop_seen(at);
                return Ok(stats);
            }
            // A record that changed under the run's feet may have shifted a neighbour past a
            // page boundary: keep the old cursor so the next run reads the window again.
            let cursor = if totals.moved > 0 {
                None
            } else {
                f.cursor.as_ref()
            };
            if let Some(cursor) = cursor {
                tx.execute(
                    "INSERT INTO sync_state (source, stream, cursor, last_run_id, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source, stream) DO UPDATE SET cursor = ?3, last_run_id = ?4, updated_at = ?5",
                    params![at.source, at.stream, cursor, at.run_id, now],
                )?;
            }
            if let Some((name, sha256)) = &f.file {
                tx.execute(
                    "INSERT OR IGNORE INTO ingested_files (source, stream, sha256, name, records, run_id, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![at.source, at.stream, sha256, name, f.fetched as i64, at.run_id, now],
                )?;
            }
            close_run(&tx, at.run_id, "ok", None, f, &totals, cursor, &now)?;
        }
        tx.commit().map_err(classify)?;
        if finish.is_some() {
            self.drop_seen(at);
        }
        Ok(stats)
    }

    /// Forgets a full refresh's seen set once its run is closed.
    fn drop_seen(&self, at: &StreamRef<'_>) {
        if at.full_refresh {
            let _ = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS temp.seen_{}", at.run_id));
        }
    }

    /// Streams whose last full refresh held its deletions (see [`DeleteGuard`]).
    pub fn held_deletions(&self) -> Result<Vec<HeldDeletion>> {
        let mut stmt = self.conn.prepare(
            "SELECT source, stream, run_id, would_delete, live, max_delete, at FROM held_deletions
             ORDER BY source, stream",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(HeldDeletion {
                source: r.get(0)?,
                stream: r.get(1)?,
                run_id: r.get(2)?,
                would_delete: r.get::<_, i64>(3)? as u64,
                live: r.get::<_, i64>(4)? as u64,
                max_delete: r.get(5)?,
                at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers a finding about a stream once (a deletion test that never matches, …), for
    /// `status`; true when it is new (the caller logs it then). The detail is masked.
    pub fn note_once(
        &mut self,
        source: &str,
        stream: &str,
        run_id: i64,
        topic: &str,
        kind: &str,
        detail: &str,
    ) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO stream_notes (source, stream, topic, kind, detail, run_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                source,
                stream,
                topic,
                kind,
                crate::mask::scrub_text(detail),
                run_id,
                now_text()
            ],
        )?;
        Ok(n > 0)
    }

    /// The notes about a stream (`topic kind: detail (at)`), newest first.
    pub fn stream_notes(&self, source: &str, stream: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT topic || ' ' || kind || ': ' || detail || ' (' || at || ')' FROM stream_notes
             WHERE source = ?1 AND stream = ?2 ORDER BY at DESC",
        )?;
        let rows = stmt.query_map(params![source, stream], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Closes a failed run; its cursor stays where it was.
    pub fn fail_run(
        &mut self,
        run_id: i64,
        error: &str,
        pages: u64,
        fetched: u64,
        totals: &IngestStats,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = 'failed', finished_at = ?2, error = ?3, pages = ?4, fetched = ?5,
             inserted = ?6, updated = ?7, unchanged = ?8, rejected = ?9, deleted = ?10 WHERE id = ?1",
            params![
                run_id,
                now_text(),
                crate::mask::scrub_text(error),
                pages as i64,
                fetched as i64,
                totals.inserted as i64,
                totals.updated as i64,
                totals.unchanged as i64,
                totals.rejected as i64,
                totals.deleted as i64
            ],
        )?;
        let _ = self
            .conn
            .execute_batch(&format!("DROP TABLE IF EXISTS temp.seen_{run_id}"));
        Ok(())
    }

    /// Compares a run's field profile with what the stream looked like before, records and
    /// returns drift (a mapped field that stopped arriving, or changed JSON type). Each drift is
    /// reported once; nothing is written when nothing changed.
    pub fn check_drift(
        &mut self,
        source: &str,
        stream: &str,
        run_id: i64,
        fields: &[&str],
        profile: &crate::normalize::mapping::FieldProfile,
    ) -> Result<Vec<Drift>> {
        use crate::normalize::mapping::json_type_name;
        /// Fewer records than this say too little about a field's absence.
        const MIN_RECORDS_FOR_MISSING: u64 = 20;
        let now = now_text();
        let tx = self.conn.transaction()?;
        let mut drifts = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            let Some(seen) = profile.fields.get(i) else {
                continue;
            };
            let stored: Option<u8> = tx
                .query_row(
                    "SELECT json_types FROM stream_fields WHERE source = ?1 AND stream = ?2 AND field = ?3",
                    params![source, stream, field],
                    |r| r.get::<_, i64>(0).map(|v| v as u8),
                )
                .optional()?;
            let (kind, detail, new_types) = match stored {
                None if seen.present > 0 => (None, String::new(), Some(seen.types)),
                Some(old)
                    if old != 0
                        && seen.present == 0
                        && profile.records >= MIN_RECORDS_FOR_MISSING =>
                {
                    (
                        Some("missing"),
                        format!(
                            "absent from all {} records of this run (was {})",
                            profile.records,
                            json_type_name(old)
                        ),
                        Some(0),
                    )
                }
                Some(old) if seen.present > 0 && old != 0 && seen.types & !old != 0 => (
                    Some("type_changed"),
                    format!(
                        "now {}, was {}",
                        json_type_name(seen.types),
                        json_type_name(old)
                    ),
                    Some(old | seen.types),
                ),
                Some(0) if seen.present > 0 => (None, String::new(), Some(seen.types)),
                _ => (None, String::new(), None),
            };
            if let Some(types) = new_types {
                tx.execute(
                    "INSERT INTO stream_fields (source, stream, field, json_types, last_seen_run) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source, stream, field) DO UPDATE SET json_types = ?4, last_seen_run = ?5",
                    params![source, stream, field, types as i64, run_id],
                )?;
            }
            if let Some(kind) = kind {
                tx.execute(
                    "INSERT INTO schema_drift (source, stream, field, kind, detail, run_id, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![source, stream, field, kind, detail, run_id, now],
                )?;
                drifts.push(Drift {
                    field: field.to_string(),
                    kind: kind.to_string(),
                    detail,
                });
            }
        }
        tx.commit()?;
        Ok(drifts)
    }

    /// Records a finished non-stream run (reconcile, push) for status.
    pub fn record_run(
        &mut self,
        source: &str,
        kind: &str,
        trigger: &str,
        ok: bool,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_text();
        self.conn.execute(
            "INSERT INTO runs (source, stream, kind, trigger, started_at, finished_at, status, error)
             VALUES (?1, '*', ?2, ?3, ?4, ?4, ?5, ?6)",
            params![source, kind, trigger, now, if ok { "ok" } else { "failed" }, error],
        )?;
        Ok(())
    }
}

fn ingest_in(
    tx: &Transaction<'_>,
    codec: &Codec,
    at: &StreamRef<'_>,
    prepared: Prepared<'_>,
    now: &str,
) -> Result<IngestStats> {
    let mut stats = IngestStats::default();
    let mut statements = IngestStatements {
        lookup: tx.prepare_cached(
            "SELECT id, content_hash, status, last_changed FROM source_records
             WHERE source = ?1 AND stream = ?2 AND source_key = ?3",
        )?,
        insert: tx.prepare_cached(
            "INSERT INTO source_records (source, stream, source_key, entity, status, content_hash,
                 updated_at, deleted, id_key, np_key, link_stream, person_ref, dirty, first_seen, last_changed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?13)",
        )?,
        update: tx.prepare_cached(
            "UPDATE source_records SET entity = ?2, status = ?3, content_hash = ?4,
                 updated_at = ?5, deleted = ?6, id_key = ?7, np_key = ?8, link_stream = ?9, person_ref = ?10,
                 dirty = 1, last_changed = ?11
             WHERE id = ?1",
        )?,
        put_payload: tx.prepare_cached(
            "INSERT INTO record_payloads (id, raw, normalized) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET raw = excluded.raw, normalized = excluded.normalized",
        )?,
        clear_rejects: tx.prepare_cached("DELETE FROM rejects WHERE record_id = ?1")?,
        add_reject: tx.prepare_cached(
            "INSERT INTO rejects (record_id, source, stream, source_key, field, whole_record, reason, detail, raw_value, run_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?,
        seen: if at.full_refresh {
            Some(tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO temp.seen_{} (id) VALUES (?1)",
                at.run_id
            ))?)
        } else {
            None
        },
    };
    let Prepared {
        batch,
        keyed,
        sealed,
    } = prepared;
    // Sealed by another codec than the store's (its key replaced since): sealed again here.
    let mut sealed = sealed.and_then(|(by, sealed)| by.is(codec).then_some(sealed));
    // Segment by segment, the lookups; only what changed is sealed (on every core, unless
    // it came sealed) and written. A key seen twice in one batch (it moved between pages)
    // starts a new segment, so its second lookup sees the first write.
    let mut start = 0;
    while start < keyed.len() {
        let mut keys = std::collections::HashSet::new();
        let end = keyed[start..]
            .iter()
            .position(|(k, _)| !keys.insert(k.as_str()))
            .map_or(keyed.len(), |n| start + n);
        ingest_segment(
            tx,
            codec,
            at,
            batch,
            &keyed,
            sealed.as_mut(),
            start..end,
            now,
            &mut stats,
            &mut statements,
        )?;
        start = end;
    }
    Ok(stats)
}

/// An ingest batch's pure CPU work, done on every core before the store is needed: each
/// record's key and content hash and, when `seal` (most of the batch is expected to be new or
/// changed), its sealed payloads and match keys. Without `seal`, only the records the lookups
/// find changed are sealed, inside the transaction: a poll that re-reads unchanged records
/// seals nothing.
pub struct Prepared<'a> {
    batch: &'a [Ingest],
    keyed: Vec<(String, [u8; 16])>,
    /// The records sealed ahead, with the codec that sealed them.
    sealed: Option<(Codec, Vec<Option<Sealed<'a>>>)>,
}

impl<'a> Prepared<'a> {
    pub fn new(codec: &Codec, batch: &'a [Ingest], seal: bool) -> Prepared<'a> {
        use rayon::prelude::*;
        let keyed = batch
            .par_iter()
            .map(|item| {
                let hash = hash_text(item.raw());
                let key = match item {
                    Ingest::Ok { record, .. } => record.source_key.clone(),
                    Ingest::Rejected { reject, .. } => reject
                        .source_key
                        .clone()
                        .unwrap_or_else(|| format!("#{}", hex::encode(hash))),
                };
                (key, hash)
            })
            .collect();
        let sealed = seal.then(|| {
            let sealed = batch
                .par_iter()
                .map(|item| Some(Sealed::of(codec, item)))
                .collect();
            (codec.clone(), sealed)
        });
        Prepared {
            batch,
            keyed,
            sealed,
        }
    }
}

/// The prepared statements of one ingest.
struct IngestStatements<'t> {
    lookup: rusqlite::CachedStatement<'t>,
    insert: rusqlite::CachedStatement<'t>,
    update: rusqlite::CachedStatement<'t>,
    /// A record's sealed payloads, beside it in `record_payloads`.
    put_payload: rusqlite::CachedStatement<'t>,
    clear_rejects: rusqlite::CachedStatement<'t>,
    add_reject: rusqlite::CachedStatement<'t>,
    seen: Option<rusqlite::CachedStatement<'t>>,
}

/// One segment of an ingest batch (no key twice): looks its records up, seals what changed and
/// writes it.
#[allow(clippy::too_many_arguments)]
fn ingest_segment<'a>(
    tx: &Transaction<'_>,
    codec: &Codec,
    at: &StreamRef<'_>,
    batch: &'a [Ingest],
    keyed: &[(String, [u8; 16])],
    presealed: Option<&mut Vec<Option<Sealed<'a>>>>,
    range: std::ops::Range<usize>,
    now: &str,
    stats: &mut IngestStats,
    st: &mut IngestStatements<'_>,
) -> Result<()> {
    let changed = find_changed(at, keyed, range, stats, st)?;
    let sealed = seal_changed(codec, batch, &changed, presealed);
    for ((i, existing), sealed) in changed.into_iter().zip(sealed) {
        let rejected = matches!(batch[i], Ingest::Rejected { .. });
        write_record(
            tx, at, &keyed[i], existing, sealed, rejected, now, stats, st,
        )?;
    }
    Ok(())
}

/// A record that changed or is new: its index in the batch and, if stored, its id and when it
/// last changed.
type Changed = (usize, Option<(i64, String)>);

/// Looks up each record of `range`: unchanged ones are counted (and marked seen), the rest
/// returned.
fn find_changed(
    at: &StreamRef<'_>,
    keyed: &[(String, [u8; 16])],
    range: std::ops::Range<usize>,
    stats: &mut IngestStats,
    st: &mut IngestStatements<'_>,
) -> Result<Vec<Changed>> {
    let mut changed: Vec<Changed> = Vec::new();
    for i in range {
        let (key, hash) = &keyed[i];
        let existing: Option<(i64, Vec<u8>, String, String)> = st
            .lookup
            .query_row(params![at.source, at.stream, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        if let Some((id, old_hash, old_status, last_changed)) = existing {
            if let Some(seen) = st.seen.as_mut() {
                seen.execute([id])?;
            }
            if old_hash.as_slice() == hash {
                stats.unchanged += 1;
                if old_status == "rejected" {
                    stats.rejected += 1;
                }
                continue;
            }
            if last_changed.as_str() >= at.run_started {
                stats.moved += 1;
            }
            changed.push((i, Some((id, last_changed))));
        } else {
            changed.push((i, None));
        }
    }
    Ok(changed)
}

/// The sealed form of each changed record: taken from `presealed` when the batch came
/// sealed, else sealed here on every core.
fn seal_changed<'a>(
    codec: &Codec,
    batch: &'a [Ingest],
    changed: &[Changed],
    presealed: Option<&mut Vec<Option<Sealed<'a>>>>,
) -> Vec<Sealed<'a>> {
    match presealed {
        // Each index is in one segment only, so each sealed record is taken once.
        Some(all) => changed
            .iter()
            .map(|(i, _)| {
                all.get_mut(*i)
                    .and_then(Option::take)
                    .unwrap_or_else(|| Sealed::of(codec, &batch[*i]))
            })
            .collect(),
        None => {
            use rayon::prelude::*;
            changed
                .par_iter()
                .map(|(i, _)| Sealed::of(codec, &batch[*i]))
                .collect()
        }
    }
}

/// Writes one changed or new record: its row (updated or inserted), its payloads and its
/// quarantine rows.
#[allow(clippy::too_many_arguments)]
fn write_record(
    tx: &Transaction<'_>,
    at: &StreamRef<'_>,
    (key, hash): &(String, [u8; 16]),
    existing: Option<(i64, String)>,
    sealed: Sealed<'_>,
    rejected: bool,
    now: &str,
    stats: &mut IngestStats,
    st: &mut IngestStatements<'_>,
) -> Result<()> {
    let Sealed {
        status,
        raw,
        normalized,
        updated_at,
        deleted,
        id_key,
        np_key,
        person_ref,
        rejects,
    } = sealed;
    let entity = at.entity.as_str();
    let id = match &existing {
        Some((id, _)) => {
            st.update.execute(params![
                id,
                entity,
                status,
                hash.as_slice(),
                updated_at,
                deleted,
                id_key,
                np_key,
                at.link_stream,
                person_ref,
                now
            ])?;
            st.clear_rejects.execute([id])?;
            if deleted {
                stats.deleted += 1;
            } else {
                stats.updated += 1;
            }
            *id
        }
        None => {
            st.insert.execute(params![
                at.source,
                at.stream,
                key,
                entity,
                status,
                hash.as_slice(),
                updated_at,
                deleted,
                id_key,
                np_key,
                at.link_stream,
                person_ref,
                now
            ])?;
            let id = tx.last_insert_rowid();
            if let Some(seen) = st.seen.as_mut() {
                seen.execute([id])?;
            }
            if deleted {
                stats.deleted += 1;
            } else {
                stats.inserted += 1;
            }
            id
        }
    };
    st.put_payload.execute(params![id, raw, normalized])?;
    if rejected {
        stats.rejected += 1;
    }
    for (reject, raw_value) in rejects {
        st.add_reject.execute(params![
            id,
            at.source,
            at.stream,
            reject.source_key,
            reject.field,
            reject.whole_record,
            reject.reason,
            reject.detail,
            raw_value,
            at.run_id,
            now
        ])?;
    }
    Ok(())
}

/// A quarantine row, borrowed from the batch.
struct RejectRow<'a> {
    source_key: Option<&'a str>,
    field: &'a str,
    whole_record: bool,
    reason: &'static str,
    detail: &'a str,
}

/// What a changed record writes, computed off the SQL path: its sealed payloads, match keys
/// and quarantine rows.
struct Sealed<'a> {
    status: &'static str,
    raw: rusqlite::types::ToSqlOutput<'static>,
    normalized: rusqlite::types::ToSqlOutput<'static>,
    updated_at: Option<&'a str>,
    deleted: bool,
    id_key: Option<String>,
    np_key: Option<String>,
    person_ref: Option<&'a str>,
    rejects: Vec<(RejectRow<'a>, rusqlite::types::ToSqlOutput<'static>)>,
}

impl<'a> Sealed<'a> {
    fn of(codec: &Codec, item: &'a Ingest) -> Sealed<'a> {
        let raw_text = item.raw();
        match item {
            Ingest::Ok {
                record, deleted, ..
            } => {
                let normalized = serde_json::to_string(record).unwrap_or_default();
                let (id_key, np_key) = codec::record_keys(codec, &record.person);
                Sealed {
                    status: "ok",
                    raw: codec.seal(codec::RECORD_RAW, raw_text),
                    normalized: codec.seal(codec::RECORD_NORMALIZED, &normalized),
                    updated_at: record.updated_at.as_deref(),
                    deleted: *deleted,
                    id_key,
                    np_key,
                    person_ref: record.person_ref.as_deref(),
                    rejects: record
                        .field_rejects
                        .iter()
                        .map(|fr| {
                            (
                                RejectRow {
                                    source_key: Some(record.source_key.as_str()),
                                    field: &fr.field,
                                    whole_record: false,
                                    reason: fr.reason.code(),
                                    detail: &fr.detail,
                                },
                                codec.seal(codec::REJECT_RAW, &fr.raw),
                            )
                        })
                        .collect(),
                }
            }
            Ingest::Rejected { reject, .. } => Sealed {
                status: "rejected",
                raw: codec.seal(codec::RECORD_RAW, raw_text),
                normalized: rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null),
                updated_at: None,
                deleted: false,
                id_key: None,
                np_key: None,
                person_ref: None,
                rejects: vec![(
                    RejectRow {
                        source_key: reject.source_key.as_deref(),
                        field: &reject.field,
                        whole_record: true,
                        reason: reject.reason.code(),
                        detail: &reject.detail,
                    },
                    codec.seal(codec::REJECT_RAW, &reject.raw),
                )],
            },
        }
    }
}

const OUTBOX_INSERT: &str = "INSERT INTO outbox (entity, entity_key, version, op, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const OUTBOX_PAYLOAD_INSERT: &str = "INSERT INTO outbox_payloads (id, payload) VALUES (?1, ?2)";

/// Appends an event to the outbox. Call it inside the transaction that makes the change.
pub fn enqueue_event(
    tx: &Transaction<'_>,
    codec: &Codec,
    event: &crate::model::Event,
) -> Result<()> {
    let payload = serde_json::to_string(event).unwrap_or_default();
    insert_event(tx, event, codec.seal(codec::OUTBOX_PAYLOAD, &payload))
}

fn insert_event(
    tx: &Transaction<'_>,
    event: &crate::model::Event,
    payload: rusqlite::types::ToSqlOutput<'static>,
) -> Result<()> {
    debug_assert_eq!(
        event.event_id,
        format!("{}:{}:{}", event.entity, event.key, event.version)
    );
    tx.prepare_cached(OUTBOX_INSERT)?.execute(params![
        event.entity,
        event.key,
        event.version,
        event.op.as_str(),
        event.emitted_at
    ])?;
    tx.prepare_cached(OUTBOX_PAYLOAD_INSERT)?
        .execute(params![tx.last_insert_rowid(), payload])?;
    Ok(())
}

/// The events of one transaction, appended to the outbox together just before it commits
/// ([`OutboxBatch::flush`]), in the order they were pushed. Serialising and sealing them is
/// the CPU-heavy part of the outbox, and done this way it runs on every core.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    events: Vec<crate::model::Event>,
}

impl OutboxBatch {
    pub fn push(&mut self, event: crate::model::Event) {
        self.events.push(event);
    }

    /// Writes the buffered events into the outbox inside `tx` (which must be the transaction
    /// of the changes they announce) and empties the buffer.
    pub fn flush(&mut self, tx: &Transaction<'_>, codec: &Codec) -> Result<()> {
        use rayon::prelude::*;
        let events = std::mem::take(&mut self.events);
        let payloads: Vec<rusqlite::types::ToSqlOutput<'static>> = events
            .par_iter()
            .map(|e| {
                codec.seal(
                    codec::OUTBOX_PAYLOAD,
                    &serde_json::to_string(e).unwrap_or_default(),
                )
            })
            .collect();
        for (event, payload) in events.iter().zip(payloads) {
            insert_event(tx, event, payload)?;
        }
        Ok(())
    }
}

/// Closes a stream run (ok, or failed with `error`) with its figures and cursor.
#[allow(clippy::too_many_arguments)]
fn close_run(
    tx: &Transaction<'_>,
    run_id: i64,
    status: &str,
    error: Option<&str>,
    f: &Finish,
    totals: &IngestStats,
    cursor: Option<&String>,
    now: &str,
) -> Result<()> {
    tx.execute(
        "UPDATE runs SET status = ?11, error = ?12, finished_at = ?2, pages = ?3, fetched = ?4, inserted = ?5,
         updated = ?6, unchanged = ?7, rejected = ?8, deleted = ?9,
         cursor_after = COALESCE(?10, cursor_before) WHERE id = ?1",
        params![
            run_id,
            now,
            f.pages as i64,
            f.fetched as i64,
            totals.inserted as i64,
            totals.updated as i64,
            totals.unchanged as i64,
            totals.rejected as i64,
            totals.deleted as i64,
            cursor,
            status,
            error
        ],
    )?;
    Ok(())
}

/// A complete full refresh's delete detection: the stream's live records it did not see are
/// marked deleted, unless there are more than the guard allows and the operator did not
/// confirm; then nothing is deleted and the finding is held (`Err`) for `status`.
fn delete_unseen(
    tx: &Transaction<'_>,
    at: &StreamRef<'_>,
    guard: DeleteGuard,
    now: &str,
) -> Result<std::result::Result<u64, HeldDeletion>> {
    let (unseen, live): (i64, i64) = tx.query_row(
        &format!(
            "SELECT COALESCE(sum(id NOT IN (SELECT id FROM temp.seen_{})), 0), count(*)
             FROM source_records WHERE source = ?1 AND stream = ?2 AND deleted = 0",
            at.run_id
        ),
        params![at.source, at.stream],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (unseen, live) = (unseen as u64, live as u64);
    if guard.max.exceeded(unseen, live) && !guard.confirmed {
        let held = HeldDeletion {
            source: at.source.to_string(),
            stream: at.stream.to_string(),
            run_id: at.run_id,
            would_delete: unseen,
            live,
            max_delete: guard.max.to_string(),
            at: now.to_string(),
        };
        tx.execute(
            "INSERT INTO held_deletions (source, stream, run_id, would_delete, live, max_delete, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (source, stream) DO UPDATE SET run_id = ?3, would_delete = ?4, live = ?5,
                 max_delete = ?6, at = ?7",
            params![
                held.source,
                held.stream,
                held.run_id,
                unseen as i64,
                live as i64,
                held.max_delete,
                now
            ],
        )?;
        return Ok(Err(held));
    }
    tx.execute(
        "DELETE FROM held_deletions WHERE source = ?1 AND stream = ?2",
        params![at.source, at.stream],
    )?;
    Ok(Ok(mark_unseen_deleted(tx, at, now)?))
}

fn mark_unseen_deleted(tx: &Transaction<'_>, at: &StreamRef<'_>, now: &str) -> Result<u64> {
    let n = tx.execute(
        &format!(
            "UPDATE source_records SET deleted = 1, dirty = 1, last_changed = ?3
             WHERE source = ?1 AND stream = ?2 AND deleted = 0
               AND id NOT IN (SELECT id FROM temp.seen_{})",
            at.run_id
        ),
        params![at.source, at.stream, now],
    )?;
    Ok(n as u64)
}

fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Locked(e)
        }
        _ => StoreError::Sql(e),
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        StoreError::Permissions {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityKind, PersonFields};
    use serde_json::json;

    fn rec(key: &str, phone: &str) -> (Ingest, serde_json::Value) {
        let raw = json!({"k": key, "p": phone});
        let record = NormalizedRecord {
            entity: EntityKind::CardAccount,
            source_key: key.into(),
            person: PersonFields {
                name: Some("张三".into()),
                phone: Some(phone.into()),
                ..Default::default()
            },
            fields: Default::default(),
            person_ref: None,
            updated_at: None,
            field_rejects: vec![],
        };
        (
            Ingest::Ok {
                record: Box::new(record),
                deleted: false,
                raw: raw.to_string(),
            },
            raw,
        )
    }

    /// Stream `a/b` of card accounts, in run `run`.
    fn stream_ref(run: i64, full_refresh: bool) -> StreamRef<'static> {
        StreamRef {
            source: "a",
            stream: "b",
            run_id: run,
            link_stream: None,
            full_refresh,
            entity: EntityKind::CardAccount,
            run_started: "2000-01-01T00:00:00.000Z",
        }
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn each_event_gets_its_row_its_payload_and_the_same_event_id_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let codec = store.codec().clone();
        let first = crate::model::Event::new(
            "person",
            "P00000001",
            3,
            crate::model::Op::Upsert,
            vec!["name".into()],
            Some(serde_json::json!({"name": "first"})),
        );
        // A source key may itself hold ':' and '/'.
        let other = crate::model::Event::new(
            "card_account",
            "onecard/cardholders/K:07/x",
            12,
            crate::model::Op::Delete,
            vec![],
            None,
        );
        let ids = [first.event_id.clone(), other.event_id.clone()];
        let tx = store.conn_mut().transaction().unwrap();
        let mut batch = OutboxBatch::default();
        batch.push(first);
        batch.push(other);
        batch.flush(&tx, &codec).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox_payloads"), 2);
        // Each payload sits beside its own row, and the id derived in SQL is the event's.
        let payloads: Vec<(String, String)> = store
            .conn()
            .prepare(concat!(
                "SELECT ",
                event_id_of_outbox!(),
                ", payload FROM outbox JOIN outbox_payloads USING (id) ORDER BY id"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(payloads[0].0, ids[0]);
        assert_eq!(payloads[0].0, "person:P00000001:3");
        assert!(payloads[0].1.contains("first"), "{}", payloads[0].1);
        assert_eq!(payloads[1].0, ids[1]);
        assert_eq!(payloads[1].0, "card_account:onecard/cardholders/K:07/x:12");
        assert!(
            payloads[1].1.contains("\"op\":\"delete\""),
            "{}",
            payloads[1].1
        );
    }

    #[test]
    fn a_key_twice_in_one_batch_is_one_row_with_the_later_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("a", "b", "sync", "test").unwrap();
        let at = stream_ref(run, false);
        // Moved between two pages of one batch: once unchanged-in-batch, once changed.
        let batch = vec![
            rec("1", "13800000000").0,
            rec("2", "13800000001").0,
            rec("1", "13800000000").0,
            rec("1", "13900000009").0,
        ];
        let s = store.ingest(&at, &batch, None).unwrap();
        assert_eq!((s.inserted, s.unchanged, s.updated), (2, 1, 1));
        assert_eq!(s.moved, 1, "the second version arrived in the same run");
        assert_eq!(count(&store, "SELECT count(*) FROM source_records"), 2);
        let normalized: String = store
            .conn()
            .query_row(
                "SELECT normalized FROM record_payloads JOIN source_records USING (id)
                 WHERE source_key = '1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(normalized.contains("13900000009"), "{normalized}");
    }

    #[test]
    fn refetch_of_unchanged_record_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("a", "b", "sync", "test").unwrap();
        let at = stream_ref(run, false);
        let batch = vec![rec("1", "13800000000").0, rec("2", "13800000001").0];
        let s1 = store.ingest(&at, &batch, None).unwrap();
        assert_eq!(s1.inserted, 2);
        let changes_before = store.conn().total_changes();
        let s2 = store.ingest(&at, &batch, None).unwrap();
        assert_eq!(s2.unchanged, 2);
        assert_eq!(s2.written(), 0);
        assert_eq!(
            store.conn().total_changes(),
            changes_before,
            "no row may be written"
        );
        let s3 = store
            .ingest(&at, &[rec("1", "13900000000").0], None)
            .unwrap();
        assert_eq!(s3.updated, 1);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM source_records WHERE dirty = 1"
            ),
            2
        );
    }

    #[test]
    fn a_batch_sealed_ahead_writes_what_one_sealed_in_place_writes() {
        // Key 1 twice in one batch (it moved between pages): the second version wins.
        let batch = vec![
            rec("1", "13800000000").0,
            rec("2", "13800000001").0,
            rec("1", "13800000002").0,
        ];
        let rows = |store: &Store| -> Vec<(String, String, Option<String>)> {
            store
                .conn()
                .prepare(
                    "SELECT s.source_key, p.raw, p.normalized FROM source_records s
                     JOIN record_payloads p USING (id) ORDER BY s.id",
                )
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut in_place = Store::open(&dir.path().join("a.db")).unwrap();
        let mut ahead = Store::open(&dir.path().join("b.db")).unwrap();
        let run = in_place.begin_run("a", "b", "sync", "test").unwrap();
        assert_eq!(ahead.begin_run("a", "b", "sync", "test").unwrap(), run);
        let at = stream_ref(run, false);
        let s1 = in_place.ingest(&at, &batch, None).unwrap();
        let prepared = Prepared::new(ahead.codec(), &batch, true);
        let s2 = ahead.ingest_prepared(&at, prepared, None).unwrap();
        assert_eq!(s1, s2);
        assert_eq!((s2.inserted, s2.updated), (2, 1));
        assert_eq!(rows(&in_place), rows(&ahead));
        assert!(rows(&ahead)[0].1.contains("13800000002"));
        // Sealed ahead or not, a batch that changed nothing writes nothing.
        let changes_before = ahead.conn().total_changes();
        let prepared = Prepared::new(ahead.codec(), &batch[1..], true);
        let s3 = ahead.ingest_prepared(&at, prepared, None).unwrap();
        assert_eq!((s3.unchanged, s3.written()), (2, 0));
        assert_eq!(ahead.conn().total_changes(), changes_before);
        // Sealed ahead under another key than the store's: the store seals it again.
        let other = Codec::Sealed(std::sync::Arc::new(crate::store::codec::Keyring::new(
            crate::crypto::StoreKey::from_bytes(
                &[7; 32],
                crate::crypto::Algorithm::Sm4Gcm,
                crate::crypto::BlindAlgorithm::HmacSm3,
            ),
            vec![],
        )));
        let changed = vec![rec("3", "13800000003").0];
        let prepared = Prepared::new(&other, &changed, true);
        ahead.ingest_prepared(&at, prepared, None).unwrap();
        assert!(rows(&ahead)[2].1.contains("13800000003"), "stored plain");
    }

    #[test]
    fn cursor_moves_only_with_finish_and_failed_run_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("a", "b", "sync", "test").unwrap();
        let at = stream_ref(run, false);
        store
            .ingest(&at, &[rec("1", "13800000000").0], None)
            .unwrap();
        assert_eq!(store.cursor("a", "b").unwrap(), None);
        let finish = Finish {
            cursor: Some("2024-05-01T10:00:00+08:00".into()),
            pages: 1,
            fetched: 1,
            totals: IngestStats::default(),
            complete_full_refresh: None,
            file: None,
        };
        store.ingest(&at, &[], Some(&finish)).unwrap();
        assert_eq!(
            store.cursor("a", "b").unwrap().as_deref(),
            Some("2024-05-01T10:00:00+08:00")
        );
        let run2 = store.begin_run("a", "b", "sync", "test").unwrap();
        store
            .fail_run(run2, "boom", 0, 0, &IngestStats::default())
            .unwrap();
        assert_eq!(
            store.cursor("a", "b").unwrap().as_deref(),
            Some("2024-05-01T10:00:00+08:00")
        );
    }

    #[test]
    fn complete_full_refresh_marks_unseen_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("a", "b", "sync", "test").unwrap();
        let at = stream_ref(run, true);
        store.begin_full_refresh(run).unwrap();
        store
            .ingest(
                &at,
                &[rec("1", "13800000000").0, rec("2", "13800000001").0],
                None,
            )
            .unwrap();
        let finish = Finish {
            cursor: None,
            pages: 1,
            fetched: 2,
            totals: IngestStats::default(),
            complete_full_refresh: Some(DeleteGuard {
                max: crate::config::MaxDelete::DEFAULT,
                confirmed: false,
            }),
            file: None,
        };
        store.ingest(&at, &[], Some(&finish)).unwrap();
        let run2 = store.begin_run("a", "b", "sync", "test").unwrap();
        let at2 = StreamRef { run_id: run2, ..at };
        store.begin_full_refresh(run2).unwrap();
        store
            .ingest(&at2, &[rec("1", "13800000000").0], None)
            .unwrap();
        let s = store.ingest(&at2, &[], Some(&finish)).unwrap();
        assert_eq!(s.deleted, 1);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM source_records WHERE deleted = 1"
            ),
            1
        );
        assert_eq!(count(&store, "SELECT deleted FROM runs WHERE id = 2"), 1);
    }

    #[test]
    fn a_refresh_that_would_delete_too_much_holds_its_deletions_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let all: Vec<Ingest> = (0..10)
            .map(|i| rec(&i.to_string(), &format!("1380000000{i}")).0)
            .collect();
        let guard = |confirmed| DeleteGuard {
            max: crate::config::MaxDelete::DEFAULT,
            confirmed,
        };
        let refresh = |store: &mut Store, batch: &[Ingest], confirmed: bool| {
            let run = store.begin_run("a", "b", "sync", "test").unwrap();
            store.begin_full_refresh(run).unwrap();
            let at = stream_ref(run, true);
            let finish = Finish {
                cursor: None,
                pages: 1,
                fetched: batch.len() as u64,
                totals: IngestStats::default(),
                complete_full_refresh: Some(guard(confirmed)),
                file: None,
            };
            (run, store.ingest(&at, batch, Some(&finish)).unwrap())
        };
        refresh(&mut store, &all, false);
        // Half of the stream vanishes: held, nothing deleted, the run failed with the reason.
        let half: Vec<Ingest> = (0..5)
            .map(|i| rec(&i.to_string(), &format!("1380000000{i}")).0)
            .collect();
        let (run, s) = refresh(&mut store, &half, false);
        assert_eq!((s.deleted, s.held), (0, 5));
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM source_records WHERE deleted = 1"
            ),
            0
        );
        let (status, error): (String, String) = store
            .conn()
            .query_row("SELECT status, error FROM runs WHERE id = ?1", [run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(status, "failed");
        assert!(error.contains("would delete 5 of 10"), "{error}");
        assert!(error.contains("--confirm-deletes"), "{error}");
        let held = store.held_deletions().unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].would_delete, held[0].live), (5, 10));
        // Confirmed: applied, and no longer held.
        let (_, s) = refresh(&mut store, &half, true);
        assert_eq!((s.deleted, s.held), (5, 0));
        assert!(store.held_deletions().unwrap().is_empty());
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM source_records WHERE deleted = 1"
            ),
            5
        );
    }

    #[test]
    fn a_refresh_during_which_records_moved_deletes_nothing_until_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let refresh = |store: &mut Store, batch: &[Ingest]| {
            let run = store.begin_run("a", "b", "sync", "test").unwrap();
            store.begin_full_refresh(run).unwrap();
            // Every change counts as "during this run" (run_started is long ago).
            let at = stream_ref(run, true);
            let finish = Finish {
                cursor: None,
                pages: 1,
                fetched: batch.len() as u64,
                totals: IngestStats::default(),
                complete_full_refresh: Some(DeleteGuard {
                    max: crate::config::MaxDelete::Share(1.0),
                    confirmed: false,
                }),
                file: None,
            };
            store.ingest(&at, batch, Some(&finish)).unwrap()
        };
        let three = [
            rec("1", "13800000001").0,
            rec("2", "13800000002").0,
            rec("3", "13800000003").0,
        ];
        refresh(&mut store, &three);
        // Record 1 changed while paging (moved in the system's order), record 3 is unseen.
        let s = refresh(
            &mut store,
            &[rec("1", "13900000001").0, rec("2", "13800000002").0],
        );
        assert_eq!((s.moved, s.deleted), (1, 0));
        let s = refresh(
            &mut store,
            &[rec("1", "13900000001").0, rec("2", "13800000002").0],
        );
        assert_eq!((s.moved, s.deleted), (0, 1));
    }

    #[test]
    fn a_finding_is_noted_once_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(store
            .note_once(
                "a",
                "b",
                1,
                "deleted_when",
                "never_matches",
                "x 13800138000"
            )
            .unwrap());
        assert!(!store
            .note_once("a", "b", 2, "deleted_when", "never_matches", "y")
            .unwrap());
        assert!(store
            .note_once("a", "c", 2, "deleted_when", "never_matches", "y")
            .unwrap());
        let notes = store.stream_notes("a", "b").unwrap();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("deleted_when never_matches: x "),
            "{notes:?}"
        );
        assert!(!notes[0].contains("13800138000"), "masked: {notes:?}");
    }
}
