//! The Fellegi–Sunter match model (as Splink uses it): every comparison of a record with a
//! candidate resident falls into one *level* per comparison (name exact / same pinyin /
//! different; phone current / earlier / household / different; …). Each level has an `m`
//! probability (how often true matches show it) and a `u` probability (how often two different
//! residents show it). The match weight is the prior's log-odds plus the sum of
//! `log2(m / u)` over the comparisons, in bits; the match probability is `1 / (1 + 2^-bits)`.
//!
//! A level with no data on one side (`null`) weighs nothing. Names get a term-frequency
//! adjustment: `log2(expected / c)`, where `c` is the number of residents of the record's
//! community whose names sound the same (pinyin key) and `expected` the same count for a
//! typical record (trained). A rare name at the same address weighs more, 王芳 three times in
//! one community less.
//!
//! Until a model is trained ([`crate::reconcile::train`]) the hand weights of
//! `[reconcile.weights]` are turned into one ([`Model::from_hand_weights`]): each weight `w`
//! becomes `K·w` bits, with `K` and the prior chosen so that a hand score of 0.9 is a
//! probability of 0.9 and 0.6 is 0.6 — the decisions are exactly the old ones. It is also
//! EM's starting point.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::{MatchWeights, ReconcileConfig};
use crate::store::StoreError;

/// The comparisons, in order, with their level labels (the name's `pinyin` level also holds a
/// one-character look-alike, its `one edit` level a near sound: `names::NameAgreement`);
/// level 0 is always `null` (no
/// comparison possible: a side has no value) and weighs 0 bits.
pub const COMPARISONS: [(&str, &[&str]); 5] = [
    (
        "name",
        &[
            "null",
            "different",
            "one edit",
            "swapped order",
            "pinyin",
            "exact",
        ],
    ),
    (
        "phone",
        &[
            "null",
            "different",
            "family",
            "earlier household",
            "household",
            "earlier",
            "current",
        ],
    ),
    (
        "birth_date",
        &[
            "null",
            "different",
            "one part off",
            "day/month swapped",
            "equal",
        ],
    ),
    ("gender", &["null", "different", "same"]),
    (
        "address",
        &[
            "null",
            "different",
            "same community",
            "same building",
            "same room",
        ],
    ),
];

/// Level indexes, by comparison (the positions of the labels above).
pub mod level {
    pub const NAME_DIFFERENT: u8 = 1;
    pub const NAME_ONE_EDIT: u8 = 2;
    pub const NAME_SWAPPED: u8 = 3;
    pub const NAME_PINYIN: u8 = 4;
    pub const NAME_EXACT: u8 = 5;
    pub const PHONE_DIFFERENT: u8 = 1;
    /// The phone of another resident living in the candidate's room.
    pub const PHONE_FAMILY: u8 = 2;
    pub const PHONE_EARLIER_HOUSEHOLD: u8 = 3;
    pub const PHONE_HOUSEHOLD: u8 = 4;
    pub const PHONE_EARLIER: u8 = 5;
    pub const PHONE_CURRENT: u8 = 6;
    pub const BIRTH_DIFFERENT: u8 = 1;
    pub const BIRTH_ONE_PART: u8 = 2;
    pub const BIRTH_SWAPPED: u8 = 3;
    pub const BIRTH_EQUAL: u8 = 4;
    pub const GENDER_DIFFERENT: u8 = 1;
    pub const GENDER_SAME: u8 = 2;
    pub const ADDRESS_DIFFERENT: u8 = 1;
    pub const ADDRESS_COMMUNITY: u8 = 2;
    pub const ADDRESS_BUILDING: u8 = 3;
    pub const ADDRESS_ROOM: u8 = 4;
}

pub const NAME: usize = 0;
pub const PHONE: usize = 1;
pub const BIRTH: usize = 2;
pub const GENDER: usize = 3;
pub const ADDRESS: usize = 4;

/// One record-versus-resident comparison vector: a level index per comparison.
pub type Gamma = [u8; 5];

/// m and u of one level.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Level {
    pub m: f64,
    pub u: f64,
}

impl Level {
    pub fn bits(&self) -> f64 {
        (self.m.max(1e-9) / self.u.max(1e-9)).log2()
    }
}

/// Term-frequency adjustment of names within the community.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TermFrequency {
    /// Residents of a typical record's community whose names sound like its name (≥ 1).
    pub expected: f64,
    /// Bounds of the adjustment in bits.
    pub min_bits: f64,
    pub max_bits: f64,
}

impl TermFrequency {
    /// Adjustment in bits for a name carried by `count` residents of the community.
    pub fn bits(&self, count: u32) -> f64 {
        let c = f64::from(count.max(1));
        (self.expected / c)
            .log2()
            .clamp(self.min_bits, self.max_bits)
    }
}

/// A match model: per comparison and level m and u, the prior, the TF adjustment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// `matching_models.version` (None: the hand-weight model, untrained).
    #[serde(default)]
    pub version: Option<i64>,
    /// Prior probability that a blocked candidate pair is a match.
    pub prior: f64,
    /// `levels[comparison][level]`; level 0 (`null`) is ignored.
    pub levels: Vec<Vec<Level>>,
    pub tf: Option<TermFrequency>,
}

/// log2 odds of a probability.
pub fn logit2(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).log2()
}

/// Probability of log2 odds.
pub fn probability(bits: f64) -> f64 {
    1.0 / (1.0 + (-bits).exp2())
}

/// Typical share of two different residents showing each level (u), used by the hand-weight
/// model and as EM's start before u is estimated.
const U_START: [&[f64]; 5] = [
    &[1.0, 0.97, 0.01, 0.002, 0.005, 0.015],
    &[1.0, 0.99, 0.002, 0.001, 0.004, 0.002, 0.003],
    &[1.0, 0.98, 0.01, 0.002, 0.008],
    &[1.0, 0.5, 0.5],
    &[1.0, 0.7, 0.25, 0.04, 0.01],
];

impl Model {
    /// The model equivalent to the hand weights and thresholds (see the module docs).
    pub fn from_hand_weights(cfg: &ReconcileConfig) -> Model {
        let (hi, lo) = (cfg.link_threshold, cfg.review_threshold);
        let (hi, lo) = if hi - lo > 0.05 && hi < 1.0 && lo > 0.0 {
            (hi, lo)
        } else {
            (0.9, 0.6)
        };
        let k = (logit2(hi) - logit2(lo)) / (hi - lo);
        let prior_bits = logit2(hi) - hi * k;
        let w = hand_bits(&cfg.weights);
        let levels = COMPARISONS
            .iter()
            .enumerate()
            .map(|(c, (_, labels))| {
                (0..labels.len())
                    .map(|l| {
                        let u = U_START[c][l];
                        Level {
                            m: u * (k * w[c][l]).exp2(),
                            u,
                        }
                    })
                    .collect()
            })
            .collect();
        Model {
            version: None,
            prior: probability(prior_bits),
            levels,
            tf: None,
        }
    }

    /// Whether the model has a level for every comparison level of this version (a model
    /// stored by an older version may not).
    pub fn fits(&self) -> bool {
        self.levels.len() == COMPARISONS.len()
            && self
                .levels
                .iter()
                .zip(COMPARISONS.iter())
                .all(|(ls, (_, labels))| ls.len() == labels.len())
    }

    pub fn prior_bits(&self) -> f64 {
        logit2(self.prior)
    }

    /// The level of a comparison (null levels weigh nothing).
    pub fn level(&self, comparison: usize, level: u8) -> Level {
        self.levels[comparison][usize::from(level)]
    }

    /// Bits of one comparison's level.
    pub fn bits(&self, comparison: usize, level: u8) -> f64 {
        if level == 0 {
            0.0
        } else {
            self.level(comparison, level).bits()
        }
    }

    /// Match weight (log2 odds, prior included) of a comparison vector plus an adjustment.
    pub fn weight(&self, g: &Gamma, tf_bits: f64) -> f64 {
        self.prior_bits()
            + (0..COMPARISONS.len())
                .map(|c| self.bits(c, g[c]))
                .sum::<f64>()
            + tf_bits
    }
}

/// Hand weights per comparison level (0 where the hand score added nothing).
fn hand_bits(w: &MatchWeights) -> [Vec<f64>; 5] {
    [
        vec![
            0.0,
            0.0,
            w.name_one_edit,
            w.name_swapped,
            w.name_pinyin,
            w.name_exact,
        ],
        vec![
            0.0,
            0.0,
            w.phone_family,
            w.phone_household.min(w.phone_earlier),
            w.phone_household,
            w.phone_earlier,
            w.phone_current,
        ],
        vec![
            0.0,
            w.birth_differs,
            w.birth_one_part,
            w.birth_swapped,
            w.birth_equal,
        ],
        vec![0.0, w.gender_differs, 0.0],
        vec![
            0.0,
            0.0,
            w.address_community,
            w.address_building,
            w.address_room,
        ],
    ]
}

/// A stored model version with what it was trained on.
#[derive(Debug, Clone, Serialize)]
pub struct StoredModel {
    pub version: i64,
    pub trained_at: String,
    pub summary: serde_json::Value,
    pub model: Model,
}

/// The model reconcile uses: the pinned version (`reconcile.model_version`), else the newest
/// trained one, else the hand-weight model.
pub fn active(conn: &Connection, cfg: &ReconcileConfig) -> Result<Model, StoreError> {
    let stored = match cfg.model_version {
        Some(v) => load(conn, Some(v))?,
        None => load(conn, None)?,
    };
    match stored {
        Some(s) if s.model.fits() => Ok(s.model),
        Some(s) => {
            tracing::warn!(
                version = s.version,
                "match model version {} was trained for other comparison levels (an older community-sync); reconcile uses the hand weights until `community-sync matching train` trains a new one",
                s.version
            );
            Ok(Model::from_hand_weights(cfg))
        }
        None => Ok(Model::from_hand_weights(cfg)),
    }
}

/// One stored version (`None`: the newest).
pub fn load(conn: &Connection, version: Option<i64>) -> Result<Option<StoredModel>, StoreError> {
    let row: Option<(i64, String, String, String)> = conn
        .prepare_cached(
            "SELECT version, trained_at, params, summary FROM matching_models
              WHERE ?1 IS NULL OR version = ?1 ORDER BY version DESC LIMIT 1",
        )?
        .query_row(params![version], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((v, at, p, s)) = row else {
        return Ok(None);
    };
    let mut model: Model = serde_json::from_str(&p).map_err(|e| {
        StoreError::Sql(rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            Box::new(e),
        ))
    })?;
    model.version = Some(v);
    Ok(Some(StoredModel {
        version: v,
        trained_at: at,
        summary: serde_json::from_str(&s).unwrap_or(serde_json::Value::Null),
        model,
    }))
}

/// Stores a new version; returns its number.
pub fn save(
    conn: &Connection,
    model: &Model,
    summary: &serde_json::Value,
) -> Result<i64, StoreError> {
    let params_json = serde_json::to_string(model).expect("a model serializes");
    conn.execute(
        "INSERT INTO matching_models (trained_at, params, summary) VALUES (?1, ?2, ?3)",
        params![
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            params_json,
            summary.to_string()
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Text table of a model (for `matching show`).
pub fn table(model: &Model) -> String {
    let mut out = format!(
        "prior (share of blocked candidate pairs that match): {:.4} ({:+.2} bits)\n",
        model.prior,
        model.prior_bits()
    );
    out.push_str(&format!(
        "{:<11} {:<18} {:>9} {:>9} {:>7}\n",
        "comparison", "level", "m", "u", "bits"
    ));
    if !model.fits() {
        out.push_str("(trained for other comparison levels by an older version: not used; run `matching train`)\n");
        return out;
    }
    for (c, (name, labels)) in COMPARISONS.iter().enumerate() {
        for (l, label) in labels.iter().enumerate().skip(1) {
            let lv = model.levels[c][l];
            out.push_str(&format!(
                "{:<11} {:<18} {:>9.5} {:>9.5} {:>+7.2}\n",
                name,
                label,
                lv.m,
                lv.u,
                lv.bits()
            ));
        }
    }
    match &model.tf {
        Some(tf) => out.push_str(&format!(
            "name term frequency: typical same-sounding names per community {:.3}, adjustment log2({:.3}/count) in [{:+.1}, {:+.1}] bits\n",
            tf.expected, tf.expected, tf.min_bits, tf.max_bits
        )),
        None => out.push_str("name term frequency: off (untrained model)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_weight_model_keeps_the_hand_thresholds() {
        let cfg = ReconcileConfig::default();
        let m = Model::from_hand_weights(&cfg);
        // name exact + current phone = 0.90 → probability 0.9.
        let g: Gamma = [level::NAME_EXACT, level::PHONE_CURRENT, 0, 0, 0];
        assert!((probability(m.weight(&g, 0.0)) - 0.9).abs() < 1e-9);
        // name exact + community = 0.60 → 0.6.
        let g: Gamma = [level::NAME_EXACT, 0, 0, 0, level::ADDRESS_COMMUNITY];
        assert!((probability(m.weight(&g, 0.0)) - 0.6).abs() < 1e-9);
        // Levels the hand score ignored weigh nothing.
        assert!(m.bits(PHONE, 1).abs() < 1e-12);
        assert!(m.bits(GENDER, 2).abs() < 1e-12);
    }

    #[test]
    fn term_frequency_favours_rare_names() {
        let tf = TermFrequency {
            expected: 2.0,
            min_bits: -4.0,
            max_bits: 2.0,
        };
        assert!((tf.bits(1) - 1.0).abs() < 1e-12);
        assert!(tf.bits(3) < 0.0);
        assert_eq!(tf.bits(1000), -4.0);
    }
}
