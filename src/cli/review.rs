//! `community-sync review list|show|accept|reject|merge|split` and
//! `community-sync explain SOURCE KEY`: the review queue and why a record is where it is.

use crate::cli::out::{out, outln};
use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use rusqlite::OptionalExtension;

use crate::config::Config;
use crate::model::NormalizedRecord;
use crate::reconcile::review::{self, Decision};
use crate::reconcile::{matching, person_key, ReconcileStats};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ReviewCmd {
    /// List review items (open ones unless --state).
    List {
        /// open, accepted, rejected, superseded or all.
        #[arg(long)]
        state: Option<String>,
        /// List at most N items.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
    },
    /// Show one item with the score explanation.
    Show {
        /// The item's number, as `review list` prints it (#12 → 12).
        id: i64,
    },
    /// Accept an item (link the record / take the record's value / acknowledge).
    Accept {
        /// The item's number, as `review list` prints it.
        id: i64,
    },
    /// Reject an item (never match this pair / keep the golden value / dismiss).
    Reject {
        /// The item's number, as `review list` prints it.
        id: i64,
    },
    /// Merge resident OTHER into SURVIVOR (person keys like P00000012 or numbers).
    Merge {
        /// The resident that stays (P00000012 or 12).
        survivor: String,
        /// The resident folded into it and retired (P00000034 or 34).
        other: String,
    },
    /// Detach source records (ids from `explain` or `review show`) into a new resident.
    Split {
        /// The resident the records belong to now (P00000012 or 12).
        person: String,
        /// Record ids to move to a new resident.
        #[arg(required = true)]
        records: Vec<i64>,
    },
}

/// Parses `P00000012` or `12`.
pub fn parse_person(s: &str) -> anyhow::Result<i64> {
    s.trim_start_matches(['P', 'p'])
        .parse::<i64>()
        .with_context(|| format!("{s:?} is not a resident key (expected P00000012 or 12)"))
}

pub fn run(config: &Config, cmd: &ReviewCmd) -> anyhow::Result<()> {
    let mut store = super::report::open_existing(config)?;
    match cmd {
        ReviewCmd::List { state, limit } => {
            let items = review::list(store.conn(), state.as_deref(), *limit)?;
            outln!("{} open review items", review::open_count(store.conn())?);
            for it in items {
                outln!(
                    "#{:<6} {:<9} {:<10} record {:<8} resident {:<10} {:<10} {}",
                    it.id,
                    it.kind,
                    it.state,
                    it.record_id.map(|r| r.to_string()).unwrap_or_default(),
                    it.person_id.map(person_key).unwrap_or_default(),
                    it.field.unwrap_or_default(),
                    it.score
                        .map(|s| format!("score {s:.2}"))
                        .unwrap_or_default()
                );
            }
        }
        ReviewCmd::Show { id } => out!("{}", show_text(&store, config, *id)?),
        ReviewCmd::Accept { id } | ReviewCmd::Reject { id } => {
            let d = if matches!(cmd, ReviewCmd::Accept { .. }) {
                Decision::Accept { item: *id }
            } else {
                Decision::Reject { item: *id }
            };
            let stats = decide(&mut store, config, &d)?;
            outln!("decided; {} outbox events written", stats.events);
        }
        ReviewCmd::Merge { survivor, other } => {
            let d = Decision::Merge {
                survivor: parse_person(survivor)?,
                other: parse_person(other)?,
            };
            let stats = decide(&mut store, config, &d)?;
            outln!("merged; {} outbox events written", stats.events);
        }
        ReviewCmd::Split { person, records } => {
            let d = Decision::Split {
                person: parse_person(person)?,
                records: records.clone(),
            };
            let stats = decide(&mut store, config, &d)?;
            outln!("split; {} outbox events written", stats.events);
        }
    }
    Ok(())
}

/// Records a decision by the acting OS user in one transaction.
pub fn decide(store: &mut Store, config: &Config, d: &Decision) -> anyhow::Result<ReconcileStats> {
    let codec = store.codec().clone();
    let mut stats = ReconcileStats::default();
    let tx = store.conn_mut().transaction()?;
    review::record_decision(&tx, &codec, config, d, &review::acting_user(), &mut stats)?;
    tx.commit()?;
    Ok(stats)
}

/// `review show` text.
pub fn show_text(store: &Store, config: &Config, id: i64) -> anyhow::Result<String> {
    let it = review::get(store.conn(), id)?
        .with_context(|| format!("review item {id} does not exist"))?;
    let mut out = String::new();
    writeln!(out, "review item #{} ({}, {})", it.id, it.kind, it.state)?;
    if let Some(f) = &it.field {
        writeln!(out, "field: {f}")?;
    }
    if let Some(by) = &it.decided_by {
        writeln!(out, "decided by: {by}")?;
    }
    if let (Some(rec), Some(pid)) = (it.record_id, it.person_id) {
        out.push_str(&record_text(store, rec)?);
        let f = features(store, rec)?;
        if let Some(f) = f {
            let s = matching::score(store.conn(), &config.reconcile, &f, pid)?;
            writeln!(out, "  candidate {}:", person_key(pid))?;
            writeln!(out, "{}", matching::describe(&config.reconcile, &s))?;
        }
    }
    Ok(out)
}

fn record_text(store: &Store, rec: i64) -> anyhow::Result<String> {
    let codec = store.codec();
    type Row = (String, String, String, Option<i64>, Option<String>);
    let row: Option<Row> = store
        .conn()
        .query_row(
            concat!(
                "SELECT source, stream, source_key, person_id, ",
                crate::store::normalized_of_record!(),
                " FROM source_records WHERE id = ?1"
            ),
            [rec],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    codec.open(r.get_ref(4)?)?,
                ))
            },
        )
        .optional()?;
    let Some((source, stream, key, pid, normalized)) = row else {
        return Ok(format!("record {rec}: not in the store\n"));
    };
    let name = normalized
        .and_then(|n| serde_json::from_str::<NormalizedRecord>(&n).ok())
        .and_then(|n| n.person.name)
        .map(|n| crate::mask::name(&n))
        .unwrap_or_default();
    Ok(format!(
        "record {rec}: {source}/{stream}/{key} name {name}, resident {}\n",
        pid.map(person_key).unwrap_or_else(|| "none".into())
    ))
}

fn features(store: &Store, rec: i64) -> anyhow::Result<Option<matching::Features>> {
    let codec = store.codec();
    let row: Option<(Option<String>, Option<String>, String)> = store
        .conn()
        .query_row(
            concat!(
                "SELECT ",
                crate::store::normalized_of_record!(),
                ", id_key, COALESCE(updated_at, last_changed) FROM source_records WHERE id = ?1"
            ),
            [rec],
            |r| Ok((codec.open(r.get_ref(0)?)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((Some(n), id_key, changed)) = row else {
        return Ok(None);
    };
    let Ok(n) = serde_json::from_str::<NormalizedRecord>(&n) else {
        return Ok(None);
    };
    Ok(Some(matching::Features::of(
        codec,
        rec,
        &n.person,
        id_key.as_deref(),
        &changed,
    )))
}

/// `explain SOURCE KEY`: the record, its resident and why, and every candidate's score.
pub fn explain_text(
    store: &Store,
    config: &Config,
    source: &str,
    key: &str,
) -> anyhow::Result<String> {
    let conn = store.conn();
    let rec: i64 = conn
        .query_row(
            "SELECT id FROM source_records WHERE source = ?1 AND source_key = ?2
               AND entity IN ('card_account', 'volunteer', 'elder', 'patient')",
            [source, key],
            |r| r.get(0),
        )
        .optional()?
        .with_context(|| format!("no person record {key:?} from source {source:?} in the store"))?;
    let mut out = record_text(store, rec)?;
    let (pid, id_key): (Option<i64>, Option<String>) = conn.query_row(
        "SELECT person_id, id_key FROM source_records WHERE id = ?1",
        [rec],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let pinned = review::pinned_person(conn, rec)?;
    let reason = if pinned.is_some() {
        "pinned by a review decision"
    } else if id_key.is_some() {
        "linked by its ID number (or the resident it founded)"
    } else {
        "scored (below)"
    };
    writeln!(
        out,
        "resident: {} ({reason})",
        pid.map(person_key).unwrap_or_else(|| "none".into())
    )?;
    let never: Vec<i64> = conn
        .prepare("SELECT person_id FROM never_match WHERE record_id = ?1 ORDER BY person_id")?
        .query_map([rec], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for p in &never {
        writeln!(out, "rejected pair: never matched with {}", person_key(*p))?;
    }
    let items = conn
        .prepare("SELECT id, kind, state FROM review_items WHERE record_id = ?1 ORDER BY id")?
        .query_map([rec], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, kind, state) in items {
        writeln!(out, "review item #{id} ({kind}, {state})")?;
    }
    if let Some(f) = features(store, rec)? {
        let mut ranked = matching::rank(conn, &config.reconcile, &f, None)?;
        if let Some(p) = pid {
            if !ranked.iter().any(|s| s.person_id == p) {
                ranked.push(matching::score(conn, &config.reconcile, &f, p)?);
            }
        }
        for p in &never {
            if !ranked.iter().any(|s| s.person_id == *p) {
                ranked.push(matching::score(conn, &config.reconcile, &f, *p)?);
            }
        }
        if ranked.is_empty() {
            writeln!(
                out,
                "no other candidate residents share a blocking key with this record"
            )?;
        }
        for s in ranked {
            writeln!(out, "  candidate {}:", person_key(s.person_id))?;
            writeln!(out, "{}", matching::describe(&config.reconcile, &s))?;
        }
    }
    Ok(out)
}
