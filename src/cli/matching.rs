//! `community-sync matching train|show`: the match model (reconcile::model, reconcile::train).

use clap::Subcommand;

use crate::cli::out::out;
use crate::config::Config;
use crate::reconcile::{model, train};

#[derive(Debug, Subcommand)]
pub enum MatchingCmd {
    /// Estimate the match model from the store (u from random pairs, m and the prior by EM
    /// over the blocked candidate pairs, name frequencies) and keep it as a new version.
    Train {
        /// Seed of the pair sampling (same store + same seed = same model).
        #[arg(long, default_value_t = 36)]
        seed: u64,
        /// Records whose candidate pairs feed EM.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        /// Random pairs for the u probabilities.
        #[arg(long, default_value_t = 50_000)]
        random_pairs: usize,
    },
    /// Print a model version (default: the one reconcile uses) with m, u and bits per level.
    Show {
        /// The version to print (`matching show --list` lists them).
        #[arg(long)]
        version: Option<i64>,
        /// List the stored versions with their date and data summary.
        #[arg(long)]
        list: bool,
    },
}

pub fn run(config: &Config, cmd: &MatchingCmd) -> anyhow::Result<()> {
    let store = super::report::open_existing(config)?;
    let conn = store.conn();
    let cfg = &config.reconcile;
    match cmd {
        MatchingCmd::Train {
            seed,
            records,
            random_pairs,
        } => {
            let opts = train::TrainOptions {
                seed: *seed,
                max_records: *records,
                random_pairs: *random_pairs,
                ..train::TrainOptions::default()
            };
            match train::train_and_store(conn, cfg, &opts)? {
                None => out!("too few person records to train on; the hand weights stay in use\n"),
                Some((v, changes)) => {
                    out!("match model version {v} trained\n");
                    for c in &changes {
                        out!("  changed: {c}\n");
                    }
                    if let Some(pin) = cfg.model_version {
                        out!("note: the config pins version {pin} ([reconcile] model_version)\n");
                    }
                }
            }
        }
        MatchingCmd::Show { version, list } => {
            if *list {
                let mut stmt = conn.prepare(
                    "SELECT version, trained_at, summary FROM matching_models ORDER BY version",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?;
                for row in rows {
                    let (v, at, s) = row?;
                    out!("version {v}  {at}  {s}\n");
                }
                return Ok(());
            }
            let v = version.or(cfg.model_version);
            match model::load(conn, v)? {
                Some(s) => {
                    out!(
                        "match model version {} (trained {}){}\ndata: {}\n",
                        s.version,
                        s.trained_at,
                        if cfg.model_version == Some(s.version) {
                            ", pinned by the config"
                        } else {
                            ""
                        },
                        s.summary
                    );
                    out!("{}", model::table(&s.model));
                }
                None if v.is_some() => anyhow::bail!(
                    "match model version {} is not stored",
                    v.unwrap_or_default()
                ),
                None => {
                    out!("no trained match model yet: the hand weights ([reconcile.weights]) are in use, as this model:\n");
                    out!("{}", model::table(&model::Model::from_hand_weights(cfg)));
                }
            }
        }
    }
    Ok(())
}
