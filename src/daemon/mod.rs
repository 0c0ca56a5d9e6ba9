//! The daemon (`community-sync run`): decides when syncs happen. A scheduler loop fires each
//! enabled source's job and the push job on their cron schedules (in the configured time
//! zone, with optional jitter; a job never overlaps itself; jobs of different sources run
//! concurrently up to `max_concurrent_jobs`); a control socket takes manual syncs and streams
//! their progress; SIGHUP reloads a validated config, SIGTERM/SIGINT stop gracefully; systemd
//! hears READY/STATUS/RELOADING/STOPPING and watchdog pings; an optional Prometheus endpoint
//! exposes counters.
//!
//! Two syncs of one source never overlap, whoever started them: every sync takes the store
//! lease of each of its sources first ([`sync_with_leases`]).

pub mod control;
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::config::{Config, ConfigError};
use crate::pipeline::{self, Context, PipelineError, Stop, SyncOptions, SyncReport};
use crate::progress::{Progress, ProgressEvent};
use crate::store::lease::{source_lease, LeaseHolder};
use crate::store::{Store, StoreError};
use control::{ControlError, Request};
use scheduler::{Job, JobKind, ScheduleError};

/// The lease the push holds, so two drains of the outbox never run at once.
pub const PUSH_LEASE: &str = "push";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Security(#[from] crate::store::codec::SecurityError),
    #[error("cannot install the {0} signal handler: {1}")]
    Signal(&'static str, std::io::Error),
}

fn poisoned() -> StoreError {
    StoreError::Poisoned
}

/// Fetch + reconcile the selected sources under their leases, then push under the push
/// lease (if `opts.push`). Waits for a lease another sync holds; `on_wait` hears about it.
pub async fn sync_with_leases(
    ctx: &Context,
    opts: &SyncOptions,
    holder: &str,
    mut on_wait: impl FnMut(&str, Option<&LeaseHolder>),
) -> Result<SyncReport, PipelineError> {
    let names: Vec<String> = pipeline::select_sources(&ctx.config, &opts.sources)?
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let leases: Vec<String> = names.iter().map(|n| source_lease(n)).collect();
    if opts.stop.as_ref().is_some_and(Stop::is_raised) {
        // Stopping: nothing new starts (ingest_sources reports every stream as not started).
        return pipeline::ingest_sources(ctx, opts).await;
    }
    let mut report = {
        let _guard = lease::acquire(ctx.store.clone(), &leases, holder, &mut on_wait).await?;
        // Holding the leases, any run of these sources still `running` died with its process.
        {
            let store = ctx.store.clone();
            let names = names.clone();
            tokio::task::spawn_blocking(move || -> Result<usize, StoreError> {
                let g = store.lock().map_err(|_| poisoned())?;
                let mut n = 0;
                for s in &names {
                    n += g.mark_interrupted_runs_of(s)?;
                }
                Ok(n)
            })
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))??;
        }
        let inner = SyncOptions {
            sources: names,
            push: false,
            ..opts.clone()
        };
        pipeline::sync(ctx, &inner).await?
    };
    if opts.push && !report.interrupted {
        let _guard = lease::acquire(
            ctx.store.clone(),
            &[PUSH_LEASE.to_string()],
            holder,
            &mut on_wait,
        )
        .await?;
        match pipeline::push(ctx).await {
            Ok(s) => {
                if let Some(p) = &opts.progress {
                    p.emit(ProgressEvent::Pushed {
                        sent: s.sent,
                        dead: s.dead,
                    });
                }
                report.push = Some(s);
            }
            Err(e) => report.push_error = Some(crate::mask::scrub_text(&e.to_string())),
        }
    }
    Ok(report)
}

/// The part of the daemon a reload replaces.
struct Current {
    ctx: Context,
    sem: Arc<Semaphore>,
    generation: u64,
    reload_failures: u64,
}

struct Shared {
    current: RwLock<Current>,
    /// Job id → what it is, for STATUS= and `ping`.
    running: Mutex<BTreeMap<u64, String>>,
    /// Keys of scheduled jobs in flight: a job never overlaps itself.
    in_flight: Mutex<HashSet<String>>,
    tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// Raised with `stopping`: running syncs start no further stream.
    stop: Stop,
    /// Control connections still writing a sync's outcome to their client.
    clients: AtomicU64,
    scheduled: Mutex<Vec<String>>,
    socket: PathBuf,
    config_path: PathBuf,
    metrics_addr: Option<SocketAddr>,
}

impl Shared {
    fn current(&self) -> (Context, Arc<Semaphore>) {
        match self.current.read() {
            Ok(c) => (c.ctx.clone(), c.sem.clone()),
            Err(p) => {
                let c = p.into_inner();
                (c.ctx.clone(), c.sem.clone())
            }
        }
    }

    fn activity(&self) -> String {
        let running = self
            .running
            .lock()
            .map(|r| r.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if self.stopping.load(Ordering::SeqCst) {
            format!("stopping; waiting for {} job(s)", running.len())
        } else if running.is_empty() {
            let n = self.scheduled.lock().map(|s| s.len()).unwrap_or(0);
            format!("idle; {n} job(s) scheduled")
        } else {
            format!("running: {}", running.join(", "))
        }
    }

    fn update_status(&self) {
        notify::status(&self.activity());
    }
}

/// Removes a job from the running table when its task ends (or is aborted).
struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    key: Option<String>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut r) = self.shared.running.lock() {
            r.remove(&self.id);
        }
        if let Some(k) = &self.key {
            if let Ok(mut f) = self.shared.in_flight.lock() {
                f.remove(k);
            }
        }
        self.shared.update_status();
    }
}

fn spawn_job<T: Send + 'static>(
    shared: &Arc<Shared>,
    what: String,
    key: Option<String>,
    make: impl FnOnce(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
) -> tokio::task::JoinHandle<T> {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(mut r) = shared.running.lock() {
        r.insert(id, what);
    }
    let ticket = Ticket {
        shared: shared.clone(),
        id,
        key,
    };
    let fut = make(id);
    let handle = tokio::spawn(async move {
        let _ticket = ticket;
        fut.await
    });
    if let Ok(mut t) = shared.tasks.lock() {
        t.retain(|_, h| !h.is_finished());
        t.insert(id, handle.abort_handle());
    }
    shared.update_status();
    handle
}

/// Runs the daemon until SIGTERM/SIGINT. `config` was loaded (and validated) from `config_path`.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), DaemonError> {
    let mut jobs = scheduler::jobs(&config)?;
    let store = Store::open_configured(&config)?;
    let interrupted = store.mark_interrupted_unleased_runs()?;
    if interrupted > 0 {
        tracing::warn!(runs = interrupted, "runs left unfinished by the previous process marked interrupted; they resume from their cursors");
    }
    let store = Arc::new(Mutex::new(store));
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| DaemonError::Signal("SIGTERM", e))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| DaemonError::Signal("SIGINT", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| DaemonError::Signal("SIGHUP", e))?;

    let socket = control::socket_path(&config);
    let listener = control::bind(&socket).await?;
    let metrics = match &config.daemon.metrics_listen {
        Some(l) => Some(metrics::serve(metrics::listen_addr(l)?).await?),
        None => None,
    };
    let max_jobs = config.daemon.max_concurrent_jobs.max(1);
    let ctx = Context {
        config: Arc::new(config),
        store,
    };
    let shared = Arc::new(Shared {
        current: RwLock::new(Current {
            ctx: ctx.clone(),
            sem: Arc::new(Semaphore::new(max_jobs)),
            generation: 0,
            reload_failures: 0,
        }),
        running: Mutex::new(BTreeMap::new()),
        in_flight: Mutex::new(HashSet::new()),
        tasks: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        stop: Stop::new(),
        clients: AtomicU64::new(0),
        scheduled: Mutex::new(jobs.iter().map(|j| j.kind.key()).collect()),
        socket: socket.clone(),
        config_path: config_path.clone(),
        metrics_addr: metrics.as_ref().map(|m| m.0),
    });

    first_due_times(&ctx, &mut jobs)?;

    let accept = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move { serve_connection(shared, stream).await });
                    }
                    Err(e) => {
                        tracing::warn!("control socket: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };

    tracing::info!(
        socket = %socket.display(),
        jobs = jobs.len(),
        max_concurrent_jobs = max_jobs,
        metrics = ?shared.metrics_addr,
        "daemon started"
    );
    notify::ready(&shared.activity());
    let watchdog = notify::watchdog_interval();

    loop {
        notify::watchdog();
        let now = Utc::now();
        let (ctx, sem) = shared.current();
        let tz = ctx.tz();
        for j in &mut jobs {
            if j.next.is_some_and(|n| n <= now) {
                let due = j.next.unwrap_or(now);
                fire(&shared, &ctx, &sem, j, due);
                j.next = scheduler::next_after(&j.schedule, tz, now.max(due));
            }
        }
        if let Some((_, h)) = &metrics {
            h.run_upkeep();
        }
        let next = jobs.iter().filter_map(|j| j.next).min();
        let mut wait = next
            .map(|n| (n - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60));
        if let Some(w) = watchdog {
            wait = wait.min(w);
        }
        wait = wait.min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                if let Some(new_jobs) = reload(&shared) {
                    jobs = new_jobs;
                }
            }
        }
    }

    shutdown(&shared, accept).await;
    Ok(())
}

/// First due times: an overdue job (missed ticks while down, or never run) runs once now.
fn first_due_times(ctx: &Context, jobs: &mut [Job]) -> Result<(), DaemonError> {
    let now = Utc::now();
    let tz = ctx.tz();
    let g = ctx.store.lock().map_err(|_| poisoned())?;
    for j in jobs.iter_mut() {
        let st = g.schedule_state(&j.kind.key())?;
        let last = st
            .last_due
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        j.next = scheduler::first_due(&j.schedule, tz, last, now);
        if j.next == Some(now) {
            tracing::info!(job = %j.kind.key(), "overdue after downtime (or never run): runs once now");
        }
    }
    metrics::update_store_gauges(&g);
    Ok(())
}

/// Starts a scheduled job unless the previous run of the same job is still going.
fn fire(
    shared: &Arc<Shared>,
    ctx: &Context,
    sem: &Arc<Semaphore>,
    job: &Job,
    due: chrono::DateTime<Utc>,
) {
    let key = job.kind.key();
    {
        let Ok(mut f) = shared.in_flight.lock() else {
            return;
        };
        if f.contains(&key) {
            tracing::debug!(job = %key, "previous run still going; this tick is skipped");
            return;
        }
        f.insert(key.clone());
    }
    let (ctx, sem, kind) = (ctx.clone(), sem.clone(), job.kind.clone());
    let jitter = scheduler::jitter(ctx.config.daemon.jitter_secs);
    let shared2 = shared.clone();
    let what = match &kind {
        JobKind::Source(s) => format!("scheduled sync of {s}"),
        JobKind::Push => "scheduled push".to_string(),
    };
    spawn_job(shared, what, Some(key.clone()), move |id| {
        let source = match &kind {
            JobKind::Source(s) => s.clone(),
            JobKind::Push => "*".to_string(),
        };
        let span = tracing::info_span!("job", job = id, source = %source, trigger = "schedule");
        Box::pin(
            async move {
                tokio::time::sleep(jitter).await;
                let Ok(_permit) = sem.acquire_owned().await else {
                    return;
                };
                if shared2.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let k = key.clone();
                let _ = blocking(&ctx, move |s| s.schedule_started(&k, due)).await;
                let holder = crate::store::lease::holder_token(&format!("job{id}"));
                let started = Instant::now();
                let ok = match &kind {
                    JobKind::Source(name) => {
                        let opts = SyncOptions {
                            sources: vec![name.clone()],
                            full: false,
                            trigger: "schedule".into(),
                            push: false,
                            progress: None,
                            confirm_deletes: false,
                            stop: Some(shared2.stop.clone()),
                        };
                        let on_wait = |lease: &str, h: Option<&LeaseHolder>| {
                            tracing::info!(
                                lease,
                                holder_pid = h.map(|h| h.pid),
                                "waiting for another sync of this source to finish"
                            );
                        };
                        match sync_with_leases(&ctx, &opts, &holder, on_wait).await {
                            Ok(report) => {
                                metrics::record_report(&report, started.elapsed().as_secs_f64());
                                report.failed_streams() == 0
                            }
                            Err(e) => {
                                tracing::error!(
                                    "scheduled sync failed: {}",
                                    crate::mask::scrub_text(&e.to_string())
                                );
                                false
                            }
                        }
                    }
                    JobKind::Push => {
                        let guard = lease::acquire(
                            ctx.store.clone(),
                            &[PUSH_LEASE.to_string()],
                            &holder,
                            |_, _| {},
                        )
                        .await;
                        match guard {
                            Ok(_g) => pipeline::push(&ctx).await.is_ok(),
                            Err(e) => {
                                tracing::error!("push lease: {e}");
                                false
                            }
                        }
                    }
                };
                let k = key.clone();
                let _ = blocking(&ctx, move |s| {
                    s.schedule_finished(&k, ok)?;
                    metrics::update_store_gauges(s);
                    Ok(())
                })
                .await;
            }
            .instrument(span),
        )
    });
}

async fn blocking<T: Send + 'static>(
    ctx: &Context,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = ctx.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        let g = store.lock().map_err(|_| poisoned())?;
        f(&g)
    })
    .await
    .map_err(|_| poisoned())?;
    if let Err(e) = &r {
        tracing::warn!("store: {e}");
    }
    r
}

/// SIGHUP: loads and validates the config; an invalid one is logged and the old keeps running.
fn reload(shared: &Arc<Shared>) -> Option<Vec<Job>> {
    notify::reloading();
    let path = shared.config_path.clone();
    let result = Config::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            scheduler::jobs(&c)
                .map(|j| (c, j))
                .map_err(|e| e.to_string())
        });
    let out = match result {
        Err(e) => {
            tracing::error!(config = %path.display(), "SIGHUP: the new config is invalid, keeping the running one: {}", crate::mask::scrub_text(&e));
            if let Ok(mut c) = shared.current.write() {
                c.reload_failures += 1;
            }
            None
        }
        Ok((mut config, mut jobs)) => {
            let Ok(mut cur) = shared.current.write() else {
                return None;
            };
            if config.store.path != cur.ctx.config.store.path {
                tracing::warn!(
                    "SIGHUP: [store] path changed; the store stays {} until a restart",
                    cur.ctx.config.store.path.display()
                );
                config.store.path = cur.ctx.config.store.path.clone();
            }
            if control::socket_path(&config) != shared.socket {
                tracing::warn!("SIGHUP: the control socket path changes only on restart");
            }
            if config.log.level != cur.ctx.config.log.level {
                tracing::info!(level = %config.log.level, "SIGHUP: changing the log level");
                match crate::cli::logging::set_level(&config.log.level) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("SIGHUP: RUST_LOG is set; it keeps deciding the log level")
                    }
                    Err(e) => tracing::warn!("SIGHUP: {e}; the log level stays"),
                }
            }
            if config.daemon.metrics_listen != cur.ctx.config.daemon.metrics_listen {
                tracing::warn!("SIGHUP: metrics_listen changes only on restart");
            }
            if config.daemon.max_concurrent_jobs != cur.ctx.config.daemon.max_concurrent_jobs {
                cur.sem = Arc::new(Semaphore::new(config.daemon.max_concurrent_jobs.max(1)));
            }
            let now = Utc::now();
            let tz: chrono_tz::Tz = config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
            for j in &mut jobs {
                j.next = scheduler::next_after(&j.schedule, tz, now);
            }
            cur.ctx = Context {
                config: Arc::new(config),
                store: cur.ctx.store.clone(),
            };
            cur.generation += 1;
            if let Ok(mut s) = shared.scheduled.lock() {
                *s = jobs.iter().map(|j| j.kind.key()).collect();
            }
            tracing::info!(
                generation = cur.generation,
                jobs = jobs.len(),
                "SIGHUP: config reloaded"
            );
            Some(jobs)
        }
    };
    notify::ready(&shared.activity());
    out
}

async fn shutdown(shared: &Arc<Shared>, accept: tokio::task::JoinHandle<()>) {
    shared.stopping.store(true, Ordering::SeqCst);
    shared.stop.raise();
    notify::stopping();
    accept.abort();
    let (ctx, _) = shared.current();
    let timeout = Duration::from_secs(ctx.config.daemon.shutdown_timeout_secs);
    let deadline = Instant::now() + timeout;
    let running = || shared.running.lock().map(|r| r.len()).unwrap_or(0);
    if running() > 0 {
        tracing::info!(
            jobs = running(),
            timeout_secs = timeout.as_secs(),
            "waiting for running jobs to finish"
        );
    }
    while running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = running();
    if left > 0 {
        tracing::warn!(jobs = left, "shutdown timeout reached: abandoning the batches in hand; their runs are marked interrupted and resume from their cursors");
        if let Ok(t) = shared.tasks.lock() {
            for h in t.values() {
                h.abort();
            }
        }
        // Let the aborted tasks unwind (their lease guards release on drop).
        let grace = Instant::now() + Duration::from_secs(2);
        while running() > 0 && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Clients waiting on a manual sync hear how it ended (and which streams completed).
    let grace = Instant::now() + Duration::from_secs(2);
    while shared.clients.load(Ordering::SeqCst) > 0 && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = ctx.store.clone();
    let aborted = left > 0;
    let closed = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let g = store.lock().map_err(|_| poisoned())?;
        g.release_leases_of_this_process()?;
        if aborted {
            let n = g.mark_interrupted_unleased_runs()?;
            tracing::info!(runs = n, "runs marked interrupted");
        }
        g.conn().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    })
    .await;
    match closed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("store close: {e}"),
        Err(e) => tracing::warn!("store close: {e}"),
    }
    let _ = std::fs::remove_file(&shared.socket);
    tracing::info!("daemon stopped");
}

/// The longest request line the control socket reads (a request is a few hundred bytes).
const MAX_REQUEST_LINE: u64 = 64 * 1024;

/// A control request: one line, read up to [`MAX_REQUEST_LINE`] bytes (`Err`: longer);
/// `None` when the client sent nothing.
async fn control_request_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Option<Result<String, String>> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut line = String::new();
    match reader.take(MAX_REQUEST_LINE).read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_LINE => Some(Err(
            format!("bad request: longer than {MAX_REQUEST_LINE} bytes"),
        )),
        Ok(_) => Some(Ok(line)),
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: tokio::net::UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(r);
    let line = match control_request_line(&mut reader).await {
        Some(Ok(line)) => line,
        Some(Err(message)) => {
            let _ =
                control::write_line(&mut w, &json!({"type": "error", "message": message})).await;
            return;
        }
        None => return,
    };
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = control::write_line(
                &mut w,
                &json!({"type": "error", "message": format!("bad request: {e}")}),
            )
            .await;
            return;
        }
    };
    match req {
        Request::Ping => {
            let _ = control::write_line(&mut w, &pong(&shared)).await;
        }
        Request::Sync {
            sources,
            full,
            push,
            confirm_deletes,
        } => {
            shared.clients.fetch_add(1, Ordering::SeqCst);
            serve_sync(&shared, &mut w, sources, full, push, confirm_deletes).await;
            shared.clients.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The answer to `ping`: what the daemon is and does.
fn pong(shared: &Shared) -> serde_json::Value {
    let (generation, reload_failures) = shared
        .current
        .read()
        .map(|c| (c.generation, c.reload_failures))
        .unwrap_or((0, 0));
    let running: Vec<String> = shared
        .running
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    let scheduled: Vec<String> = shared
        .scheduled
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    json!({
        "type": "pong",
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "config": shared.config_path.display().to_string(),
        "generation": generation,
        "reload_failures": reload_failures,
        "running": running,
        "scheduled": scheduled,
        "stopping": shared.stopping.load(Ordering::SeqCst),
        "activity": shared.activity(),
        "metrics": shared.metrics_addr.map(|a| a.to_string()),
    })
}

/// How often a stream's `page` progress goes to a client: enough for a live bar, and a slow
/// client is not sent one line per page (the channel to it is unbounded).
const SOCKET_PAGE_INTERVAL: Duration = Duration::from_secs(1);

/// Progress for a control-socket client: every event but `page`, which is sent at most once
/// per [`SOCKET_PAGE_INTERVAL`] per stream.
fn socket_progress(tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>) -> Progress {
    let last: Mutex<HashMap<String, Instant>> = Mutex::default();
    Progress::new(move |e| {
        if let ProgressEvent::Page { source, stream, .. } = e {
            let Ok(mut last) = last.lock() else { return };
            let now = Instant::now();
            let key = format!("{source}/{stream}");
            if last
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < SOCKET_PAGE_INTERVAL)
            {
                return;
            }
            last.insert(key, now);
        }
        let _ = tx.send(json!({"type": "progress", "progress": e}));
    })
}

/// The job of a manual sync: its progress and lease waits go to `tx` (the client).
fn spawn_manual_sync(
    shared: &Arc<Shared>,
    sources: Vec<String>,
    full: bool,
    push: bool,
    confirm_deletes: bool,
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) -> tokio::task::JoinHandle<Result<SyncReport, String>> {
    let (ctx, sem) = shared.current();
    let progress = socket_progress(tx.clone());
    let label = if sources.is_empty() {
        "all".to_string()
    } else {
        sources.join(",")
    };
    let stop = shared.stop.clone();
    spawn_job(shared, format!("manual sync of {label}"), None, move |id| {
        let span = tracing::info_span!("job", job = id, source = %label, trigger = "manual");
        Box::pin(
            async move {
                let Ok(_permit) = sem.acquire_owned().await else {
                    return Err("the daemon is stopping".to_string());
                };
                let opts = SyncOptions {
                    sources,
                    full,
                    trigger: "manual".into(),
                    push,
                    progress: Some(progress),
                    confirm_deletes,
                    stop: Some(stop),
                };
                let holder = crate::store::lease::holder_token(&format!("job{id}"));
                let on_wait = |lease: &str, h: Option<&LeaseHolder>| {
                    tracing::info!(
                        lease,
                        holder_pid = h.map(|h| h.pid),
                        "waiting for another sync of this source to finish"
                    );
                    let _ = tx.send(json!({
                        "type": "waiting",
                        "lease": lease,
                        "holder_pid": h.map(|h| h.pid),
                        "since": h.map(|h| h.acquired_at.clone()),
                    }));
                };
                let started = Instant::now();
                let r = sync_with_leases(&ctx, &opts, &holder, on_wait).await;
                if let Ok(report) = &r {
                    metrics::record_report(report, started.elapsed().as_secs_f64());
                }
                let _ = blocking(&ctx, |s| {
                    metrics::update_store_gauges(s);
                    Ok(())
                })
                .await;
                r.map_err(|e| crate::mask::scrub_text(&e.to_string()))
            }
            .instrument(span),
        )
    })
}

/// The last line a manual sync's client reads: its `result`, an `error`, or `interrupted`
/// (with the streams that completed) when the shutdown timeout abandoned it.
fn final_line(
    outcome: Result<Result<SyncReport, String>, tokio::task::JoinError>,
    completed: &[serde_json::Value],
    selected: &[String],
) -> serde_json::Value {
    match outcome {
        Ok(Ok(report)) => {
            let ok =
                report.failed_streams() == 0 && report.push_error.is_none() && !report.interrupted;
            json!({"type": "result", "ok": ok, "interrupted": report.interrupted, "report": report})
        }
        Ok(Err(e)) => json!({"type": "error", "message": e}),
        Err(e) if e.is_cancelled() => {
            let done: Vec<String> = completed
                .iter()
                .filter_map(|c| {
                    Some(format!(
                        "{}/{}",
                        c["source"].as_str()?,
                        c["stream"].as_str()?
                    ))
                })
                .collect();
            let not_completed: Vec<&String> =
                selected.iter().filter(|s| !done.contains(s)).collect();
            json!({
                "type": "interrupted",
                "message": "the daemon stopped before the sync finished (its shutdown timeout ran out); the streams that did not complete resume from their cursors at the next sync",
                "completed": completed,
                "not_completed": not_completed,
            })
        }
        Err(e) => json!({"type": "error", "message": format!("sync task failed: {e}")}),
    }
}

/// A manual sync for a control-socket client: runs it as a job, streams its progress and
/// ends with its `result` (`interrupted` when a stop cut it short) or an `error`; if the
/// daemon's shutdown timeout abandons it, the client hears `interrupted` with the streams
/// that completed.
async fn serve_sync(
    shared: &Arc<Shared>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    sources: Vec<String>,
    full: bool,
    push: bool,
    confirm_deletes: bool,
) {
    if shared.stopping.load(Ordering::SeqCst) {
        let _ = control::write_line(w, &json!({"type": "error", "message": "the daemon is stopping; try again when it is back"})).await;
        return;
    }
    let (ctx, _) = shared.current();
    let selected: Vec<String> = match pipeline::select_sources(&ctx.config, &sources) {
        Ok(s) => s
            .iter()
            .flat_map(|s| s.streams.iter().map(|t| format!("{}/{}", s.name, t.name)))
            .collect(),
        Err(e) => {
            let _ =
                control::write_line(w, &json!({"type": "error", "message": e.to_string()})).await;
            return;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let mut job = spawn_manual_sync(shared, sources, full, push, confirm_deletes, tx);
    // Relay progress until the job ends; note which streams completed.
    let mut client_gone = false;
    let mut completed: Vec<serde_json::Value> = Vec::new();
    let relay = |msg: &serde_json::Value, completed: &mut Vec<serde_json::Value>| {
        let p = &msg["progress"];
        if p["event"] == "stream_finished" {
            completed.push(json!({
                "source": p["source"], "stream": p["stream"], "ok": p["ok"], "records": p["records"],
            }));
        }
    };
    let outcome = loop {
        tokio::select! {
            Some(msg) = rx.recv() => {
                relay(&msg, &mut completed);
                if !client_gone && control::write_line(w, &msg).await.is_err() {
                    client_gone = true;
                }
            }
            done = &mut job => break done,
        }
    };
    while let Ok(msg) = rx.try_recv() {
        relay(&msg, &mut completed);
        if !client_gone && control::write_line(w, &msg).await.is_err() {
            client_gone = true;
        }
    }
    let last = final_line(outcome, &completed, &selected);
    if !client_gone {
        let _ = control::write_line(w, &last).await;
    }
}

/// Whether `path` names a live daemon's socket (for `sync` to decide where to run).
pub async fn daemon_answers(path: &Path) -> bool {
    matches!(control::Client::connect(path).await, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before, the control socket read a request line of any length into memory.
    #[tokio::test]
    async fn a_control_request_line_is_read_up_to_its_cap() {
        let ping = b"{\"type\":\"ping\"}\n{\"type\":\"ping\"}\n".to_vec();
        let mut r = tokio::io::BufReader::new(&ping[..]);
        assert_eq!(
            control_request_line(&mut r).await,
            Some(Ok("{\"type\":\"ping\"}\n".to_string()))
        );
        let long = vec![b'x'; 3 * MAX_REQUEST_LINE as usize];
        let mut r = tokio::io::BufReader::new(&long[..]);
        let e = control_request_line(&mut r).await.unwrap().unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        let mut r = tokio::io::BufReader::new(&b""[..]);
        assert_eq!(control_request_line(&mut r).await, None);
    }
}
