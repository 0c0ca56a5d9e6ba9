//! The command line: parses arguments, loads config, calls the stages, prints results. Kept
//! thin: anything worth testing lives in the stage modules.

pub mod assets;
pub mod backup;
pub mod check;
pub mod demo;
pub mod desk;
pub mod logging;
pub mod matching;
pub mod out;
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
use out::{errln, out, outln};

pub const DEFAULT_CONFIG: &str = "/etc/community-sync/community-sync.toml";

/// Shown at the end of `--help`: what the exit status means, for scripts and systemd.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  everything asked for was done (status: ok)
  1  the command ran but a stream or the push failed, or status found the service unhealthy;
     the output says which source/stream and why; the next run resumes from the cursor
  2  usage, config or setup error (bad arguments, invalid config, unreadable key or secret,
     store cannot be opened or is locked, disk full); nothing was synced; fix what the
     message names and run again
  3  status: degraded (a stream failed, fewer than unhealthy_after_failures times in a row,
     or the last push failed)
  4  sync: cut short by a stop (SIGTERM, Ctrl-C); the streams that completed are listed, the
     others resume from their cursors at the next sync

Errors name what happened, where (source, stream, host:port and URL path, config key, file)
and what to do. Personal data (ID numbers, phones) is always masked in messages and logs;
times and record keys are not personal data and are shown in full.

From a root shell on the service's machine nothing needs exporting: ${CREDENTIALS_DIRECTORY}
in the config means the credentials/ directory beside it outside the service (the files the
unit hands the service), and `sync` finds the daemon on its control socket.";

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
    /// daemon when one answers on the control socket. Exit 1 if a stream or the push failed,
    /// 4 if a stop cut it short (the streams that completed are listed).
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
    /// Show per-stream state (failures toward unhealthy_after_failures), outbox depth and
    /// health: exit 0 ok, 3 degraded, 1 unhealthy.
    Status {
        /// Print the status as JSON (`health`: ok, degraded or unhealthy).
        #[arg(long)]
        json: bool,
    },
    /// Validate the config file, and read the store key and every secret it names, without
    /// syncing; with --connect also reach each source (authenticate, fetch one page of each
    /// stream) and the platform (an HTTP platform's empty batch, a JetStream platform's stream).
    Check {
        /// Also reach each source and the platform over the network.
        #[arg(long)]
        connect: bool,
    },
    /// List quarantined records and fields, newest first (values masked, record keys shown).
    Rejects {
        /// Only this source (a name from the config).
        #[arg(long, value_name = "SOURCE")]
        source: Option<String>,
        /// Only this reason code (id_number.check_digit, phone.invalid, identity.missing, ...).
        #[arg(long, value_name = "CODE")]
        reason: Option<String>,
        /// List at most N rows (0: all); says so when there are more.
        #[arg(long, value_name = "N", default_value_t = 50)]
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
    /// Write the man pages and shell completions into DIR (used by packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory for man/ and completions/.
        dir: PathBuf,
    },
    /// The review queue: what a machine should not decide.
    #[command(subcommand)]
    Review(review::ReviewCmd),
    /// The match model: train it from the store, show its parameters.
    #[command(subcommand)]
    Matching(matching::MatchingCmd),
    /// Why a source record belongs to its resident: candidates, feature scores, thresholds.
    Explain {
        /// The source's name in the config (onecard, volunteer, eldercare, health, ...).
        source: String,
        /// The record's key in that system (as `rejects` and `review show` print it).
        key: String,
    },
    /// Write a new random store key (0600) for [security] key_file.
    Keygen {
        /// Where to write it; it must not exist yet
        /// (/etc/community-sync/credentials/store-key for the service).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Re-encrypt the store, re-key its match keys and its audit chain under a new key, in one
    /// transaction (stop the daemon first).
    RotateKey {
        /// The new key file (make it with `keygen`).
        #[arg(long)]
        new_key: PathBuf,
        /// Rows read at a time (the rotation itself is one transaction).
        #[arg(long, default_value_t = 500)]
        chunk: usize,
    },
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(security::AuditCommand),
    /// Serve the built-in simulator (four department systems and the platform) on
    /// 127.0.0.1:18081-18085, or from --port, until Ctrl-C.
    Sim(demo::SimArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = crate::mask::scrub_text(&format!("{e:#}"));
            errln!("error: {msg}");
            ExitCode::from(2)
        }
    };
    match out::stdout_error() {
        Some(e) => {
            errln!("error: cannot write the output: {e}; it is incomplete");
            ExitCode::from(2)
        }
        None => code,
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
        Command::Sim(args) => {
            init_logging(&cli, None);
            let rt = runtime()?;
            rt.block_on(demo::serve_sim(args))
        }
        Command::GenerateAssets { dir } => {
            for f in assets::generate(dir)? {
                outln!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => security::keygen(out),
        _ => run_configured(cli),
    }
}

/// The commands that read the configuration (and most, the store).
fn run_configured(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Check { connect } => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            Ok(rt.block_on(check::run(&cli.config, &config, *connect)))
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
            rt.block_on(run::push(config))
        }
        Command::Status { json } => status::run(&load_config(&cli)?, *json),
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
        Command::Review(cmd) => {
            let config = load_config(&cli)?;
            review::run(&config, cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Matching(cmd) => {
            let config = load_config(&cli)?;
            matching::run(&config, cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { source, key } => {
            let config = load_config(&cli)?;
            let store = report::open_existing(&config)?;
            out!("{}", review::explain_text(&store, &config, source, key)?);
            Ok(ExitCode::SUCCESS)
        }
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
            let store = report::open_existing(&config)?;
            status::print_rejects(
                &config,
                &store,
                source.as_deref(),
                reason.as_deref(),
                *limit,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(_)
        | Command::Bench(_)
        | Command::City(_)
        | Command::Sim(_)
        | Command::GenerateAssets { .. }
        | Command::Keygen { .. } => {
            anyhow::bail!("internal: a command that needs no configuration reached run_configured")
        }
    }
}
