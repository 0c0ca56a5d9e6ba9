//! `community-sync review list|show|accept|reject|skip|merge|split|decisions|undo` (the
//! desk's `serve` and `users` are in `cli::desk`) and `community-sync explain SOURCE KEY`:
//! the review queue and why a record is where it is.

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
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject an item (never match this pair / keep the golden value / dismiss).
    Reject {
        /// The item's number, as `review list` prints it.
        id: i64,
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Not sure: record that you looked and left the item open.
    Skip {
        /// The item's number, as `review list` prints it.
        id: i64,
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Merge resident OTHER into SURVIVOR (person keys like P00000012 or numbers).
    Merge {
        /// The resident that stays (P00000012 or 12).
        survivor: String,
        /// The resident folded into it and retired (P00000034 or 34).
        other: String,
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Detach source records (ids from `explain` or `review show`) into a new resident.
    Split {
        /// The resident the records belong to now (P00000012 or 12).
        person: String,
        /// Record ids to move to a new resident.
        #[arg(required = true)]
        records: Vec<i64>,
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the latest decisions (ids for `review undo`).
    Decisions {
        /// Show at most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Undo a decision: what it changed is put back and its item is open again.
    Undo {
        /// The decision's number, as `review decisions` prints it.
        decision: i64,
        /// Why (kept with the decision and in the audit trail; no ID numbers or phones).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Serve the review desk: the queue as a web page for reviewers (docs/review-desk.md).
    Serve(super::desk::ServeArgs),
    /// Reviewer accounts of the review desk.
    #[command(subcommand)]
    Users(super::desk::UsersCmd),
}

/// Parses `P00000012` or `12`.
pub fn parse_person(s: &str) -> anyhow::Result<i64> {
    s.trim_start_matches(['P', 'p'])
        .parse::<i64>()
        .with_context(|| format!("{s:?} is not a resident key (expected P00000012 or 12)"))
}

pub fn run(config: &Config, cmd: &ReviewCmd) -> anyhow::Result<()> {
    match cmd {
        ReviewCmd::Serve(args) => return super::desk::serve(config, args),
        ReviewCmd::Users(u) => return super::desk::users(config, u),
        _ => {}
    }
    let mut store = super::report::open_existing(config)?;
    let (d, reason) = match cmd {
        ReviewCmd::List { state, limit } => return list(&store, state.as_deref(), *limit),
        ReviewCmd::Show { id } => {
            out!("{}", show_text(&store, config, *id)?);
            return Ok(());
        }
        ReviewCmd::Decisions { limit } => return print_decisions(&store, *limit),
        ReviewCmd::Accept { id, reason } => (Decision::Accept { item: *id }, reason),
        ReviewCmd::Reject { id, reason } => (Decision::Reject { item: *id }, reason),
        ReviewCmd::Skip { id, reason } => (Decision::Skip { item: *id }, reason),
        ReviewCmd::Merge {
            survivor,
            other,
            reason,
        } => (
            Decision::Merge {
                survivor: parse_person(survivor)?,
                other: parse_person(other)?,
            },
            reason,
        ),
        ReviewCmd::Split {
            person,
            records,
            reason,
        } => (
            Decision::Split {
                person: parse_person(person)?,
                records: records.clone(),
            },
            reason,
        ),
        ReviewCmd::Undo { decision, reason } => (
            Decision::Undo {
                decision: *decision,
            },
            reason,
        ),
        ReviewCmd::Serve(_) | ReviewCmd::Users(_) => return Ok(()),
    };
    let r = decide_by(&mut store, config, &d, reason.as_deref())?;
    let what = match &d {
        Decision::Skip { .. } => "skipped (the item stays open)".to_string(),
        Decision::Undo { decision } => format!("decision {decision} undone"),
        _ => "decided".to_string(),
    };
    outln!(
        "{what}: decision {}; {} outbox events written",
        r.decision,
        r.stats.events
    );
    Ok(())
}

fn list(store: &Store, state: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let items = review::list(store.conn(), state, limit)?;
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
    Ok(())
}

/// Records a decision by the acting OS user in one transaction.
pub fn decide(store: &mut Store, config: &Config, d: &Decision) -> anyhow::Result<ReconcileStats> {
    Ok(decide_by(store, config, d, None)?.stats)
}

/// Records a decision by the acting OS user, with a reason (`reconcile::review::decide`,
/// the path the review desk takes too).
pub fn decide_by(
    store: &mut Store,
    config: &Config,
    d: &Decision,
    reason: Option<&str>,
) -> anyhow::Result<review::Decided> {
    let actor = review::acting_user();
    let by = review::By {
        actor: &actor,
        reason,
    };
    Ok(review::decide(store, config, d, &by)?)
}

fn print_decisions(store: &Store, limit: usize) -> anyhow::Result<()> {
    let rows = crate::desk::queue::latest_decisions(store.conn(), limit)?;
    for d in rows {
        let subject = match (d.item, d.person, d.other_person) {
            (Some(i), _, _) => format!("item #{i}"),
            (None, Some(a), Some(b)) => format!("{} <- {}", person_key(a), person_key(b)),
            (None, Some(a), None) => person_key(a),
            _ => String::new(),
        };
        outln!(
            "{:<6} {:<7} {subject:<24} {:<16} {} {}{}",
            d.id,
            d.action,
            d.by,
            d.at,
            d.undone_by
                .map(|u| format!("[undone by {u}] "))
                .unwrap_or_default(),
            d.reason.unwrap_or_default()
        );
    }
    Ok(())
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
        let f = record_features(store, rec)?;
        if let Some(f) = f {
            let m = crate::reconcile::model::active(store.conn(), &config.reconcile)?;
            let s = matching::score(store.conn(), &config.reconcile, &m, &f, pid)?;
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

/// A person record's match features, from its stored normalized form (`None`: not a person
/// record with a readable normalized form).
pub fn record_features(
    store: &Store,
    rec: i64,
) -> Result<Option<matching::Features>, crate::store::StoreError> {
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
    if let Some(f) = record_features(store, rec)? {
        let m = crate::reconcile::model::active(conn, &config.reconcile)?;
        writeln!(
            out,
            "match model: {}",
            m.version
                .map(|v| format!("version {v} (matching show)"))
                .unwrap_or_else(|| "hand weights (untrained)".into())
        )?;
        let mut ranked = matching::rank(conn, &config.reconcile, &m, &f, None)?;
        if let Some(p) = pid {
            if !ranked.iter().any(|s| s.person_id == p) {
                ranked.push(matching::score(conn, &config.reconcile, &m, &f, p)?);
            }
        }
        for p in &never {
            if !ranked.iter().any(|s| s.person_id == *p) {
                ranked.push(matching::score(conn, &config.reconcile, &m, &f, *p)?);
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
