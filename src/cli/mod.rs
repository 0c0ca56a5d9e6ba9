//! The command line: parses arguments, loads config, calls the stages, prints results. Kept
//! thin: anything worth testing lives in the stage modules.

pub mod assets;
pub mod backup;
pub mod demo;
pub mod desk;
pub mod logging;
pub mod progress;
pub mod report;
pub mod review;
pub mod run;
pub mod security;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::pipeline::{self, Context};

pub const DEFAULT_CONFIG: &str = "/etc/community-sync/community-sync.toml";

/// Shown at the end of `--help`: what the exit status means, for scripts and systemd.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  everything asked for was done (status: healthy)
  1  the command ran but a stream or the push failed, or status found the service unhealthy;
     the output says which source/stream and why; the next run resumes from the cursor
  2  usage, config or setup error (bad arguments, invalid config, unreadable secret,
     store cannot be opened or is locked, disk full); nothing was synced; fix what the
     message names and run again

Errors name what happened, where (source, stream, URL path, config key, file) and what to do.
Personal data (ID numbers, phones) is always masked in messages and logs.";

#[derive(Debug, Parser)]
#[command(
    name = "community-sync",
    version,
    about = "Sync agent for smart-community public services: department systems → unified store → platform",
    long_about = None,
    after_long_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "COMMUNITY_SYNC_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log format: auto (terminal or journald), text, json.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<logging::LogFormat>,
    /// Log level (overrides the config; RUST_LOG overrides both).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the full job against the built-in simulator and print a summary.
    Demo(demo::DemoArgs),
    /// Run as a service: scheduled syncs, control socket, signals, systemd notify.
    Run,
    /// Sync now (all sources, or those named), reconcile, then push; handed to the running
    /// daemon when one answers on the control socket.
    Sync {
        /// Source names (default: all enabled sources).
        sources: Vec<String>,
        /// Ignore cursors and re-read everything.
        #[arg(long)]
        full: bool,
        /// Do not push to the platform afterwards.
        #[arg(long)]
        no_push: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Apply the deletions a full refresh held back because they exceeded the stream's
        /// max_delete (`status` lists them). Only with source names: confirm one system at a
        /// time after checking it answered everything.
        #[arg(long)]
        confirm_deletes: bool,
    },
    /// Push pending outbox events to the platform now.
    Push,
    /// Show per-source state, outbox depth and health (exit 1 when unhealthy).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate the config file without syncing; with --connect also reach each source,
    /// authenticate and fetch one page of each stream, and check a JetStream platform's stream.
    Check {
        #[arg(long)]
        connect: bool,
    },
    /// List quarantined records and fields (values masked).
    Rejects {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Measure throughput, limits, steady-state cost and memory against the simulator.
    Bench(crate::bench::BenchArgs),
    /// A city on one machine: N district agents (this program, one process and store each)
    /// publish into one NATS JetStream stream; the stream is then checked against their stores.
    City(crate::city::CityArgs),
    /// Data-quality report: records, quarantine with masked examples, freshness, overlap, review, push.
    Report(report::ReportArgs),
    /// Copy the store to FILE, consistently, even while a sync or the daemon runs.
    Backup(backup::BackupArgs),
    /// Write the man page and shell completions into DIR (used by packaging).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
    /// The review queue: what a machine should not decide.
    #[command(subcommand)]
    Review(review::ReviewCmd),
    /// Why a source record belongs to its resident: candidates, feature scores, thresholds.
    Explain { source: String, key: String },
    /// Write a new random store key (0600) for [security] key_file.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-encrypt the store (and re-key its match keys) under a new key, online.
    RotateKey {
        /// The new key file (make it with `keygen`).
        #[arg(long)]
        new_key: PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        chunk: usize,
    },
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(security::AuditCommand),
    /// Serve the built-in simulator on 127.0.0.1:18081-18085 until Ctrl-C.
    Sim {
        #[arg(long, default_value_t = 20_000)]
        residents: usize,
        #[arg(long, default_value_t = 20240501)]
        seed: u64,
        /// Fail this share of data requests the way real systems do (503, a gateway HTML
        /// page at 200, busy answers inside 200), never more than twice in a row per stream.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = crate::mask::scrub_text(&format!("{e:#}"));
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(&cli.config)?)
}

fn init_logging(cli: &Cli, config: Option<&Config>) {
    let level = cli
        .log_level
        .clone()
        .or_else(|| config.map(|c| c.log.level.clone()))
        .unwrap_or_else(|| "info".into());
    let format = cli
        .log_format
        .or_else(|| config.map(|c| logging::parse_format(&c.log.format)))
        .unwrap_or(logging::LogFormat::Auto);
    logging::init(&level, format);
}

/// Reaches every enabled source: authenticate and fetch one page per stream. Prints one line
/// per stream; true when all succeeded.
async fn check_connect(config: &Config) -> bool {
    let dir = config.path.parent().unwrap_or(std::path::Path::new("."));
    let tz = config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let mut all_ok = true;
    for src in config.sources.iter().filter(|s| s.enabled) {
        let reader = match crate::source::Source::open(src, dir, tz) {
            Ok(c) => c,
            Err(e) => {
                all_ok = false;
                println!(
                    "{:<10} {:<16} FAILED  {}",
                    src.name,
                    "*",
                    crate::mask::scrub_text(&e.to_string())
                );
                continue;
            }
        };
        for stream in &src.streams {
            match reader.probe(stream).await {
                Ok(line) => println!("{:<10} {:<16} ok      {line}", src.name, stream.name),
                Err(e) => {
                    all_ok = false;
                    println!(
                        "{:<10} {:<16} FAILED  {}",
                        src.name,
                        stream.name,
                        crate::mask::scrub_text(&e.to_string())
                    );
                }
            }
        }
    }
    if config.platform.kind == crate::config::PlatformKind::Jetstream {
        // The JetStream platform: the stream exists (or is created as configured), listens on
        // this district's subjects with a long enough duplicate window, and takes a publish.
        match crate::push::JetStreamSink::probe(config).await {
            Ok(what) => println!("{:<10} {:<16} ok      {what}", "platform", "jetstream"),
            Err(e) => {
                all_ok = false;
                println!(
                    "{:<10} {:<16} FAILED  {}",
                    "platform",
                    "jetstream",
                    crate::mask::scrub_text(&e.to_string())
                );
            }
        }
    }
    all_ok
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => {
            init_logging(&cli, None);
            let rt = runtime()?;
            rt.block_on(demo::run(args))
        }
        Command::Bench(args) => {
            init_logging(&cli, None);
            let rt = runtime()?;
            if args.sql.is_some() {
                rt.block_on(crate::bench::run_sql(args))?;
            } else {
                rt.block_on(crate::bench::run(args))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::City(args) => {
            init_logging(&cli, None);
            let rt = runtime()?;
            rt.block_on(crate::city::run_cli(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            residents,
            seed,
            fault_rate,
        } => {
            init_logging(&cli, None);
            let rt = runtime()?;
            rt.block_on(async {
                let opts = crate::sim::SimOptions {
                    seed: *seed,
                    residents: *residents,
                    fixed_ports: true,
                    fault_rate: *fault_rate,
                    ..Default::default()
                };
                crate::sim::serve_forever(opts)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { connect } => {
            let config = load_config(&cli)?;
            println!(
                "{}: ok ({} sources, {} streams)",
                cli.config.display(),
                config.sources.len(),
                config
                    .sources
                    .iter()
                    .map(|s| s.streams.len())
                    .sum::<usize>()
            );
            if !connect {
                return Ok(ExitCode::SUCCESS);
            }
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            let all_ok = rt.block_on(check_connect(&config));
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            let code = rt.block_on(run::run_daemon(cli.config.clone(), config));
            // Blocking store work abandoned at the shutdown timeout must not hold the exit.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            code
        }
        Command::Sync {
            sources,
            full,
            no_push,
            json,
            confirm_deletes,
        } => {
            if *confirm_deletes && sources.is_empty() {
                anyhow::bail!(
                    "--confirm-deletes needs the source names: confirm one system at a time after checking it answered everything, e.g. `community-sync sync onecard --full --confirm-deletes` (`community-sync status` lists the held deletions)"
                );
            }
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            let args = run::SyncArgs {
                sources: sources.clone(),
                full: *full,
                no_push: *no_push,
                json: *json,
                confirm_deletes: *confirm_deletes,
            };
            rt.block_on(run::sync(config, &args))
        }
        Command::Push => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            rt.block_on(async {
                let ctx = Context::open(config)?;
                let stats = match pipeline::push(&ctx).await {
                    Ok(s) => s,
                    Err(e) => {
                        // The platform (not the set-up) failed: exit 1, as documented.
                        eprintln!("error: {}", crate::mask::scrub_text(&e.to_string()));
                        eprintln!("the events stay in the outbox and are sent by the next push");
                        return Ok(ExitCode::from(1));
                    }
                };
                println!(
                    "pushed {} events in {} batches ({} dead letters, {} superseded)",
                    stats.sent, stats.batches, stats.dead, stats.superseded
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Status { json } => {
            let config = load_config(&cli)?;
            let store = crate::store::Store::open_configured(&config)?;
            let st = status::collect(&config, &store)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                status::print(&st);
            }
            Ok(if st.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Report(args) => {
            let config = load_config(&cli)?;
            report::run(&config, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            let config = load_config(&cli)?;
            backup::run(&config, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GenerateAssets { dir } => {
            for f in assets::generate(dir)? {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Review(cmd) => {
            let config = load_config(&cli)?;
            review::run(&config, cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { source, key } => {
            let config = load_config(&cli)?;
            let store = crate::store::Store::open_configured(&config)?;
            print!("{}", review::explain_text(&store, &config, source, key)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => security::keygen(out),
        Command::RotateKey { new_key, chunk } => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            security::rotate_key(&config, new_key, *chunk)
        }
        Command::Audit(cmd) => {
            let config = load_config(&cli)?;
            security::audit(&config, cmd)
        }
        Command::Rejects {
            source,
            reason,
            limit,
        } => {
            let config = load_config(&cli)?;
            let store = crate::store::Store::open_configured(&config)?;
            status::print_rejects(&store, source.as_deref(), reason.as_deref(), *limit)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
