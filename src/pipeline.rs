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
use crate::push::PushStats;
use crate::reconcile::{self, ReconcileStats};
use crate::source::files::PendingFile;
use crate::source::{CursorBound, FetchPlan, FetchStats, Page, Source};
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
    /// Apply the deletions of complete full refreshes even beyond their `max_delete` (an
    /// operator's confirmation, `sync SOURCE --confirm-deletes`).
    pub confirm_deletes: bool,
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
    /// Records `skip_when` ignored.
    pub skipped: u64,
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
    for (streams, not_started) in futures::future::join_all(jobs).await {
        report.streams.extend(streams);
        report.not_started.extend(not_started);
    }
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

/// All streams of one source: their reports, and the streams a stop kept from starting
/// (`source/stream`). A failing stream is reported and the next one still runs; a ledger
/// stream with no ready file reports nothing.
pub async fn sync_source(
    ctx: &Context,
    source: String,
    opts: &SyncOptions,
) -> (Vec<StreamReport>, Vec<String>) {
    let Some(src) = ctx.config.source(&source).cloned() else {
        return (Vec::new(), Vec::new());
    };
    let config_dir = ctx
        .config
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let reader = match Source::open(&src, config_dir, ctx.tz()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(source = %src.name, "{e}");
            let failed = src
                .streams
                .iter()
                .map(|t| failed_report(&src.name, &t.name, e.to_string()))
                .collect();
            return (failed, Vec::new());
        }
    };
    let mut out = Vec::new();
    for (i, stream) in src.streams.iter().enumerate() {
        if opts.stopping() {
            tracing::info!(source = %src.name, stream = %stream.name, "stopping: this stream does not start; it resumes from its cursor at the next sync");
            let not_started = src.streams[i..]
                .iter()
                .map(|t| format!("{}/{}", src.name, t.name))
                .collect();
            return (out, not_started);
        }
        if let Source::Files(files) = reader.as_ref() {
            out.extend(sync_file_stream(ctx, &src, stream, files, reader.clone(), opts).await);
            continue;
        }
        let r = sync_stream(ctx, &src, stream, reader.clone(), None, opts).await;
        out.push(r.report);
    }
    (out, Vec::new())
}

/// A file stream: one run per ready file, oldest first. A file is moved to `done/` only
/// after the run that committed its records (and its hash) closed; one that cannot be read
/// goes to `failed/` with the reason beside it; one whose bytes were ingested before is
/// moved to `done/` unread.
async fn sync_file_stream(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    files: &crate::source::files::FileSource,
    reader: Arc<Source>,
    opts: &SyncOptions,
) -> Vec<StreamReport> {
    let paths = match files.ready_files(stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(source = %src.name, stream = %stream.name, "{e}");
            return vec![failed_report(&src.name, &stream.name, e.to_string())];
        }
    };
    let mut out = Vec::new();
    for path in paths {
        if opts.stopping() {
            tracing::info!(source = %src.name, stream = %stream.name, "stopping: no further ledger file starts; the rest wait in the folder for the next sync");
            break;
        }
        let file = match files.load(stream, &path) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(source = %src.name, stream = %stream.name, "{e}");
                out.push(failed_report(&src.name, &stream.name, e.to_string()));
                continue;
            }
        };
        let seen = {
            let store = ctx.store.clone();
            let (s, t, h) = (src.name.clone(), stream.name.clone(), file.hash.clone());
            tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .map_err(|_| poisoned())
                    .and_then(|g| g.ingested_file(&s, &t, &h))
            })
            .await
        };
        match seen {
            Ok(Ok(Some((name, at, run)))) => {
                tracing::info!(source = %src.name, stream = %stream.name, file = %file.name,
                    "the same bytes were ingested as {name} at {at} (run {run}); moved to done/ without reading them again");
                if let Err(e) = files.mark_done(stream, &file) {
                    tracing::error!(source = %src.name, stream = %stream.name, "{e}");
                }
                continue;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                out.push(failed_report(&src.name, &stream.name, e.to_string()));
                continue;
            }
            Err(e) => {
                out.push(failed_report(&src.name, &stream.name, e.to_string()));
                continue;
            }
        }
        let run = sync_stream(ctx, src, stream, reader.clone(), Some(file.clone()), opts).await;
        let moved = match (&run.report.error, &run.read_error) {
            (None, _) => files.mark_done(stream, &file).map(|to| ("done", to)),
            // The file itself is bad: set it aside with the reason, so it blocks nothing.
            (Some(_), Some(why)) => files
                .mark_failed(stream, &file, why)
                .map(|to| ("failed", to)),
            // The store failed: the file stays and is read again by the next run.
            (Some(_), None) => Ok(("", path.clone())),
        };
        match moved {
            Ok((to, path)) if !to.is_empty() => {
                tracing::info!(source = %src.name, stream = %stream.name, file = %file.name, to = %path.display(), "ledger file moved to {to}/")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(source = %src.name, stream = %stream.name, "{e}"),
        }
        out.push(run.report);
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
        skipped: 0,
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

/// One stream run's report, and the reader's own error if it failed (a ledger file that
/// cannot be read is set aside for it).
struct RunOutcome {
    report: StreamReport,
    read_error: Option<String>,
}

impl From<StreamReport> for RunOutcome {
    fn from(report: StreamReport) -> RunOutcome {
        RunOutcome {
            report,
            read_error: None,
        }
    }
}

async fn sync_stream(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    reader: Arc<Source>,
    file: Option<PendingFile>,
    opts: &SyncOptions,
) -> RunOutcome {
    // Every log line of the run carries its run id and source (the id is known once begun).
    let span = tracing::info_span!("run", run_id = tracing::field::Empty, source = %src.name, stream = %stream.name);
    tracing::Instrument::instrument(sync_stream_run(ctx, src, stream, reader, file, opts), span)
        .await
}

async fn sync_stream_run(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    reader: Arc<Source>,
    file: Option<PendingFile>,
    opts: &SyncOptions,
) -> RunOutcome {
    let started = Instant::now();
    let run_started = crate::store::now_text();
    let (run_id, cursor) = match begin_stream_run(ctx, src, stream, &opts.trigger).await {
        Ok(v) => v,
        Err(e) => return failed_report(&src.name, &stream.name, e).into(),
    };
    tracing::Span::current().record("run_id", run_id);
    let plan = fetch_plan(ctx, stream, cursor.as_deref(), opts.full);
    let upper_text = match &plan.upper {
        Some(CursorBound::Time(t)) => Some(t.to_rfc3339()),
        _ => None,
    };
    tracing::info!(source = %src.name, stream = %stream.name, run_id, cursor = ?cursor,
        file = file.as_ref().map(|f| f.name.as_str()), "stream sync started");
    if let Some(p) = &opts.progress {
        p.emit(ProgressEvent::StreamStarted {
            source: src.name.clone(),
            stream: stream.name.clone(),
            run_id,
        });
    }

    let (mut w, fetch_stats, fetch_error) = fetch_and_write(
        ctx,
        src,
        stream,
        reader,
        file.as_ref(),
        &plan,
        run_id,
        &run_started,
        opts,
    )
    .await;
    // The reader's own error: a ledger file that cannot be read is set aside for it.
    let read_error = fetch_error.clone();
    let mut error = w.error.take().or(fetch_error);
    if error.is_none() {
        error = partial_run_error(src, stream, run_id, &w, &fetch_stats);
    }
    let new_cursor = next_cursor(src, stream, run_id, &w, &cursor, upper_text.as_deref());
    let closing = close_stream_run(
        ctx,
        src,
        stream,
        run_id,
        &run_started,
        opts.confirm_deletes,
        file.as_ref().map(|f| (f.name.clone(), f.hash.clone())),
        &mut w,
        error,
        new_cursor.clone(),
    )
    .await;
    let (stats, error) = match closing {
        Ok(v) => v,
        Err(e) => (w.totals, Some(e)),
    };
    let seconds = started.elapsed().as_secs_f64();
    log_stream_end(
        src,
        stream,
        run_id,
        &w,
        &stats,
        &fetch_stats,
        &error,
        seconds,
        opts,
    );
    let report = StreamReport {
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
        pages: w.pages,
        fetched: w.records,
        skipped: w.skipped,
        stats,
        seconds,
    };
    RunOutcome {
        read_error: if report.ok { None } else { read_error },
        report,
    }
}

/// Runs the reader and the store writer side by side over a bounded page channel: what was
/// written, the reader's figures, and the reader's own error.
#[allow(clippy::too_many_arguments)]
async fn fetch_and_write(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    reader: Arc<Source>,
    file: Option<&PendingFile>,
    plan: &FetchPlan,
    run_id: i64,
    run_started: &str,
    opts: &SyncOptions,
) -> (WriteOutcome, FetchStats, Option<String>) {
    let full_refresh = stream.full_refresh();
    let (tx, rx) = mpsc::channel::<Page>(PAGE_BUFFER);
    let fetch = {
        let stream = stream.clone();
        let plan = plan.clone();
        let file = file.cloned();
        tokio::spawn(async move { reader.fetch_stream(&stream, &plan, file.as_ref(), tx).await })
    };
    let writer = {
        let ctx = ctx.clone();
        let src_name = src.name.clone();
        let stream = stream.clone();
        let progress = opts.progress.clone();
        let run_started = run_started.to_string();
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
    let w = match writer.await {
        Ok(w) => w,
        Err(e) => WriteOutcome::failed(e.to_string()),
    };
    let (fetch_stats, fetch_error) = match fetched {
        Ok(Ok(stats)) => (stats, None),
        Ok(Err(e)) => (FetchStats::default(), Some(e.to_string())),
        Err(e) => (
            FetchStats::default(),
            Some(format!("fetch task failed: {e}")),
        ),
    };
    (w, fetch_stats, fetch_error)
}

/// Complete means paging ended the way the system said it would. A run that did not see
/// everything keeps the records it saw but deletes nothing and keeps its cursor: the error
/// that says so, if it was partial.
fn partial_run_error(
    src: &SourceConfig,
    stream: &StreamConfig,
    run_id: i64,
    w: &WriteOutcome,
    fetch_stats: &FetchStats,
) -> Option<String> {
    let why = incompleteness(stream, w, fetch_stats)?;
    tracing::warn!(
        source = %src.name, stream = %stream.name, run_id, fetched = w.records,
        "partial run of {}/{}: {why}; nothing is deleted and the cursor stays, so the next run reads it all again",
        src.name, stream.name
    );
    Some(format!(
        "partial run: {why}; nothing was deleted and the cursor stays (the next run reads it again)"
    ))
}

/// Opens a stream's run in the store (and a full refresh's seen set): its id and cursor.
async fn begin_stream_run(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    trigger: &str,
) -> Result<(i64, Option<String>), String> {
    let store = ctx.store.clone();
    let (s, t, trig) = (src.name.clone(), stream.name.clone(), trigger.to_string());
    let full_refresh = stream.full_refresh();
    let begun = tokio::task::spawn_blocking(
        move || -> Result<(i64, Option<String>), crate::store::StoreError> {
            let mut g = store.lock().map_err(|_| poisoned())?;
            let run = g.begin_run(&s, &t, "sync", &trig)?;
            if full_refresh {
                g.begin_full_refresh(run)?;
            }
            Ok((run, g.cursor(&s, &t)?))
        },
    )
    .await;
    match begun {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The end of a stream run in the log and the progress stream.
#[allow(clippy::too_many_arguments)]
fn log_stream_end(
    src: &SourceConfig,
    stream: &StreamConfig,
    run_id: i64,
    w: &WriteOutcome,
    stats: &IngestStats,
    fetch_stats: &FetchStats,
    error: &Option<String>,
    seconds: f64,
    opts: &SyncOptions,
) {
    if stats.moved > 0 {
        tracing::warn!(
            source = %src.name, stream = %stream.name, run_id, moved = stats.moved,
            "records changed while this run paged through them; the cursor stays put so the next run re-reads the window"
        );
    }
    match &error {
        None => tracing::info!(
            source = %src.name, stream = %stream.name, run_id, pages = w.pages, fetched = w.records,
            inserted = stats.inserted, updated = stats.updated, unchanged = stats.unchanged,
            rejected = stats.rejected, deleted = stats.deleted, skipped = w.skipped,
            retries = fetch_stats.retries, seconds = format!("{seconds:.2}"),
            "stream sync finished"
        ),
        Some(e) => tracing::error!(
            source = %src.name, stream = %stream.name, run_id, pages = w.pages, fetched = w.records,
            "stream sync failed: {}", crate::mask::scrub_text(e)
        ),
    }
    if let Some(p) = &opts.progress {
        p.emit(ProgressEvent::StreamFinished {
            source: src.name.clone(),
            stream: stream.name.clone(),
            ok: error.is_none(),
            records: w.records,
            error: error.as_deref().map(crate::mask::scrub_text),
        });
    }
}

/// Why a run that raised no error still did not see everything, if it did not: the source
/// says paging stopped early, the system stated a total and fewer records arrived (a stream
/// whose system states a total it does not serve can set `trust_total = false`), or, for a
/// full refresh, the total moved while it paged (offsets shifted: a record may have slipped
/// between two pages). An incremental run whose total moved is not partial: it keeps its
/// cursor and reads the window again next time (`next_cursor`).
fn incompleteness(stream: &StreamConfig, w: &WriteOutcome, f: &FetchStats) -> Option<String> {
    if let Some(why) = &f.incomplete {
        return Some(why.clone());
    }
    if !f.complete {
        return Some("the read stopped before the system said it ended".to_string());
    }
    if w.shifted {
        return stream.full_refresh().then(|| {
            "the system's record count changed while paging, so a record may have slipped between two pages".to_string()
        });
    }
    let total = w.last_total.or(f.total)?;
    (stream.trust_total && w.records < total).then(|| {
        format!(
            "received {} of the {total} records the system announced",
            w.records
        )
    })
}

/// The cursor this run may move to: the newest change seen, never past the settle bound,
/// never backwards, and none when offsets shifted while paging.
fn next_cursor(
    src: &SourceConfig,
    stream: &StreamConfig,
    run_id: i64,
    w: &WriteOutcome,
    cursor: &Option<String>,
    upper: Option<&str>,
) -> Option<String> {
    let new_cursor = match (&w.max_cursor, upper) {
        (Some(m), Some(u)) if later(m, u) => Some(u.to_string()),
        (Some(m), _) => Some(m.clone()),
        (None, _) => None,
    };
    let new_cursor = match (&new_cursor, cursor) {
        (Some(n), Some(c)) if !later(n, c) => None,
        _ => new_cursor,
    };
    // Offsets shifted while paging: a record may have slipped between two pages. Keep the old
    // cursor so the next run reads the same window again (unchanged records write nothing).
    if w.shifted {
        tracing::warn!(
            source = %src.name, stream = %stream.name, run_id,
            "the system's record count changed while paging (records changed mid-sync); the cursor stays put so the next run re-reads this window"
        );
        return None;
    }
    new_cursor
}

/// Closes a stream run in the store: schema drift and the deletion-test check on a clean run,
/// then the last batch with the cursor and (for a complete full refresh) delete detection in
/// one transaction, or the failed run. Returns the run's totals and its error, if any.
#[allow(clippy::too_many_arguments)]
async fn close_stream_run(
    ctx: &Context,
    src: &SourceConfig,
    stream: &StreamConfig,
    run_id: i64,
    run_started: &str,
    confirm_deletes: bool,
    file_done: Option<(String, String)>,
    w: &mut WriteOutcome,
    error: Option<String>,
    new_cursor: Option<String>,
) -> Result<(IngestStats, Option<String>), String> {
    let store = ctx.store.clone();
    let (s, t) = (src.name.clone(), stream.name.clone());
    let link = stream.link.as_ref().map(|l| l.stream.clone());
    let entity = stream.entity;
    let drift_action = stream.schema_drift;
    let run_started = run_started.to_string();
    let full_refresh = stream.full_refresh();
    let guard = crate::store::DeleteGuard {
        max: stream.max_delete(src),
        confirmed: confirm_deletes,
    };
    let (pages, records, totals) = (w.pages, w.records, w.totals);
    let pending = std::mem::take(&mut w.pending);
    let profile = std::mem::take(&mut w.profile);
    let deletion_warning = w.deletion_warning.take();
    let closing = tokio::task::spawn_blocking(move || -> Result<(IngestStats, Option<String>), crate::store::StoreError> {
        let mut g = store.lock().map_err(|_| poisoned())?;
        let mut error = error;
        if error.is_none() && records > 0 {
            if let Some(warning) = &deletion_warning {
                if g.note_once(&s, &t, run_id, "deleted_when", "never_matches", warning)? {
                    tracing::warn!(source = %s, stream = %t, run_id, "{s}/{t}: {warning}");
                }
            }
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
                    complete_full_refresh: full_refresh.then_some(guard),
                    file: file_done,
                };
                let last = g.ingest(&at, &pending, Some(&finish))?;
                let mut all = totals;
                all.add(&last);
                if last.held > 0 {
                    let held = g.held_deletions()?;
                    let why = held
                        .iter()
                        .find(|h| h.source == s && h.stream == t)
                        .map(|h| h.describe())
                        .unwrap_or_else(|| format!("{s}/{t}: deletions held"));
                    tracing::error!(source = %s, stream = %t, run_id, held = last.held, "{why}");
                    return Ok((all, Some(why)));
                }
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
    .await;
    match closing {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What the writer hands back.
#[derive(Default)]
struct WriteOutcome {
    pages: u64,
    /// Records received (skipped ones included: the system served them).
    records: u64,
    /// Records `skip_when` ignored.
    skipped: u64,
    /// Totals of the batches written so far.
    totals: IngestStats,
    /// The newest cursor value seen.
    max_cursor: Option<String>,
    /// The last partial batch, unwritten: the caller closes the run with it.
    pending: Vec<Ingest>,
    error: Option<String>,
    profile: FieldProfile,
    /// The system's total moved while paging (offsets shifted).
    shifted: bool,
    /// The last total the system stated.
    last_total: Option<u64>,
    /// The stream's deletion test never matched values it cannot mean (see
    /// [`Mapping::deletion_warning`]).
    deletion_warning: Option<String>,
}

impl WriteOutcome {
    fn failed(error: String) -> WriteOutcome {
        WriteOutcome {
            error: Some(error),
            ..WriteOutcome::default()
        }
    }
}

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
    let mut out = WriteOutcome::default();
    let mut batch: Vec<Ingest> = Vec::with_capacity(batch_size);
    // Hashing and sealing are done before taking the store, which the other streams' writers
    // share: held only for its SQL, it is free for them meanwhile (BENCHMARKS.md). Sealing
    // ahead of the lookups pays only when most records are new or changed, so it follows the
    // last batch: a poll that re-reads unchanged records never seals them.
    let codec = match ctx.store.lock() {
        Ok(g) => g.codec().clone(),
        Err(_) => return WriteOutcome::failed(poisoned().to_string()),
    };
    let mut seal_ahead = false;
    // The system's total for the query, first and latest: if it moves while we page, records
    // left (or entered) the window and offsets shifted, so some record may have been skipped.
    let mut first_total = None;
    while let Some(page) = rx.blocking_recv() {
        if first_total.is_none() {
            first_total = page.total;
        }
        if page.total.is_some() {
            out.last_total = page.total;
        }
        out.pages += 1;
        out.records += page.records.len() as u64;
        if let Some(p) = &progress {
            p.emit(ProgressEvent::Page {
                source: source.to_string(),
                stream: stream.name.clone(),
                pages: out.pages,
                records: out.records,
                total: page.total,
            });
        }
        // A SQL page states its own cursor (the last row's watermark, exact); others leave it
        // to each record's change time.
        if let Some(c) = &page.cursor {
            if out.max_cursor.as_ref().is_none_or(|m| later(c, m)) {
                out.max_cursor = Some(c.clone());
            }
        }
        let mut locations = page.locations.into_iter();
        for raw in page.records {
            let at = locations.next();
            if mapping.skips(&raw) {
                out.skipped += 1;
                continue;
            }
            mapping.observe(&raw, &mut out.profile);
            let mut mapped = mapping.apply(&raw);
            if let Some(at) = at {
                locate(&mut mapped, &at);
            }
            // Kept as text from here on (what is hashed and stored; a fraction of the tree).
            let raw = raw.to_string();
            let item = match mapped {
                Mapped::Ok(record, deleted) => {
                    if let (Some(c), None) = (&record.updated_at, &page.cursor) {
                        if out.max_cursor.as_ref().is_none_or(|m| later(c, m)) {
                            out.max_cursor = Some(c.clone());
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
                    out.totals.add(&s);
                    batch.clear();
                    crate::memory::release_free();
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
    }
    out.shifted = first_total.is_some() && first_total != out.last_total;
    out.deletion_warning = mapping.deletion_warning(&out.profile);
    out.pending = batch;
    out
}

/// Names where a record came from (a ledger's file and row) in each of its rejects.
fn locate(mapped: &mut Mapped, at: &str) {
    match mapped {
        Mapped::Rejected(r) => r.detail = format!("{at}: {}", r.detail),
        Mapped::Ok(record, _) => {
            for fr in &mut record.field_rejects {
                fr.detail = format!("{at}: {}", fr.detail);
            }
        }
    }
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
    let started = Instant::now();
    let r = crate::push::drain(&ctx.config, &ctx.store, None).await;
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
