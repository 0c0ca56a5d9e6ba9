//! `status`, `rejects` and the sync summary: what operators read.

use crate::cli::out::outln;
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

/// The service's state as `status` judges it; each has its own exit code (see [`Health::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Every stream's last run succeeded (or none ran yet) and nothing is late.
    Ok,
    /// Something failed but has not reached a limit yet: a stream failed fewer than
    /// `[daemon] unhealthy_after_failures` runs in a row, or the last push failed. The next
    /// scheduled run may clear it; look at the `warnings`.
    Degraded,
    /// A stream failed `unhealthy_after_failures` runs in a row or is older than its
    /// `max_lag_secs`: a person must act (the `problems` say what).
    Unhealthy,
}

impl Health {
    /// 0 ok, 3 degraded, 1 unhealthy (2 stays "could not tell": config or store error).
    pub fn exit_code(self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Degraded => 3,
            Health::Unhealthy => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Unhealthy => "UNHEALTHY",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub store: String,
    /// The zone times are shown in (the config's `timezone`).
    pub timezone: String,
    pub streams: Vec<StreamStatus>,
    pub persons: i64,
    pub persons_by_systems: BTreeMap<usize, u64>,
    /// Open review items (`community-sync review list`).
    pub review_open: i64,
    /// Review load: open items per 1,000 person records.
    pub review_per_1000: Option<f64>,
    pub outbox_pending: i64,
    pub outbox_oldest_pending_age_secs: Option<i64>,
    pub outbox_sent: i64,
    pub dead_letters: i64,
    pub last_push: Option<String>,
    pub rejects_by_reason: BTreeMap<String, i64>,
    /// Full refreshes that would have deleted more than their `max_delete`: nothing was
    /// deleted; `sync SOURCE --full --confirm-deletes` applies them.
    pub held_deletions: Vec<crate::store::HeldDeletion>,
    /// `[daemon] unhealthy_after_failures`: consecutive failed runs of one stream that make
    /// the service unhealthy (each stream's `consecutive_failures` counts toward it).
    pub unhealthy_after_failures: u32,
    pub health: Health,
    /// False only when `health` is unhealthy (kept for scripts that read it).
    pub healthy: bool,
    /// Why the service is unhealthy.
    pub problems: Vec<String>,
    /// Why the service is degraded (also listed when it is unhealthy).
    pub warnings: Vec<String>,
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

/// `community-sync status [--json]`: exit 0 ok, 3 degraded, 1 unhealthy.
pub fn run(config: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let store = super::report::open_existing(config)?;
    let st = collect(config, &store)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print(&st);
    }
    Ok(std::process::ExitCode::from(st.health.exit_code()))
}

/// One stream's status; its problems (unhealthy) and warnings (degraded) are added.
fn stream_status(
    config: &Config,
    store: &Store,
    src: &crate::config::SourceConfig,
    t: &crate::config::StreamConfig,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<StreamStatus, StoreError> {
    let c = store.conn();
    let limit = config.daemon.unhealthy_after_failures;
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
    let consecutive_failures = runs.iter().take_while(|r| r.status == "failed").count() as u32;
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
    if consecutive_failures >= limit {
        problems.push(format!(
            "{}/{}: last {} runs failed",
            src.name, t.name, consecutive_failures
        ));
    } else if consecutive_failures > 0 {
        warnings.push(format!(
            "{}/{}: {} of {} failed runs in a row before it counts as unhealthy ([daemon] unhealthy_after_failures)",
            src.name, t.name, consecutive_failures, limit
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
    Ok(StreamStatus {
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
    })
}

pub fn collect(config: &Config, store: &Store) -> Result<Status, StoreError> {
    let c = store.conn();
    let mut streams = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let limit = config.daemon.unhealthy_after_failures;
    for src in &config.sources {
        for t in &src.streams {
            streams.push(stream_status(
                config,
                store,
                src,
                t,
                &mut problems,
                &mut warnings,
            )?);
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
    let tz = config_tz(config);
    let last_push_row: Option<(String, String, String)> = c
        .query_row(
            "SELECT at, outcome, COALESCE(detail, '') FROM push_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((_, outcome, detail)) = &last_push_row {
        if outcome == "failed" && outbox_pending > 0 {
            warnings.push(format!(
                "the last push failed ({}); {outbox_pending} events wait in the outbox and are re-sent by the next push",
                crate::mask::scrub_text(detail)
            ));
        }
    }
    let last_push = last_push_row.map(|(at, outcome, detail)| {
        format!(
            "{} {outcome}: {}",
            crate::report::local_time(&at, tz),
            crate::mask::scrub_text(&detail)
        )
    });
    let mut rejects_by_reason = BTreeMap::new();
    {
        let mut stmt =
            c.prepare("SELECT reason, count(*) FROM rejects GROUP BY reason ORDER BY reason")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (k, v) = row?;
            rejects_by_reason.insert(k, v);
        }
    }
    let health = if !problems.is_empty() {
        Health::Unhealthy
    } else if !warnings.is_empty() {
        Health::Degraded
    } else {
        Health::Ok
    };
    let review_open = crate::reconcile::review::open_count(store.conn())?;
    Ok(Status {
        store: store.path().display().to_string(),
        timezone: tz.name().to_string(),
        streams,
        persons,
        persons_by_systems: crate::reconcile::persons_by_systems(store)?,
        review_open,
        review_per_1000: crate::reconcile::review::load_per_1000(store.conn(), review_open)?,
        outbox_pending,
        outbox_oldest_pending_age_secs: oldest.as_deref().and_then(age_secs),
        outbox_sent,
        dead_letters,
        last_push,
        rejects_by_reason,
        held_deletions,
        unhealthy_after_failures: limit,
        health,
        healthy: health != Health::Unhealthy,
        problems,
        warnings,
    })
}

/// The config's time zone (validated at load; Asia/Shanghai if it somehow is not).
pub fn config_tz(config: &Config) -> chrono_tz::Tz {
    config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai)
}

pub fn print(st: &Status) {
    let tz: chrono_tz::Tz = st.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    outln!("store: {}", st.store);
    outln!(
        "{:<10} {:<16} {:<11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<24} cursor",
        "source",
        "stream",
        "last",
        "failures",
        "fetched",
        "new",
        "changed",
        "rejected",
        "records",
        format!("last success ({})", short_zone(tz))
    );
    for s in &st.streams {
        outln!(
            "{:<10} {:<16} {:<11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<24} {}",
            s.source,
            s.stream,
            s.last_run_status.as_deref().unwrap_or("never"),
            format!("{}/{}", s.consecutive_failures, st.unhealthy_after_failures),
            s.fetched,
            s.inserted,
            s.updated,
            s.rejected,
            s.records,
            s.last_success
                .as_deref()
                .map(|t| crate::report::local_time(t, tz))
                .unwrap_or_else(|| "-".into()),
            s.cursor.as_deref().unwrap_or("-")
        );
        if let Some(e) = &s.last_error {
            if s.last_run_status.as_deref() == Some("failed") {
                outln!("           └ {e}");
            }
        }
        for d in &s.schema_drift {
            outln!("           └ schema drift: {d}");
        }
        for n in &s.notes {
            println!("           └ {n}");
        }
    }
    outln!("residents (golden records): {}", st.persons);
    let overlap: Vec<String> = st
        .persons_by_systems
        .iter()
        .map(|(k, v)| format!("{k} system{}: {v}", if *k == 1 { "" } else { "s" }))
        .collect();
    outln!("  found in {}", overlap.join(", "));
    outln!(
        "review queue: {} open items{}",
        st.review_open,
        st.review_per_1000
            .map(|l| format!(" ({l:.1} per 1,000 person records)"))
            .unwrap_or_default()
    );
    outln!(
        "outbox: {} pending{}, {} sent, {} dead letters",
        st.outbox_pending,
        st.outbox_oldest_pending_age_secs
            .map(|a| format!(" (oldest {a}s)"))
            .unwrap_or_default(),
        st.outbox_sent,
        st.dead_letters
    );
    if let Some(p) = &st.last_push {
        outln!("last push: {p}");
    }
    if !st.rejects_by_reason.is_empty() {
        let r: Vec<String> = st
            .rejects_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        outln!("quarantine: {}", r.join(", "));
    }
    outln!(
        "health: {} (exit {})",
        st.health.as_str(),
        st.health.exit_code()
    );
    for p in &st.problems {
        outln!("  - {p}");
    }
    for w in &st.warnings {
        outln!("  - {w}");
    }
}

/// The zone's offset now, `UTC+08:00` for Asia/Shanghai.
fn short_zone(tz: chrono_tz::Tz) -> String {
    use chrono::{Offset as _, TimeZone as _};
    let off = tz.offset_from_utc_datetime(&Utc::now().naive_utc()).fix();
    let secs = off.local_minus_utc();
    format!(
        "UTC{}{:02}:{:02}",
        if secs < 0 { '-' } else { '+' },
        secs.abs() / 3600,
        secs.abs() % 3600 / 60
    )
}

pub fn print_sync_report(r: &SyncReport) {
    outln!(
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
        outln!(
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
            outln!("           └ {e}");
        }
    }
    let rc = &r.reconcile;
    outln!(
        "reconcile: {} records, {} residents created, {} changed, {} retired, {} domain rows changed, {} events",
        rc.records, rc.persons_created, rc.persons_changed, rc.persons_retired, rc.domain_changed, rc.events
    );
    if let Some(p) = &r.push {
        outln!(
            "push: {} events sent in {} batches, {} dead letters",
            p.sent,
            p.batches,
            p.dead
        );
    }
    if let Some(e) = &r.push_error {
        outln!("push FAILED: {e}");
    }
}

/// Why `rejects` cannot list what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum RejectsError {
    #[error("unknown source {given:?}; the configured sources are: {known}")]
    UnknownSource { given: String, known: String },
    #[error("unknown reason {given:?}; the reason codes are: {known}")]
    UnknownReason { given: String, known: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RejectsError {
    fn from(e: rusqlite::Error) -> Self {
        RejectsError::Store(e.into())
    }
}

/// `rejects`: the quarantine, newest first, values masked; `limit` 0 lists everything. Says
/// when it stopped at the limit; an unknown source or reason code is an error, not an empty
/// list.
pub fn print_rejects(
    config: &Config,
    store: &Store,
    source: Option<&str>,
    reason: Option<&str>,
    limit: usize,
) -> Result<(), RejectsError> {
    if let Some(s) = source {
        let mut known: Vec<String> = config.sources.iter().map(|c| c.name.clone()).collect();
        // Sources removed from the config may still have quarantined records.
        let mut stmt = store
            .conn()
            .prepare("SELECT DISTINCT source FROM rejects")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let name = name?;
            if !known.contains(&name) {
                known.push(name);
            }
        }
        if !known.iter().any(|k| k == s) {
            return Err(RejectsError::UnknownSource {
                given: s.to_string(),
                known: known.join(", "),
            });
        }
    }
    if let Some(r) = reason {
        let codes: Vec<&str> = crate::model::RejectReason::ALL
            .iter()
            .map(|r| r.code())
            .collect();
        if !codes.contains(&r) {
            return Err(RejectsError::UnknownReason {
                given: r.to_string(),
                known: codes.join(", "),
            });
        }
    }
    let total: i64 = store.conn().query_row(
        "SELECT count(*) FROM rejects WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR reason = ?2)",
        params![source, reason],
        |r| r.get(0),
    )?;
    let limit_sql = if limit == 0 { -1 } else { limit as i64 };
    let mut stmt = store.conn().prepare(
        "SELECT source, stream, COALESCE(source_key, '-'), field, reason, detail, raw_value, whole_record, at
         FROM rejects WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR reason = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let codec = store.codec().clone();
    let rows = stmt.query_map(params![source, reason, limit_sql], |r| {
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
    outln!(
        "{:<10} {:<16} {:<14} {:<10} {:<22} {:<7} {:<22} detail",
        "source",
        "stream",
        "key",
        "field",
        "reason",
        "scope",
        "value (masked)"
    );
    let mut n = 0i64;
    for row in rows {
        let (src, stream, key, field, reason, detail, raw, whole) = row?;
        outln!(
            "{:<10} {:<16} {:<14} {:<10} {:<22} {:<7} {:<22} {}",
            src,
            stream,
            crate::mask::record_key(&key),
            field,
            reason,
            if whole { "record" } else { "field" },
            crate::mask::field(&field, &raw),
            crate::mask::scrub_text(&detail)
        );
        n += 1;
        if super::out::stdout_closed() {
            break;
        }
    }
    if n == 0 {
        outln!("(no quarantined records match)");
    } else if n < total {
        outln!("({n} of {total} shown, newest first; --limit {total} or --limit 0 lists them all)");
    }
    Ok(())
}
