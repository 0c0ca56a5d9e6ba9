//! `community-sync bench`: the figures of BENCHMARKS.md, measured in one run on this machine.
//!
//! Against the built-in simulator (in this process; its CPU competes with ours, as a real
//! system's network stack would not — the parse limit below pays the same cost, so ratios are
//! fair): the initial sync (fetch + normalize + store + reconcile + outbox), the push drain,
//! the parse limit (same pages fetched and parsed, nothing else), the write limit (every row the
//! pipeline wrote, inserted again by a plain prepared-statement loop in one transaction), a
//! no-change cycle, a 1% change cycle, and the peak RSS of a separate `sync` process. The same
//! outbox is also drained into a NATS JetStream stream (a copy of the store taken before the
//! HTTP push, published by the JetStream sink), so the two deliveries compare within one run.

use crate::cli::out::{errln, outln};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::demo;
use crate::config::Config;
use crate::pipeline::{self, Context, SyncOptions};
use crate::sim::{Mutation, Sim, SimOptions};
use crate::source::{FetchPlan, SourceClient};
use crate::store::Store;

/// Source records per simulated resident (the simulator's mix of person and activity records).
const RECORDS_PER_RESIDENT: f64 = 5.85;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Source records in total across the four systems (approximate).
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Also measure a second, larger population's peak RSS (e.g. 4000000); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub rss_records: u64,
    /// Skip the peak-RSS child process runs.
    #[arg(long)]
    pub no_rss: bool,
    /// Working directory (recreated).
    #[arg(long, default_value = "community-sync-bench")]
    pub dir: PathBuf,
    /// Print the figures as JSON too.
    #[arg(long)]
    pub json: bool,
    /// Repeat the whole measurement this many times (a fresh simulator and store each time)
    /// and print each figure's median, minimum and maximum.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// How the store seals personal data: `aes-256-gcm` (the shipped default), `sm4-gcm`, or
    /// `none` (no encryption; to see what sealing costs).
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["sm4-gcm", "aes-256-gcm", "none"])]
    pub cipher: String,
    /// The NATS server (JetStream) the outbox is also drained into, into a stream of the run's
    /// own (created, then deleted).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub jetstream: String,
    /// Skip the JetStream drain.
    #[arg(long)]
    pub no_jetstream: bool,
    /// Measure a SQL stream of `--records` rows in the machine's MariaDB or PostgreSQL
    /// instead (database `test`; tables created and dropped): rows/s and the sync's peak RSS.
    #[arg(long, value_parser = ["mariadb", "postgres"])]
    pub sql: Option<String>,
}

mod sql;

/// `bench --sql FLAVOR`: see [`sql`].
pub async fn run_sql(args: &BenchArgs) -> anyhow::Result<()> {
    let flavor = args.sql.as_deref().unwrap_or("mariadb");
    sql::run(args, flavor).await.map(|_| ())
}

#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub source_records: u64,
    pub residents: usize,
    pub initial_sync_secs: f64,
    pub ingest_secs: f64,
    pub reconcile_secs: f64,
    pub initial_records_per_sec: f64,
    pub parse_limit_secs: f64,
    pub parse_limit_records_per_sec: f64,
    pub rows_written: u64,
    pub write_limit_secs: f64,
    pub write_limit_rows_per_sec: f64,
    pub ratio_to_parse_limit: f64,
    pub ratio_to_write_limit: f64,
    pub push_events: u64,
    pub push_secs: f64,
    pub push_events_per_sec: f64,
    /// The same outbox published into a JetStream stream (None: not measured).
    pub jetstream_events: Option<u64>,
    pub jetstream_secs: Option<f64>,
    pub jetstream_events_per_sec: Option<f64>,
    pub no_change_wall_ms: f64,
    pub no_change_cpu_ms: f64,
    pub no_change_rows_written: u64,
    pub change_1pct_records: u64,
    pub change_1pct_wall_secs: f64,
    pub change_1pct_rows_written: u64,
    pub change_1pct_vs_initial: f64,
    pub peak_rss_mb: Option<f64>,
    pub peak_rss_mb_large: Option<f64>,
    pub large_records: Option<u64>,
}

/// CPU seconds (user + system) this process has used so far, to the microsecond
/// (`/proc/self/stat` counts in 10 ms ticks: too coarse for a cycle of a few dozen ms). The
/// in-process simulator's serving is included, so the figure over-states our own share.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// This process's peak resident set size in MiB (VmHWM).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

fn total_changes(ctx: &Context) -> u64 {
    ctx.store
        .lock()
        .map(|g| g.conn().total_changes())
        .unwrap_or(0)
}

fn opts(push: bool) -> SyncOptions {
    SyncOptions {
        progress: None,
        sources: vec![],
        full: false,
        trigger: "bench".into(),
        push,
        confirm_deletes: false,
        stop: None,
    }
}

/// Every run's figures, and per figure the median, minimum and maximum over the runs.
#[derive(Debug, Serialize)]
pub struct BenchSummary {
    /// The median of each figure (each figure on its own: the medians may come from
    /// different runs).
    #[serde(flatten)]
    pub median: BenchReport,
    pub min: BenchReport,
    pub max: BenchReport,
    pub runs: Vec<BenchReport>,
    pub cipher: String,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<BenchSummary> {
    let residents = ((args.records as f64) / RECORDS_PER_RESIDENT).ceil() as usize;
    fresh_dir(&args.dir)?;
    let runs = args.runs.max(1);
    let mut reports = Vec::with_capacity(runs);
    for i in 1..=runs {
        errln!(
            "bench: run {i}/{runs}: generating {residents} residents (~{} source records) …",
            args.records
        );
        let sim = Sim::start(SimOptions {
            residents,
            ..SimOptions::default()
        })
        .await
        .context("cannot start the simulator")?;
        let report = measure(&sim, residents, args).await;
        sim.shutdown().await;
        let report = report?;
        if runs > 1 {
            print(&report);
        }
        reports.push(report);
    }
    let mut summary = summarize(reports, &args.cipher)?;
    if !args.no_rss && args.rss_records > 0 {
        // The runs' figures first: the large population takes long and must not lose them.
        print_summary(&summary);
        let large = ((args.rss_records as f64) / RECORDS_PER_RESIDENT).ceil() as usize;
        errln!(
            "bench: peak RSS at {large} residents (~{} records) …",
            args.rss_records
        );
        let sim = Sim::start(SimOptions {
            residents: large,
            ..SimOptions::default()
        })
        .await
        .context("cannot start the large simulator")?;
        let dir = args.dir.join("large");
        fresh_dir(&dir)?;
        let rss = child_peak_rss(&sim, &dir, &args.cipher).await;
        sim.shutdown().await;
        let rss = rss?;
        for r in [&mut summary.median, &mut summary.min, &mut summary.max] {
            r.peak_rss_mb_large = Some(rss);
            r.large_records = Some(args.rss_records);
        }
    }
    print_summary(&summary);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(summary)
}

/// Median, minimum and maximum of every figure, field by field (the median of an even count is
/// the upper middle value, so every figure is one that was measured).
fn summarize(runs: Vec<BenchReport>, cipher: &str) -> anyhow::Result<BenchSummary> {
    let values: Vec<serde_json::Value> = runs
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let pick =
        |choose: fn(&[serde_json::Value]) -> serde_json::Value| -> anyhow::Result<BenchReport> {
            let mut out = serde_json::Map::new();
            if let Some(first) = values.first().and_then(|v| v.as_object()) {
                for key in first.keys() {
                    let mut xs: Vec<serde_json::Value> = values
                        .iter()
                        .filter_map(|v| v.get(key).filter(|x| x.is_number()).cloned())
                        .collect();
                    xs.sort_by(|a, b| {
                        let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                        a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
                    });
                    let v = if xs.is_empty() {
                        serde_json::Value::Null
                    } else {
                        choose(&xs)
                    };
                    out.insert(key.clone(), v);
                }
            }
            Ok(serde_json::from_value(serde_json::Value::Object(out))?)
        };
    Ok(BenchSummary {
        median: pick(|xs| xs[xs.len() / 2].clone())?,
        min: pick(|xs| xs[0].clone())?,
        max: pick(|xs| xs[xs.len() - 1].clone())?,
        runs,
        cipher: cipher.to_string(),
    })
}

/// The simulator's config, with the store sealed as `--cipher` asks.
fn write_config(sim: &Sim, dir: &Path, store: &Path, cipher: &str) -> anyhow::Result<PathBuf> {
    let path = demo::write_sim_config(sim, dir, store)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = match cipher {
        "sm4-gcm" => text.replace("algorithm = \"aes-256-gcm\"", "algorithm = \"sm4-gcm\""),
        "none" => text.replace("# encrypt = true", "encrypt = false"),
        _ => text,
    };
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn context_for(sim: &Sim, dir: &Path, cipher: &str) -> anyhow::Result<(Context, PathBuf)> {
    let store_path = dir.join("store.db");
    let config_path = write_config(sim, dir, &store_path, cipher)?;
    let mut config = Config::load(&config_path)?;
    for s in &mut config.sources {
        for t in &mut s.streams {
            if let Some(inc) = t.incremental.as_mut() {
                inc.settle_secs = 0;
            }
        }
    }
    let store = Store::open_configured(&config)?;
    Ok((
        Context {
            config: Arc::new(config),
            store: Arc::new(Mutex::new(store)),
        },
        config_path,
    ))
}

async fn measure(sim: &Sim, residents: usize, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let mut r = BenchReport {
        residents,
        ..BenchReport::default()
    };
    let dir = args.dir.join("main");
    fresh_dir(&dir)?;
    let (ctx, config_path) = context_for(sim, &dir, &args.cipher)?;

    // The parse limit: every page of every stream fetched and parsed, nothing else.
    errln!("bench: parse limit …");
    let t = Instant::now();
    let parsed = parse_limit(&ctx, &config_path).await?;
    r.parse_limit_secs = t.elapsed().as_secs_f64();
    r.source_records = parsed;
    r.parse_limit_records_per_sec = parsed as f64 / r.parse_limit_secs;

    // The initial sync, without push (measured next on its own).
    errln!("bench: initial sync of {parsed} records …");
    let t = Instant::now();
    let ingest = pipeline::ingest_sources(&ctx, &opts(false)).await?;
    r.ingest_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        ingest.failed_streams() == 0,
        "initial sync failed: {:?}",
        ingest.streams
    );
    let t2 = Instant::now();
    pipeline::run_reconcile(&ctx).await?;
    // Checkpoints run beside the writer (store::checkpoint): the sync is over when the database
    // file holds all of it, as the write limit's is.
    checkpoint_wal(&ctx)?;
    r.reconcile_secs = t2.elapsed().as_secs_f64();
    r.initial_sync_secs = t.elapsed().as_secs_f64();
    r.initial_records_per_sec = parsed as f64 / r.initial_sync_secs;

    // The write limit: the same rows into a fresh store by a plain loop.
    errln!("bench: write limit …");
    let (rows, secs) = write_limit(&ctx, &dir.join("write-limit.db"))?;
    r.rows_written = rows;
    r.write_limit_secs = secs;
    r.write_limit_rows_per_sec = rows as f64 / secs;
    r.ratio_to_parse_limit = r.initial_records_per_sec / r.parse_limit_records_per_sec;
    r.ratio_to_write_limit = r.write_limit_secs / r.initial_sync_secs;

    // A copy of the store with the outbox as it is now, for the JetStream drain.
    let js_copy = dir.join("jetstream.db");
    if !args.no_jetstream {
        let _ = std::fs::remove_file(&js_copy);
        ctx.store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
            .conn()
            .execute("VACUUM INTO ?1", [js_copy.display().to_string()])
            .context("cannot copy the store for the JetStream drain")?;
    }

    // Push drain.
    errln!("bench: push drain …");
    let t = Instant::now();
    let pushed = pipeline::push(&ctx).await?;
    checkpoint_wal(&ctx)?;
    r.push_secs = t.elapsed().as_secs_f64();
    r.push_events = pushed.sent;
    r.push_events_per_sec = pushed.sent as f64 / r.push_secs.max(1e-9);
    if !args.no_jetstream {
        eprintln!("bench: JetStream drain ({}) …", args.jetstream);
        let (events, secs) = jetstream_drain(&ctx, &js_copy, &args.jetstream).await?;
        r.jetstream_events = Some(events);
        r.jetstream_secs = Some(secs);
        r.jetstream_events_per_sec = Some(events as f64 / secs.max(1e-9));
        let _ = std::fs::remove_file(&js_copy);
    }

    // A no-change cycle: all four systems polled.
    errln!("bench: no-change cycle …");
    let cpu = cpu_secs();
    let t = Instant::now();
    let report = pipeline::sync(&ctx, &opts(true)).await?;
    checkpoint_wal(&ctx)?;
    r.no_change_wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    r.no_change_cpu_ms = (cpu_secs() - cpu) * 1000.0;
    r.no_change_rows_written = report
        .streams
        .iter()
        .map(|s| s.stats.written())
        .sum::<u64>()
        + report.reconcile.events;

    // A 1% change cycle.
    let n = (residents / 100).max(1);
    errln!("bench: 1% change cycle ({n} residents' records changed) …");
    let changed = change_phones(sim, n);
    let before = total_changes(&ctx);
    let t = Instant::now();
    pipeline::sync(&ctx, &opts(true)).await?;
    checkpoint_wal(&ctx)?;
    r.change_1pct_wall_secs = t.elapsed().as_secs_f64();
    r.change_1pct_records = changed;
    r.change_1pct_rows_written = total_changes(&ctx) - before;
    r.change_1pct_vs_initial = r.change_1pct_wall_secs / r.initial_sync_secs;

    if !args.no_rss {
        errln!("bench: peak RSS of a separate sync process …");
        let rss_dir = args.dir.join("rss");
        fresh_dir(&rss_dir)?;
        r.peak_rss_mb = Some(child_peak_rss(sim, &rss_dir, &args.cipher).await?);
    }
    Ok(r)
}

/// The parse limit: every page of every stream fetched and parsed, nothing else (records).
async fn parse_limit(ctx: &Context, config_path: &Path) -> anyhow::Result<u64> {
    let mut parsed = 0u64;
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let fetches = ctx.config.sources.iter().map(|src| async move {
        let client = SourceClient::with_config_dir(src, config_dir)?;
        let mut n = 0u64;
        for stream in &src.streams {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let plan = FetchPlan::default();
            let fetch = client.fetch_stream(stream, &plan, tx);
            let drain = async {
                let mut k = 0u64;
                while let Some(page) = rx.recv().await {
                    k += page.records.len() as u64;
                }
                k
            };
            let (res, k) = tokio::join!(fetch, drain);
            res?;
            n += k;
        }
        Ok::<u64, crate::source::SourceError>(n)
    });
    for n in futures::future::join_all(fetches).await {
        parsed += n?;
    }
    Ok(parsed)
}

/// Changes the phone of about `n` residents spread over the four systems, dated ten seconds
/// ago: how many changes the simulator took.
fn change_phones(sim: &Sim, n: usize) -> u64 {
    let mut changed = 0u64;
    for source in crate::sim::SOURCES {
        let people = sim.residents_in(source);
        let step = (people.len() / n.max(1)).max(1);
        for resident in people.into_iter().step_by(step).take(n / 4 + 1) {
            if sim
                .mutate_at(
                    Mutation::ChangePhone {
                        source: source.to_string(),
                        resident,
                    },
                    chrono::Utc::now().fixed_offset() - chrono::Duration::seconds(10),
                )
                .is_ok()
            {
                changed += 1;
            }
        }
    }
    changed
}

/// Drains the store copy at `copy` into a JetStream stream of this run's own (one district, the
/// config's batch size): (events published, seconds). The stream is deleted afterwards.
async fn jetstream_drain(ctx: &Context, copy: &Path, url: &str) -> anyhow::Result<(u64, f64)> {
    let name = crate::city::unique_name();
    let target = crate::city::StreamTarget {
        url: url.to_string(),
        stream: format!("BENCH_{}", name.to_uppercase()),
        subject_prefix: format!("bench{name}"),
    };
    let (_client, js) = crate::city::consumer::connect(url).await.context(
        "the JetStream drain needs a NATS server with JetStream (or pass --no-jetstream)",
    )?;
    crate::city::consumer::create_stream(&js, &target, std::time::Duration::from_secs(3600))
        .await?;
    let mut config = (*ctx.config).clone();
    config.store.path = copy.to_path_buf();
    config.platform.kind = crate::config::PlatformKind::Jetstream;
    config.platform.url = url.to_string();
    config.platform.auth = Default::default();
    config.platform.jetstream = Some(toml::from_str(&format!(
        "stream = \"{}\"\ndistrict = \"360102\"\nsubject_prefix = \"{}\"\nduplicate_window_secs = 3600\n",
        target.stream, target.subject_prefix
    ))?);
    config.validate()?;
    let store = Arc::new(Mutex::new(Store::open_configured(&config)?));
    let t = Instant::now();
    let drained = crate::push::drain(&config, &store, None).await;
    let secs = t.elapsed().as_secs_f64();
    let stored = js
        .get_stream(&target.stream)
        .await?
        .info()
        .await?
        .state
        .messages;
    js.delete_stream(&target.stream).await?;
    let stats = drained?;
    anyhow::ensure!(
        stored == stats.sent,
        "the JetStream drain published {} events but the stream holds {stored}",
        stats.sent
    );
    Ok((stats.sent, secs))
}

/// Inserts every row the pipeline wrote (all tables) into a fresh store, with prepared
/// statements in one transaction. Returns (rows, seconds).
fn write_limit(ctx: &Context, path: &Path) -> anyhow::Result<(u64, f64)> {
    let _ = std::fs::remove_file(path);
    let target = Store::open(path)?;
    let src = ctx
        .store
        .lock()
        .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
    let tables: Vec<String> = {
        let mut stmt = src.conn().prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name NOT IN ('runs', 'sync_state', 'push_log', 'stream_fields', 'schema_drift')",
        )?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        names
    };
    // Load everything first, so the timed loop does only the writes.
    let mut data: Vec<(String, usize, Vec<Vec<rusqlite::types::Value>>)> = Vec::new();
    for t in &tables {
        let mut stmt = src.conn().prepare(&format!("SELECT * FROM {t}"))?;
        let cols = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..cols)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        data.push((t.clone(), cols, rows));
    }
    drop(src);
    let mut target = target;
    let conn = target.conn_mut();
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let t = Instant::now();
    let tx = conn.transaction()?;
    let mut rows = 0u64;
    for (table, cols, data_rows) in &data {
        let placeholders = (1..=*cols)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut stmt = tx.prepare(&format!("INSERT INTO {table} VALUES ({placeholders})"))?;
        for row in data_rows {
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
            rows += 1;
        }
    }
    tx.commit()?;
    target.checkpoint_wal()?;
    Ok((rows, t.elapsed().as_secs_f64()))
}

/// Copies what the pipeline's commits left in the WAL into the database file.
fn checkpoint_wal(ctx: &Context) -> anyhow::Result<()> {
    ctx.store
        .lock()
        .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
        .checkpoint_wal()?;
    Ok(())
}

/// Runs `community-sync sync --no-push --json` as a child process against `sim` and returns
/// the child's own peak RSS (it reports VmHWM in its JSON).
async fn child_peak_rss(sim: &Sim, dir: &Path, cipher: &str) -> anyhow::Result<f64> {
    let config_path = write_config(sim, dir, &dir.join("store.db"), cipher)?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let out = tokio::process::Command::new(exe)
        .args(["--config"])
        .arg(&config_path)
        .args(["--log-level", "warn", "sync", "--no-push", "--json"])
        .output()
        .await
        .context("cannot run the sync child process")?;
    anyhow::ensure!(
        out.status.success(),
        "sync child failed: {}",
        crate::mask::scrub_text(&String::from_utf8_lossy(&out.stderr))
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("sync --json output")?;
    v.get("peak_rss_mb")
        .and_then(|x| x.as_f64())
        .ok_or_else(|| anyhow::anyhow!("sync --json did not report peak_rss_mb"))
}

/// The summary: each figure's median with its range over the runs.
pub fn print_summary(s: &BenchSummary) {
    let (m, lo, hi) = (&s.median, &s.min, &s.max);
    let n = s.runs.len();
    outln!();
    outln!(
        "community-sync bench — {} source records, {} residents, store sealed with {}; {n} run(s): median (min … max)",
        m.source_records, m.residents, s.cipher
    );
    type Figure = (&'static str, &'static str, fn(&BenchReport) -> f64, usize);
    let figures: [Figure; 17] = [
        ("initial sync", "s", |r| r.initial_sync_secs, 2),
        (
            "initial sync",
            "records/s",
            |r| r.initial_records_per_sec,
            0,
        ),
        ("  ingest", "s", |r| r.ingest_secs, 2),
        ("  reconcile", "s", |r| r.reconcile_secs, 2),
        (
            "parse limit",
            "records/s",
            |r| r.parse_limit_records_per_sec,
            0,
        ),
        ("  ours / parse limit", "", |r| r.ratio_to_parse_limit, 3),
        ("write limit", "s", |r| r.write_limit_secs, 2),
        ("  rows written", "rows", |r| r.rows_written as f64, 0),
        (
            "  write limit / our time",
            "",
            |r| r.ratio_to_write_limit,
            3,
        ),
        ("push drain", "events/s", |r| r.push_events_per_sec, 0),
        ("  events", "events", |r| r.push_events as f64, 0),
        ("no-change cycle", "ms wall", |r| r.no_change_wall_ms, 1),
        ("no-change cycle", "ms CPU", |r| r.no_change_cpu_ms, 1),
        (
            "  rows written",
            "rows",
            |r| r.no_change_rows_written as f64,
            0,
        ),
        ("1% change cycle", "s", |r| r.change_1pct_wall_secs, 3),
        (
            "  of the initial sync",
            "%",
            |r| r.change_1pct_vs_initial * 100.0,
            2,
        ),
        (
            "  rows written",
            "rows",
            |r| r.change_1pct_rows_written as f64,
            0,
        ),
    ];
    let rss: Figure = (
        "peak RSS (sync child)",
        "MiB",
        |r| r.peak_rss_mb.unwrap_or(0.0),
        1,
    );
    let jetstream: Figure = (
        "JetStream drain (same outbox)",
        "events/s",
        |r| r.jetstream_events_per_sec.unwrap_or(0.0),
        0,
    );
    let shown = figures
        .iter()
        .chain(m.jetstream_events_per_sec.is_some().then_some(&jetstream))
        .chain(m.peak_rss_mb.is_some().then_some(&rss));
    for (name, unit, get, digits) in shown {
        outln!(
            "{name:<30} {:>12.digits$} {unit:<10} ({:.digits$} … {:.digits$})",
            get(m),
            get(lo),
            get(hi)
        );
    }
    if let (Some(mb), Some(n)) = (m.peak_rss_mb_large, m.large_records) {
        outln!("peak RSS (sync child) at {n} records: {mb:.1} MiB (one run)");
    }
}

/// One run's figures.
pub fn print(r: &BenchReport) {
    outln!();
    outln!(
        "community-sync bench — {} source records, {} residents",
        r.source_records,
        r.residents
    );
    outln!(
        "initial sync          {:>8.2} s  {:>10.0} records/s   (ingest {:.2} s + reconcile {:.2} s)",
        r.initial_sync_secs, r.initial_records_per_sec, r.ingest_secs, r.reconcile_secs
    );
    outln!(
        "parse limit           {:>8.2} s  {:>10.0} records/s   ours/limit = {:.2}",
        r.parse_limit_secs,
        r.parse_limit_records_per_sec,
        r.ratio_to_parse_limit
    );
    outln!(
        "write limit           {:>8.2} s  {:>10.0} rows/s      ({} rows)   limit time / our time = {:.2}",
        r.write_limit_secs, r.write_limit_rows_per_sec, r.rows_written, r.ratio_to_write_limit
    );
    outln!(
        "push drain            {:>8.2} s  {:>10.0} events/s    ({} events)",
        r.push_secs,
        r.push_events_per_sec,
        r.push_events
    );
    if let (Some(secs), Some(rate), Some(n)) = (
        r.jetstream_secs,
        r.jetstream_events_per_sec,
        r.jetstream_events,
    ) {
        outln!("JetStream drain       {secs:>8.2} s  {rate:>10.0} events/s    ({n} events, one stream on one NATS server)");
    }
    outln!(
        "no-change cycle       {:>8.1} ms wall, {:.1} ms CPU (this process, simulator included), {} rows written",
        r.no_change_wall_ms, r.no_change_cpu_ms, r.no_change_rows_written
    );
    outln!(
        "1% change cycle       {:>8.2} s  ({} records changed, {} rows written) = {:.2}% of the initial sync",
        r.change_1pct_wall_secs,
        r.change_1pct_records,
        r.change_1pct_rows_written,
        r.change_1pct_vs_initial * 100.0
    );
    if let Some(m) = r.peak_rss_mb {
        outln!(
            "peak RSS (sync child)  {m:>7.1} MiB at {} records",
            r.source_records
        );
    }
    if let (Some(m), Some(n)) = (r.peak_rss_mb_large, r.large_records) {
        outln!("peak RSS (sync child)  {m:>7.1} MiB at {n} records");
    }
}
