//! `community-sync demo`: the whole job against the built-in simulator, in one command.
//!
//! Starts the simulator in-process on 127.0.0.1 (ephemeral ports, or five from `--port`),
//! writes a real config for it (from config/community-sync.toml, with the simulator's ports,
//! secret files and a store key), runs sync + reconcile + push, and prints a summary beside
//! the simulator's ground truth, review items included: the population carries the matching
//! hard cases (`sim::hard_cases`) unless `--no-hard-cases`. With `--serve` the simulator keeps
//! serving afterwards and the demo prints the commands to explore with (`review`, `explain`,
//! `report`, `sync`, `run`), with this binary's real path. `community-sync sim` serves the
//! simulator alone.

use crate::cli::out::{errln, outln};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::OptionalExtension as _;
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::{self, Context, SyncOptions, SyncReport};
use crate::sim::{GroundTruth, Sim, SimOptions};

pub const EXAMPLE_CONFIG: &str = include_str!("../../config/community-sync.toml");

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Residents in the simulated district.
    #[arg(long, default_value_t = 20_000)]
    pub residents: usize,
    /// Seed of the simulated population.
    #[arg(long, default_value_t = 20240501)]
    pub seed: u64,
    /// Directory for the demo's config, secrets and store (recreated).
    #[arg(long, default_value = "community-sync-demo")]
    pub dir: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep personal data unencrypted in the demo store (for comparison; the default encrypts).
    #[arg(long)]
    pub no_encrypt: bool,
    /// Make the simulated systems misbehave as real ones do: flaky pages (503), a gateway's
    /// HTML error page with status 200, and "busy" business errors inside HTTP 200, on about
    /// one data request in ten (never three in a row). The result must still equal the
    /// ground truth.
    #[arg(long)]
    pub faults: bool,
    /// Share of data requests that fail with --faults.
    #[arg(long, default_value_t = 0.1, requires = "faults")]
    pub fault_rate: f64,
    /// Keep the simulator serving after the summary (until Ctrl-C or SIGTERM), so that the
    /// printed commands (`sync`, `run`, `review`, `explain`, `report`) can be tried on it.
    #[arg(long)]
    pub serve: bool,
    /// Serve the simulator on PORT and the four ports after it (one-card, volunteer, elder
    /// care, health, platform) instead of free ephemeral ports.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Leave the matching hard cases (homophone and traditional names, old phones, swapped
    /// birth dates, twins, ...) out of the population; with them the review queue has items.
    #[arg(long)]
    pub no_hard_cases: bool,
}

/// `community-sync sim`: the simulator alone, until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Residents in the simulated district.
    #[arg(long, default_value_t = 20_000)]
    pub residents: usize,
    /// Seed of the simulated population: the same seed serves the same records.
    #[arg(long, default_value_t = 20240501)]
    pub seed: u64,
    /// First of five consecutive ports on 127.0.0.1 (one-card, volunteer, elder care, health,
    /// platform); 18081 is what config/community-sync.toml names; 0 picks free ports.
    #[arg(long, value_name = "PORT", default_value_t = crate::sim::DEFAULT_BASE_PORT)]
    pub port: u16,
    /// Leave the matching hard cases out of the population.
    #[arg(long)]
    pub no_hard_cases: bool,
    /// Also write a ready config for these ports into DIR (with the simulator's secrets and a
    /// store key in DIR/credentials, and the store in DIR/store.db).
    #[arg(long, value_name = "DIR")]
    pub write_config: Option<PathBuf>,
    /// Fail this share of data requests the way real systems do (503, a gateway HTML page at
    /// 200, busy answers inside 200), never more than twice in a row per stream.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
}

pub use crate::sim::FAULTS_IN_A_ROW;

/// What the demo found, beside what the simulator knows to be true.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub store: String,
    pub config: String,
    pub seconds: f64,
    /// (source, stream) → records fetched / kept / rejected whole.
    pub records: BTreeMap<String, [u64; 3]>,
    pub rejected_records_by_reason: BTreeMap<String, u64>,
    pub rejected_fields_by_reason: BTreeMap<String, u64>,
    pub persons: u64,
    pub persons_by_systems: BTreeMap<usize, u64>,
    pub events_pushed: u64,
    pub platform_applied: u64,
    /// Faults the simulated systems answered with (`--faults`), absorbed by retries.
    pub faults_injected: u64,
    /// Golden records with a valid ID number, and how many of them have the birth date and
    /// gender that number encodes (GB 11643): all of them, stated or derived.
    pub golden_with_id: u64,
    pub golden_as_id_encodes: u64,
    /// Open review items by `kind:field` (`conflict:birth_date`).
    pub review_items: BTreeMap<String, u64>,
    /// The first open review item: its id, and the source and key of its record (for the
    /// `review show` and `explain` commands the demo suggests).
    pub first_review: Option<(i64, String, String)>,
    pub truth: TruthSummary,
    pub matches_truth: bool,
}

#[derive(Debug, Serialize)]
pub struct TruthSummary {
    pub served: BTreeMap<String, u64>,
    pub accepted: BTreeMap<String, u64>,
    pub rejected_records_by_reason: BTreeMap<String, u64>,
    pub rejected_fields_by_reason: BTreeMap<String, u64>,
    pub persons: u64,
    pub persons_by_systems: BTreeMap<usize, u64>,
    /// Open review items a correct run raises, by `kind:field`.
    pub review_items: BTreeMap<String, u64>,
}

/// Writes a config for a running simulator into `dir` and returns its path. Every path in it
/// is absolute: the config resolves relative key and secret files against its own directory,
/// so `--dir community-sync-demo` written as given would point at
/// `community-sync-demo/community-sync-demo/…`.
pub fn write_sim_config(sim: &Sim, dir: &Path, store: &Path) -> anyhow::Result<PathBuf> {
    let dir = &std::path::absolute(dir)
        .with_context(|| format!("cannot make {} an absolute path", dir.display()))?;
    let store = &std::path::absolute(store)
        .with_context(|| format!("cannot make {} an absolute path", store.display()))?;
    std::fs::create_dir_all(dir.join("credentials"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    set_private(&dir.join("credentials"), 0o700)?;
    let mut text = sim_config_text(sim, store);
    for (file, value) in SIM_SECRETS {
        let path = dir.join("credentials").join(file);
        std::fs::write(&path, value).with_context(|| format!("cannot write {}", path.display()))?;
        set_private(&path, 0o600)?;
        text = text.replace(
            &format!("{{ file = \"${{CREDENTIALS_DIRECTORY}}/{file}\" }}"),
            &format!("{{ file = {:?} }}", path.display().to_string()),
        );
    }
    // The store key: generated once per demo directory, owner-only.
    let key_path = dir.join("credentials").join("store-key");
    if !key_path.exists() {
        crate::crypto::write_new_key_file(&key_path)
            .with_context(|| format!("cannot write {}", key_path.display()))?;
    }
    text = text.replace(
        "\"${CREDENTIALS_DIRECTORY}/store-key\"",
        &format!("{:?}", key_path.display().to_string()),
    );
    let path = dir.join("community-sync.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    set_private(&path, 0o600)?;
    Ok(path)
}

/// The credential files the example config names, with the simulator's (public) values.
pub const SIM_SECRETS: [(&str, &str); 5] = [
    ("onecard", crate::sim::ONECARD_SECRET),
    ("volunteer", crate::sim::VOLUNTEER_SECRET),
    ("eldercare", crate::sim::ELDERCARE_KEY),
    ("health", crate::sim::HEALTH_PASSWORD),
    ("platform", crate::sim::PLATFORM_TOKEN),
];

/// A config's sources and platform, as shipped (the simulator's default ports), pointed at the
/// simulator serving at `urls`.
pub fn point_at(config_text: &str, urls: &crate::sim::SimUrls) -> String {
    config_text
        .replace("http://127.0.0.1:18081", &urls.onecard)
        .replace("http://127.0.0.1:18082", &urls.volunteer)
        .replace("http://127.0.0.1:18083", &urls.eldercare)
        .replace("http://127.0.0.1:18084", &urls.health)
        .replace("http://127.0.0.1:18085/api/v1/events", &urls.platform)
}

/// The example config pointed at a running simulator and a store path, under a header that
/// says what it is for (secret files still under `${CREDENTIALS_DIRECTORY}`).
pub fn sim_config_text(sim: &Sim, store: &Path) -> String {
    let u = &sim.urls;
    let body = EXAMPLE_CONFIG
        .split_once("\ntimezone = ")
        .map(|(head, rest)| {
            // Keep the comment just above `timezone` (it belongs to that key).
            let keep = head
                .rfind("\n\n")
                .map(|i| &head[i + 2..])
                .unwrap_or_default();
            format!("{keep}\ntimezone = {rest}")
        })
        .unwrap_or_else(|| EXAMPLE_CONFIG.to_string());
    let o = &sim.options;
    let again = match o.base_port.filter(|p| *p != 0) {
        Some(p) => format!(
            "#   community-sync sim --port {p} --seed {} --residents {}{}\n# serves the same records on the same ports again.\n",
            o.seed,
            o.residents,
            if o.hard_cases { "" } else { " --no-hard-cases" }
        ),
        None => "# Its ports were free ones picked at start; `community-sync demo --serve` or\n#   community-sync sim --port 0 --write-config DIR\n# give you a simulator that stays up, with its own config.\n".to_string(),
    };
    let header = format!(
        "# community-sync config for the built-in simulator: seed {}, {} residents{}.\n\
         # Written by `community-sync demo` or `community-sync sim --write-config`. It points at\n\
         # that simulator on 127.0.0.1 (base_url of each source, [platform] url), which serves\n\
         # only while the process that started it runs.\n{again}\
         # The secrets and the store key are the files it names (mode 0600). Every option is\n\
         # explained in config/community-sync.toml, which this copy is made from.\n\n",
        o.seed,
        o.residents,
        if o.hard_cases {
            ", with the matching hard cases"
        } else {
            ""
        },
    );
    let body = point_at(&body, u).replace(
        "path = \"/var/lib/community-sync/store.db\"",
        &format!("path = {:?}", store.display().to_string()),
    );
    format!("{header}{body}")
}

fn set_private(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.faults {
        errln!(
            "--faults: about {:.0}% of data requests fail (503, a gateway HTML page at 200, busy answers inside 200)",
            args.fault_rate * 100.0
        );
    }
    let fault_rate = if args.faults { args.fault_rate } else { 0.0 };
    let sim = start_sim(
        args.seed,
        args.residents,
        args.port,
        !args.no_hard_cases,
        fault_rate,
    )
    .await?;
    let display = super::progress::auto_display();
    let summary =
        run_with_options(&sim, &args.dir, !args.no_encrypt, Some(display.progress())).await;
    display.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            sim.shutdown().await;
            return Err(e);
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
        errln!("demo finished in {:.1}s", started.elapsed().as_secs_f64());
    }
    let code = if summary.matches_truth {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if args.serve {
        print_explore(&summary, &sim);
        wait_for_stop().await;
        errln!("stopping the simulator");
    } else if !args.json {
        print_look_around(&summary);
    }
    sim.shutdown().await;
    Ok(code)
}

/// `community-sync sim`: serves the simulator until Ctrl-C or SIGTERM; prints where.
pub async fn serve_sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let sim = start_sim(
        args.seed,
        args.residents,
        Some(args.port),
        !args.no_hard_cases,
        args.fault_rate,
    )
    .await?;
    outln!(
        "# community-sync simulator (seed {}, {} residents)",
        args.seed,
        args.residents
    );
    outln!("#   onecard   {}", sim.urls.onecard);
    outln!("#   volunteer {}", sim.urls.volunteer);
    outln!("#   eldercare {}", sim.urls.eldercare);
    outln!("#   health    {}", sim.urls.health);
    outln!("#   platform  {}", sim.urls.platform);
    if args.fault_rate > 0.0 {
        outln!(
            "#   faults    about {:.0}% of data requests (503, gateway HTML at 200, busy answers)",
            args.fault_rate * 100.0
        );
    }
    if let Some(dir) = &args.write_config {
        let config = write_sim_config(&sim, dir, &dir.join("store.db"))?;
        outln!("# config for it (secrets and store key in its credentials/ directory):");
        outln!("#   {} --config {} sync", self_path(), config.display());
    } else {
        outln!("# secrets (the files the config's ${{CREDENTIALS_DIRECTORY}}/<name> names):");
        for (file, value) in SIM_SECRETS {
            outln!("#   {file:<9} {value}");
        }
        outln!("# or start it with --write-config DIR for a ready config");
    }
    outln!("# serving; Ctrl-C to stop");
    wait_for_stop().await;
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Generates the population and starts the simulator, saying so on stderr.
async fn start_sim(
    seed: u64,
    residents: usize,
    base_port: Option<u16>,
    hard_cases: bool,
    fault_rate: f64,
) -> anyhow::Result<Sim> {
    errln!(
        "starting the simulator: {residents} residents across 4 department systems (seed {seed}{}) …",
        if hard_cases {
            ", with the matching hard cases"
        } else {
            ""
        }
    );
    Sim::start(SimOptions {
        seed,
        residents,
        base_port,
        hard_cases,
        fault_rate,
        ..SimOptions::default()
    })
    .await
    .context("cannot start the simulator")
}

/// Until Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// This binary's path, as the commands to try should name it.
pub fn self_path() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "community-sync".to_string())
}

/// Quotes a path for a shell command line when it needs it.
fn sh(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Commands that read the store the demo left (they work after the simulator is gone).
fn print_look_around(s: &DemoSummary) {
    let cmd = format!("{} --config {}", sh(&self_path()), sh(&s.config));
    outln!();
    outln!("Look around (the store stays; the simulator has stopped, so `sync` would fail):");
    outln!("  {cmd} status");
    outln!("  {cmd} review list");
    outln!("  {cmd} report");
    outln!("  {cmd} rejects --reason id_number.check_digit");
    outln!("Run `demo --serve` to keep the simulator up and sync against it as well.");
}

/// Commands to try while the simulator keeps serving.
fn print_explore(s: &DemoSummary, sim: &Sim) {
    let cmd = format!("{} --config {}", sh(&self_path()), sh(&s.config));
    outln!();
    outln!(
        "The simulator keeps serving on {} … {} until Ctrl-C. In another terminal:",
        sim.urls.onecard,
        sim.urls.platform
    );
    outln!("  {cmd} status");
    outln!("  {cmd} review list");
    if let Some((item, source, key)) = &s.first_review {
        outln!("  {cmd} review show {item}");
        outln!("  {cmd} explain {source} {key}");
    }
    outln!("  {cmd} report --html /tmp/community-sync-report.html");
    outln!("  {cmd} rejects --reason id_number.check_digit");
    outln!("  {cmd} sync --full health");
    outln!("  {cmd} run        # the daemon: scheduled syncs; `sync` is then handed to it");
}

/// Runs the full job against a running simulator with a fresh store in `dir`.
pub async fn run_with(sim: &Sim, dir: &Path) -> anyhow::Result<DemoSummary> {
    run_with_options(sim, dir, true, None).await
}

/// [`run_with`], reporting progress as it goes.
pub async fn run_with_progress(
    sim: &Sim,
    dir: &Path,
    progress: Option<crate::progress::Progress>,
) -> anyhow::Result<DemoSummary> {
    run_with_options(sim, dir, true, progress).await
}

/// [`run_with`], choosing whether the store encrypts personal data, with optional progress.
pub async fn run_with_options(
    sim: &Sim,
    dir: &Path,
    encrypt: bool,
    progress: Option<crate::progress::Progress>,
) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    let store_path = dir.join("store.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", store_path.display()));
        if p.exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("cannot remove old {}", p.display()))?;
        }
    }
    let config_path = write_sim_config(sim, dir, &store_path)?;
    let mut config = Config::load(&config_path)?;
    if !encrypt {
        config.security.encrypt = Some(false);
    }
    let ctx = Context::open(config)?;
    let opts = SyncOptions {
        progress,
        sources: vec![],
        full: false,
        trigger: "demo".into(),
        push: true,
        confirm_deletes: false,
        stop: None,
    };
    let report = pipeline::sync(&ctx, &opts).await?;
    if let Some(e) = &report.push_error {
        anyhow::bail!("push failed: {e}");
    }
    if report.failed_streams() > 0 {
        let failed: Vec<String> = report
            .streams
            .iter()
            .filter(|s| !s.ok)
            .map(|s| {
                format!(
                    "{}/{}: {}",
                    s.source,
                    s.stream,
                    s.error.clone().unwrap_or_default()
                )
            })
            .collect();
        anyhow::bail!("some streams failed:\n  {}", failed.join("\n  "));
    }
    summarize(
        &ctx,
        &report,
        sim,
        started.elapsed().as_secs_f64(),
        &config_path,
    )
}

fn summarize(
    ctx: &Context,
    report: &SyncReport,
    sim: &Sim,
    seconds: f64,
    config_path: &Path,
) -> anyhow::Result<DemoSummary> {
    let store = ctx
        .store
        .lock()
        .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
    let c = store.conn();
    let mut records = BTreeMap::new();
    for s in &report.streams {
        let kept: i64 = c.query_row(
            "SELECT count(*) FROM source_records WHERE source = ?1 AND stream = ?2 AND status = 'ok' AND deleted = 0",
            [&s.source, &s.stream],
            |r| r.get(0),
        )?;
        let rejected: i64 = c.query_row(
            "SELECT count(*) FROM source_records WHERE source = ?1 AND stream = ?2 AND status = 'rejected'",
            [&s.source, &s.stream],
            |r| r.get(0),
        )?;
        records.insert(
            format!("{}/{}", s.source, s.stream),
            [s.fetched, kept as u64, rejected as u64],
        );
    }
    let by_reason = |whole: bool| -> anyhow::Result<BTreeMap<String, u64>> {
        let mut stmt = c.prepare(
            "SELECT reason, count(*) FROM rejects WHERE whole_record = ?1 GROUP BY reason",
        )?;
        let rows = stmt.query_map([whole], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let persons: i64 = c.query_row("SELECT count(*) FROM persons WHERE retired = 0", [], |r| {
        r.get(0)
    })?;
    let persons_by_systems = crate::reconcile::persons_by_systems(&store)?;
    let (golden_with_id, golden_as_id_encodes) = golden_against_id_numbers(&store)?;
    let events_pushed = report.push.map(|p| p.sent).unwrap_or(0);
    let platform = sim.platform();
    let truth = truth_summary(&sim.truth());
    let rejected_records_by_reason = by_reason(true)?;
    let rejected_fields_by_reason = by_reason(false)?;
    let review_items: BTreeMap<String, u64> = {
        let mut stmt = c.prepare(
            "SELECT kind || ':' || COALESCE(field, ''), count(*) FROM review_items
             WHERE state = 'open' GROUP BY 1",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let first_review: Option<(i64, String, String)> = c
        .query_row(
            "SELECT r.id, s.source, s.source_key FROM review_items r
             JOIN source_records s ON s.id = r.record_id
             WHERE r.state = 'open' ORDER BY r.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let accepted_match = records
        .iter()
        .all(|(k, v)| truth.accepted.get(k).copied() == Some(v[1]));
    let matches_truth = accepted_match
        && golden_with_id == golden_as_id_encodes
        && rejected_records_by_reason == truth.rejected_records_by_reason
        && rejected_fields_by_reason == truth.rejected_fields_by_reason
        && persons as u64 == truth.persons
        && persons_by_systems == truth.persons_by_systems
        && review_items == truth.review_items;
    Ok(DemoSummary {
        store: store.path().display().to_string(),
        config: config_path.display().to_string(),
        seconds,
        records,
        rejected_records_by_reason,
        rejected_fields_by_reason,
        persons: persons as u64,
        persons_by_systems,
        events_pushed,
        platform_applied: platform.applications.len() as u64,
        faults_injected: sim.source_chaos().faults_injected(),
        golden_with_id,
        golden_as_id_encodes,
        review_items,
        first_review,
        truth,
        matches_truth,
    })
}

/// Live golden records with an ID number, and those whose birth date and gender are the ones
/// the number encodes.
fn golden_against_id_numbers(store: &crate::store::Store) -> anyhow::Result<(u64, u64)> {
    let codec = store.codec().clone();
    let mut stmt = store
        .conn()
        .prepare("SELECT id_number, birth_date, gender FROM persons WHERE retired = 0")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            codec.open(r.get_ref(0)?)?,
            codec.open(r.get_ref(1)?)?,
            codec.open(r.get_ref(2)?)?,
        ))
    })?;
    let (mut with_id, mut agree) = (0, 0);
    for row in rows {
        let (id, birth, gender) = row?;
        let Some(parsed) = id.and_then(|i| crate::normalize::id_number::normalize(&i).ok()) else {
            continue;
        };
        with_id += 1;
        if birth.as_deref() == Some(parsed.birth_date.to_string().as_str())
            && gender.as_deref() == Some(parsed.gender.code().to_string().as_str())
        {
            agree += 1;
        }
    }
    Ok((with_id, agree))
}

fn truth_summary(t: &GroundTruth) -> TruthSummary {
    let flat = |m: &BTreeMap<(String, String), usize>| {
        m.iter()
            .map(|((s, t), v)| (format!("{s}/{t}"), *v as u64))
            .collect::<BTreeMap<_, _>>()
    };
    let counts = |m: &BTreeMap<String, usize>| {
        m.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect()
    };
    TruthSummary {
        served: flat(&t.served),
        accepted: flat(&t.accepted),
        rejected_records_by_reason: counts(&t.rejected_records),
        rejected_fields_by_reason: counts(&t.rejected_fields),
        persons: t.persons as u64,
        persons_by_systems: t
            .persons_by_systems
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k, *v as u64))
            .collect(),
        review_items: counts(&t.review_items),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗ differs"
    }
}

/// One line per key of either map: the key, what was found, the truth, and ✓ or ✗.
fn found_and_truth(
    prefix: &str,
    width: usize,
    found: &BTreeMap<String, u64>,
    truth: &BTreeMap<String, u64>,
) {
    let keys: std::collections::BTreeSet<&String> = found.keys().chain(truth.keys()).collect();
    for k in keys {
        let f = found.get(k).copied().unwrap_or(0);
        let t = truth.get(k).copied().unwrap_or(0);
        outln!("  {prefix}{k:<width$} {f:>9} {t:>9} {}", mark(f == t));
    }
}

pub fn print_summary(s: &DemoSummary) {
    outln!();
    outln!("community-sync demo — 一库、一平台、四大应用, against the built-in simulator");
    outln!();
    outln!("Records per system                     fetched      kept  rejected   truth(kept)");
    for (k, v) in &s.records {
        let t = s.truth.accepted.get(k).copied().unwrap_or(0);
        outln!(
            "  {:<34} {:>9} {:>9} {:>9} {:>9} {}",
            k,
            v[0],
            v[1],
            v[2],
            t,
            mark(t == v[1])
        );
    }
    outln!();
    outln!("Rejected (quarantined), by reason               found     truth");
    found_and_truth(
        "whole record  ",
        30,
        &s.rejected_records_by_reason,
        &s.truth.rejected_records_by_reason,
    );
    found_and_truth(
        "one field     ",
        30,
        &s.rejected_fields_by_reason,
        &s.truth.rejected_fields_by_reason,
    );
    outln!();
    outln!(
        "Residents (golden records): {}   truth: {} {}",
        s.persons,
        s.truth.persons,
        mark(s.persons == s.truth.persons)
    );
    for k in 1..=4 {
        let f = s.persons_by_systems.get(&k).copied().unwrap_or(0);
        let t = s.truth.persons_by_systems.get(&k).copied().unwrap_or(0);
        outln!(
            "  found in {k} system{:<2}                        {:>9} {:>9} {}",
            if k == 1 { "" } else { "s" },
            f,
            t,
            mark(f == t)
        );
    }
    outln!();
    outln!(
        "Pushed to the platform: {} events; the platform applied {}",
        s.events_pushed,
        s.platform_applied
    );
    outln!(
        "Golden records with an ID number: {}; with the birth date and gender it encodes: {} {}",
        s.golden_with_id,
        s.golden_as_id_encodes,
        mark(s.golden_with_id == s.golden_as_id_encodes)
    );
    if s.faults_injected > 0 {
        outln!(
            "Faults the systems answered with, absorbed by retries: {}",
            s.faults_injected
        );
    }
    outln!();
    outln!();
    outln!("Review queue (what a person must decide)          found     truth");
    if s.review_items.is_empty() && s.truth.review_items.is_empty() {
        outln!("  (no items; the population has no hard cases)");
    }
    found_and_truth("", 44, &s.review_items, &s.truth.review_items);
    outln!();
    outln!("Store left on disk: {}", s.store);
    outln!("Config written to:  {}", s.config);
    outln!();
    outln!(
        "{}",
        if s.matches_truth {
            "Every figure matches the simulator's ground truth."
        } else {
            "Some figures differ from the simulator's ground truth (marked ✗)."
        }
    );
}
