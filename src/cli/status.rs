//! `status`, `rejects` and the sync summary: what operators read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::SyncReport;
use crate::store::{Store, StoreError};

#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub source: String,
    pub stream: String,
    pub last_run_status: Option<String>,
    pub last_run_finished: Option<String>,
    pub last_success: Option<String>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub rejected: i64,
    pub cursor: Option<String>,
    pub records: i64,
    pub stale: bool,
    /// Schema drift recorded for this stream (most recent first, at most 5).
    pub schema_drift: Vec<String>,
    /// Findings said once (a deletion test that never matches what the system sends).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub store: String,
    pub streams: Vec<StreamStatus>,
    pub persons: i64,
    pub persons_by_systems: BTreeMap<usize, u64>,
    /// Open review items (`community-sync review list`).
    pub review_open: i64,
    pub outbox_pending: i64,
    pub outbox_oldest_pending_age_secs: Option<i64>,
    pub outbox_sent: i64,
    pub dead_letters: i64,
    pub last_push: Option<String>,
    pub rejects_by_reason: BTreeMap<String, i64>,
    /// Full refreshes that would have deleted more than their `max_delete`: nothing was
    /// deleted; `sync SOURCE --full --confirm-deletes` applies them.
    pub held_deletions: Vec<crate::store::HeldDeletion>,
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// One row of the runs table, as status reads it.
struct RunRow {
    status: String,
    finished: Option<String>,
    error: Option<String>,
    fetched: i64,
    inserted: i64,
    updated: i64,
    rejected: i64,
}

fn age_secs(ts: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_seconds())
}

pub fn collect(config: &Config, store: &Store) -> Result<Status, StoreError> {
    let c = store.conn();
    let mut streams = Vec::new();
    let mut problems = Vec::new();
    for src in &config.sources {
        for t in &src.streams {
            let mut recent = c.prepare_cached(
                "SELECT status, finished_at, error, fetched, inserted, updated, rejected FROM runs
                 WHERE source = ?1 AND stream = ?2 AND kind = 'sync' ORDER BY id DESC LIMIT 50",
            )?;
            let runs: Vec<RunRow> = recent
                .query_map(params![src.name, t.name], |r| {
                    Ok(RunRow {
                        status: r.get(0)?,
                        finished: r.get(1)?,
                        error: r.get(2)?,
                        fetched: r.get(3)?,
                        inserted: r.get(4)?,
                        updated: r.get(5)?,
                        rejected: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let consecutive_failures =
                runs.iter().take_while(|r| r.status == "failed").count() as u32;
            let last_success: Option<String> = c
                .query_row(
                    "SELECT finished_at FROM runs WHERE source = ?1 AND stream = ?2 AND kind = 'sync' AND status = 'ok'
                     ORDER BY id DESC LIMIT 1",
                    params![src.name, t.name],
                    |r| r.get(0),
                )
                .optional()?;
            let records: i64 = c.query_row(
                "SELECT count(*) FROM source_records WHERE source = ?1 AND stream = ?2 AND deleted = 0",
                params![src.name, t.name],
                |r| r.get(0),
            )?;
            let stale = match (src.max_lag_secs, &last_success) {
                (Some(max), Some(ts)) => age_secs(ts).is_some_and(|a| a > max as i64),
                (Some(_), None) => !runs.is_empty(),
                _ => false,
            };
            if consecutive_failures >= config.daemon.unhealthy_after_failures {
                problems.push(format!(
                    "{}/{}: last {} runs failed",
                    src.name, t.name, consecutive_failures
                ));
            }
            if stale {
                problems.push(format!(
                    "{}/{}: no successful run within max_lag_secs",
                    src.name, t.name
                ));
            }
            let schema_drift: Vec<String> = {
                let mut stmt = c.prepare_cached(
                    "SELECT field || ' ' || kind || ': ' || detail || ' (' || at || ')' FROM schema_drift
                     WHERE source = ?1 AND stream = ?2 ORDER BY id DESC LIMIT 5",
                )?;
                let rows = stmt
                    .query_map(params![src.name, t.name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                rows
            };
            let last = runs.first();
            streams.push(StreamStatus {
                source: src.name.clone(),
                stream: t.name.clone(),
                last_run_status: last.map(|r| r.status.clone()),
                last_run_finished: last.and_then(|r| r.finished.clone()),
                last_success,
                consecutive_failures,
                last_error: last
                    .and_then(|r| r.error.clone())
                    .map(|e| crate::mask::scrub_text(&e)),
                fetched: last.map_or(0, |r| r.fetched),
                inserted: last.map_or(0, |r| r.inserted),
                updated: last.map_or(0, |r| r.updated),
                rejected: last.map_or(0, |r| r.rejected),
                cursor: store.cursor(&src.name, &t.name)?,
                records,
                stale,
                schema_drift,
                notes: store.stream_notes(&src.name, &t.name)?,
            });
        }
    }
    let held_deletions = store.held_deletions()?;
    problems.extend(held_deletions.iter().map(|h| h.describe()));
    let persons: i64 = c.query_row("SELECT count(*) FROM persons WHERE retired = 0", [], |r| {
        r.get(0)
    })?;
    let outbox_pending: i64 = c.query_row(
        "SELECT count(*) FROM outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    let outbox_sent: i64 = c.query_row(
        "SELECT count(*) FROM outbox WHERE state = 'sent'",
        [],
        |r| r.get(0),
    )?;
    let oldest: Option<String> = c
        .query_row(
            "SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let dead_letters: i64 = c.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
    let last_push: Option<String> = c
        .query_row(
            "SELECT at || ' ' || outcome || ': ' || COALESCE(detail, '') FROM push_log ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let mut rejects_by_reason = BTreeMap::new();
    {
        let mut stmt =
            c.prepare("SELECT reason, count(*) FROM rejects GROUP BY reason ORDER BY reason")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (k, v) = row?;
            rejects_by_reason.insert(k, v);
        }
    }
    Ok(Status {
        store: store.path().display().to_string(),
        streams,
        persons,
        persons_by_systems: crate::reconcile::persons_by_systems(store)?,
        review_open: crate::reconcile::review::open_count(store.conn())?,
        outbox_pending,
        outbox_oldest_pending_age_secs: oldest.as_deref().and_then(age_secs),
        outbox_sent,
        dead_letters,
        last_push,
        rejects_by_reason,
        held_deletions,
        healthy: problems.is_empty(),
        problems,
    })
}

pub fn print(st: &Status) {
    println!("store: {}", st.store);
    println!(
        "{:<10} {:<16} {:<8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<26} cursor",
        "source",
        "stream",
        "last",
        "fetched",
        "new",
        "changed",
        "rejected",
        "records",
        "last success"
    );
    for s in &st.streams {
        println!(
            "{:<10} {:<16} {:<8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<26} {}",
            s.source,
            s.stream,
            s.last_run_status.as_deref().unwrap_or("never"),
            s.fetched,
            s.inserted,
            s.updated,
            s.rejected,
            s.records,
            s.last_success.as_deref().unwrap_or("-"),
            s.cursor.as_deref().unwrap_or("-")
        );
        if let Some(e) = &s.last_error {
            if s.last_run_status.as_deref() == Some("failed") {
                println!("           └ {e}");
            }
        }
        for d in &s.schema_drift {
            println!("           └ schema drift: {d}");
        }
        for n in &s.notes {
            println!("           └ {n}");
        }
    }
    println!("residents (golden records): {}", st.persons);
    let overlap: Vec<String> = st
        .persons_by_systems
        .iter()
        .map(|(k, v)| format!("{k} system{}: {v}", if *k == 1 { "" } else { "s" }))
        .collect();
    println!("  found in {}", overlap.join(", "));
    println!("review queue: {} open items", st.review_open);
    println!(
        "outbox: {} pending{}, {} sent, {} dead letters",
        st.outbox_pending,
        st.outbox_oldest_pending_age_secs
            .map(|a| format!(" (oldest {a}s)"))
            .unwrap_or_default(),
        st.outbox_sent,
        st.dead_letters
    );
    if let Some(p) = &st.last_push {
        println!("last push: {p}");
    }
    if !st.rejects_by_reason.is_empty() {
        let r: Vec<String> = st
            .rejects_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("quarantine: {}", r.join(", "));
    }
    if st.healthy {
        println!("health: ok");
    } else {
        println!("health: UNHEALTHY");
        for p in &st.problems {
            println!("  - {p}");
        }
    }
}

pub fn print_sync_report(r: &SyncReport) {
    println!(
        "{:<10} {:<16} {:<6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "source",
        "stream",
        "result",
        "pages",
        "fetched",
        "new",
        "changed",
        "unchanged",
        "rejected",
        "deleted"
    );
    for s in &r.streams {
        println!(
            "{:<10} {:<16} {:<6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
            s.source,
            s.stream,
            if s.ok { "ok" } else { "FAILED" },
            s.pages,
            s.fetched,
            s.stats.inserted,
            s.stats.updated,
            s.stats.unchanged,
            s.stats.rejected,
            s.stats.deleted
        );
        if let Some(e) = &s.error {
            println!("           └ {e}");
        }
    }
    let rc = &r.reconcile;
    println!(
        "reconcile: {} records, {} residents created, {} changed, {} retired, {} domain rows changed, {} events",
        rc.records, rc.persons_created, rc.persons_changed, rc.persons_retired, rc.domain_changed, rc.events
    );
    if let Some(p) = &r.push {
        println!(
            "push: {} events sent in {} batches, {} dead letters",
            p.sent, p.batches, p.dead
        );
    }
    if let Some(e) = &r.push_error {
        println!("push FAILED: {e}");
    }
}

pub fn print_rejects(
    store: &Store,
    source: Option<&str>,
    reason: Option<&str>,
    limit: usize,
) -> Result<(), StoreError> {
    let mut stmt = store.conn().prepare(
        "SELECT source, stream, COALESCE(source_key, '-'), field, reason, detail, raw_value, whole_record, at
         FROM rejects WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR reason = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let codec = store.codec().clone();
    let rows = stmt.query_map(params![source, reason, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            codec.open(r.get_ref(6)?)?.unwrap_or_default(),
            r.get::<_, bool>(7)?,
        ))
    })?;
    println!(
        "{:<10} {:<16} {:<14} {:<10} {:<22} {:<7} {:<22} detail",
        "source", "stream", "key", "field", "reason", "scope", "value (masked)"
    );
    let mut n = 0;
    for row in rows {
        let (src, stream, key, field, reason, detail, raw, whole) = row?;
        println!(
            "{:<10} {:<16} {:<14} {:<10} {:<22} {:<7} {:<22} {}",
            src,
            stream,
            key,
            field,
            reason,
            if whole { "record" } else { "field" },
            crate::mask::field(&field, &raw),
            crate::mask::scrub_text(&detail)
        );
        n += 1;
    }
    if n == 0 {
        println!("(no quarantined records match)");
    }
    Ok(())
}
