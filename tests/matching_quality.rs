//! Pairwise precision and recall of the person clustering against the simulator's ground
//! truth, on a population with every matching hard case, overall and per case kind; and the
//! same with the address and phone-history features switched off, to show what they add.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use community_sync::config::Config;
use community_sync::pipeline::{self, Context, SyncOptions};
use community_sync::sim::{GroundTruth, Sim, SimOptions};
use community_sync::store::Store;

fn opts() -> SyncOptions {
    common::sync_options(false)
}

#[derive(Debug, Default, Clone, Copy)]
struct Pr {
    tp: u64,
    predicted: u64,
    actual: u64,
}

impl Pr {
    fn precision(&self) -> f64 {
        if self.predicted == 0 {
            1.0
        } else {
            self.tp as f64 / self.predicted as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.actual == 0 {
            1.0
        } else {
            self.tp as f64 / self.actual as f64
        }
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Pairwise counts overall ("all") and per case kind (pairs with at least one record of
/// that kind), plus open review items.
fn measure(ctx: &Context, truth: &GroundTruth) -> (BTreeMap<String, Pr>, i64) {
    let g = ctx.store.lock().unwrap();
    let mut stmt = g
        .conn()
        .prepare(
            "SELECT source, stream, source_key, person_id FROM source_records
             WHERE status = 'ok' AND deleted = 0 AND entity IN ('card_account', 'volunteer', 'elder', 'patient')",
        )
        .unwrap();
    // (true resident, person, kind)
    let recs: Vec<(usize, i64, Option<String>)> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap()
        .map(|x| x.unwrap())
        .map(|(s, t, k, p)| {
            let key = (s, t, k);
            let res = *truth
                .resident_of_record
                .get(&key)
                .expect("every kept record is in the truth");
            (res, p, truth.case_of_record.get(&key).cloned())
        })
        .collect();
    let review: i64 = g
        .conn()
        .query_row(
            "SELECT count(*) FROM review_items WHERE state = 'open'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(stmt);
    drop(g);
    let mut out: BTreeMap<String, Pr> = BTreeMap::new();
    // Enumerate pairs inside true clusters and inside predicted clusters (both small).
    let mut by_res: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut by_person: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (r, p, _)) in recs.iter().enumerate() {
        by_res.entry(*r).or_default().push(i);
        by_person.entry(*p).or_default().push(i);
    }
    let kinds = |a: usize, b: usize| {
        let mut k = vec!["all".to_string()];
        for x in [&recs[a].2, &recs[b].2].into_iter().flatten() {
            if !k.contains(x) {
                k.push(x.clone());
            }
        }
        k
    };
    for members in by_res.values() {
        for (i, &a) in members.iter().enumerate() {
            for &b in &members[i + 1..] {
                for k in kinds(a, b) {
                    let e = out.entry(k).or_default();
                    e.actual += 1;
                    if recs[a].1 == recs[b].1 {
                        e.tp += 1;
                    }
                }
            }
        }
    }
    for members in by_person.values() {
        for (i, &a) in members.iter().enumerate() {
            for &b in &members[i + 1..] {
                for k in kinds(a, b) {
                    out.entry(k).or_default().predicted += 1;
                }
            }
        }
    }
    (out, review)
}

async fn run(sim: &Sim, tweak: impl FnOnce(&mut Config)) -> (BTreeMap<String, Pr>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let base = common::context(sim, dir.path());
    let mut config = (*base.config).clone();
    tweak(&mut config);
    let ctx = Context {
        config: Arc::new(config),
        store: base.store.clone(),
    };
    pipeline::sync(&ctx, &opts()).await.unwrap();
    let truth = sim.truth();
    measure(&ctx, &truth)
}

fn print(label: &str, m: &BTreeMap<String, Pr>, review: i64) {
    println!("== {label} (open review items: {review})");
    println!(
        "{:<14} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "kind", "true", "linked", "P", "R", "F1"
    );
    for (k, pr) in m {
        println!(
            "{:<14} {:>9} {:>9} {:>7.4} {:>7.4} {:>7.4}",
            k,
            pr.actual,
            pr.predicted,
            pr.precision(),
            pr.recall(),
            pr.f1()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_cases_precision_and_recall_with_and_without_address_and_phone_history() {
    let sim = Sim::start(SimOptions {
        seed: common::SEED,
        residents: 1500,
        hard_cases: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let truth = sim.truth();
    assert!(
        truth.case_of_record.len() > 300,
        "the hard cases are in the population"
    );

    let (full, review) = run(&sim, |_| {}).await;
    print("all features", &full, review);
    let (bare, review_bare) = run(&sim, |c| {
        c.reconcile.use_address = false;
        c.reconcile.use_phone_history = false;
    })
    .await;
    print("address and phone history off", &bare, review_bare);

    for (k, pr) in &full {
        assert!(
            pr.precision() >= 0.999,
            "{k}: precision {:.4} (a wrong merge)",
            pr.precision()
        );
        assert!(pr.recall() >= 0.99, "{k}: recall {:.4}", pr.recall());
    }
    // Twins and family members sharing a phone are never merged.
    assert_eq!(full["twins"].predicted, full["twins"].tp);
    assert_eq!(full["shared_phone"].predicted, full["shared_phone"].tp);
    // The old-phone accounts need the phone history (and the address) to link.
    assert!(bare["old_phone"].recall() < full["old_phone"].recall());
    // What a person must decide is exactly what the ground truth says a correct run raises
    // (the swapped birth dates); the lone common-name records are neither linked nor raised.
    assert!(review > 0);
    assert_eq!(
        review as usize,
        truth.review_total(),
        "{:?}",
        truth.review_items
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_cases_make_one_resident_each_and_a_rerun_changes_nothing() {
    let sim = Sim::start(SimOptions {
        seed: 11,
        residents: 300,
        hard_cases: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    pipeline::sync(&ctx, &opts()).await.unwrap();
    let truth = sim.truth();
    let persons = common::count(&ctx, "SELECT count(*) FROM persons WHERE retired = 0");
    assert_eq!(persons as usize, truth.persons);
    let outbox = common::count(&ctx, "SELECT count(*) FROM outbox");
    let reviews = common::count(&ctx, "SELECT count(*) FROM review_items");
    // The review items a correct run raises, by kind and field, as the ground truth states.
    let by_kind: std::collections::BTreeMap<String, usize> = {
        let g = ctx.store.lock().unwrap();
        let mut stmt = g
            .conn()
            .prepare(
                "SELECT kind || ':' || COALESCE(field, ''), count(*) FROM review_items
                 WHERE state = 'open' GROUP BY 1",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        rows
    };
    assert!(!truth.review_items.is_empty());
    assert_eq!(by_kind, truth.review_items);
    let report = pipeline::sync(
        &ctx,
        &SyncOptions {
            full: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.reconcile.events, 0);
    assert_eq!(common::count(&ctx, "SELECT count(*) FROM outbox"), outbox);
    assert_eq!(
        common::count(&ctx, "SELECT count(*) FROM review_items"),
        reviews
    );
    let _ = Store::open;
    let _ = Mutex::new(());
    sim.shutdown().await;
}

/// A first load trains its model before it decides the records without an ID number, so
/// those are decided once, by that model: deciding them again changes nothing. On a
/// population whose ID-less records the hand weights leave in review (Unseen's registration
/// dates as birth dates), the trained first load links them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_decides_the_idless_records_with_the_model_it_trained() {
    use community_sync::sim::HardProfile;
    let sim = Sim::start(SimOptions {
        seed: 36,
        residents: 400,
        hard_cases: true,
        hard_profile: HardProfile::Unseen,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let match_items = "SELECT count(*) FROM review_items WHERE kind = 'match' AND state = 'open'";
    let hand_dir = tempfile::tempdir().unwrap();
    let mut hand = common::context(&sim, hand_dir.path());
    std::sync::Arc::make_mut(&mut hand.config)
        .reconcile
        .train_after_first_load = false;
    pipeline::sync(&hand, &opts()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::context(&sim, dir.path());
    pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(
        common::count(&ctx, "SELECT count(*) FROM matching_models"),
        1,
        "the first load trained a model"
    );
    let (hand_items, items) = (
        common::count(&hand, match_items),
        common::count(&ctx, match_items),
    );
    assert!(
        hand_items >= 10 && items < hand_items / 2,
        "the trained first load links what the hand weights hold: {items} items against {hand_items}"
    );
    let marked = ctx
        .store
        .lock()
        .unwrap()
        .conn()
        .execute(
            "UPDATE source_records SET dirty = 1 WHERE id_key IS NULL AND status = 'ok'
               AND deleted = 0 AND id IN (SELECT record_id FROM match_features)",
            [],
        )
        .unwrap() as i64;
    assert!(marked > 50, "ID-less person records: {marked}");
    let again = pipeline::run_reconcile(&ctx).await.unwrap();
    assert_eq!(again.records as i64, marked);
    assert_eq!(
        (again.events, again.persons_created, again.persons_changed),
        (0, 0, 0),
        "deciding the ID-less records again with the trained model changes nothing"
    );
    assert_eq!(common::count(&ctx, match_items), items);
    sim.shutdown().await;
}

/// Open `match` review items, and how many of them suggest the right resident (the candidate
/// resident has a record of the record's true resident).
fn review_precision(ctx: &Context, truth: &GroundTruth) -> (usize, usize) {
    let g = ctx.store.lock().unwrap();
    let conn = g.conn();
    let resident = |rec: i64| -> Option<usize> {
        let key: (String, String, String) = conn
            .query_row(
                "SELECT source, stream, source_key FROM source_records WHERE id = ?1",
                [rec],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok()?;
        truth.resident_of_record.get(&key).copied()
    };
    let items: Vec<(i64, i64)> = conn
        .prepare(
            "SELECT record_id, person_id FROM review_items WHERE kind = 'match' AND state = 'open'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    let (mut right, mut wrong_shown) = (0, 0);
    // Per case kind of the reviewed record: (items, right).
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (rec, pid) in &items {
        let want = resident(*rec);
        let kind = conn
            .query_row(
                "SELECT source, stream, source_key FROM source_records WHERE id = ?1",
                [rec],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok()
            .and_then(|k: (String, String, String)| truth.case_of_record.get(&k).cloned())
            .unwrap_or_else(|| "ordinary".into());
        by_kind.entry(kind.clone()).or_default().0 += 1;
        let theirs: Vec<i64> = conn
            .prepare("SELECT id FROM source_records WHERE person_id = ?1 AND status = 'ok' AND deleted = 0")
            .unwrap()
            .query_map([pid], |r| r.get(0))
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        if want.is_some() && theirs.iter().any(|r| resident(*r) == want) {
            right += 1;
            by_kind.entry(kind).or_default().1 += 1;
        } else if wrong_shown < 3 && std::env::var_os("QUALITY_EXPLAIN").is_some() {
            wrong_shown += 1;
            let (src, key): (String, String) = conn
                .query_row(
                    "SELECT source, source_key FROM source_records WHERE id = ?1",
                    [rec],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let text =
                community_sync::cli::review::explain_text(&g, &ctx.config, &src, &key).unwrap();
            println!("-- wrong review suggestion {pid} for {src}/{key}:\n{text}");
        }
    }
    for (k, (n, r)) in &by_kind {
        println!("   review items of {k}: {n}, right {r}");
    }
    (items.len(), right)
}

/// `explain` of every ID-less record whose resident holds records of another true resident
/// (a wrong merge), so a failing seed says why.
fn explain_wrong_merges(ctx: &Context, truth: &GroundTruth) {
    let g = ctx.store.lock().unwrap();
    let rows: Vec<(String, String, String, i64, bool)> = g
        .conn()
        .prepare(
            "SELECT source, stream, source_key, person_id, id_key IS NULL FROM source_records
             WHERE status = 'ok' AND deleted = 0 AND entity IN ('card_account', 'volunteer', 'elder', 'patient')",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    let mut residents: HashMap<i64, std::collections::BTreeSet<usize>> = HashMap::new();
    for (s, t, k, p, _) in &rows {
        if let Some(r) = truth
            .resident_of_record
            .get(&(s.clone(), t.clone(), k.clone()))
        {
            residents.entry(*p).or_default().insert(*r);
        }
    }
    for (p, set) in &residents {
        if set.len() > 1 {
            let members: Vec<String> = rows
                .iter()
                .filter(|r| r.3 == *p)
                .map(|(s, t, k, _, idless)| {
                    let who = truth
                        .resident_of_record
                        .get(&(s.clone(), t.clone(), k.clone()));
                    let case = truth.case_of_record.get(&(s.clone(), t.clone(), k.clone()));
                    format!("{s}/{t}/{k} truth {who:?} case {case:?} id-less {idless}")
                })
                .collect();
            println!(
                "-- resident {p} holds {} true residents:\n   {}",
                set.len(),
                members.join("\n   ")
            );
        }
    }
    for (s, _, k, p, idless) in &rows {
        if *idless && residents.get(p).is_some_and(|r| r.len() > 1) {
            let text = community_sync::cli::review::explain_text(&g, &ctx.config, s, k).unwrap();
            println!("-- wrong merge into {p}:\n{text}");
        }
    }
}

fn print_quality(label: &str, ctx: &Context, truth: &GroundTruth) -> BTreeMap<String, Pr> {
    let (mut m, _) = measure(ctx, truth);
    // Every kind of the population has a row, even one without a pair to count.
    for kind in truth.case_of_record.values() {
        m.entry(kind.clone()).or_default();
    }
    if m["all"].precision() < 1.0 {
        explain_wrong_merges(ctx, truth);
    }
    let (items, right) = review_precision(ctx, truth);
    let records = common::count(ctx, "SELECT count(*) FROM match_features");
    println!(
        "== {label}: match review items {items} ({:.1} per 1,000 person records), right {right} (review precision {:.3})",
        items as f64 * 1000.0 / records.max(1) as f64,
        if items == 0 { 1.0 } else { right as f64 / items as f64 }
    );
    println!(
        "{:<28} {:>7} {:>7} {:>7} {:>7}",
        "kind", "true", "linked", "P", "R"
    );
    for (k, pr) in &m {
        println!(
            "{:<28} {:>7} {:>7} {:>7.4} {:>7.4}",
            k,
            pr.actual,
            pr.predicted,
            pr.precision(),
            pr.recall()
        );
    }
    m
}

/// Issue 36's quality harness: 5 hard-case profiles (the tuned one, `HardProfile::Unseen`,
/// the adversarial `HardProfile::Holdout`, whose per-kind rows include its eight own kinds,
/// `HardProfile::Blind` with eight more, on seeds of its own: 404, 505, 606, and
/// `HardProfile::Fresh` with eight more on 707, 808, 909) × 3 seeds; the name still says
/// two profiles, as the issue asked for. Each
/// population is synced once with the hand-weight model alone, then into a fresh store the
/// product's default way: the first load trains a model from the store before it decides
/// the records without an ID number. Prints per-kind pairwise precision and recall and the review queue's
/// precision for both; asserts only what must never happen (a twin pair merged).
/// `QUALITY_ONLY=Unseen:202` (or `Holdout:101`, `Blind:404`) runs one population; wrong merges are
/// explained. Slow in a debug build: run with
/// `cargo test --release --test matching_quality -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn trained_model_quality_on_two_profiles_and_three_seeds() {
    use community_sync::reconcile::model;
    use community_sync::sim::HardProfile;
    let residents: usize = std::env::var("QUALITY_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // e.g. "Unseen:202", "Holdout", "Tuned:101,Unseen:303"
    let only = std::env::var("QUALITY_ONLY").unwrap_or_default();
    let three = [101u64, 202, 303];
    for (profile, seeds) in [
        (HardProfile::Tuned, three),
        (HardProfile::Unseen, three),
        (HardProfile::Holdout, three),
        (HardProfile::Blind, [404, 505, 606]),
        (HardProfile::Fresh, [707, 808, 909]),
    ] {
        for seed in seeds {
            let here = format!("{profile:?}:{seed}");
            if !only.is_empty()
                && !only
                    .split(',')
                    .any(|o| o == here || o == format!("{profile:?}"))
            {
                continue;
            }
            let sim = Sim::start(SimOptions {
                seed,
                residents,
                hard_cases: true,
                hard_profile: profile,
                ..SimOptions::default()
            })
            .await
            .unwrap();
            let truth = sim.truth();
            // The hand weights alone: no training after the first load.
            let first = tempfile::tempdir().unwrap();
            let mut ctx = common::context(&sim, first.path());
            std::sync::Arc::make_mut(&mut ctx.config)
                .reconcile
                .train_after_first_load = false;
            pipeline::sync(&ctx, &opts()).await.unwrap();
            let hand = print_quality(
                &format!("{profile:?} seed {seed}, hand weights"),
                &ctx,
                &truth,
            );
            // The product's default: the first load trains a model on the store's own data
            // before it decides the records without an ID number.
            let second = tempfile::tempdir().unwrap();
            let ctx2 = common::context(&sim, second.path());
            assert!(ctx2.config.reconcile.train_after_first_load);
            pipeline::sync(&ctx2, &opts()).await.unwrap();
            let trained = {
                let g = ctx2.store.lock().unwrap();
                model::load(g.conn(), None)
                    .unwrap()
                    .expect("a first load trains a model")
            };
            println!("trained on: {}", trained.summary);
            println!("{}", model::table(&trained.model));
            let fitted = print_quality(
                &format!("{profile:?} seed {seed}, trained model"),
                &ctx2,
                &truth,
            );
            // A report, not a gate (docs/matching.md lists the figures and what misses the
            // issue's targets); the one thing that must never happen is asserted.
            for m in [&hand, &fitted] {
                if let Some(t) = m.get("twins") {
                    assert_eq!(t.predicted, t.tp, "a twin pair merged");
                }
            }
            sim.shutdown().await;
        }
    }
}
