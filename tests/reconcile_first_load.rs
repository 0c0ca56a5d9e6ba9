//! A first load takes four shortcuts in reconcile (reconcile::Ranking, reconcile::Phase,
//! store::first_load): it builds the blocking-key indexes only before the first candidate
//! ranking, it does not rank ID-bearing records while no ID-less record is linked, it leaves
//! out the dirty-flag indexes for the persons phases and the resident index for the activity
//! phase, and it links its ID-bearing records in record order, computing the golden records
//! of the residents it created afterwards. None may change a result: the same population
//! loaded with the shortcuts off (a store that already has a row of phone history, for no
//! resident, is not a first load) must come out identical, record for record, resident for
//! resident, event for event, on a population with every matching hard case.
//!
//! One thing differs by design: how many versions a resident went through. In ID order a
//! chunk ends wherever 2,000 records end, so a resident whose records straddle two chunks is
//! announced twice, and one whose last ID-bearing record shares a chunk with an ID-less record
//! of theirs once; the record-order load announces every resident once before any ID-less
//! record links. So person events and golden records are compared without their version
//! (every event of each is still compared: which resident, which operation); domain events
//! with it.

mod common;

use std::collections::BTreeMap;

use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::sim::{Sim, SimOptions};

fn opts() -> SyncOptions {
    common::sync_options(false)
}

fn rows(ctx: &Context, sql: &str) -> Vec<Vec<String>> {
    let g = ctx.store.lock().expect("lock");
    let mut stmt = g.conn().prepare(sql).expect(sql);
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                let v: rusqlite::types::Value = r.get(i)?;
                Ok(match v {
                    rusqlite::types::Value::Null => "-".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => "blob".to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .expect(sql)
    .map(|row| row.expect("row"))
    .collect()
}

/// What reconcile decided, in terms that do not depend on the store: record ids (ingest
/// order across concurrent sources), person ids (the order of keyed hashes under each
/// store's own key) and sealed or blinded values differ between two stores of the same
/// data. Records are named by their source key, residents by their records.
fn decisions(ctx: &Context) -> BTreeMap<&'static str, Vec<String>> {
    let mut record_name: BTreeMap<String, String> = BTreeMap::new();
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows(
        ctx,
        "SELECT id, source || '/' || stream || '/' || source_key, person_id, dirty FROM source_records",
    ) {
        assert_eq!(r[3], "0", "{} left dirty", r[1]);
        record_name.insert(r[0].clone(), r[1].clone());
        if r[2] != "-" {
            members.entry(r[2].clone()).or_default().push(r[1].clone());
        }
    }
    let resident = |pid: &str| -> String {
        let mut m = members.get(pid).cloned().unwrap_or_default();
        m.sort();
        format!("[{}]", m.join(" "))
    };
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut linked: Vec<String> = members.keys().map(|p| resident(p)).collect();
    linked.sort();
    out.insert("residents by their records", linked);
    let mut persons = Vec::new();
    for r in rows(
        ctx,
        "SELECT id, version, provenance, sources, retired FROM persons",
    ) {
        let prov: BTreeMap<String, i64> = serde_json::from_str(&r[2]).expect("provenance");
        let prov: Vec<String> = prov
            .iter()
            .map(|(f, id)| {
                format!(
                    "{f}={}",
                    record_name.get(&id.to_string()).map_or("?", |s| s)
                )
            })
            .collect();
        persons.push(format!(
            "{} {} {} retired={}",
            resident(&r[0]),
            prov.join(","),
            r[3],
            r[4]
        ));
    }
    persons.sort();
    out.insert("golden records", persons);
    let mut review = Vec::new();
    for r in rows(
        ctx,
        "SELECT kind, record_id, person_id, field, score, detail, state FROM review_items",
    ) {
        let rec = record_name.get(&r[1]).map_or("-", |s| s);
        review.push(format!(
            "{} {} {} {} {} {} {}",
            r[0],
            rec,
            resident(&r[2]),
            r[3],
            r[4],
            r[5],
            r[6]
        ));
    }
    review.sort();
    out.insert("review items", review);
    let person_of_key: BTreeMap<String, String> = members
        .keys()
        .map(|p| {
            (
                format!("P{:08}", p.parse::<i64>().expect("person id")),
                resident(p),
            )
        })
        .collect();
    let mut events = Vec::new();
    for r in rows(ctx, "SELECT entity, entity_key, version, op FROM outbox") {
        let key = person_of_key
            .get(&r[1])
            .cloned()
            .unwrap_or_else(|| r[1].clone());
        // A person's versions depend on chunking (see the top of this file).
        let version = if r[0] == "person" {
            String::new()
        } else {
            format!("v{}", r[2])
        };
        events.push(format!("{} {} {} {}", r[0], key, version, r[3]));
    }
    events.sort();
    events.dedup();
    out.insert("events", events);
    let mut indexes: Vec<String> = rows(
        ctx,
        "SELECT name || ' ' || tbl_name || ' ' || coalesce(sql, '') FROM sqlite_schema WHERE type = 'index'",
    )
    .into_iter()
    .map(|r| r[0].split_whitespace().collect::<Vec<_>>().join(" "))
    .collect();
    indexes.sort();
    out.insert("indexes", indexes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_decides_exactly_what_a_full_ranking_decides() {
    let sim = Sim::start(SimOptions {
        seed: common::SEED,
        residents: 1500,
        hard_cases: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    // One ingest, copied with its key: both reconciles start from the same records, ids and
    // keyed hashes (and so the same chunks).
    let first = tempfile::tempdir().unwrap();
    let fast = common::context(&sim, first.path());
    pipeline::ingest_sources(&fast, &opts()).await.unwrap();
    let second = tempfile::tempdir().unwrap();
    let key = second.path().join("credentials").join("store-key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::copy(first.path().join("credentials").join("store-key"), &key).unwrap();
    let copy = second.path().join("store.db");
    fast.store
        .lock()
        .unwrap()
        .conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let ranked = common::context(&sim, second.path());
    ranked
        .store
        .lock()
        .unwrap()
        .conn()
        .execute(
            "INSERT INTO phone_history (person_id, phone_k, source, first_seen, last_seen)
             VALUES (0, 'no such phone', 'none', 'then', 'then')",
            [],
        )
        .unwrap();
    pipeline::run_reconcile(&fast).await.unwrap();
    pipeline::run_reconcile(&ranked).await.unwrap();

    let ranked_records = common::count(&ranked, "SELECT count(*) FROM source_records");
    assert!(
        ranked_records > 3000,
        "a population, not a toy: {ranked_records}"
    );
    let idless = common::count(
        &fast,
        "SELECT count(*) FROM source_records WHERE id_key IS NULL AND person_id IS NOT NULL
           AND entity IN ('card_account', 'volunteer', 'elder', 'patient')",
    );
    let linked_by_score = common::count(
        &fast,
        "SELECT count(DISTINCT person_id) FROM source_records WHERE id_key IS NULL AND person_id IN
           (SELECT person_id FROM source_records WHERE id_key IS NOT NULL)",
    );
    assert!(
        idless > 100 && linked_by_score > 50,
        "ID-less records linked to ID-bearing residents by score: {idless} / {linked_by_score}"
    );
    assert!(
        common::count(&fast, "SELECT count(*) FROM review_items") > 0,
        "the population raises review items"
    );
    // Whatever the chunking, each version of a resident was announced once.
    for ctx in [&fast, &ranked] {
        assert_eq!(
            common::count(ctx, "SELECT count(*) FROM outbox WHERE entity = 'person'"),
            common::count(ctx, "SELECT sum(version) FROM persons"),
            "one person event per version"
        );
        assert_eq!(
            common::count(
                ctx,
                "SELECT count(*) FROM persons WHERE version = 0 AND retired = 0"
            ),
            0,
            "no resident is left without a golden record"
        );
    }
    let (a, b) = (decisions(&fast), decisions(&ranked));
    for (what, a) in &a {
        let b = &b[what];
        let only_a: Vec<&String> = a.iter().filter(|x| !b.contains(x)).take(3).collect();
        let only_b: Vec<&String> = b.iter().filter(|x| !a.contains(x)).take(3).collect();
        assert!(
            only_a.is_empty() && only_b.is_empty(),
            "{what} differ: only in the first load {only_a:#?}, only fully ranked {only_b:#?}"
        );
        assert_eq!(a.len(), b.len(), "{what}: counts differ");
    }
    // The shortcuts' own indexes are back, as the migrations define them.
    for index in [
        "match_features_phone",
        "match_features_syl_birth",
        "match_features_syl_comm",
        "phone_history_phone",
        "source_records_dirty",
        "source_records_person",
    ] {
        assert_eq!(
            common::count(
                &fast,
                &format!(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = '{index}'"
                ),
            ),
            1,
            "{index} rebuilt"
        );
    }
}
