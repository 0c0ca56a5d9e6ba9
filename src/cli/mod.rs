//! The command line: parses arguments, loads config, calls the stages, prints results. Kept
//! thin: anything worth testing lives in the stage modules.

pub mod demo;
pub mod logging;
pub mod security;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::pipeline::{self, Context, SyncOptions};

pub const DEFAULT_CONFIG: &str = "/etc/community-sync/community-sync.toml";

#[derive(Debug, Parser)]
#[command(
    name = "community-sync",
    version,
    about = "Sync agent for smart-community public services: department systems → unified store → platform",
    long_about = None
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
    /// Sync now (all sources, or those named), reconcile, then push.
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
    },
    /// Push pending outbox events to the platform now.
    Push,
    /// Show per-source state, outbox depth and health (exit 1 when unhealthy).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate the config file without syncing.
    Check,
    /// List quarantined records and fields (values masked).
    Rejects {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
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
        Command::Sim { residents, seed } => {
            init_logging(&cli, None);
            let rt = runtime()?;
            rt.block_on(async {
                let opts = crate::sim::SimOptions {
                    seed: *seed,
                    residents: *residents,
                    fixed_ports: true,
                    ..Default::default()
                };
                crate::sim::serve_forever(opts).await.map_err(anyhow::Error::from)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let config = load_config(&cli)?;
            println!(
                "{}: ok ({} sources, {} streams)",
                cli.config.display(),
                config.sources.len(),
                config.sources.iter().map(|s| s.streams.len()).sum::<usize>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            sources,
            full,
            no_push,
            json,
        } => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            rt.block_on(async {
                let ctx = Context::open(config)?;
                let opts = SyncOptions {
                    progress: None,
                    sources: sources.clone(),
                    full: *full,
                    trigger: "manual".into(),
                    push: !no_push,
                };
                let report = pipeline::sync(&ctx, &opts).await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    status::print_sync_report(&report);
                }
                let failed = report.failed_streams() > 0 || report.push_error.is_some();
                Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
            })
        }
        Command::Push => {
            let config = load_config(&cli)?;
            init_logging(&cli, Some(&config));
            let rt = runtime()?;
            rt.block_on(async {
                let ctx = Context::open(config)?;
                let stats = pipeline::push(&ctx).await?;
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
            Ok(if st.healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
        Command::Rejects { source, reason, limit } => {
            let config = load_config(&cli)?;
            let store = crate::store::Store::open_configured(&config)?;
            status::print_rejects(&store, source.as_deref(), reason.as_deref(), *limit)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
