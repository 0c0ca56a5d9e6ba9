//! Encryption at rest (issue 10): a store copied without its key reveals no ID number or phone;
//! matching is identical with encryption on and off; key rotation keeps every record readable
//! and matching intact: once the old key is gone, a new record still finds its resident by its
//! blinded features, and a locked field is still read, without re-matching anything.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use community_sync::cli::demo;
use community_sync::config::Config;
use community_sync::crypto::StoreKey;
use community_sync::model::NormalizedRecord;
use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::sim::Sim;
use community_sync::store::codec::{self, Codec, Keyring, COLUMNS};
use community_sync::store::Store;

const RESIDENTS: usize = 300;
const LOCKED_BIRTH: &str = "1950-01-01";

/// Ingests, as a new record of the same stream, a copy of a live ID-bearing person record
/// without its ID number: it can only be matched by its blinded features. Returns the new
/// record's id and the resident of the original.
fn ingest_idless_copy(store: &mut Store) -> (i64, i64) {
    use community_sync::model::EntityKind;
    use community_sync::store::{Ingest, StreamRef};
    let (id, source, stream, entity, link_stream, person): (
        i64,
        String,
        String,
        String,
        Option<String>,
        i64,
    ) = store
        .conn()
        .query_row(
            "SELECT id, source, stream, entity, link_stream, person_id FROM source_records
             WHERE status = 'ok' AND deleted = 0 AND id_key IS NOT NULL AND np_key IS NOT NULL
               AND person_id IS NOT NULL ORDER BY id LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    let normalized = store
        .conn()
        .query_row(
            "SELECT normalized FROM record_payloads WHERE id = ?1",
            [id],
            |r| Ok(store.codec().open(r.get_ref(0)?)?),
        )
        .unwrap()
        .unwrap();
    let mut record: NormalizedRecord = serde_json::from_str(&normalized).unwrap();
    record.person.id_number = None;
    record.source_key = "rotation-test-idless".into();
    let raw = serde_json::to_string(&record).unwrap();
    let run_id: i64 = store
        .conn()
        .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    store
        .ingest(
            &StreamRef {
                source: &source,
                stream: &stream,
                run_id,
                link_stream: link_stream.as_deref(),
                full_refresh: false,
                entity: EntityKind::parse(&entity).unwrap(),
                run_started: &now,
            },
            &[Ingest::Ok {
                record: Box::new(record),
                deleted: false,
                raw,
            }],
            None,
        )
        .unwrap();
    let new_id: i64 = store
        .conn()
        .query_row(
            "SELECT id FROM source_records WHERE source_key = 'rotation-test-idless'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (new_id, person)
}

fn config_for(sim: &Sim, dir: &Path, edit: impl Fn(&mut Config)) -> Config {
    let path = demo::write_sim_config(sim, dir, &dir.join("store.db")).unwrap();
    let mut config = Config::load(&path).unwrap();
    for s in &mut config.sources {
        for t in &mut s.streams {
            if let Some(inc) = t.incremental.as_mut() {
                inc.settle_secs = 0;
            }
        }
    }
    edit(&mut config);
    config
}

fn context(config: Config) -> Context {
    let store = Store::open_configured(&config).unwrap_or_else(|e| panic!("{e}"));
    Context {
        config: Arc::new(config),
        store: Arc::new(Mutex::new(store)),
    }
}

async fn sync(ctx: &Context, full: bool) {
    let report = pipeline::sync(
        ctx,
        &SyncOptions {
            trigger: "test".into(),
            push: true,
            full,
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.failed_streams(), 0);
    assert!(report.push_error.is_none(), "{:?}", report.push_error);
}

type Clusters = BTreeSet<BTreeSet<(String, String, String)>>;

/// Who was matched with whom, independent of person ids.
fn clusters(store: &Store) -> Clusters {
    let mut by_person: BTreeMap<i64, BTreeSet<(String, String, String)>> = BTreeMap::new();
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT person_id, source, stream, source_key FROM source_records
             WHERE person_id IS NOT NULL AND source_key != 'rotation-test-idless'",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .unwrap();
    for row in rows {
        let (p, k) = row.unwrap();
        by_person.entry(p).or_default().insert(k);
    }
    by_person.into_values().collect()
}

fn persons(store: &Store) -> i64 {
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM persons WHERE retired = 0 AND merged_into IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Every byte of every table of the store file, read with plain rusqlite (no codec).
fn dump(path: &Path) -> Vec<u8> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        out.extend_from_slice(b)
                    }
                    rusqlite::types::ValueRef::Integer(v) => {
                        out.extend_from_slice(v.to_string().as_bytes())
                    }
                    _ => {}
                }
                out.push(0);
            }
        }
    }
    out
}

/// The sensitive values found anywhere in `bytes` (windowed hash lookup, fast on big dumps).
fn leaked(bytes: &[u8], secrets: &[String]) -> Vec<String> {
    let set: HashSet<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
    let lens: BTreeSet<usize> = secrets.iter().map(|s| s.len()).collect();
    let mut firsts = [false; 256];
    for s in secrets {
        if let Some(&b) = s.as_bytes().first() {
            firsts[b as usize] = true;
        }
    }
    let mut found = BTreeSet::new();
    for i in 0..bytes.len() {
        if !firsts[bytes[i] as usize] {
            continue;
        }
        for &l in &lens {
            if let Some(w) = bytes.get(i..i + l) {
                if set.contains(w) {
                    found.insert(String::from_utf8_lossy(w).into_owned());
                }
            }
        }
    }
    found.into_iter().collect()
}

/// `table.column` of every column holding a sealed value (a BLOB) or a blind
/// (`<8 hex>:<32 hex>`) that is not in `codec::COLUMNS`.
fn unlisted_sensitive_columns(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let listed: BTreeSet<(&str, &str)> = COLUMNS
        .sealed
        .iter()
        .map(|c| (c.table(), c.column()))
        .chain(COLUMNS.blinded.iter().map(|c| (c.table(), c.column())))
        .collect();
    let blind = |s: &str| {
        s.len() == 41
            && s.as_bytes()[8] == b':'
            && s.bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || b.is_ascii_hexdigit())
    };
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = stmt.query([]).unwrap();
        let mut found = BTreeSet::new();
        while let Some(r) = rows.next().unwrap() {
            for (i, n) in names.iter().enumerate() {
                let sensitive = match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Blob(b) => {
                        community_sync::crypto::sealed_key_id(b).is_some() && matches!(b[1], 1 | 2)
                    }
                    rusqlite::types::ValueRef::Text(b) => blind(&String::from_utf8_lossy(b)),
                    _ => false,
                };
                if sensitive && !listed.contains(&(t.as_str(), n.as_str())) {
                    found.insert(format!("{t}.{n}"));
                }
            }
        }
        out.extend(found);
    }
    out
}

fn checkpoint(ctx: &Context) {
    let g = ctx.store.lock().unwrap();
    g.conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_store_hides_pii_matches_like_plain_and_survives_rotation() {
    let sim = common::sim(RESIDENTS).await;
    let secrets = sim.truth().sensitive_values;
    assert!(secrets.len() > RESIDENTS);

    // Plain: the check itself must be able to see personal data.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = context(config_for(&sim, plain_dir.path(), |c| {
        c.security.encrypt = Some(false)
    }));
    sync(&plain, false).await;
    checkpoint(&plain);
    let plain_leaks = leaked(&dump(&plain_dir.path().join("store.db")), &secrets);
    assert!(
        plain_leaks.len() > RESIDENTS / 2,
        "a plain store shows ID numbers and phones"
    );
    let (plain_clusters, plain_persons, plain_by_systems) = {
        let g = plain.store.lock().unwrap();
        (
            clusters(&g),
            persons(&g),
            community_sync::reconcile::persons_by_systems(&g).unwrap(),
        )
    };

    // Encrypted (the example config's default): nothing readable without the key.
    let enc_dir = tempfile::tempdir().unwrap();
    let enc_config = config_for(&sim, enc_dir.path(), |_| {});
    assert!(
        enc_config.security.encrypt_enabled(),
        "the example config encrypts"
    );
    let enc = context(enc_config.clone());
    assert!(matches!(
        enc.store.lock().unwrap().codec(),
        Codec::Sealed(_)
    ));
    sync(&enc, false).await;
    checkpoint(&enc);
    let store_path = enc_dir.path().join("store.db");
    let leaks = leaked(&dump(&store_path), &secrets);
    assert!(
        leaks.is_empty(),
        "{} sensitive values readable without the key",
        leaks.len()
    );
    // Every column that holds a sealed value or a blind is in codec::COLUMNS, the list
    // rotation walks.
    assert_eq!(
        unlisted_sensitive_columns(&store_path),
        Vec::<String>::new()
    );
    // Nor in the raw file bytes (free pages, WAL).
    let raw_file = std::fs::read(&store_path).unwrap();
    assert!(
        leaked(&raw_file, &secrets).is_empty(),
        "sensitive values in the store file's bytes"
    );
    {
        let g = enc.store.lock().unwrap();
        assert_eq!(
            clusters(&g),
            plain_clusters,
            "matching identical with encryption on and off"
        );
        assert_eq!(persons(&g), plain_persons);
        assert_eq!(
            community_sync::reconcile::persons_by_systems(&g).unwrap(),
            plain_by_systems
        );
    }

    // Without the key, or with another key, the store does not open.
    let e = Store::open_configured(&config_for(&sim, enc_dir.path(), |c| {
        c.security.encrypt = Some(false)
    }))
    .err()
    .expect("no key: refused")
    .to_string();
    assert!(e.contains("encrypted") && e.contains("key_file"), "{e}");

    // A reviewer's field lock with its own (sealed) value, set before the rotation.
    let locked_person: i64 = {
        let g = enc.store.lock().unwrap();
        let pid: i64 = g
            .conn()
            .query_row(
                "SELECT person_id FROM source_records WHERE person_id IS NOT NULL ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        g.conn()
            .execute(
                "INSERT INTO field_locks (person_id, field, record_id, value, decision_id)
                 VALUES (?1, 'birth_date', NULL, ?2, 0)",
                rusqlite::params![pid, g.codec().seal(codec::FIELD_LOCK_VALUE, LOCKED_BIRTH)],
            )
            .unwrap();
        pid
    };

    // Rotation (one transaction; the daemon is stopped).
    let new_key = enc_dir.path().join("credentials").join("store-key.new");
    community_sync::crypto::write_new_key_file(&new_key).unwrap();
    let s = &enc_config.security;
    let load = |p: &Path| {
        StoreKey::load(
            p.to_str().unwrap(),
            Path::new("."),
            s.algorithm,
            s.blind_algorithm,
        )
        .unwrap()
    };
    let old_key_path = enc_dir.path().join("credentials").join("store-key");
    drop(enc);
    let report = {
        let mut rot = Store::open(&store_path).unwrap();
        codec::rotate(
            &mut rot,
            Some(Keyring::new(load(&old_key_path), vec![])),
            load(&new_key),
            97,
        )
        .unwrap()
    };
    assert!(report.rows_rewritten > RESIDENTS as u64);
    assert!(report.blinds_recomputed > 0);

    // The old key no longer opens the store; the new one does, and every value opens.
    let e = Store::open_configured(&enc_config)
        .err()
        .expect("old key refused")
        .to_string();
    assert!(e.contains("key id"), "{e}");
    let rotated_config = config_for(&sim, enc_dir.path(), |c| {
        c.security.key_file = Some(new_key.display().to_string());
    });
    let rotated = context(rotated_config);
    {
        let g = rotated.store.lock().unwrap();
        let codec = g.codec().clone();
        // Every sealed column opens with the new key alone, and every blinded column is
        // under it (the list rotation walks is the list seal and blind take their columns from).
        let new_id = load(&new_key).id_hex();
        for c in COLUMNS.sealed {
            let mut stmt = g
                .conn()
                .prepare(&format!("SELECT {} FROM {}", c.column(), c.table()))
                .unwrap();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                codec
                    .open(r.get_ref(0).unwrap())
                    .unwrap_or_else(|e| panic!("{}.{}: {e}", c.table(), c.column()));
            }
        }
        let mut blinded_tables = BTreeSet::new();
        for c in COLUMNS.blinded {
            let (under, total): (i64, i64) = g
                .conn()
                .query_row(
                    &format!(
                        "SELECT count(*) FILTER (WHERE {col} LIKE ?1 || ':%'), count({col}) FROM {t}",
                        col = c.column(),
                        t = c.table()
                    ),
                    [&new_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(
                under,
                total,
                "{}.{} under the new key",
                c.table(),
                c.column()
            );
            if total > 0 {
                blinded_tables.insert(c.table());
            }
        }
        assert_eq!(
            blinded_tables.into_iter().collect::<Vec<_>>(),
            ["match_features", "phone_history", "source_records"],
            "the check saw blinds in every blinded table"
        );
        // Blinds are what the ingest computes with the new key.
        let mut stmt = g
            .conn()
            .prepare(
                "SELECT p.normalized, s.id_key, s.np_key FROM source_records s
                 JOIN record_payloads p ON p.id = s.id WHERE s.status = 'ok'",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut checked = 0;
        while let Some(r) = rows.next().unwrap() {
            let n = codec.open(r.get_ref(0).unwrap()).unwrap().unwrap();
            let rec: NormalizedRecord = serde_json::from_str(&n).unwrap();
            let id_key: Option<String> = r.get(1).unwrap();
            assert_eq!(id_key, codec::record_keys(&codec, &rec.person).0);
            let np_key: Option<String> = r.get(2).unwrap();
            if rec.person.name.is_some() && rec.person.phone.is_some() {
                assert_eq!(np_key, codec::record_keys(&codec, &rec.person).1);
                checked += 1;
            }
        }
        assert!(checked > RESIDENTS / 2);
        assert_eq!(clusters(&g), plain_clusters);
    }
    // With the old key gone, an ID-less record that arrives now links to its resident by
    // phone, name and birth date (the existing records' blinded match features and phone
    // history must be under the new key: nothing is re-matched from scratch) ...
    {
        let mut g = rotated.store.lock().unwrap();
        let persons_before = persons(&g);
        let (record, resident) = ingest_idless_copy(&mut g);
        let stats = community_sync::reconcile::reconcile(&mut g, &rotated.config).unwrap();
        assert!(stats.records >= 1, "{stats:?}");
        let linked: Option<i64> = g
            .conn()
            .query_row(
                "SELECT person_id FROM source_records WHERE id = ?1",
                [record],
                |r| r.get(0),
            )
            .unwrap();
        let reviewed: i64 = g
            .conn()
            .query_row(
                "SELECT count(*) FROM review_items WHERE kind = 'match' AND record_id = ?1 AND person_id = ?2",
                [record, resident],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            linked == Some(resident) || reviewed == 1,
            "the ID-less copy found its resident ({linked:?}, expected {resident}; review items {reviewed})"
        );
        assert_eq!(persons(&g), persons_before, "no duplicate resident");
    }
    // ... and a field lock set before the rotation still decides its field.
    {
        let mut g = rotated.store.lock().unwrap();
        g.conn()
            .execute(
                "UPDATE source_records SET dirty = 1 WHERE person_id = ?1",
                [locked_person],
            )
            .unwrap();
        community_sync::reconcile::reconcile(&mut g, &rotated.config)
            .unwrap_or_else(|e| panic!("reconcile with a locked field: {e}"));
        let birth = g
            .conn()
            .query_row(
                "SELECT birth_date FROM persons WHERE id = ?1",
                [locked_person],
                |r| Ok(g.codec().open(r.get_ref(0)?)?),
            )
            .unwrap();
        assert_eq!(birth.as_deref(), Some(LOCKED_BIRTH));
    }
    // And a full re-sync with the new key changes nothing.
    sync(&rotated, true).await;
    {
        let g = rotated.store.lock().unwrap();
        assert_eq!(clusters(&g), plain_clusters);
    }
    checkpoint(&rotated);
    assert!(leaked(&dump(&store_path), &secrets).is_empty());
    sim.shutdown().await;
}

#[cfg(unix)]
#[test]
fn store_file_and_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").join("store.db");
    let _s = Store::open(&path).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
}
