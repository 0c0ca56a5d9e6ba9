//! `run` (the daemon) and `sync` (handed to the running daemon over its control socket when
//! one answers, else run in this process under the same store leases).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::daemon::{self, control};
use crate::pipeline::{Context, SyncOptions};
use crate::progress::ProgressEvent;

/// `community-sync run`: the daemon, until SIGTERM/SIGINT.
pub async fn run_daemon(config_path: PathBuf, config: Config) -> anyhow::Result<ExitCode> {
    daemon::run(config_path, config).await?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `sync`.
#[derive(Debug, Clone)]
pub struct SyncArgs {
    pub sources: Vec<String>,
    pub full: bool,
    pub no_push: bool,
    pub json: bool,
    /// Apply deletions held back by `max_delete` (named sources only).
    pub confirm_deletes: bool,
}

/// `community-sync sync`: in the daemon if one answers on the control socket, else here.
pub async fn sync(config: Config, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let socket = control::socket_path(&config);
    match control::Client::connect(&socket).await {
        Ok(Some(client)) => sync_in_daemon(client, &socket, args).await,
        Ok(None) => sync_here(config, args).await,
        Err(e) => {
            tracing::warn!("{e}; syncing in this process");
            sync_here(config, args).await
        }
    }
}

async fn sync_in_daemon(
    mut client: control::Client,
    socket: &std::path::Path,
    args: &SyncArgs,
) -> anyhow::Result<ExitCode> {
    eprintln!(
        "handing the sync to the running daemon ({})",
        socket.display()
    );
    let req = control::Request::Sync {
        sources: args.sources.clone(),
        full: args.full,
        push: !args.no_push,
        confirm_deletes: args.confirm_deletes,
    };
    let show = !args.json || std::io::stderr().is_terminal();
    let last = client
        .request(&req, |line| {
            if show {
                if let Some(text) = describe_line(line) {
                    eprintln!("{text}");
                }
            }
        })
        .await?;
    match last.get("type").and_then(|t| t.as_str()) {
        Some("result") => {
            let ok = last.get("ok").and_then(|v| v.as_bool()).unwrap_or(false);
            let report = last.get("report").cloned().unwrap_or_default();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report_value(&report);
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        _ => {
            let msg = last
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("unknown error");
            anyhow::bail!(
                "the daemon could not sync: {}",
                crate::mask::scrub_text(msg)
            )
        }
    }
}

async fn sync_here(config: Config, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let ctx = open_context(config)?;
    // Bars on a terminal, periodic plain lines elsewhere (journald, pipes).
    let progress = Some(super::progress::auto());
    let opts = SyncOptions {
        progress,
        sources: args.sources.clone(),
        full: args.full,
        trigger: "manual".into(),
        push: !args.no_push,
        confirm_deletes: args.confirm_deletes,
    };
    let holder = crate::store::lease::holder_token("cli");
    let span = tracing::info_span!("job", source = %if args.sources.is_empty() { "all".to_string() } else { args.sources.join(",") }, trigger = "manual");
    let report = tracing::Instrument::instrument(
        daemon::sync_with_leases(&ctx, &opts, &holder, |lease, h| {
            eprintln!(
                "waiting: {lease} is being synced by process {} since {}",
                h.map(|h| h.pid.to_string()).unwrap_or_else(|| "?".into()),
                h.map(|h| h.acquired_at.as_str()).unwrap_or("?")
            );
        }),
        span,
    )
    .await
    .context("sync failed")?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_mb"] = serde_json::json!(crate::bench::peak_rss_mb());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        super::status::print_sync_report(&report);
    }
    let failed = report.failed_streams() > 0 || report.push_error.is_some();
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Opens the store for an in-process sync. Runs left `running` are marked interrupted only
/// for sources no other process holds a lease on: otherwise they may be that process's live runs.
fn open_context(config: Config) -> anyhow::Result<Context> {
    let store = crate::store::Store::open_configured(&config)?;
    store.mark_interrupted_unleased_runs()?;
    Ok(Context {
        config: std::sync::Arc::new(config),
        store: std::sync::Arc::new(std::sync::Mutex::new(store)),
    })
}

fn describe_event(e: &ProgressEvent) -> Option<String> {
    Some(match e {
        ProgressEvent::StreamStarted {
            source,
            stream,
            run_id,
        } => format!("{source}/{stream}: started (run {run_id})"),
        ProgressEvent::Page {
            source,
            stream,
            pages,
            records,
            total,
        } => match total {
            Some(t) => format!("{source}/{stream}: {pages} pages, {records}/{t} records"),
            None => format!("{source}/{stream}: {pages} pages, {records} records"),
        },
        ProgressEvent::StreamFinished {
            source,
            stream,
            ok,
            records,
            error,
        } => {
            if *ok {
                format!("{source}/{stream}: done, {records} records")
            } else {
                format!(
                    "{source}/{stream}: FAILED: {}",
                    error.as_deref().unwrap_or("?")
                )
            }
        }
        ProgressEvent::Reconciled { records, events } => {
            format!("reconciled {records} records, {events} events")
        }
        ProgressEvent::Pushed { sent, dead } => {
            format!("pushed {sent} events ({dead} dead letters)")
        }
    })
}

/// One streamed line from the daemon as a terminal line.
fn describe_line(line: &serde_json::Value) -> Option<String> {
    match line.get("type").and_then(|t| t.as_str())? {
        "progress" => {
            let p = line.get("progress")?;
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
            let n = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let e = match p.get("event").and_then(|v| v.as_str())? {
                "stream_started" => ProgressEvent::StreamStarted {
                    source: s("source"),
                    stream: s("stream"),
                    run_id: p.get("run_id").and_then(|v| v.as_i64()).unwrap_or(0),
                },
                "page" => ProgressEvent::Page {
                    source: s("source"),
                    stream: s("stream"),
                    pages: n("pages"),
                    records: n("records"),
                    total: p.get("total").and_then(|v| v.as_u64()),
                },
                "stream_finished" => ProgressEvent::StreamFinished {
                    source: s("source"),
                    stream: s("stream"),
                    ok: p.get("ok").and_then(|v| v.as_bool()).unwrap_or(false),
                    records: n("records"),
                    error: p.get("error").and_then(|v| v.as_str()).map(String::from),
                },
                "reconciled" => ProgressEvent::Reconciled {
                    records: n("records"),
                    events: n("events"),
                },
                "pushed" => ProgressEvent::Pushed {
                    sent: n("sent"),
                    dead: n("dead"),
                },
                _ => return None,
            };
            describe_event(&e)
        }
        "waiting" => Some(format!(
            "waiting: {} is being synced by process {}",
            line.get("lease").and_then(|v| v.as_str()).unwrap_or("?"),
            line.get("holder_pid")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        )),
        _ => None,
    }
}

/// The sync summary table, from the daemon's JSON report.
fn print_report_value(r: &serde_json::Value) {
    let empty = Vec::new();
    let streams = r
        .get("streams")
        .and_then(|s| s.as_array())
        .unwrap_or(&empty);
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
    for s in streams {
        let t = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let n = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let st = |k: &str| {
            s.get("stats")
                .and_then(|x| x.get(k))
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
        };
        let ok = s.get("ok").and_then(|v| v.as_bool()).unwrap_or(false);
        println!(
            "{:<10} {:<16} {:<6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
            t("source"),
            t("stream"),
            if ok { "ok" } else { "FAILED" },
            n("pages"),
            n("fetched"),
            st("inserted"),
            st("updated"),
            st("unchanged"),
            st("rejected"),
            st("deleted")
        );
        if let Some(e) = s.get("error").and_then(|v| v.as_str()) {
            println!("           └ {}", crate::mask::scrub_text(e));
        }
    }
    if let Some(rc) = r.get("reconcile") {
        let n = |k: &str| rc.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        println!(
            "reconcile: {} records, {} residents created, {} changed, {} retired, {} domain rows changed, {} events",
            n("records"),
            n("persons_created"),
            n("persons_changed"),
            n("persons_retired"),
            n("domain_changed"),
            n("events")
        );
    }
    if let Some(p) = r.get("push").filter(|p| !p.is_null()) {
        let n = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        println!(
            "push: {} events sent in {} batches, {} dead letters",
            n("sent"),
            n("batches"),
            n("dead")
        );
    }
    if let Some(e) = r.get("push_error").and_then(|v| v.as_str()) {
        println!("push FAILED: {}", crate::mask::scrub_text(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streamed_progress_lines_read_as_terminal_lines() {
        let line = json!({"type": "progress", "progress": {"event": "page", "source": "health", "stream": "patients", "pages": 2, "records": 400, "total": 900}});
        assert_eq!(
            describe_line(&line).as_deref(),
            Some("health/patients: 2 pages, 400/900 records")
        );
        let line = json!({"type": "waiting", "lease": "source:health", "holder_pid": 42});
        assert_eq!(
            describe_line(&line).as_deref(),
            Some("waiting: source:health is being synced by process 42")
        );
        assert_eq!(describe_line(&json!({"type": "result"})), None);
    }
}
