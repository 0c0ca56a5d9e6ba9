//! A first load builds the match-key indexes of `source_records` once, sorted, instead of
//! growing them one random insert at a time.
//!
//! Four indexes of `source_records` are keyed by keyed hashes (ID number, name + phone, parent
//! reference): every ingested record lands at a random place in each of them. While they fit
//! SQLite's page cache that is cheap; at a million records each is ~50 MiB, and every batch
//! commit writes one page of each of them per record to the WAL. Ingest never reads them
//! (it looks records up by their natural key), only reconcile does. So when a sync starts on a
//! store with no source records at all, [`defer_match_indexes`] drops them, and
//! [`ensure_match_indexes`] builds them again (SQLite sorts the keys and writes each page once)
//! before anything reads them.
//!
//! The same holds one stage later for the blocking-key indexes of `match_features` and
//! `phone_history` ([`FEATURE_INDEXES`]): reconcile writes a row into each for every person
//! record, but on a first load nothing reads them until the first record that needs
//! candidate ranking (reconcile::Ranking), which comes after every ID-bearing record. When
//! reconcile starts with both tables empty, [`defer_feature_indexes`] drops them, and
//! [`ensure_feature_indexes`] builds them sorted before the first ranking, and at the end of
//! reconcile whatever happened.
//!
//! Two indexes of `source_records` are written at random by one phase of a first load of
//! reconcile and read by neither ([`PHASE_INDEXES`]): the dirty-flag index, from which the
//! persons phase (walking records in ID order) clears one random entry per record while its
//! own queries can walk rowids instead; and the resident index, into which the activity phase
//! (which looks no record up by resident) puts one random entry per record. Reconcile drops
//! the first for its persons phase ([`defer_dirty_index`]) and the second for its activity
//! phase ([`build_dirty_defer_person_index`]), builds each sorted when its phase is over,
//! and ends with [`ensure_match_indexes`] whatever happened.
//!
//! The indexes only make reads faster; their absence never changes a result. A crash between
//! the two calls leaves a store without them, which the next reconcile repairs
//! ([`ensure_match_indexes`] builds both sets). Migrations that touch these indexes must use
//! `IF EXISTS` / `IF NOT EXISTS` for that reason.

use rusqlite::Connection;

use super::Result;

/// The indexes a first load defers, with the statement that builds each. Their definitions
/// are the migrations' (a test checks that they are the same, clause for clause).
pub const MATCH_INDEXES: [(&str, &str); 4] = [
    (
        "source_records_id_key",
        "CREATE INDEX IF NOT EXISTS source_records_id_key ON source_records (id_key) \
         WHERE id_key IS NOT NULL",
    ),
    (
        "source_records_np_key",
        "CREATE INDEX IF NOT EXISTS source_records_np_key ON source_records (np_key) \
         WHERE np_key IS NOT NULL",
    ),
    (
        "source_records_ref",
        "CREATE INDEX IF NOT EXISTS source_records_ref ON source_records \
         (source, link_stream, person_ref) WHERE person_ref IS NOT NULL",
    ),
    (
        "source_records_dirty_id_key",
        "CREATE INDEX IF NOT EXISTS source_records_dirty_id_key ON source_records (id_key, id) \
         WHERE dirty = 1 AND id_key IS NOT NULL",
    ),
];

/// The blocking-key indexes of the match features and the phone history (read only by
/// candidate ranking), with the statement that builds each; the migrations' definitions.
pub const FEATURE_INDEXES: [(&str, &str); 4] = [
    (
        "match_features_phone",
        "CREATE INDEX IF NOT EXISTS match_features_phone ON match_features (phone_k) \
         WHERE phone_k IS NOT NULL",
    ),
    (
        "match_features_syl_birth",
        "CREATE INDEX IF NOT EXISTS match_features_syl_birth ON match_features (syl_k, birth_k) \
         WHERE syl_k IS NOT NULL",
    ),
    (
        "match_features_syl_comm",
        "CREATE INDEX IF NOT EXISTS match_features_syl_comm ON match_features (syl_k, comm_k) \
         WHERE syl_k IS NOT NULL",
    ),
    (
        "phone_history_phone",
        "CREATE INDEX IF NOT EXISTS phone_history_phone ON phone_history (phone_k)",
    ),
];

/// The dirty-flag and resident indexes of `source_records`, each left out for one phase of
/// a first load of reconcile; the migrations' definitions.
pub const PHASE_INDEXES: [(&str, &str); 2] = [DIRTY_INDEX, PERSON_INDEX];

const DIRTY_INDEX: (&str, &str) = (
    "source_records_dirty",
    "CREATE INDEX IF NOT EXISTS source_records_dirty ON source_records (dirty) WHERE dirty = 1",
);

const PERSON_INDEX: (&str, &str) = (
    "source_records_person",
    "CREATE INDEX IF NOT EXISTS source_records_person ON source_records (person_id)",
);

/// On a store without a single source record, drops the match-key indexes until
/// [`ensure_match_indexes`]. Returns whether it did. Anything else (a store with records,
/// indexes already gone) leaves the store as it is.
pub fn defer_match_indexes(conn: &mut Connection) -> Result<bool> {
    let was_missing = drop_when_empty(
        conn,
        "SELECT NOT EXISTS (SELECT 1 FROM source_records)",
        &MATCH_INDEXES,
    )?;
    Ok(was_missing.is_some_and(|n| n < MATCH_INDEXES.len()))
}

/// When no record has match features or phone history yet (a first load), drops the
/// blocking-key indexes until [`ensure_feature_indexes`]. Returns whether they are deferred
/// (also when an earlier, interrupted run left them so).
pub fn defer_feature_indexes(conn: &mut Connection) -> Result<bool> {
    let was_missing = drop_when_empty(
        conn,
        "SELECT NOT EXISTS (SELECT 1 FROM match_features) AND NOT EXISTS (SELECT 1 FROM phone_history)",
        &FEATURE_INDEXES,
    )?;
    Ok(was_missing.is_some())
}

/// Whether any record waits for reconcile (through the dirty-flag index: one probe).
pub fn has_dirty_records(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM source_records WHERE dirty = 1)",
        [],
        |r| r.get(0),
    )?)
}

/// Whether every source record is dirty (none was ever reconciled): compares two counts, each
/// over an index (the whole table's smallest, and the dirty-flag one when it is there).
pub fn every_record_dirty(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM source_records)
              = (SELECT count(*) FROM source_records WHERE dirty = 1)",
        [],
        |r| r.get(0),
    )?)
}

/// Before reconcile's first chunk: builds whichever match-key and phase indexes are missing
/// (after a crash, or the match-key ones a first load's ingest deferred), and the blocking-key
/// ones unless `first_load` (they wait for the first ranking: [`ensure_feature_indexes`]).
/// With `record_order` (a first load that links in record order) the two dirty-flag indexes
/// stay out: that pass reads neither, and would clear one random entry of each per record;
/// [`build_dirty_id_key_index`] and [`build_dirty_defer_person_index`] build them after it.
/// Returns how many it built.
pub fn prepare_reconcile_indexes(
    conn: &Connection,
    first_load: bool,
    record_order: bool,
) -> Result<usize> {
    let mut wanted: Vec<(&str, &str)> = MATCH_INDEXES
        .iter()
        .chain(PHASE_INDEXES.iter())
        .filter(|(name, _)| !(record_order && DIRTY_INDEXES.contains(name)))
        .copied()
        .collect();
    if !first_load {
        wanted.extend(FEATURE_INDEXES);
    }
    build_missing(conn, &wanted)
}

/// The names of the two indexes over dirty records.
const DIRTY_INDEXES: [&str; 2] = [DIRTY_INDEX.0, DIRTY_ID_KEY_INDEX.0];

/// The ID-ordered index of dirty records ([`MATCH_INDEXES`]' last).
const DIRTY_ID_KEY_INDEX: (&str, &str) = MATCH_INDEXES[3];

/// For the record-order pass of a first load: drops both dirty-flag indexes (its chunk query
/// walks rowids).
pub fn defer_dirty_indexes(conn: &Connection) -> Result<()> {
    for name in DIRTY_INDEXES {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
    }
    Ok(())
}

/// After the record-order pass: builds the ID-ordered index of dirty records again (sorted;
/// the persons phase walks it). Returns how many indexes it built.
pub fn build_dirty_id_key_index(conn: &Connection) -> Result<usize> {
    build_missing(conn, &[DIRTY_ID_KEY_INDEX])
}

/// For the persons phase of a first load of reconcile: drops the dirty-flag index (its chunk
/// queries then walk rowids). Call only when [`defer_feature_indexes`] said it is one.
pub fn defer_dirty_index(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", DIRTY_INDEX.0))?;
    Ok(())
}

/// For the activity phase of a first load: builds the dirty-flag index again (sorted) and
/// drops the resident index. Returns how many indexes it built.
pub fn build_dirty_defer_person_index(conn: &Connection) -> Result<usize> {
    let built = build_missing(conn, &[DIRTY_INDEX])?;
    conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", PERSON_INDEX.0))?;
    Ok(built)
}

/// Drops `indexes` in one transaction when `empty` (a query of one boolean) says so; returns
/// how many of them were already missing then (`None`: not empty, nothing dropped).
fn drop_when_empty(
    conn: &mut Connection,
    empty: &str,
    indexes: &[(&str, &str)],
) -> Result<Option<usize>> {
    let tx = conn.transaction()?;
    if !tx.query_row(empty, [], |r| r.get::<_, bool>(0))? {
        return Ok(None);
    }
    let was_missing = missing(&tx, indexes)?;
    for (name, _) in indexes {
        tx.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
    }
    tx.commit()?;
    Ok(Some(was_missing))
}

/// Builds whichever blocking-key indexes are missing; returns how many it built. Works inside
/// a transaction (a chunk's, at the first ranking) or outside one.
pub fn ensure_feature_indexes(conn: &Connection) -> Result<usize> {
    build_missing(conn, &FEATURE_INDEXES)
}

/// Builds whichever match-key, blocking-key and phase indexes are missing; returns how many
/// it built. Costs one lookup of the schema per index when none is. Works inside a transaction or
/// outside one (then each index is its own).
pub fn ensure_match_indexes(conn: &Connection) -> Result<usize> {
    Ok(build_missing(conn, &MATCH_INDEXES)?
        + build_missing(conn, &FEATURE_INDEXES)?
        + build_missing(conn, &PHASE_INDEXES)?)
}

fn build_missing(conn: &Connection, indexes: &[(&str, &str)]) -> Result<usize> {
    let built = missing(conn, indexes)?;
    if built == 0 {
        return Ok(0);
    }
    // SQLite sorts in runs as large as the page cache, next to the cache itself: a smaller
    // cache while building keeps the two within the daemon's memory budget. (Inside a
    // transaction the smaller cache may spill dirty pages to the WAL early; that is allowed.)
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", BUILD_CACHE_KIB)?;
    let result = indexes
        .iter()
        .try_for_each(|(_, create)| conn.execute_batch(create));
    conn.pragma_update(None, "cache_size", cache)?;
    // The sorter's runs and the pages the smaller cache let go are free now; glibc would keep them.
    crate::memory::release_free();
    result?;
    Ok(built)
}

/// Page cache (SQLite's negative `cache_size`, KiB) while the indexes are built.
const BUILD_CACHE_KIB: i64 = -4_096;

/// How many of `indexes` the store lacks.
fn missing(conn: &Connection, indexes: &[(&str, &str)]) -> Result<usize> {
    let mut present = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1)",
    )?;
    let mut lacking = 0;
    for (name, _) in indexes {
        if !present.query_row([name], |r| r.get::<_, bool>(0))? {
            lacking += 1;
        }
    }
    Ok(lacking)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    /// Each index's SQL as SQLite stores it, whitespace folded and `IF NOT EXISTS` dropped
    /// (SQLite keeps the statement's text as written).
    fn index_sql(conn: &Connection) -> Vec<(String, String)> {
        let mut st = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('source_records', 'match_features', 'phone_history') AND sql IS NOT NULL ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|row| {
                let (name, sql) = row.unwrap();
                let folded = sql
                    .replace("IF NOT EXISTS ", "")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("( ", "(")
                    .replace(" )", ")");
                (name, folded)
            })
            .collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn insert_record(conn: &Connection, key: &str) {
        conn.execute(
            "INSERT INTO source_records (source, stream, source_key, entity, status, content_hash,
                 id_key, np_key, first_seen, last_changed)
             VALUES ('s', 't', ?1, 'person', 'ok', x'00', 'k-' || ?1, 'n-' || ?1, 'now', 'now')",
            [key],
        )
        .unwrap();
    }

    #[test]
    fn deferred_indexes_come_back_exactly_as_the_migrations_define_them() {
        let mut conn = migrated();
        let before = index_sql(&conn);
        assert!(defer_match_indexes(&mut conn).unwrap());
        assert_eq!(missing(&conn, &MATCH_INDEXES).unwrap(), 4);
        assert_eq!(index_sql(&conn).len(), before.len() - 4);
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 4);
        assert_eq!(index_sql(&conn), before);
        // Nothing more to build.
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 0);
    }

    #[test]
    fn deferred_feature_indexes_come_back_exactly_as_the_migrations_define_them() {
        let mut conn = migrated();
        let before = index_sql(&conn);
        assert!(defer_feature_indexes(&mut conn).unwrap());
        assert_eq!(missing(&conn, &FEATURE_INDEXES).unwrap(), 4);
        assert_eq!(missing(&conn, &MATCH_INDEXES).unwrap(), 0);
        assert_eq!(ensure_feature_indexes(&conn).unwrap(), 4);
        assert_eq!(index_sql(&conn), before);
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 0);
        // Both sets deferred: the general repair builds all eight.
        assert!(defer_match_indexes(&mut conn).unwrap());
        assert!(defer_feature_indexes(&mut conn).unwrap());
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 8);
        assert_eq!(index_sql(&conn), before);
    }

    #[test]
    fn phase_indexes_are_left_out_one_phase_each_and_come_back_as_defined() {
        let conn = migrated();
        let before = index_sql(&conn);
        defer_dirty_index(&conn).unwrap();
        assert_eq!(missing(&conn, &[DIRTY_INDEX]).unwrap(), 1);
        assert_eq!(missing(&conn, &[PERSON_INDEX]).unwrap(), 0);
        // Records flagged while it is gone are in it once it is built.
        for key in ["a", "b"] {
            insert_record(&conn, key);
        }
        assert_eq!(build_dirty_defer_person_index(&conn).unwrap(), 1);
        assert_eq!(missing(&conn, &[DIRTY_INDEX]).unwrap(), 0);
        assert_eq!(missing(&conn, &[PERSON_INDEX]).unwrap(), 1);
        let dirty = count(
            &conn,
            "SELECT count(*) FROM source_records INDEXED BY source_records_dirty WHERE dirty = 1",
        );
        assert_eq!(dirty, 2);
        conn.execute(
            "UPDATE source_records SET person_id = 7 WHERE source_key = 'b'",
            [],
        )
        .unwrap();
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 1);
        assert_eq!(index_sql(&conn), before);
        let linked = count(
            &conn,
            "SELECT count(*) FROM source_records INDEXED BY source_records_person WHERE person_id = 7",
        );
        assert_eq!(linked, 1);
    }

    #[test]
    fn a_record_order_first_load_leaves_both_dirty_indexes_out_until_its_pass_is_over() {
        let mut conn = migrated();
        let before = index_sql(&conn);
        assert!(defer_match_indexes(&mut conn).unwrap());
        assert!(defer_feature_indexes(&mut conn).unwrap());
        for key in ["a", "b", "c"] {
            insert_record(&conn, key);
        }
        // The lookups' match-key indexes come back; the blocking-key ones wait for the first
        // ranking; the two over dirty records wait for the record-order pass.
        assert_eq!(prepare_reconcile_indexes(&conn, true, true).unwrap(), 3);
        defer_dirty_indexes(&conn).unwrap();
        assert_eq!(missing(&conn, &MATCH_INDEXES).unwrap(), 1);
        assert_eq!(
            missing(&conn, &[DIRTY_ID_KEY_INDEX, DIRTY_INDEX]).unwrap(),
            2
        );
        assert_eq!(missing(&conn, &FEATURE_INDEXES).unwrap(), 4);
        assert_eq!(missing(&conn, &[PERSON_INDEX]).unwrap(), 0);
        // The pass handles one record; the other two are still dirty when the ID-key index
        // is built, and only they are in it.
        conn.execute(
            "UPDATE source_records SET dirty = 0 WHERE source_key = 'a'",
            [],
        )
        .unwrap();
        assert_eq!(build_dirty_id_key_index(&conn).unwrap(), 1);
        let by_index = count(
            &conn,
            "SELECT count(*) FROM source_records INDEXED BY source_records_dirty_id_key
             WHERE dirty = 1 AND id_key IS NOT NULL AND id_key > ''",
        );
        assert_eq!(by_index, 2);
        assert_eq!(ensure_match_indexes(&conn).unwrap(), 5);
        assert_eq!(index_sql(&conn), before);
        // Any other reconcile builds whatever is missing, the blocking-key ones included.
        defer_dirty_indexes(&conn).unwrap();
        conn.execute_batch("DROP INDEX match_features_phone")
            .unwrap();
        assert_eq!(prepare_reconcile_indexes(&conn, false, false).unwrap(), 3);
        assert_eq!(index_sql(&conn), before);
    }

    #[test]
    fn every_record_dirty_only_while_none_was_reconciled() {
        let conn = migrated();
        assert!(every_record_dirty(&conn).unwrap());
        insert_record(&conn, "a");
        insert_record(&conn, "b");
        assert!(every_record_dirty(&conn).unwrap());
        conn.execute(
            "UPDATE source_records SET dirty = 0 WHERE source_key = 'a'",
            [],
        )
        .unwrap();
        assert!(!every_record_dirty(&conn).unwrap());
        // Without the dirty-flag index (a first load's persons phase) the answer is the same.
        defer_dirty_indexes(&conn).unwrap();
        assert!(!every_record_dirty(&conn).unwrap());
    }

    #[test]
    fn dirty_records_are_seen_until_reconciled() {
        let conn = migrated();
        assert!(!has_dirty_records(&conn).unwrap());
        insert_record(&conn, "a");
        assert!(has_dirty_records(&conn).unwrap());
        conn.execute("UPDATE source_records SET dirty = 0", [])
            .unwrap();
        assert!(!has_dirty_records(&conn).unwrap());
    }

    #[test]
    fn feature_indexes_stay_once_any_record_has_features() {
        let mut conn = migrated();
        insert_record(&conn, "a");
        conn.execute(
            "INSERT INTO match_features (record_id, phone_k, changed) VALUES (1, 'p', 'now')",
            [],
        )
        .unwrap();
        assert!(!defer_feature_indexes(&mut conn).unwrap());
        assert_eq!(missing(&conn, &FEATURE_INDEXES).unwrap(), 0);
        let mut conn = migrated();
        conn.execute(
            "INSERT INTO phone_history (person_id, phone_k, source, first_seen, last_seen)
             VALUES (1, 'p', 's', 'now', 'now')",
            [],
        )
        .unwrap();
        assert!(!defer_feature_indexes(&mut conn).unwrap());
        assert_eq!(missing(&conn, &FEATURE_INDEXES).unwrap(), 0);
    }

    #[test]
    fn a_store_with_records_keeps_its_indexes() {
        let mut conn = migrated();
        insert_record(&conn, "a");
        assert!(!defer_match_indexes(&mut conn).unwrap());
        assert_eq!(missing(&conn, &MATCH_INDEXES).unwrap(), 0);
    }

    #[test]
    fn records_written_while_deferred_are_all_in_the_rebuilt_indexes() {
        let mut conn = migrated();
        assert!(defer_match_indexes(&mut conn).unwrap());
        // A second call (another source starting its first load) changes nothing.
        assert!(!defer_match_indexes(&mut conn).unwrap());
        for key in ["a", "b", "c"] {
            insert_record(&conn, key);
        }
        ensure_match_indexes(&conn).unwrap();
        let by_index = count(
            &conn,
            "SELECT count(*) FROM source_records INDEXED BY source_records_dirty_id_key
             WHERE dirty = 1 AND id_key IS NOT NULL AND id_key > ''",
        );
        assert_eq!(by_index, 3);
        let found: i64 = conn
            .query_row(
                "SELECT id FROM source_records INDEXED BY source_records_np_key WHERE np_key = 'n-b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 2);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
