//! Training the match model from the store (`community-sync matching train`, and after a
//! first load): u from random record–resident pairs, m and the prior by
//! expectation–maximisation over the store's own blocked candidate pairs, the name
//! term frequency from the communities. Seeded (ChaCha8) and deterministic; sampled (at most
//! `max_records` records and `random_pairs` pairs, comparison vectors aggregated by value),
//! so time and memory are bounded whatever the store's size.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::config::ReconcileConfig;
use crate::reconcile::matching::{self, Features};
use crate::reconcile::model::{self, Gamma, Level, Model, TermFrequency, COMPARISONS};
use crate::store::StoreError;

/// The fewest person records a model is trained on automatically (after a first load, on
/// schedule): fewer say too little about how often true matches disagree.
pub const MIN_AUTO_RECORDS: i64 = 1_000;

/// How much to sample.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub seed: u64,
    /// Records whose blocked candidates feed EM (and the term frequencies).
    pub max_records: usize,
    /// Random record–resident pairs for u.
    pub random_pairs: usize,
    pub iterations: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 36,
            max_records: 20_000,
            random_pairs: 50_000,
            iterations: 40,
        }
    }
}

/// A trained model with the summary stored beside it.
#[derive(Debug, Clone)]
pub struct Trained {
    pub model: Model,
    pub summary: serde_json::Value,
}

/// The live person records with features: id range and count.
fn record_range(conn: &Connection) -> Result<(i64, i64, i64), StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(min(record_id), 0), COALESCE(max(record_id), -1), count(*) FROM match_features",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// The first live person record at or after `at` (wrapping), with its resident; `linked`:
/// only records linked to one. A first load trains before its records without an ID number
/// are linked (reconcile::train_before_idless): they are sampled unlinked.
fn record_at(
    conn: &Connection,
    at: i64,
    linked: bool,
) -> Result<Option<(Features, Option<i64>)>, StoreError> {
    let sql = format!(
        "SELECT {}, s.person_id FROM match_features f JOIN source_records s ON s.id = f.record_id
          WHERE f.record_id >= ?1 AND (s.person_id IS NOT NULL OR ?2 = 0) AND s.status = 'ok'
            AND s.deleted = 0
          ORDER BY f.record_id LIMIT 1",
        matching::F_COLS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut get = |at: i64| {
        stmt.query_row(params![at, linked], |r| {
            Ok((matching::row_features(r)?, r.get(matching::F_COUNT)?))
        })
        .optional()
    };
    Ok(match get(at)? {
        Some(x) => Some(x),
        None => get(i64::MIN)?,
    })
}

/// Trains a model; `start` is EM's starting point (the hand-weight model).
pub fn train(
    conn: &Connection,
    cfg: &ReconcileConfig,
    opts: &TrainOptions,
) -> Result<Option<Trained>, StoreError> {
    let (lo, hi, n) = record_range(conn)?;
    if n < 2 {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let start = Model::from_hand_weights(cfg);
    // u: random pairs.
    let mut random: BTreeMap<Gamma, u64> = BTreeMap::new();
    // A small store has few distinct pairs to draw: ten per record are plenty.
    let pairs = opts
        .random_pairs
        .min(usize::try_from(n.saturating_mul(10)).unwrap_or(usize::MAX));
    for _ in 0..pairs {
        let (Some((a, pa)), Some((_, Some(pb)))) = (
            record_at(conn, rng.random_range(lo..=hi), false)?,
            record_at(conn, rng.random_range(lo..=hi), true)?,
        ) else {
            continue;
        };
        if pa != Some(pb) {
            *random
                .entry(matching::compare(conn, cfg, &a, pb)?.gamma)
                .or_default() += 1;
        }
    }
    // Blocked candidate pairs (a record against every candidate, its own resident included)
    // and the name counts per community.
    let mut blocked: BTreeMap<Gamma, u64> = BTreeMap::new();
    let (mut tf_sum, mut tf_n) = (0.0, 0u64);
    let records = opts
        .max_records
        .min(usize::try_from(n).unwrap_or(usize::MAX));
    for _ in 0..records {
        let Some((f, _)) = record_at(conn, rng.random_range(lo..=hi), false)? else {
            continue;
        };
        for pid in matching::candidates(conn, cfg, &f, None)? {
            let g = matching::compare(conn, cfg, &f, pid)?.gamma;
            if g.iter().any(|l| *l != 0) {
                *blocked.entry(g).or_default() += 1;
            }
        }
        if let Some(c) = matching::name_count(conn, &f)? {
            tf_sum += f64::from(c);
            tf_n += 1;
        }
    }
    let u = estimate_u(&random);
    let (mut m, prior, iterations) = estimate_m(&blocked, &u, &start, opts.iterations);
    floor_partial_agreement(&mut m, &u);
    let levels = COMPARISONS
        .iter()
        .enumerate()
        .map(|(c, (_, labels))| {
            (0..labels.len())
                .map(|l| Level {
                    m: m[c][l],
                    u: u[c][l],
                })
                .collect()
        })
        .collect();
    let model = Model {
        version: None,
        prior,
        levels,
        tf: (tf_n > 0).then(|| TermFrequency {
            expected: (tf_sum / tf_n as f64).max(1.0),
            min_bits: -4.0,
            max_bits: 2.0,
        }),
    };
    let summary = json!({
        "seed": opts.seed,
        "person_records": n,
        "max_record_id": hi,
        "records_sampled": records,
        "random_pairs": random.values().sum::<u64>(),
        "candidate_pairs": blocked.values().sum::<u64>(),
        "distinct_comparison_vectors": blocked.len(),
        "em_iterations": iterations,
    });
    Ok(Some(Trained { model, summary }))
}

/// u per comparison level from random pairs (null excluded; add-one smoothing).
fn estimate_u(random: &BTreeMap<Gamma, u64>) -> Vec<Vec<f64>> {
    COMPARISONS
        .iter()
        .enumerate()
        .map(|(c, (_, labels))| {
            let mut counts = vec![1.0; labels.len()];
            for (g, k) in random {
                counts[usize::from(g[c])] += *k as f64;
            }
            normalize_non_null(counts)
        })
        .collect()
}

/// Level 0 (null) gets 1.0 (it is never used); the others sum to 1.
fn normalize_non_null(mut v: Vec<f64>) -> Vec<f64> {
    let total: f64 = v.iter().skip(1).sum();
    for (i, x) in v.iter_mut().enumerate() {
        *x = if i == 0 { 1.0 } else { *x / total.max(1e-12) };
    }
    v
}

/// EM's starting m per level: the order of the hand weights, as probabilities among true
/// matches (the hand weights' own scale says nothing about how often a true match shows a
/// disagreeing phone or address, which EM needs).
const M_START: [&[f64]; 5] = [
    &[1.0, 0.01, 0.02, 0.02, 0.04, 0.91],
    &[1.0, 0.3, 0.03, 0.02, 0.05, 0.1, 0.5],
    &[1.0, 0.04, 0.03, 0.02, 0.91],
    &[1.0, 0.02, 0.98],
    &[1.0, 0.2, 0.15, 0.1, 0.55],
];

/// Pseudo-matches spread over each comparison's levels by [`M_START`] before EM counts the
/// real ones (a Dirichlet prior): a level the store shows no true match in (no birth date
/// typed one year off in this population) keeps a small m instead of one near zero, whose
/// weight would be a confident −10 bits learnt from an absence.
const M_PSEUDO_MATCHES: f64 = 20.0;

/// A partial agreement (one edit, one part off, a roommate's phone, …: every level above
/// `different`) is never weaker evidence than the plain disagreement: its m is raised until
/// its weight is at least the `different` level's.
fn floor_partial_agreement(m: &mut [Vec<f64>], u: &[Vec<f64>]) {
    for (mc, uc) in m.iter_mut().zip(u) {
        let floor = mc[1].max(1e-12) / uc[1].max(1e-12);
        for l in 2..mc.len() {
            if mc[l] / uc[l].max(1e-12) < floor {
                mc[l] = uc[l] * floor;
            }
        }
    }
}

/// A blocking rule's pairs and the comparisons it leaves free (the ones it does not force to
/// agree), with the comparisons whose m it estimates.
struct Session {
    rule: fn(&Gamma) -> bool,
    free: [bool; 5],
    estimates: &'static [usize],
}

/// Splink's way round EM's blind spot: the candidate pairs are found by blocking keys, so a
/// comparison a key forces to agree says nothing inside that key's pairs (and random pairs'
/// u do not describe them). EM runs once per blocking rule over the comparisons it leaves
/// free; each comparison's m comes from a rule that leaves it free (and whose non-matches are
/// like random pairs in it: family members found by phone share an address, so address m
/// comes from the name + birth date pairs). Then the prior by EM over all blocked pairs with
/// m and u fixed.
fn estimate_m(
    blocked: &BTreeMap<Gamma, u64>,
    u: &[Vec<f64>],
    start: &Model,
    max_iter: usize,
) -> (Vec<Vec<f64>>, f64, usize) {
    use model::level::{ADDRESS_COMMUNITY, BIRTH_SWAPPED, NAME_SWAPPED, PHONE_EARLIER_HOUSEHOLD};
    use model::{ADDRESS, BIRTH, GENDER, NAME, PHONE};
    let sessions = [
        // name syllables + community: phone, birth date, gender free.
        Session {
            rule: |g| g[NAME] >= NAME_SWAPPED && g[ADDRESS] >= ADDRESS_COMMUNITY,
            free: [false, true, true, true, false],
            estimates: &[PHONE, BIRTH, GENDER],
        },
        // phone (current, earlier, household): name, birth date, gender free.
        Session {
            rule: |g| g[PHONE] >= PHONE_EARLIER_HOUSEHOLD,
            free: [true, false, true, true, false],
            estimates: &[NAME],
        },
        // name syllables + birth date: phone, gender, address free.
        Session {
            rule: |g| g[NAME] >= NAME_SWAPPED && g[BIRTH] >= BIRTH_SWAPPED,
            free: [false, true, false, true, true],
            estimates: &[ADDRESS],
        },
    ];
    let mut m: Vec<Vec<f64>> = M_START
        .iter()
        .map(|ls| normalize_non_null(ls.to_vec()))
        .collect();
    let mut iterations = 0;
    for s in &sessions {
        let pairs: BTreeMap<Gamma, u64> = blocked
            .iter()
            .filter(|(g, _)| (s.rule)(g))
            .map(|(g, k)| (*g, *k))
            .collect();
        let (sm, _, it) = em(&pairs, u, &m, start.prior, s.free, true, max_iter);
        iterations += it;
        for &c in s.estimates {
            m[c] = sm[c].clone();
        }
    }
    let (_, prior, it) = em(blocked, u, &m, start.prior, [true; 5], false, max_iter);
    (m, prior, iterations + it)
}

/// EM over the comparisons marked `free`, with u fixed; `update_m` false estimates only the
/// prior. Returns m, the prior and the iterations run.
fn em(
    blocked: &BTreeMap<Gamma, u64>,
    u: &[Vec<f64>],
    m_start: &[Vec<f64>],
    prior_start: f64,
    free: [bool; 5],
    update_m: bool,
    max_iter: usize,
) -> (Vec<Vec<f64>>, f64, usize) {
    let mut m = m_start.to_vec();
    let mut prior = prior_start.clamp(0.1, 0.9);
    let total: f64 = blocked.values().map(|k| *k as f64).sum();
    if total == 0.0 {
        return (m, prior, 0);
    }
    let mut it = 0;
    while it < max_iter {
        it += 1;
        let mut counts: Vec<Vec<f64>> = M_START
            .iter()
            .map(|ls| {
                normalize_non_null(ls.to_vec())
                    .into_iter()
                    .map(|p| 0.1 + M_PSEUDO_MATCHES * p)
                    .collect()
            })
            .collect();
        let mut matched = 0.0;
        for (g, k) in blocked {
            let (mut pm, mut pu) = (prior, 1.0 - prior);
            for c in (0..COMPARISONS.len()).filter(|c| free[*c]) {
                let l = usize::from(g[c]);
                if l != 0 {
                    pm *= m[c][l];
                    pu *= u[c][l];
                }
            }
            let w = pm / (pm + pu).max(1e-300) * *k as f64;
            matched += w;
            for c in 0..COMPARISONS.len() {
                counts[c][usize::from(g[c])] += w;
            }
        }
        let new_m: Vec<Vec<f64>> = if update_m {
            counts
                .into_iter()
                .enumerate()
                .map(|(c, v)| {
                    if free[c] {
                        normalize_non_null(v)
                    } else {
                        m[c].clone()
                    }
                })
                .collect()
        } else {
            m.clone()
        };
        let new_prior = (matched / total).clamp(1e-4, 1.0 - 1e-4);
        let delta = new_m
            .iter()
            .flatten()
            .zip(m.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold((new_prior - prior).abs(), f64::max);
        m = new_m;
        prior = new_prior;
        if delta < 1e-6 {
            break;
        }
    }
    (m, prior, it)
}

/// What changed between two models, in words (levels whose weight moved by ≥ 0.5 bit).
pub fn changes(old: &Model, new: &Model) -> Vec<String> {
    let mut out = Vec::new();
    if (old.prior_bits() - new.prior_bits()).abs() >= 0.5 {
        out.push(format!("prior {:.4} -> {:.4}", old.prior, new.prior));
    }
    for (c, (name, labels)) in COMPARISONS.iter().enumerate() {
        for (l, label) in labels.iter().enumerate().skip(1) {
            let (a, b) = (old.bits(c, l as u8), new.bits(c, l as u8));
            if (a - b).abs() >= 0.5 {
                out.push(format!("{name} {label}: {a:+.2} -> {b:+.2} bits"));
            }
        }
    }
    if old.tf != new.tf {
        out.push(format!(
            "name term frequency: typical {} -> {}",
            old.tf
                .map_or("off".into(), |t| format!("{:.3}", t.expected)),
            new.tf
                .map_or("off".into(), |t| format!("{:.3}", t.expected))
        ));
    }
    out
}

/// Why the match model is due for retraining, if it is (`[reconcile] retrain_after_days`,
/// `retrain_after_growth`): only a trained, unpinned model is retrained — the population
/// drifts slowly (a new system connected, a vendor's new habits), so monthly, or sooner
/// when a quarter more records arrived, keeps the weights those of the data without moving
/// links under a running system every day. With `train_after_first_load` and no model yet,
/// it is due once there are `MIN_AUTO_RECORDS` person records: a first load too small to
/// train on, a first load interrupted before its training, a store of an older version.
/// Two indexed reads (or one bounded count): nothing to a no-change poll.
pub fn retrain_due(conn: &Connection, cfg: &ReconcileConfig) -> Result<Option<String>, StoreError> {
    if cfg.model_version.is_some() {
        return Ok(None);
    }
    // The newest version's date and summary only: this runs after every reconcile.
    let latest: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT version, trained_at, summary FROM matching_models ORDER BY version DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((version, trained_at, summary)) = latest else {
        return untrained_due(conn, cfg);
    };
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap_or_default();
    if cfg.retrain_after_days > 0 {
        let age = chrono::DateTime::parse_from_rfc3339(&trained_at)
            .map(|t| chrono::Utc::now().signed_duration_since(t).num_days())
            .unwrap_or(i64::MAX);
        if age >= i64::from(cfg.retrain_after_days) {
            return Ok(Some(format!(
                "version {} is {age} days old (retrain_after_days = {})",
                version, cfg.retrain_after_days
            )));
        }
    }
    let trained_on = summary["person_records"].as_i64().unwrap_or(0);
    let trained_max = summary["max_record_id"].as_i64();
    if let (true, Some(before)) = (
        cfg.retrain_after_growth > 0.0 && trained_on > 0,
        trained_max,
    ) {
        let now: i64 = conn.query_row(
            "SELECT COALESCE(max(record_id), 0) FROM match_features",
            [],
            |r| r.get(0),
        )?;
        let added = (now - before).max(0);
        if added as f64 >= cfg.retrain_after_growth * trained_on as f64 {
            return Ok(Some(format!(
                "{added} person records added since version {} was trained on {trained_on} (retrain_after_growth = {})",
                version, cfg.retrain_after_growth
            )));
        }
    }
    Ok(None)
}

/// No model stored: due when `train_after_first_load` is on and the store holds enough
/// person records (counted up to `MIN_AUTO_RECORDS`, so the check stays bounded).
fn untrained_due(conn: &Connection, cfg: &ReconcileConfig) -> Result<Option<String>, StoreError> {
    if !cfg.train_after_first_load {
        return Ok(None);
    }
    let records: i64 = conn
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM match_features LIMIT ?1)")?
        .query_row([MIN_AUTO_RECORDS], |r| r.get(0))?;
    Ok((records >= MIN_AUTO_RECORDS).then(|| {
        format!("no match model stored yet and at least {MIN_AUTO_RECORDS} person records")
    }))
}

/// Trains, stores a new version and logs what changed against the model in use before.
/// Returns the new version (None: too few records to train on).
pub fn train_and_store(
    conn: &Connection,
    cfg: &ReconcileConfig,
    opts: &TrainOptions,
) -> Result<Option<(i64, Vec<String>)>, StoreError> {
    let before = model::active(conn, cfg)?;
    let Some(t) = train(conn, cfg, opts)? else {
        return Ok(None);
    };
    let changed = changes(&before, &t.model);
    let mut summary = t.summary;
    summary["changes"] = json!(changed);
    let v = model::save(conn, &t.model, &summary)?;
    tracing::info!(version = v, changes = %changed.join("; "), "match model trained");
    Ok(Some((v, changed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with `n` feature rows (records 1..=n) and, when `model` is given, a model
    /// trained at that time on `trained_on` records up to record `max_record_id`.
    fn store_with(n: i64, model: Option<(&str, i64, i64)>) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        // Feature rows alone (their records are not what the schedule reads).
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        for rec in 1..=n {
            conn.execute(
                "INSERT INTO match_features (record_id, changed) VALUES (?1, 'x')",
                [rec],
            )
            .unwrap();
        }
        if let Some((at, trained_on, max)) = model {
            let m = Model::from_hand_weights(&ReconcileConfig::default());
            let summary = json!({"person_records": trained_on, "max_record_id": max});
            let v = model::save(&conn, &m, &summary).unwrap();
            conn.execute(
                "UPDATE matching_models SET trained_at = ?1 WHERE version = ?2",
                params![at, v],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn retraining_is_due_by_age_by_growth_and_when_no_model_was_ever_trained() {
        let cfg = ReconcileConfig::default();
        let now = chrono::Utc::now();
        let fresh = (now - chrono::Duration::days(3)).to_rfc3339();
        let old = (now - chrono::Duration::days(31)).to_rfc3339();
        let due = |conn: &Connection, cfg: &ReconcileConfig| retrain_due(conn, cfg).unwrap();
        // A fresh model on nearly all the records: not due.
        assert_eq!(
            due(&store_with(1_200, Some((&fresh, 1_000, 1_000))), &cfg),
            None
        );
        // 31 days old (retrain_after_days = 30).
        let why = due(&store_with(1_200, Some((&old, 1_000, 1_000))), &cfg).unwrap();
        assert!(why.contains("31 days old"), "{why}");
        // 300 records added to 1,000 (retrain_after_growth = 0.25).
        let why = due(&store_with(1_300, Some((&fresh, 1_000, 1_000))), &cfg).unwrap();
        assert!(why.contains("300 person records added"), "{why}");
        // Pinned: never.
        let pinned = ReconcileConfig {
            model_version: Some(1),
            ..ReconcileConfig::default()
        };
        assert_eq!(
            due(&store_with(1_300, Some((&old, 1_000, 1_000))), &pinned),
            None
        );
        // No model yet (a small first load grown, an interrupted one, an older store's).
        let why = due(&store_with(1_000, None), &cfg).unwrap();
        assert!(why.contains("no match model"), "{why}");
        assert_eq!(due(&store_with(999, None), &cfg), None);
        let off = ReconcileConfig {
            train_after_first_load: false,
            ..ReconcileConfig::default()
        };
        assert_eq!(due(&store_with(5_000, None), &off), None);
    }

    #[test]
    fn em_separates_matches_from_non_matches() {
        let cfg = ReconcileConfig::default();
        let start = Model::from_hand_weights(&cfg);
        // Random pairs: names, phones, birth dates and rooms almost never agree.
        let mut random = BTreeMap::new();
        random.insert([1, 1, 1, 2, 1], 7_000u64);
        random.insert([1, 1, 1, 1, 1], 7_000u64);
        random.insert([5, 1, 1, 2, 1], 50);
        random.insert([1, 6, 1, 2, 1], 20);
        random.insert([1, 1, 4, 2, 2], 200);
        random.insert([1, 1, 1, 2, 2], 1_000);
        let u = estimate_u(&random);
        // Blocked pairs: 300 clear matches, 100 matches under an old phone, 600 namesakes in
        // one community, 200 family members sharing a phone and a room.
        let mut blocked = BTreeMap::new();
        blocked.insert([5, 6, 4, 2, 4], 300u64);
        blocked.insert([5, 5, 4, 2, 4], 100u64);
        blocked.insert([5, 1, 1, 2, 2], 300u64);
        blocked.insert([5, 1, 1, 1, 2], 300u64);
        blocked.insert([1, 4, 1, 1, 4], 100u64);
        blocked.insert([1, 4, 1, 2, 4], 100u64);
        let (m, prior, it) = estimate_m(&blocked, &u, &start, 100);
        assert!(it > 1);
        assert!((prior - 0.4).abs() < 0.1, "prior {prior}");
        assert!(m[model::PHONE][1] < 0.2, "{:?}", m[model::PHONE]);
        assert!(m[model::BIRTH][4] > 0.8, "{:?}", m[model::BIRTH]);
        assert!(m[model::NAME][5] > 0.8, "{:?}", m[model::NAME]);
        // Deterministic.
        assert_eq!(estimate_m(&blocked, &u, &start, 100), (m, prior, it));
    }

    #[test]
    fn an_unseen_partial_agreement_is_not_learnt_as_strong_disagreement() {
        let cfg = ReconcileConfig::default();
        let start = Model::from_hand_weights(&cfg);
        let mut random = BTreeMap::new();
        random.insert([1, 1, 1, 2, 1], 9_000u64);
        random.insert([1, 1, 2, 2, 1], 40);
        random.insert([5, 1, 1, 2, 2], 60);
        let u = estimate_u(&random);
        // No true match in this store has a birth date one part off.
        let mut blocked = BTreeMap::new();
        blocked.insert([5, 6, 4, 2, 4], 500u64);
        blocked.insert([5, 1, 1, 2, 2], 300u64);
        let (mut m, _, _) = estimate_m(&blocked, &u, &start, 100);
        // The Dirichlet prior keeps a small m (not ~0.1/800).
        assert!(m[model::BIRTH][2] > 0.0005, "{:?}", m[model::BIRTH]);
        floor_partial_agreement(&mut m, &u);
        let bits = |c: usize, l: usize| (m[c][l] / u[c][l]).log2();
        for c in 0..COMPARISONS.len() {
            for l in 2..m[c].len() {
                assert!(bits(c, l) >= bits(c, 1) - 1e-9, "{c}/{l}: {m:?}");
            }
        }
    }
}
