//! One sync run, wired end to end: for each selected source (concurrently) and each of its
//! streams (in config order, so parents come before the activity records that link to them):
//! fetch pages → map and normalize → ingest in batches → close the run with the cursor in the
//! same transaction as the last batch. Then reconcile, then (optionally) push.
//!
//! This module holds no business rules of its own; it only moves data between the stages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{Config, SourceConfig, StreamConfig, SyncMode};
use crate::normalize::mapping::{FieldProfile, Mapped, Mapping};
use crate::progress::{Progress, ProgressEvent};
use crate::push::{PushStats, Pusher};
use crate::reconcile::{self, ReconcileStats};
use crate::source::{CursorBound, FetchPlan, Page, SourceClient};
use crate::store::{Finish, Ingest, IngestStats, Prepared, Store, StreamRef};

/// Pages buffered between the fetcher and the writer: bounds memory whatever the system size.
/// One is enough to overlap fetching the next page with writing this one; each more page per
/// source cost ~2 MiB of parsed JSON at peak (BENCHMARKS.md, peak RSS).
const PAGE_BUFFER: usize = 1;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub store: Arc<Mutex<Store>>,
}

impl Context {
    pub fn open(config: Config) -> anyhow::Result<Context> {
        let store = Store::open_configured(&config)?;
        store.mark_interrupted_runs()?;
        Ok(Context {
            config: Arc::new(config),
            store: Arc::new(Mutex::new(store)),
        })
    }

    pub fn tz(&self) -> Tz {
        self.config
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Source names; empty = all enabled sources.
    pub sources: Vec<String>,
    /// Ignore cursors and re-read everything.
    pub full: bool,
    /// Who asked: `manual`, `schedule`, `demo`, ...
    pub trigger: String,
    /// Drain the outbox after reconciling.
    pub push: bool,
    /// Receives progress events (terminal bar, log lines, control socket).
    pub progress: Option<Progress>,
    /// Once raised (the daemon got SIGTERM), no further stream starts; the streams under way
    /// finish, and reconcile and push are left to the next sync.
    pub stop: Option<Stop>,
}

/// A stop request shared by the daemon and its running syncs.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl SyncOptions {
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(Stop::is_raised)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub source: String,
    pub stream: String,
    pub run_id: i64,
    pub ok: bool,
    pub error: Option<String>,
    pub pages: u64,
    pub fetched: u64,
    pub stats: IngestStats,
    pub cursor: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SyncReport {
    /// The streams that ran, in the order they finished per source.
    pub streams: Vec<StreamReport>,
    /// Streams (`source/stream`) that did not start because a stop was requested.
    pub not_started: Vec<String>,
    /// A stop cut this sync short: some streams did not start, and reconcile and push were
    /// left to the next sync (nothing is lost: the records are in the store, still dirty).
    pub interrupted: bool,
    pub reconcile: ReconcileStats,
    pub push: Option<PushStats>,
    pub push_error: Option<String>,
}

impl SyncReport {
    pub fn failed_streams(&self) -> usize {
        self.streams.iter().filter(|s| !s.ok).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown source {0:?}; `community-sync status` lists the configured sources")]
    UnknownSource(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Fetches and ingests the selected sources, reconciles, and pushes if asked.
pub async fn sync(ctx: &Context, opts: &SyncOptions) -> Result<SyncReport, PipelineError> {
    let mut report = ingest_sources(ctx, opts).await?;
    if opts.stopping() {
        report.interrupted = true;
        tracing::info!(
            not_started = report.not_started.len(),
            "stopping: reconcile and push are left to the next sync"
        );
        return Ok(report);
    }
    report.reconcile = run_reconcile(ctx).await?;
    if let Some(p) = &opts.progress {
        p.emit(ProgressEvent::Reconciled {
            records: report.reconcile.records,
            events: report.reconcile.events,
        });
    }
    if opts.push {
        match push(ctx).await {
            Ok(s) => {
                if let Some(p) = &opts.progress {
                    p.emit(ProgressEvent::Pushed {
                        sent: s.sent,
                        dead: s.dead,
                    });
                }
                report.push = Some(s)
            }
            Err(e) => report.push_error = Some(e.to_string()),
        }
    }
    Ok(report)
}

/// The selected enabled sources, or an error naming an unknown one.
pub fn select_sources<'a>(
    config: &'a Config,
    names: &[String],
) -> Result<Vec<&'a SourceConfig>, PipelineError> {
    if names.is_empty() {
        return Ok(config.sources.iter().filter(|s| s.enabled).collect());
    }
    names
        .iter()
        .map(|n| {
            config
                .source(n)
                .ok_or_else(|| PipelineError::UnknownSource(n.clone()))
        })
        .collect()
}

/// Fetch + ingest only (no reconcile): every stream of every selected source.
pub async fn ingest_sources(
    ctx: &Context,
    opts: &SyncOptions,
) -> Result<SyncReport, PipelineError> {
    let sources = select_sources(&ctx.config, &opts.sources)?;
    let all: Vec<String> = sources
        .iter()
        .flat_map(|s| s.streams.iter().map(|t| format!("{}/{}", s.name, t.name)))
        .collect();
    let mut report = SyncReport::default();
    if opts.stopping() {
        report.not_started = all;
        report.interrupted = true;
        return Ok(report);
    }
    defer_match_indexes(ctx).await?;
    let jobs = sources
        .into_iter()
        .map(|s| sync_source(ctx, s.name.clone(), opts));
    for streams in futures::future::join_all(jobs).await {
        report.streams.extend(streams);
    }
    report.not_started = all
        .into_iter()
        .filter(|k| {
            !report
                .streams
                .iter()
                .any(|s| format!("{}/{}", s.source, s.stream) == *k)
        })
        .collect();
    report.interrupted = !report.not_started.is_empty();
    Ok(report)
}

/// On an empty store, leaves the match-key indexes out until reconcile builds them sorted
/// (store::first_load): a first load of millions of records is then not a random index
/// insert per record and key.
async fn defer_match_indexes(ctx: &Context) -> Result<(), PipelineError> {
    let store = ctx.store.clone();
    let deferred =
        tokio::task::spawn_blocking(move || -> Result<bool, crate::store::StoreError> {
            let mut g = store.lock().map_err(|_| poisoned())?;
            crate::store::first_load::defer_match_indexes(g.conn_mut())
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))??;
    if deferred {
        tracing::info!("first load: match-key indexes deferred until reconcile");
    }
    Ok(())
}

/// All streams of one source. A failing stream is reported and the next one still runs.
pub async fn sync_source(ctx: &Context, source: String, opts: &SyncOptions) -> Vec<StreamReport> {
    let Some(src) = ctx.config.source(&source).cloned() else {
        return Vec::new();
    };
    let config_dir = ctx
        .config
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let client = match SourceClient::with_config_dir(&src, config_dir) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(source = %src.name, "{e}");
            return src
                .streams
                .iter()
                .map(|t| failed_report(&src.name, &t.name, e.to_string()))
                .collect();
        }
    };
    let mut out = Vec::new();
    for stream in &src.streams {
        if opts.stopping() {
            tracing::info!(source = %src.name, stream = %stream.name, "stopping: this stream does not start; it resumes from its cursor at the next sync");
            break;
        }
        let r = sync_stream(ctx, &src, stream, client.clone(), opts).await;
        out.push(r);
    }
    out
}

fn failed_report(source: &str, stream: &str, error: String) -> StreamReport {
    StreamReport {
        source: source.into(),
        stream: stream.into(),
        run_id: 0,
        ok: false,
        error: Some(error),
        pages: 0,
        fetched: 0,
        stats: IngestStats::default(),
        cursor: None,
        seconds: 0.0,
    }
}

fn parse_cursor(cursor: &str) -> Option<CursorBound> {
    if let Ok(i) = cursor.parse::<i64>() {
        return Some(CursorBound::Integer(i));
    }
    DateTime::parse_from_rfc3339(cursor)
        .ok()
        .map(CursorBound::Time)
}

fn later(a: &str, b: &str) -> bool {
    match (parse_cursor(a), parse_cursor(b)) {
        (Some(CursorBound::Time(x)), Some(CursorBound::Time(y))) => x > y,
        (Some(CursorBound::Integer(x)), Some(CursorBound::Integer(y))) => x > y,
        _ => a > b,
    }
}

/// The window for this run: from the stored cursor (minus lookback) to now minus settle.
pub fn fetch_plan(
    ctx: &Context,
    stream: &StreamConfig,
    cursor: Option<&str>,
    full: bool,
) -> FetchPlan {
    let mut plan = FetchPlan::default();
    let Some(inc) = &stream.incremental else {
        return plan;
    };
    if stream.mode == SyncMode::FullRefresh {
        return plan;
    }
    let tz = ctx.tz();
    let to_tz = |d: DateTime<Utc>| -> DateTime<FixedOffset> { d.with_timezone(&tz).fixed_offset() };
    let is_integer =
        inc.request.format == "integer" || inc.cursor_format.as_deref() == Some("integer");
    if !is_integer {
        plan.upper = Some(CursorBound::Time(to_tz(
            Utc::now() - ChronoDuration::seconds(inc.settle_secs as i64),
        )));
    }
    if !full {
        plan.lower = cursor.and_then(parse_cursor).map(|b| match b {
            CursorBound::Time(t) => CursorBound::Time(to_tz(
                t.with_timezone(&Utc) - ChronoDuration::seconds(inc.lookback_secs as i64),
            )),
            other => other,
        });
    }
    plan
}

async fn sync_stream(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    client: Arc<SourceClient>,
    opts: &SyncOptions,
) -> StreamReport {
    // Every log line of the run carries its run id and source (the id is known once begun).
    let span = tracing::info_span!("run", run_id = tracing::field::Empty, source = %src.name, stream = %stream.name);
    tracing::Instrument::instrument(sync_stream_run(ctx, src, stream, client, opts), span).await
}

async fn sync_stream_run(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    client: Arc<SourceClient>,
    opts: &SyncOptions,
) -> StreamReport {
    let started = Instant::now();
    let run_started = crate::store::now_text();
    let full_refresh = stream.mode == SyncMode::FullRefresh;
    let begun = {
        let store = ctx.store.clone();
        let (s, t, trig) = (src.name.clone(), stream.name.clone(), opts.trigger.clone());
        tokio::task::spawn_blocking(
            move || -> Result<(i64, Option<String>), crate::store::StoreError> {
                let mut g = store.lock().map_err(|_| poisoned())?;
                let run = g.begin_run(&s, &t, "sync", &trig)?;
                if full_refresh {
                    g.begin_full_refresh(run)?;
                }
                Ok((run, g.cursor(&s, &t)?))
            },
        )
        .await
    };
    let (run_id, cursor) = match begun {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return failed_report(&src.name, &stream.name, e.to_string()),
        Err(e) => return failed_report(&src.name, &stream.name, e.to_string()),
    };
    tracing::Span::current().record("run_id", run_id);
    let plan = fetch_plan(ctx, stream, cursor.as_deref(), opts.full);
    let upper_text = match &plan.upper {
        Some(CursorBound::Time(t)) => Some(t.to_rfc3339()),
        _ => None,
    };
    tracing::info!(source = %src.name, stream = %stream.name, run_id, cursor = ?cursor, "stream sync started");
    if let Some(p) = &opts.progress {
        p.emit(ProgressEvent::StreamStarted {
            source: src.name.clone(),
            stream: stream.name.clone(),
            run_id,
        });
    }

    let (tx, rx) = mpsc::channel::<Page>(PAGE_BUFFER);
    let fetch = {
        let client = client.clone();
        let stream = stream.clone();
        let plan = plan.clone();
        tokio::spawn(async move { client.fetch_stream(&stream, &plan, tx).await })
    };
    let writer = {
        let ctx = ctx.clone();
        let src_name = src.name.clone();
        let stream = stream.clone();
        let progress = opts.progress.clone();
        let run_started = run_started.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                write_pages(
                    &ctx,
                    &src_name,
                    &stream,
                    run_id,
                    &run_started,
                    full_refresh,
                    rx,
                    progress,
                )
            })
        })
    };
    let fetched = fetch.await;
    let written = writer.await;
    let (pages, records, totals, max_cursor, pending, write_error, profile, shifted) = match written
    {
        Ok(w) => w,
        Err(e) => (
            0,
            0,
            IngestStats::default(),
            None,
            Vec::new(),
            Some(e.to_string()),
            FieldProfile::default(),
            false,
        ),
    };
    let fetch_error = match fetched {
        Ok(Ok(_stats)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("fetch task failed: {e}")),
    };
    let error = write_error.or(fetch_error);
    // Cursor: the newest change seen, never past the settle bound.
    let new_cursor = match (&max_cursor, &upper_text) {
        (Some(m), Some(u)) if later(m, u) => Some(u.clone()),
        (Some(m), _) => Some(m.clone()),
        (None, _) => None,
    };
    let new_cursor = match (&new_cursor, &cursor) {
        (Some(n), Some(c)) if !later(n, c) => None,
        _ => new_cursor,
    };
    // Offsets shifted while paging: a record may have slipped between two pages. Keep the old
    // cursor so the next run reads the same window again (unchanged records write nothing).
    let new_cursor = if shifted {
        tracing::warn!(
            source = %src.name, stream = %stream.name, run_id,
            "the system's record count changed while paging (records changed mid-sync); the cursor stays put so the next run re-reads this window"
        );
        None
    } else {
        new_cursor
    };
    let closing = {
        let store = ctx.store.clone();
        let (s, t) = (src.name.clone(), stream.name.clone());
        let link = stream.link.as_ref().map(|l| l.stream.clone());
        let error = error.clone();
        let new_cursor = new_cursor.clone();
        let entity = stream.entity;
        let drift_action = stream.schema_drift;
        let run_started = run_started.clone();
        tokio::task::spawn_blocking(move || -> Result<(IngestStats, Option<String>), crate::store::StoreError> {
            let mut g = store.lock().map_err(|_| poisoned())?;
            let mut error = error;
            if error.is_none() && records > 0 {
                // The writer's compiled mapping recorded the field names in the profile.
                let names: Vec<&str> = profile.names.iter().map(String::as_str).collect();
                let drifts = g.check_drift(&s, &t, run_id, &names, &profile)?;
                for d in &drifts {
                    tracing::warn!(source = %s, stream = %t, run_id, field = %d.field, kind = %d.kind, "schema drift: {}", d.detail);
                }
                if !drifts.is_empty() && drift_action == crate::config::DriftAction::Fail {
                    let list: Vec<String> = drifts.iter().map(|d| format!("{} {} ({})", d.field, d.kind, d.detail)).collect();
                    error = Some(format!(
                        "schema drift in {s}/{t}: {}; the stream is set to fail on drift (schema_drift = \"fail\"): fix the mapping in the config or set schema_drift = \"warn\"",
                        list.join("; ")
                    ));
                }
            }
            let at = StreamRef {
                source: &s,
                stream: &t,
                run_id,
                link_stream: link.as_deref(),
                full_refresh,
                entity,
                run_started: &run_started,
            };
            match &error {
                None => {
                    let finish = Finish {
                        cursor: new_cursor,
                        pages,
                        fetched: records,
                        totals,
                        complete_full_refresh: full_refresh,
                    };
                    let last = g.ingest(&at, &pending, Some(&finish))?;
                    let mut all = totals;
                    all.add(&last);
                    Ok((all, None))
                }
                Some(e) => {
                    // Records already fetched are kept (re-fetching them later is a no-op);
                    // the cursor stays where it was.
                    let last = g.ingest(&at, &pending, None)?;
                    let mut all = totals;
                    all.add(&last);
                    g.fail_run(run_id, e, pages, records, &all)?;
                    Ok((all, Some(e.clone())))
                }
            }
        })
        .await
    };
    let (stats, error) = match closing {
        Ok(Ok((s, e))) => (s, e),
        Ok(Err(e)) => (totals, Some(e.to_string())),
        Err(e) => (totals, Some(e.to_string())),
    };
    let seconds = started.elapsed().as_secs_f64();
    if stats.moved > 0 {
        tracing::warn!(
            source = %src.name, stream = %stream.name, run_id, moved = stats.moved,
            "records changed while this run paged through them; the cursor stays put so the next run re-reads the window"
        );
    }
    match &error {
        None => tracing::info!(
            source = %src.name, stream = %stream.name, run_id, pages, fetched = records,
            inserted = stats.inserted, updated = stats.updated, unchanged = stats.unchanged,
            rejected = stats.rejected, deleted = stats.deleted, seconds = format!("{seconds:.2}"),
            "stream sync finished"
        ),
        Some(e) => tracing::error!(
            source = %src.name, stream = %stream.name, run_id, pages, fetched = records,
            "stream sync failed: {}", crate::mask::scrub_text(e)
        ),
    }
    if let Some(p) = &opts.progress {
        p.emit(ProgressEvent::StreamFinished {
            source: src.name.clone(),
            stream: stream.name.clone(),
            ok: error.is_none(),
            records,
            error: error.as_deref().map(crate::mask::scrub_text),
        });
    }
    StreamReport {
        source: src.name.clone(),
        stream: stream.name.clone(),
        run_id,
        ok: error.is_none(),
        cursor: if error.is_none() && stats.moved == 0 {
            new_cursor.or(cursor)
        } else {
            cursor
        },
        error: error.map(|e| crate::mask::scrub_text(&e)),
        pages,
        fetched: records,
        stats,
        seconds,
    }
}

/// What the writer hands back: pages, records, totals so far, newest cursor seen, the last
/// partial batch, an error, the field profile, and whether the window shifted under paging.
type WriteOutcome = (
    u64,
    u64,
    IngestStats,
    Option<String>,
    Vec<Ingest>,
    Option<String>,
    FieldProfile,
    bool,
);

#[allow(clippy::too_many_arguments)]
/// The writer: maps each page's records and ingests full batches. Returns the last partial
/// batch unwritten, so the caller can close the run with it in one transaction.
fn write_pages(
    ctx: &Context,
    source: &str,
    stream: &StreamConfig,
    run_id: i64,
    run_started: &str,
    full_refresh: bool,
    mut rx: mpsc::Receiver<Page>,
    progress: Option<Progress>,
) -> WriteOutcome {
    let mapping = Mapping::compile(&ctx.config, stream);
    let batch_size = ctx.config.store.batch_size;
    let link = stream.link.as_ref().map(|l| l.stream.as_str());
    let mut batch: Vec<Ingest> = Vec::with_capacity(batch_size);
    let mut totals = IngestStats::default();
    let (mut pages, mut records) = (0u64, 0u64);
    let mut max_cursor: Option<String> = None;
    let mut profile = FieldProfile::default();
    // Hashing and sealing are done before taking the store, which the other streams' writers
    // share: held only for its SQL, it is free for them meanwhile (BENCHMARKS.md). Sealing
    // ahead of the lookups pays only when most records are new or changed, so it follows the
    // last batch: a poll that re-reads unchanged records never seals them.
    let codec = match ctx.store.lock() {
        Ok(g) => g.codec().clone(),
        Err(_) => {
            return (
                0,
                0,
                totals,
                None,
                Vec::new(),
                Some(poisoned().to_string()),
                profile,
                false,
            )
        }
    };
    let mut seal_ahead = false;
    // The system's total for the query, first and latest: if it moves while we page, records
    // left (or entered) the window and offsets shifted, so some record may have been skipped.
    let (mut first_total, mut last_total) = (None, None);
    while let Some(page) = rx.blocking_recv() {
        if first_total.is_none() {
            first_total = page.total;
        }
        if page.total.is_some() {
            last_total = page.total;
        }
        pages += 1;
        records += page.records.len() as u64;
        if let Some(p) = &progress {
            p.emit(ProgressEvent::Page {
                source: source.to_string(),
                stream: stream.name.clone(),
                pages,
                records,
                total: page.total,
            });
        }
        for raw in page.records {
            mapping.observe(&raw, &mut profile);
            let mapped = mapping.apply(&raw);
            // Kept as text from here on (what is hashed and stored; a fraction of the tree).
            let raw = raw.to_string();
            let item = match mapped {
                Mapped::Ok(record, deleted) => {
                    if let Some(c) = &record.updated_at {
                        if max_cursor.as_ref().is_none_or(|m| later(c, m)) {
                            max_cursor = Some(c.clone());
                        }
                    }
                    Ingest::Ok {
                        record,
                        deleted,
                        raw,
                    }
                }
                Mapped::Rejected(reject) => Ingest::Rejected { reject, raw },
            };
            batch.push(item);
        }
        if batch.len() >= batch_size {
            let at = StreamRef {
                source,
                stream: &stream.name,
                run_id,
                link_stream: link,
                full_refresh,
                entity: stream.entity,
                run_started,
            };
            let prepared = Prepared::new(&codec, &batch, seal_ahead);
            let result = match ctx.store.lock() {
                Ok(mut g) => g.ingest_prepared(&at, prepared, None),
                Err(_) => Err(poisoned()),
            };
            match result {
                Ok(s) => {
                    seal_ahead = 2 * (s.inserted + s.updated + s.deleted) > batch.len() as u64;
                    tracing::debug!(source, stream = %stream.name, run_id, records = batch.len(), inserted = s.inserted, updated = s.updated, unchanged = s.unchanged, "batch written");
                    totals.add(&s);
                    batch.clear();
                    crate::memory::release_free();
                }
                Err(e) => {
                    return (
                        pages,
                        records,
                        totals,
                        max_cursor,
                        Vec::new(),
                        Some(e.to_string()),
                        profile,
                        false,
                    )
                }
            }
        }
    }
    let shifted = first_total.is_some() && first_total != last_total;
    (
        pages, records, totals, max_cursor, batch, None, profile, shifted,
    )
}

fn poisoned() -> crate::store::StoreError {
    crate::store::StoreError::Poisoned
}

/// Reconciles everything dirty (blocking work off the async threads).
pub async fn run_reconcile(ctx: &Context) -> Result<ReconcileStats, PipelineError> {
    let store = ctx.store.clone();
    let config = ctx.config.clone();
    let started = Instant::now();
    let stats = tokio::task::spawn_blocking(
        move || -> Result<ReconcileStats, crate::store::StoreError> {
            let mut g = store.lock().map_err(|_| poisoned())?;
            let r = reconcile::reconcile(&mut g, &config);
            match &r {
                Ok(_) => g.record_run("*", "reconcile", "auto", true, None)?,
                Err(e) => g.record_run("*", "reconcile", "auto", false, Some(&e.to_string()))?,
            }
            r
        },
    )
    .await
    .map_err(|e| PipelineError::Internal(e.to_string()))??;
    tracing::info!(
        records = stats.records,
        persons_created = stats.persons_created,
        persons_changed = stats.persons_changed,
        persons_retired = stats.persons_retired,
        domain_changed = stats.domain_changed,
        events = stats.events,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "reconcile finished"
    );
    Ok(stats)
}

/// Drains the outbox to the platform.
pub async fn push(ctx: &Context) -> Result<PushStats, crate::push::PushError> {
    let pusher = Pusher::new(&ctx.config)?;
    let started = Instant::now();
    let r = pusher.drain(&ctx.store, None).await;
    match &r {
        Ok(s) => tracing::info!(
            batches = s.batches,
            sent = s.sent,
            dead = s.dead,
            superseded = s.superseded,
            retries = s.retries,
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            "push finished"
        ),
        Err(e) => tracing::error!("push failed: {e}"),
    }
    r
}
