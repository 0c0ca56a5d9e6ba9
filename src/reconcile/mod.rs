//! Reconcile stage: folds dirty source records into golden persons and domain rows, and writes
//! an outbox event for every change in the same transaction. Reads and writes the store; never
//! fetches and never pushes.
//!
//! Identity (docs/matching.md): a human decision (pin) wins; then a valid ID number links;
//! otherwise candidates found by blocking keys are scored ([`matching`]): at or above
//! `link_threshold` the record links, between the thresholds it gets its own resident and a
//! review item ([`review`]), below it gets its own resident. Different ID numbers never link.
//! Only records that are dirty (new, changed, deleted, or moved by a decision) are looked at.
//!
//! # Phases and the first load
//! A run goes through phases (`Phase`): the golden phase (residents created but not yet given their
//! golden record, `persons_pending`, are completed first, which also repairs a crash between
//! a first load's two passes), the person records, then the activity records (with
//! `prefetch` reading one chunk ahead). Chunks are keyset reads
//! (`source_records_dirty_id_key` for ID-bearing person records in ID order, the `dirty`
//! partial index otherwise), so a chunk costs its own size; a pass that ends goes once more
//! from the start for records made dirty behind it.
//!
//! A first load (every record dirty, no match features or phone history yet) takes
//! shortcuts that change no result (`tests/reconcile_first_load.rs` reconciles one ingest
//! with and without them and compares every link, golden record, review item, event and
//! index):
//! - ID-bearing person records are linked in rowid order (`Phase::PersonsByRecord`), so
//!   every row written for a record lands next to the previous one instead of on a random
//!   page of a b-tree larger than the cache; the residents it creates stay at version 0 and
//!   get their golden record once, in resident order, in the golden phase (on every core).
//! - The candidate ranking of an ID-bearing record whose ID number no linked record carries
//!   is skipped until the first ID-less record is linked (`Ranking`): every candidate would
//!   have a live record with another ID number and be vetoed.
//! - Blocking-key and per-phase indexes are deferred and built sorted
//!   (`store::first_load`), and a person record that gets its resident does not mark its
//!   followers dirty: they all are (`RunState::followers_dirty`).

pub mod golden;
pub mod lookalike;
pub mod matching;
pub mod model;
pub mod names;
mod prefetch;
pub mod review;
pub mod train;
mod undo;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{json, Value};

use crate::config::Config;
use crate::model::{EntityKind, Event, NormalizedRecord, Op};
use crate::store::{self, Codec, Store, StoreError};

/// Records handled per transaction: as fast as 5,000 (the chunk query is a keyset read) and
/// ~15 MiB less at peak.
const CHUNK: usize = 2_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileStats {
    pub records: u64,
    pub persons_created: u64,
    pub persons_changed: u64,
    pub persons_retired: u64,
    pub domain_changed: u64,
    pub events: u64,
}

/// Domain table of each entity kind.
pub fn domain_table(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::CardAccount => "card_accounts",
        EntityKind::CardTransaction => "card_transactions",
        EntityKind::Volunteer => "volunteers",
        EntityKind::VolunteerService => "volunteer_services",
        EntityKind::Elder => "elders",
        EntityKind::EldercareOrder => "eldercare_orders",
        EntityKind::Patient => "patients",
        EntityKind::HealthFollowup => "health_followups",
    }
}

/// Person key used in events and by the platform.
pub fn person_key(id: i64) -> String {
    format!("P{id:08}")
}

struct Dirty {
    id: i64,
    source: String,
    stream: String,
    source_key: String,
    entity: Option<EntityKind>,
    ok: bool,
    /// The stored normalized record, still sealed (opened in parallel by `prepare`).
    sealed: rusqlite::types::Value,
    normalized: Option<NormalizedRecord>,
    /// Match features of a live person-carrying record.
    features: Option<matching::Features>,
    deleted: bool,
    id_key: Option<String>,
    link_stream: Option<String>,
    person_ref: Option<String>,
    person_id: Option<i64>,
    changed: String,
    /// An activity record's parent person as the prefetch reader found it (`None`: not
    /// read ahead).
    parent: Option<Option<i64>>,
}

impl Dirty {
    /// A kept record that still exists at its source.
    fn live(&self) -> bool {
        self.ok && !self.deleted
    }
}

/// Reconciles every dirty record. Running it again with nothing new changes nothing.
pub fn reconcile(store: &mut Store, config: &Config) -> Result<ReconcileStats, StoreError> {
    let mut stats = ReconcileStats::default();
    store
        .conn()
        .pragma_update(None, "cache_size", RECONCILE_CACHE_KIB)?;
    let codec = store.codec().clone();
    tracing::debug!(sqlite_heap = %crate::memory::sqlite_heap(), "reconcile started");
    let first_load = store::first_load::defer_feature_indexes(store.conn_mut())?;
    // A store that never had a person record stays "first load": without this, each of its
    // polls would drop and rebuild two indexes over every record for nothing to reconcile.
    let defer_phase_indexes = first_load && store::first_load::has_dirty_records(store.conn())?;
    // A first load deferred these (store::first_load); the chunk queries and the lookups need them.
    logged_build("match-key indexes built (first load)", || {
        store::first_load::prepare_reconcile_indexes(store.conn(), first_load, defer_phase_indexes)
    })?;
    let mut run = RunState {
        ranking: Ranking::new(first_load),
        followers_dirty: defer_phase_indexes
            && !person_streams_link(config)
            && store::first_load::every_record_dirty(store.conn())?,
    };
    let result = (|| {
        for &phase in Phase::of_run(defer_phase_indexes) {
            if defer_phase_indexes {
                phase.defer_unread_indexes(store.conn())?;
            }
            if phase == Phase::PersonsWithoutId && config.reconcile.train_after_first_load {
                train_before_idless(store, &codec, config, &mut run)?;
            }
            let phase_started = std::time::Instant::now();
            let before = stats.records;
            let events_before = stats.events;
            if phase == Phase::Rest {
                let prefetched = prefetch::activity_phase(
                    store,
                    &codec,
                    config,
                    &mut run,
                    &mut stats,
                    CHUNK,
                    || {},
                )?;
                if prefetched.chunks > 0 || prefetched.stopped.is_some() {
                    tracing::debug!(?prefetched, "activity phase read ahead");
                }
            }
            // One transaction per chunk (after the activity phase read ahead: the pass from
            // the start that finds what was made dirty behind it, or what the reader left).
            each_chunk(|at| {
                let tx = store.conn_mut().transaction()?;
                let next = run_chunk(&tx, &codec, config, phase, at, &mut run, &mut stats)?;
                tx.commit()?;
                // Each chunk's records, its outbox batch and the page cache's churn leave
                // free memory scattered through the heap, which glibc keeps: handing it back
                // after every chunk took ~10 MiB off the 1M sync's peak (BENCHMARKS.md). Not
                // after an empty one: a poll with nothing to do must cost nothing, and the
                // trim walks the whole heap.
                if next.is_some() {
                    crate::memory::release_free();
                }
                Ok(next)
            })?;
            tracing::debug!(
                phase = phase.name(),
                records = stats.records - before,
                events = stats.events - events_before,
                seconds = format!("{:.2}", phase_started.elapsed().as_secs_f64()),
                sqlite_heap = %crate::memory::sqlite_heap(),
                "reconcile phase done"
            );
        }
        Ok::<(), StoreError>(())
    })();
    // Never leave the store without any deferred index (`explain` and `review` rank too),
    // error or not: the blocking-key ones if no chunk ranked, the phase ones.
    let ready = logged_build("deferred indexes built (first load)", || {
        store::first_load::ensure_match_indexes(store.conn())
    });
    result?;
    ready?;
    // A first load trains its model between its persons phases (train_before_idless).
    if !(defer_phase_indexes && config.reconcile.train_after_first_load) {
        if let Some(reason) = train::retrain_due(store.conn(), &config.reconcile)? {
            let started = std::time::Instant::now();
            if let Some((v, _)) = train::train_and_store(
                store.conn(),
                &config.reconcile,
                &train::TrainOptions::default(),
            )? {
                tracing::info!(
                    version = v,
                    reason = %reason,
                    seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                    "match model retrained on schedule"
                );
            }
        }
    }
    Ok(stats)
}

/// On a first load, once every ID-bearing record is linked and before any record without an
/// ID number is decided: stores the ID-less records' match features (unlinked, so no
/// candidate query sees them) and trains a model on the store (docs/matching.md), which then
/// decides those records and the next runs. The features let the training see the ID-less
/// records' own errors (an earlier phone, a birth year off) against their candidates, as it
/// would after the load. A smaller sample than `matching train` keeps it to seconds on a 1M
/// store. Does nothing when a model is stored already or there are too few person records.
fn train_before_idless(
    store: &mut Store,
    codec: &Codec,
    config: &Config,
    run: &mut RunState,
) -> Result<(), StoreError> {
    if model::load(store.conn(), None)?.is_some() {
        return Ok(());
    }
    store_idless_features(store, codec)?;
    let records: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM match_features", [], |r| r.get(0))?;
    if records < train::MIN_AUTO_RECORDS {
        tracing::info!(
            records,
            "too few person records to train a match model on after the first load; the hand weights decide until `community-sync matching train`"
        );
        return Ok(());
    }
    // Training looks candidates up by the blocking keys.
    run.ranking.ready(store.conn())?;
    let started = std::time::Instant::now();
    let opts = train::TrainOptions {
        max_records: 2_500,
        random_pairs: 10_000,
        ..train::TrainOptions::default()
    };
    if let Some((v, _)) = train::train_and_store(store.conn(), &config.reconcile, &opts)? {
        tracing::info!(
            version = v,
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "match model trained after the first load; it decides the records without an ID number"
        );
        run.ranking.model = None;
    }
    Ok(())
}

/// Stores the match features of the dirty live person records without an ID number, chunk by
/// chunk, without deciding them (their phase writes the same row again as it links them).
fn store_idless_features(store: &mut Store, codec: &Codec) -> Result<(), StoreError> {
    let sql = &chunk_sql().persons_without_id;
    let mut after = 0;
    loop {
        let tx = store.conn_mut().transaction()?;
        let mut batch = load_dirty(&tx, sql, "", after, CHUNK)?;
        let Some(last) = batch.last().map(|r| r.id) else {
            return Ok(());
        };
        prepare(codec, &mut batch)?;
        for rec in &batch {
            if let Some(f) = &rec.features {
                matching::store_features(&tx, rec.id, Some(f))?;
            }
        }
        tx.commit()?;
        after = last;
    }
}

/// Runs an index build (returning how many indexes it built) and logs it, when it built any.
fn logged_build(
    message: &'static str,
    build: impl FnOnce() -> Result<usize, StoreError>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let built = build()?;
    if built > 0 {
        tracing::info!(
            indexes = built,
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            sqlite_heap = %crate::memory::sqlite_heap(),
            "{message}"
        );
    }
    Ok(())
}

/// Candidate ranking within one reconcile run. On a first load (no record had match
/// features or phone history when the run began) it builds the blocking-key indexes it
/// deferred (store::first_load) before the first ranking, and skips the ranking that
/// provably finds no one.
///
/// On a first load every feature row is written in this run, from the record's current ID
/// key. An ID-bearing record that no linked record shares its ID key with (the lookup in
/// `resolve_person`) can then only be linked to, or reviewed against, a resident with a live
/// record without an ID key: every other candidate is vetoed for "different ID numbers"
/// (matching::score). The persons phase reads every ID-bearing record before the first
/// ID-less one, so until an ID-less record is linked such a record is a new resident,
/// without a candidate query.
struct Ranking {
    /// The match model of this run (model::active), read when first needed.
    model: Option<model::Model>,
    indexes_ready: bool,
    /// No live person record without an ID key is linked yet, on a first load.
    no_idless_linked: bool,
}

impl Ranking {
    /// `first_load`: no record had match features or phone history as the run began (and
    /// the blocking-key indexes are deferred).
    fn new(first_load: bool) -> Ranking {
        Ranking {
            model: None,
            indexes_ready: !first_load,
            no_idless_linked: first_load,
        }
    }

    /// The run's match model.
    fn model(
        &mut self,
        conn: &rusqlite::Connection,
        cfg: &crate::config::ReconcileConfig,
    ) -> Result<&model::Model, StoreError> {
        if self.model.is_none() {
            self.model = Some(model::active(conn, cfg)?);
        }
        Ok(self.model.as_ref().expect("just set"))
    }

    /// Builds the deferred blocking-key indexes, once.
    fn ready(&mut self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        if !self.indexes_ready {
            logged_build("blocking-key indexes built (first load)", || {
                store::first_load::ensure_feature_indexes(conn)
            })?;
            self.indexes_ready = true;
        }
        Ok(())
    }

    fn rank(
        &mut self,
        tx: &Transaction<'_>,
        cfg: &crate::config::ReconcileConfig,
        f: &matching::Features,
        own: Option<i64>,
    ) -> Result<Vec<matching::Scored>, StoreError> {
        self.ready(tx)?;
        let m = self.model(tx, cfg)?;
        matching::rank(tx, cfg, m, f, own)
    }

    fn score(
        &mut self,
        tx: &Transaction<'_>,
        cfg: &crate::config::ReconcileConfig,
        f: &matching::Features,
        pid: i64,
    ) -> Result<matching::Scored, StoreError> {
        self.ready(tx)?;
        let m = self.model(tx, cfg)?;
        matching::score(tx, cfg, m, f, pid)
    }

    /// Whether ranking an ID-bearing record with an ID number no one else has can find a
    /// candidate that is not vetoed.
    fn may_find_for_new_id(&self) -> bool {
        !self.no_idless_linked
    }

    /// A live person record without an ID key is being linked.
    fn linked_idless(&mut self) {
        self.no_idless_linked = false;
    }
}

/// What one reconcile run knows besides the records: its candidate ranking, and whether the
/// records that point at a person record (activity records) are all dirty anyway.
struct RunState {
    ranking: Ranking,
    /// Every record was dirty when the run began (a first load) and no person-carrying stream
    /// links to another stream, so until the activity phase every record that can point at a
    /// person record is still dirty: a person record that moves need not mark its followers
    /// (that update is an index probe and a random row read per follower, for nothing).
    followers_dirty: bool,
}

/// Whether any person-carrying stream has a `link` (its records then point at other records
/// and may follow them to another resident).
fn person_streams_link(config: &Config) -> bool {
    config
        .sources
        .iter()
        .flat_map(|s| &s.streams)
        .any(|t| t.link.is_some() && t.entity.carries_person())
}

/// Runs a phase chunk by chunk (`chunk` handles the records after a keyset and returns the
/// next one) until a pass from the start finds nothing: a record made dirty behind the
/// keyset is found by that last pass.
fn each_chunk(
    mut chunk: impl FnMut(&Keyset) -> Result<Option<Keyset>, StoreError>,
) -> Result<(), StoreError> {
    let mut at = Keyset::START;
    loop {
        match chunk(&at)? {
            Some(next) => at = next,
            None if at != Keyset::START => at = Keyset::START,
            None => return Ok(()),
        }
    }
}

/// Page cache of the reconcile connection, in KiB (SQLite's negative `cache_size`): enough for
/// the indexes a chunk touches; the daemon must stay small.
const RECONCILE_CACHE_KIB: i64 = -16_384;

/// Reconciles every dirty record inside `tx` (after a review decision), refreshing `persons`
/// as well.
pub fn run_in_tx(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    persons: BTreeSet<i64>,
    stats: &mut ReconcileStats,
) -> Result<(), StoreError> {
    store::first_load::ensure_match_indexes(tx)?;
    let mut run = RunState {
        ranking: Ranking::new(false),
        followers_dirty: false,
    };
    for &phase in Phase::of_run(false) {
        each_chunk(|at| run_chunk(tx, codec, config, phase, at, &mut run, stats))?;
    }
    let mut out = store::OutboxBatch::default();
    for pid in persons {
        golden::refresh_person(tx, codec, config, pid, &HashMap::new(), &mut out, stats)?;
    }
    out.flush(tx, codec)
}

/// Phases: person records (and rejected rows, which may unlink a record), ID-bearing first
/// and in ID order (one resident's records adjacent in a chunk) so that ID-less ones find
/// their resident (features are stored as each record is handled, so a chunk sees the
/// records before it); then the rest. A person chunk that runs out of ID-bearing records
/// fills up with ID-less ones, so outside a first load a small change is one chunk and one
/// version per resident.
///
/// A first load links its ID-bearing person records in record order instead
/// (`PersonsByRecord`): every row it writes for a record (the record's own, its match
/// features, its domain row) then lands next to the last one, where in ID order each was a
/// random page of a b-tree far larger than the page cache. One resident's records are no
/// longer in one chunk, so the residents it creates keep version 0 (`persons_pending`) and
/// get their golden record afterwards, each once, in resident order (`Golden`). `Golden`
/// runs in every reconcile: it finds nothing unless a first load was interrupted between the
/// two.
///
/// A first load also splits the persons phase in two (`PersonsWithId`, `PersonsWithoutId`):
/// between them the match model is trained (`train_before_idless`), so the records without
/// an ID number are decided once, by the model the store's own data gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    PersonsByRecord,
    Golden,
    Persons,
    PersonsWithId,
    PersonsWithoutId,
    Rest,
}

impl Phase {
    /// The phases of a run; `first_load`: no record had match features or phone history and
    /// some record is dirty.
    fn of_run(first_load: bool) -> &'static [Phase] {
        if first_load {
            &[
                Phase::PersonsByRecord,
                Phase::Golden,
                Phase::PersonsWithId,
                Phase::PersonsWithoutId,
                Phase::Rest,
            ]
        } else {
            &[Phase::Golden, Phase::Persons, Phase::Rest]
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::PersonsByRecord => "persons by record",
            Phase::Golden => "golden records",
            Phase::Persons => "persons",
            Phase::PersonsWithId => "persons with an ID number",
            Phase::PersonsWithoutId => "persons without an ID number",
            Phase::Rest => "activity",
        }
    }

    /// On a first load, before the phase: leaves out the index of `source_records` that the
    /// phase would write at random and never reads, and builds the one the phase before it
    /// left out (store::first_load::PHASE_INDEXES). The persons phase clears the dirty flags
    /// in ID order (its ID-less query walks rowids without the index); the activity phase
    /// links each record to a resident but looks none up by resident.
    fn defer_unread_indexes(self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        match self {
            Phase::PersonsByRecord => store::first_load::defer_dirty_indexes(conn),
            Phase::Golden => logged_build("dirty ID-key index built (first load)", || {
                store::first_load::build_dirty_id_key_index(conn)
            }),
            Phase::Persons | Phase::PersonsWithId => store::first_load::defer_dirty_index(conn),
            Phase::PersonsWithoutId => Ok(()),
            Phase::Rest => logged_build("dirty-flag index built (first load)", || {
                store::first_load::build_dirty_defer_person_index(conn)
            }),
        }
    }
}

/// The chunk queries (`?1` = id key, `?2` = record id after which to read, `?3` = limit).
/// Each walks an index of dirty rows in order from its keyset, so a chunk costs its own size,
/// not a scan and sort of every dirty row.
struct ChunkSql {
    persons_with_id: String,
    persons_with_id_by_record: String,
    persons_without_id: String,
    rest: String,
}

fn chunk_sql() -> &'static ChunkSql {
    static SQL: std::sync::OnceLock<ChunkSql> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let in_list = EntityKind::ALL
            .iter()
            .filter(|k| k.carries_person())
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let cols = concat!(
            "id, source, stream, source_key, entity, status, ",
            store::normalized_of_record!(),
            ", deleted, id_key, np_key, link_stream, person_ref, person_id,
             COALESCE(updated_at, last_changed)"
        );
        let persons = format!("(entity IN ({in_list}) OR status = 'rejected')");
        ChunkSql {
            // Without statistics the planner would rather scan the dirty index and sort.
            persons_with_id: format!(
                "SELECT {cols} FROM source_records INDEXED BY source_records_dirty_id_key
                 WHERE dirty = 1 AND id_key IS NOT NULL AND (id_key, id) > (?1, ?2) AND {persons}
                 ORDER BY id_key, id LIMIT ?3"
            ),
            // A first load, in record order: the rowids themselves (the ID-key index would
            // be a scan and a sort per chunk; the dirty-flag indexes are left out).
            persons_with_id_by_record: format!(
                "SELECT {cols} FROM source_records NOT INDEXED
                 WHERE dirty = 1 AND id_key IS NOT NULL AND id > ?2 AND {persons}
                 ORDER BY id LIMIT ?3"
            ),
            // source_records_dirty (dirty) WHERE dirty = 1: rowid order (on a first load,
            // without that index, the rowids themselves).
            persons_without_id: format!(
                "SELECT {cols} FROM source_records
                 WHERE dirty = 1 AND id_key IS NULL AND id > ?2 AND {persons}
                 ORDER BY id LIMIT ?3"
            ),
            rest: format!(
                "SELECT {cols} FROM source_records WHERE dirty = 1 AND id > ?2
                 ORDER BY id LIMIT ?3"
            ),
        }
    })
}

/// Where a phase has got to: the last ID-bearing record read in ID order (`id_key`, `id`) and
/// the last record read in id order (`by_id`: ID-less persons, or the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keyset {
    id_key: String,
    id: i64,
    by_id: i64,
}

impl Keyset {
    /// Before every record (ID keys are never empty).
    const START: Keyset = Keyset {
        id_key: String::new(),
        id: 0,
        by_id: 0,
    };
}

/// One chunk of dirty records after `at`; returns where the next chunk starts (`None`: the
/// phase found nothing more after `at`).
fn run_chunk(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    phase: Phase,
    at: &Keyset,
    run: &mut RunState,
    stats: &mut ReconcileStats,
) -> Result<Option<Keyset>, StoreError> {
    let sql = chunk_sql();
    let mut next = at.clone();
    let mut batch = match phase {
        Phase::Golden => return run_golden_chunk(tx, codec, config, at, stats),
        Phase::PersonsByRecord => {
            let batch = load_dirty(tx, &sql.persons_with_id_by_record, "", at.by_id, CHUNK)?;
            if let Some(last) = batch.last() {
                next.by_id = last.id;
            }
            batch
        }
        Phase::Persons | Phase::PersonsWithId => {
            let mut batch = load_dirty(tx, &sql.persons_with_id, &at.id_key, at.id, CHUNK)?;
            if let Some(last) = batch.last() {
                next.id_key = last.id_key.clone().unwrap_or_default();
                next.id = last.id;
            }
            if batch.len() < CHUNK && phase == Phase::Persons {
                let idless = load_dirty(
                    tx,
                    &sql.persons_without_id,
                    "",
                    at.by_id,
                    CHUNK - batch.len(),
                )?;
                if let Some(last) = idless.last() {
                    next.by_id = last.id;
                }
                batch.extend(idless);
            }
            batch
        }
        Phase::PersonsWithoutId => {
            let batch = load_dirty(tx, &sql.persons_without_id, "", at.by_id, CHUNK)?;
            if let Some(last) = batch.last() {
                next.by_id = last.id;
            }
            batch
        }
        Phase::Rest => {
            let batch = load_dirty(tx, &sql.rest, "", at.by_id, CHUNK)?;
            if let Some(last) = batch.last() {
                next.by_id = last.id;
            }
            batch
        }
    };
    if batch.is_empty() {
        return Ok(None);
    }
    prepare(codec, &mut batch)?;
    handle_chunk(tx, codec, config, phase, &batch, false, run, stats)?;
    Ok(Some(next))
}

/// Handles a chunk of prepared records; returns whether it moved a record that activity
/// records may point at (a person-carrying or rejected record whose person link changed).
/// Parents read ahead (`Dirty::parent`) are used until such a move, in this chunk or
/// (`moved_before`) the one before it; from there on the writer looks them up.
#[allow(clippy::too_many_arguments)]
fn handle_chunk(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    phase: Phase,
    batch: &[Dirty],
    moved_before: bool,
    run: &mut RunState,
    stats: &mut ReconcileStats,
) -> Result<bool, StoreError> {
    // A chunk with ID-less person records ranks: build what a first load deferred before the
    // chunk writes anything, not under its dirty pages (both would be held in memory).
    if batch
        .iter()
        .any(|r| r.id_key.is_none() && r.features.is_some())
    {
        run.ranking.ready(tx)?;
    }
    let mut touched = BTreeSet::new();
    let mut out = store::OutboxBatch::default();
    let mut moved_parents = false;
    for rec in batch {
        let parent = if moved_before || moved_parents {
            None
        } else {
            rec.parent
        };
        // The record is clean once handled; a new person link is written in the same step.
        match handle_record(tx, config, rec, parent, run, &mut touched, &mut out, stats)? {
            Some(pid) => {
                moved_parents |= rec.entity.is_none_or(EntityKind::carries_person);
                tx.prepare_cached(
                    "UPDATE source_records SET dirty = 0, person_id = ?2 WHERE id = ?1",
                )?
                .execute(params![rec.id, pid])?
            }
            None => tx
                .prepare_cached("UPDATE source_records SET dirty = 0 WHERE id = ?1")?
                .execute([rec.id])?,
        };
        stats.records += 1;
    }
    // The chunk's records are already open: the golden refresh reads only the others.
    let opened: HashMap<i64, &crate::model::PersonFields> = batch
        .iter()
        .filter_map(|r| r.normalized.as_ref().map(|n| (r.id, &n.person)))
        .collect();
    for pid in touched {
        // In record order a resident's records are spread over the phase: the residents it
        // created get their golden record once, in the golden phase.
        if phase == Phase::PersonsByRecord && golden::is_pending(tx, pid)? {
            continue;
        }
        golden::refresh_person(tx, codec, config, pid, &opened, &mut out, stats)?;
    }
    out.flush(tx, codec)?;
    Ok(moved_parents)
}

/// Residents per golden-phase transaction (~1.5 records each).
const GOLDEN_CHUNK: usize = 2_000;

/// One chunk of the golden phase: the golden records of residents that a first load created
/// and linked in record order (version 0), after `at.by_id`, in resident order. Their records
/// are opened on every core first; the refresh itself is the one every chunk runs.
fn run_golden_chunk(
    tx: &Transaction<'_>,
    codec: &Codec,
    config: &Config,
    at: &Keyset,
    stats: &mut ReconcileStats,
) -> Result<Option<Keyset>, StoreError> {
    use rayon::prelude::*;
    let pending: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM persons INDEXED BY persons_pending
             WHERE version = 0 AND retired = 0 AND id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![at.by_id, GOLDEN_CHUNK as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let Some(&last) = pending.last() else {
        return Ok(None);
    };
    let mut sealed: Vec<(i64, rusqlite::types::Value)> = Vec::new();
    {
        let mut records = tx.prepare_cached(concat!(
            "SELECT id, ",
            store::normalized_of_record!(),
            " FROM source_records WHERE person_id = ?1 AND status = 'ok' AND deleted = 0"
        ))?;
        for pid in &pending {
            let rows = records.query_map([pid], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in rows {
                sealed.push(row?);
            }
        }
    }
    let persons: Vec<(i64, crate::model::PersonFields)> = sealed
        .par_iter()
        .map(|(id, v)| Ok((*id, golden::person_of_sealed(codec, v.into())?)))
        .collect::<Result<_, StoreError>>()?;
    drop(sealed);
    let opened: HashMap<i64, &crate::model::PersonFields> =
        persons.iter().map(|(id, p)| (*id, p)).collect();
    let mut out = store::OutboxBatch::default();
    for pid in pending {
        golden::refresh_person(tx, codec, config, pid, &opened, &mut out, stats)?;
    }
    out.flush(tx, codec)?;
    Ok(Some(Keyset {
        by_id: last,
        ..Keyset::START
    }))
}

fn load_dirty(
    tx: &rusqlite::Connection,
    sql: &str,
    id_key: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Dirty>, StoreError> {
    let mut stmt = tx.prepare_cached(sql)?;
    let rows = stmt.query_map(params![id_key, after, limit as i64], |r| {
        Ok(Dirty {
            id: r.get(0)?,
            source: r.get(1)?,
            stream: r.get(2)?,
            source_key: r.get(3)?,
            entity: EntityKind::parse(&r.get::<_, String>(4)?),
            ok: r.get::<_, String>(5)? == "ok",
            sealed: r.get(6)?,
            normalized: None,
            features: None,
            deleted: r.get(7)?,
            id_key: r.get(8)?,
            link_stream: r.get(10)?,
            person_ref: r.get(11)?,
            person_id: r.get(12)?,
            changed: r.get(13)?,
            parent: None,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Opens and parses each record's normalized form and computes the match features of live
/// person-carrying records: pure CPU work (decryption, keyed hashes), done on every core
/// before the chunk's sequential SQL.
fn prepare(codec: &Codec, batch: &mut [Dirty]) -> Result<(), StoreError> {
    use rayon::prelude::*;
    batch
        .par_iter_mut()
        .try_for_each(|rec| prepare_record(codec, rec))
}

/// Opens and parses one record; its match features if it is a live person-carrying one.
fn prepare_record(codec: &Codec, rec: &mut Dirty) -> Result<(), StoreError> {
    let sealed = std::mem::replace(&mut rec.sealed, rusqlite::types::Value::Null);
    let text = codec
        .open(rusqlite::types::ValueRef::from(&sealed))
        .map_err(rusqlite::Error::from)?;
    rec.normalized = text
        .as_deref()
        .and_then(|n| serde_json::from_str::<NormalizedRecord>(n).ok());
    if rec.live() && rec.entity.is_some_and(EntityKind::carries_person) {
        if let Some(n) = &rec.normalized {
            rec.features = Some(matching::Features::of(
                codec,
                rec.id,
                &n.person,
                rec.id_key.as_deref(),
                &rec.changed,
            ));
        }
    }
    Ok(())
}

/// Handles one dirty record; returns its new person link when it changed (`Some(None)`:
/// unlinked), which the caller writes together with clearing the dirty flag. `parent`: an
/// activity record's parent person, if read ahead and still current.
#[allow(clippy::too_many_arguments)]
fn handle_record(
    tx: &Transaction<'_>,
    config: &Config,
    rec: &Dirty,
    parent: Option<Option<i64>>,
    run: &mut RunState,
    touched: &mut BTreeSet<i64>,
    out: &mut store::OutboxBatch,
    stats: &mut ReconcileStats,
) -> Result<Option<Option<i64>>, StoreError> {
    let live = rec.live();
    let normalized = rec.normalized.as_ref();
    let Some(entity) = rec.entity else {
        // A rejected record: it no longer vouches for anyone.
        let unlinked = unlink(rec, touched);
        matching::store_features(tx, rec.id, None)?;
        retire_domain_rows(tx, rec, out, stats)?;
        return Ok(unlinked);
    };
    if entity.carries_person() {
        if !live {
            if let Some(pid) = rec.person_id {
                touched.insert(pid);
            }
            let unlinked = if rec.ok { None } else { unlink(rec, touched) };
            matching::store_features(tx, rec.id, None)?;
            upsert_domain(tx, entity, rec, None, rec.person_id, out, stats)?;
            return Ok(unlinked);
        }
        let (Some(n), Some(features)) = (normalized, rec.features.as_ref()) else {
            return Ok(None);
        };
        matching::store_features(tx, rec.id, Some(features))?;
        let (pid, review_with) = resolve_person(tx, config, rec, features, &mut run.ranking)?;
        let pid = match pid {
            Some(p) => p,
            None => golden::create_person(tx, stats)?,
        };
        if rec.id_key.is_none() {
            run.ranking.linked_idless();
        }
        if review_with.is_empty() {
            review::supersede_matches(tx, rec.id)?;
        }
        for s in review_with {
            let detail = serde_json::to_string(&s.contributions).unwrap_or_default();
            review::raise(
                tx,
                "match",
                Some(rec.id),
                Some(s.person_id),
                None,
                Some(s.total),
                &detail,
            )?;
        }
        let moved = rec.person_id != Some(pid);
        if moved {
            if let Some(old) = rec.person_id {
                touched.insert(old);
            }
            // Activity records that point at this record follow it to its new person
            // (those already dirty are handled anyway: leave them unwritten).
            if !run.followers_dirty {
                tx.prepare_cached(
                    "UPDATE source_records SET dirty = 1
                     WHERE source = ?1 AND link_stream = ?2 AND person_ref = ?3 AND dirty = 0",
                )?
                .execute(params![rec.source, rec.stream, rec.source_key])?;
            }
        }
        touched.insert(pid);
        upsert_domain(tx, entity, rec, Some(n), Some(pid), out, stats)?;
        Ok(moved.then_some(Some(pid)))
    } else {
        let pid = if live {
            match parent {
                Some(read_ahead) => read_ahead,
                None => parent_person(tx, rec)?,
            }
        } else {
            rec.person_id
        };
        let normalized = if live { normalized } else { None };
        upsert_domain(tx, entity, rec, normalized, pid, out, stats)?;
        Ok((rec.person_id != pid).then_some(pid))
    }
}

/// A record that stops vouching for its resident: the resident is looked at again and the
/// link is to be cleared (`Some(None)`), if there was one.
fn unlink(rec: &Dirty, touched: &mut BTreeSet<i64>) -> Option<Option<i64>> {
    let pid = rec.person_id?;
    touched.insert(pid);
    Some(None)
}

/// Who a live person-carrying record belongs to (`None`: a new resident), and the
/// candidates to raise review items for.
fn resolve_person(
    tx: &Transaction<'_>,
    config: &Config,
    rec: &Dirty,
    f: &matching::Features,
    ranking: &mut Ranking,
) -> Result<(Option<i64>, Vec<matching::Scored>), StoreError> {
    if let Some(p) = review::pinned_person(tx, rec.id)? {
        return Ok((Some(p), vec![]));
    }
    let cfg = &config.reconcile;
    if let Some(id_key) = &rec.id_key {
        let by_id: Option<i64> = tx
            .prepare_cached(
                "SELECT person_id FROM source_records
                 WHERE id_key = ?1 AND id != ?2 AND person_id IS NOT NULL AND status = 'ok' AND deleted = 0
                 ORDER BY person_id LIMIT 1",
            )?
            .query_row(params![id_key, rec.id], |r| r.get(0))
            .optional()?;
        if by_id.is_some() {
            return Ok((by_id, vec![]));
        }
        // Staying put is right unless the current person carries another ID number.
        if let Some(pid) = rec.person_id {
            let other_id: Option<String> = tx
                .prepare_cached(
                    "SELECT id_key FROM source_records
                     WHERE person_id = ?1 AND id != ?2 AND id_key IS NOT NULL AND id_key != ?3
                       AND status = 'ok' AND deleted = 0 LIMIT 1",
                )?
                .query_row(params![pid, rec.id, id_key], |r| r.get(0))
                .optional()?;
            if other_id.is_none() {
                return Ok((Some(pid), vec![]));
            }
        }
    } else if let Some(pid) = rec.person_id {
        // Already linked: stay unless the evidence for this resident is gone.
        if has_other_records(tx, pid, rec.id)? {
            let s = ranking.score(tx, cfg, f, pid)?;
            if s.veto.is_none() && s.reaches(cfg.review_threshold) {
                return Ok((Some(pid), vec![]));
            }
        }
    }
    let own = match rec.person_id {
        Some(p) if !has_other_records(tx, p, rec.id)? => Some(p),
        _ => None,
    };
    // No one else carries this ID number (the lookup above): see `Ranking`.
    if rec.id_key.is_some() && !ranking.may_find_for_new_id() {
        return Ok((own, vec![]));
    }
    let ranked = ranking.rank(tx, cfg, f, own)?;
    Ok(match matching::decide(cfg, &ranked) {
        matching::Outcome::Link(p) => (Some(p), vec![]),
        matching::Outcome::Review(ps) => (
            own,
            ranked
                .into_iter()
                .filter(|s| ps.contains(&s.person_id))
                .collect(),
        ),
        matching::Outcome::New => (own, vec![]),
    })
}

/// Whether a resident has live person records other than `except`.
fn has_other_records(tx: &Transaction<'_>, pid: i64, except: i64) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM source_records WHERE person_id = ?1 AND id != ?2 AND status = 'ok' AND deleted = 0
               AND entity IN ('card_account', 'volunteer', 'elder', 'patient') LIMIT 1",
        )?
        .query_row(params![pid, except], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some())
}

/// The person of an activity record's parent record (same source, linked stream).
fn parent_person(tx: &rusqlite::Connection, rec: &Dirty) -> Result<Option<i64>, StoreError> {
    let (Some(stream), Some(key)) = (&rec.link_stream, &rec.person_ref) else {
        return Ok(None);
    };
    Ok(tx
        .prepare_cached(
            "SELECT person_id FROM source_records WHERE source = ?1 AND stream = ?2 AND source_key = ?3
               AND status = 'ok'",
        )?
        .query_row(params![rec.source, stream, key], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

fn domain_key(rec: &Dirty) -> String {
    format!("{}/{}/{}", rec.source, rec.stream, rec.source_key)
}

/// The (select, upsert) SQL of an entity's domain table, built once.
fn domain_sql(entity: EntityKind) -> (&'static str, &'static str) {
    static SQL: std::sync::OnceLock<Vec<(EntityKind, String, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        EntityKind::ALL
            .iter()
            .map(|&k| {
                let table = domain_table(k);
                let cols: Vec<&str> = k.domain_fields().iter().map(|f| f.name).collect();
                let select = format!(
                    "SELECT version, deleted, person_id, {} FROM {table} WHERE record_id = ?1",
                    cols.join(", ")
                );
                let placeholders: Vec<String> = (0..cols.len()).map(|i| format!("?{}", i + 4)).collect();
                let upsert = format!(
                    "INSERT INTO {table} (record_id, person_id, version, deleted, {}) VALUES (?1, ?2, ?3, 0, {})
                     ON CONFLICT (record_id) DO UPDATE SET person_id = ?2, version = ?3, deleted = 0, {}",
                    cols.join(", "),
                    placeholders.join(", "),
                    cols.iter()
                        .zip(&placeholders)
                        .map(|(c, p)| format!("{c} = {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                (k, select, upsert)
            })
            .collect()
    });
    all.iter()
        .find(|(k, _, _)| *k == entity)
        .map(|(_, a, b)| (a.as_str(), b.as_str()))
        .unwrap_or(("SELECT NULL WHERE 0", "SELECT NULL WHERE 0"))
}

/// Brings the record's domain row up to date; `normalized == None` means the record is gone.
fn upsert_domain(
    tx: &Transaction<'_>,
    entity: EntityKind,
    rec: &Dirty,
    normalized: Option<&NormalizedRecord>,
    person_id: Option<i64>,
    out: &mut store::OutboxBatch,
    stats: &mut ReconcileStats,
) -> Result<(), StoreError> {
    let table = domain_table(entity);
    let fields = entity.domain_fields();
    let cols: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let (select, upsert) = domain_sql(entity);
    let existing: Option<(i64, bool, Option<i64>, Vec<Value>)> = tx
        .prepare_cached(select)?
        .query_row([rec.id], |r| {
            let mut vals = Vec::with_capacity(cols.len());
            for i in 0..cols.len() {
                vals.push(sql_to_json(r.get_ref(3 + i)?));
            }
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, vals))
        })
        .optional()?;
    let key = domain_key(rec);
    match normalized {
        None => {
            if let Some((version, false, _, _)) = existing {
                let v = version + 1;
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET deleted = 1, version = ?2 WHERE record_id = ?1"
                ))?
                .execute(params![rec.id, v])?;
                out.push(Event::new(
                    entity.as_str(),
                    &key,
                    v,
                    Op::Delete,
                    vec![],
                    None,
                ));
                stats.domain_changed += 1;
                stats.events += 1;
            }
        }
        Some(n) => {
            let new_vals: Vec<Value> = fields
                .iter()
                .map(|f| match n.fields.get(f.name) {
                    Some(crate::model::FieldValue::Int(i)) => json!(i),
                    Some(crate::model::FieldValue::Text(s)) => json!(s),
                    None => Value::Null,
                })
                .collect();
            let mut changed: Vec<String> = Vec::new();
            let version = match &existing {
                Some((version, deleted, old_pid, old_vals)) => {
                    for (i, f) in fields.iter().enumerate() {
                        if old_vals[i] != new_vals[i] {
                            changed.push(f.name.to_string());
                        }
                    }
                    if *old_pid != person_id {
                        changed.push("person".into());
                    }
                    if changed.is_empty() && !deleted {
                        return Ok(());
                    }
                    version + 1
                }
                None => {
                    changed = fields.iter().map(|f| f.name.to_string()).collect();
                    changed.push("person".into());
                    1
                }
            };
            let mut params_vec: Vec<rusqlite::types::Value> = vec![
                rec.id.into(),
                person_id
                    .map(rusqlite::types::Value::Integer)
                    .unwrap_or(rusqlite::types::Value::Null),
                version.into(),
            ];
            params_vec.extend(new_vals.iter().map(json_to_sql));
            tx.prepare_cached(upsert)?
                .execute(rusqlite::params_from_iter(params_vec))?;
            let mut record = serde_json::Map::new();
            record.insert("source".into(), json!(rec.source));
            record.insert("stream".into(), json!(rec.stream));
            record.insert("source_key".into(), json!(rec.source_key));
            record.insert("person".into(), json!(person_id.map(person_key)));
            for (f, v) in fields.iter().zip(new_vals) {
                record.insert(f.name.into(), v);
            }
            out.push(Event::new(
                entity.as_str(),
                &key,
                version,
                Op::Upsert,
                changed,
                Some(Value::Object(record)),
            ));
            stats.domain_changed += 1;
            stats.events += 1;
        }
    }
    Ok(())
}

/// A record that became rejected takes its domain row with it.
fn retire_domain_rows(
    tx: &Transaction<'_>,
    rec: &Dirty,
    out: &mut store::OutboxBatch,
    stats: &mut ReconcileStats,
) -> Result<(), StoreError> {
    for kind in EntityKind::ALL {
        let exists: Option<i64> = tx
            .prepare_cached(&format!(
                "SELECT record_id FROM {} WHERE record_id = ?1",
                domain_table(kind)
            ))?
            .query_row([rec.id], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            upsert_domain(tx, kind, rec, None, rec.person_id, out, stats)?;
        }
    }
    Ok(())
}

fn sql_to_json(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(_) => Value::Null,
    }
}

fn json_to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Number(n) => n
            .as_i64()
            .map(rusqlite::types::Value::Integer)
            .unwrap_or(rusqlite::types::Value::Null),
        Value::String(s) => rusqlite::types::Value::Text(s.clone()),
        other => rusqlite::types::Value::Text(other.to_string()),
    }
}

/// Counts of residents by the number of distinct systems they appear in (index 1..=4; more
/// than 4 sources fold into the last bucket).
pub fn persons_by_systems(store: &Store) -> Result<BTreeMap<usize, u64>, StoreError> {
    let mut stmt = store.conn().prepare(
        "SELECT n, count(*) FROM (
            SELECT person_id, count(DISTINCT source) AS n FROM source_records
            WHERE person_id IS NOT NULL AND status = 'ok' AND deleted = 0
              AND entity IN ('card_account', 'volunteer', 'elder', 'patient')
            GROUP BY person_id)
         GROUP BY n ORDER BY n",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as u64))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (n, c) = row?;
        out.insert(n, c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{self, Context, SyncOptions};
    use crate::sim::{Sim, SimOptions};
    use std::sync::{Arc, Mutex};

    fn context(sim: &Sim, dir: &std::path::Path) -> Context {
        let path = crate::cli::demo::write_sim_config(sim, dir, &dir.join("store.db")).unwrap();
        let config = Config::load(&path).unwrap();
        let store = Store::open_configured(&config).unwrap();
        Context {
            config: Arc::new(config),
            store: Arc::new(Mutex::new(store)),
        }
    }

    fn count(ctx: &Context, sql: &str) -> i64 {
        let g = ctx.store.lock().unwrap();
        g.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Residents by their records' ids, sorted, with their versions: what two stores of one
    /// ingest must agree on.
    fn residents(ctx: &Context) -> Vec<(String, i64)> {
        let g = ctx.store.lock().unwrap();
        let mut stmt = g
            .conn()
            .prepare(
                "SELECT group_concat(r.id, ' '), p.version FROM persons p
                 JOIN (SELECT id, person_id FROM source_records ORDER BY id) r ON r.person_id = p.id
                 GROUP BY p.id",
            )
            .unwrap();
        let mut out: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.sort();
        out
    }

    /// A first load that stops after linking its ID-bearing records in record order leaves
    /// the residents it created at version 0, unannounced; the next reconcile (no longer a
    /// first load) gives each its golden record and event, and ends where an uninterrupted
    /// first load ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_load_cut_off_before_its_golden_records_is_completed_by_the_next_run() {
        let sim = Sim::start(SimOptions {
            seed: 11,
            residents: 600,
            ..SimOptions::default()
        })
        .await
        .unwrap();
        let opts = SyncOptions {
            trigger: "test".into(),
            ..SyncOptions::default()
        };
        let cut = tempfile::tempdir().unwrap();
        let cut_ctx = context(&sim, cut.path());
        pipeline::ingest_sources(&cut_ctx, &opts).await.unwrap();
        // The same ingest, same key, for an uninterrupted first load.
        let whole = tempfile::tempdir().unwrap();
        let key = whole.path().join("credentials").join("store-key");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::copy(cut.path().join("credentials").join("store-key"), &key).unwrap();
        cut_ctx
            .store
            .lock()
            .unwrap()
            .conn()
            .execute(
                "VACUUM INTO ?1",
                [whole.path().join("store.db").to_str().unwrap()],
            )
            .unwrap();
        let whole_ctx = context(&sim, whole.path());
        pipeline::run_reconcile(&whole_ctx).await.unwrap();

        // The record-order pass alone, as a crash right after it leaves the store.
        {
            let mut g = cut_ctx.store.lock().unwrap();
            let codec = g.codec().clone();
            assert!(store::first_load::defer_feature_indexes(g.conn_mut()).unwrap());
            store::first_load::ensure_match_indexes(g.conn()).unwrap();
            let mut run = RunState {
                ranking: Ranking::new(true),
                followers_dirty: false,
            };
            let mut stats = ReconcileStats::default();
            each_chunk(|at| {
                let tx = g.conn_mut().transaction()?;
                let next = run_chunk(
                    &tx,
                    &codec,
                    &cut_ctx.config,
                    Phase::PersonsByRecord,
                    at,
                    &mut run,
                    &mut stats,
                )?;
                tx.commit()?;
                Ok(next)
            })
            .unwrap();
            assert!(stats.records > 500, "{stats:?}");
        }
        let pending = "SELECT count(*) FROM persons WHERE version = 0 AND retired = 0";
        assert!(count(&cut_ctx, pending) > 300);
        assert_eq!(
            count(
                &cut_ctx,
                "SELECT count(*) FROM outbox WHERE entity = 'person'"
            ),
            0
        );

        pipeline::run_reconcile(&cut_ctx).await.unwrap();
        assert_eq!(count(&cut_ctx, pending), 0);
        assert_eq!(
            count(
                &cut_ctx,
                "SELECT count(*) FROM source_records WHERE dirty = 1"
            ),
            0
        );
        for ctx in [&cut_ctx, &whole_ctx] {
            assert_eq!(
                count(ctx, "SELECT count(*) FROM outbox WHERE entity = 'person'"),
                count(ctx, "SELECT sum(version) FROM persons"),
                "one person event per version"
            );
        }
        assert_eq!(residents(&cut_ctx), residents(&whole_ctx));
        assert_eq!(
            count(&cut_ctx, "SELECT count(*) FROM outbox"),
            count(&whole_ctx, "SELECT count(*) FROM outbox")
        );
        sim.shutdown().await;
    }

    #[test]
    fn a_first_load_skips_ranking_new_ids_only_until_an_idless_record_is_linked() {
        let mut first = Ranking::new(true);
        assert!(!first.indexes_ready);
        assert!(!first.may_find_for_new_id());
        first.linked_idless();
        assert!(first.may_find_for_new_id());
        // Any other run ranks every record that reaches the ranking, with its indexes.
        let later = Ranking::new(false);
        assert!(later.indexes_ready);
        assert!(later.may_find_for_new_id());
    }
}
