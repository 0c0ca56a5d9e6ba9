//! `run` (the daemon) and `sync` (handed to the running daemon over its control socket when
//! one answers, else run in this process under the same store leases).

use crate::cli::out::{errln, outln};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::daemon::{self, control};
use crate::pipeline::{Context, Stop, SyncOptions, SyncReport};
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

/// Exit code of a sync that a stop cut short (the daemon, or this process, got SIGTERM or
/// Ctrl-C): the streams under way finished, no other started, reconcile and push were left
/// to the next sync; what did not complete resumes from its cursor then. The output lists
/// the streams that completed.
pub const EXIT_INTERRUPTED: u8 = 4;

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
    errln!(
        "handing the sync to the running daemon ({})",
        socket.display()
    );
    let req = control::Request::Sync {
        sources: args.sources.clone(),
        full: args.full,
        push: !args.no_push,
        confirm_deletes: args.confirm_deletes,
    };
    // The daemon's events shown here as a local sync shows its own: bars on a terminal, one
    // line per stream every few seconds in a pipe or a file.
    let display =
        (!args.json || std::io::stderr().is_terminal()).then(super::progress::auto_display);
    let progress = display.as_ref().map(|d| d.progress());
    let last = client
        .request(&req, |line| {
            match line.get("type").and_then(|t| t.as_str()) {
                Some("progress") => {
                    let event = line
                        .get("progress")
                        .cloned()
                        .and_then(|p| serde_json::from_value::<ProgressEvent>(p).ok());
                    if let (Some(p), Some(e)) = (&progress, event) {
                        p.emit(e);
                    }
                }
                Some("waiting") => errln!("{}", waiting_line(line)),
                _ => {}
            }
        })
        .await;
    if let Some(d) = display {
        d.finish();
    }
    let last = last?;
    match last.get("type").and_then(|t| t.as_str()) {
        Some("result") => {
            let ok = last.get("ok").and_then(|v| v.as_bool()).unwrap_or(false);
            let interrupted = last
                .get("interrupted")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let report = last.get("report").cloned().unwrap_or_default();
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report_value(&report);
            }
            if interrupted {
                let completed = completed_of_value(report.get("streams"));
                let not_started = strings(report.get("not_started"));
                print_interrupted(&completed, &not_started, "the daemon is stopping (SIGTERM)");
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some("interrupted") => {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&last)?);
            }
            let completed = completed_of_value(last.get("completed"));
            let not_completed = strings(last.get("not_completed"));
            print_interrupted(
                &completed,
                &not_completed,
                "the daemon stopped before the sync finished (its shutdown timeout ran out)",
            );
            Ok(ExitCode::from(EXIT_INTERRUPTED))
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

/// (stream, ok, records) of every stream that ran to its end.
fn completed_of(r: &SyncReport) -> Vec<(String, bool, u64)> {
    r.streams
        .iter()
        .map(|s| (format!("{}/{}", s.source, s.stream), s.ok, s.fetched))
        .collect()
}

/// (stream, ok, records) of a JSON list of streams (`{"source","stream","ok","records"}`, or
/// a report's `streams` with `fetched`).
fn completed_of_value(list: Option<&serde_json::Value>) -> Vec<(String, bool, u64)> {
    list.and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        format!(
                            "{}/{}",
                            c["source"].as_str().unwrap_or("?"),
                            c["stream"].as_str().unwrap_or("?")
                        ),
                        c["ok"].as_bool().unwrap_or(false),
                        c["records"]
                            .as_u64()
                            .or_else(|| c["fetched"].as_u64())
                            .unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(list: Option<&serde_json::Value>) -> Vec<String> {
    list.and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What a sync cut short did and did not do.
fn print_interrupted(completed: &[(String, bool, u64)], not_completed: &[String], why: &str) {
    outln!("sync cut short: {why}");
    if completed.is_empty() {
        outln!("  completed: none");
    }
    for (name, ok, records) in completed {
        outln!(
            "  completed: {name} ({}, {records} records)",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    for name in not_completed {
        outln!("  not completed: {name} (resumes from its cursor at the next sync)");
    }
    outln!("  reconcile and push: left to the next sync (the records fetched are kept)");
}

/// "waiting: source:health is being synced by process 42"
fn waiting_line(line: &serde_json::Value) -> String {
    format!(
        "waiting: {} is being synced by process {}",
        line.get("lease").and_then(|v| v.as_str()).unwrap_or("?"),
        line.get("holder_pid")
            .filter(|v| !v.is_null())
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    )
}

async fn sync_here(config: Config, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let ctx = open_context(config)?;
    // Bars on a terminal, periodic plain lines elsewhere (journald, pipes).
    let display = super::progress::auto_display();
    let stop = Stop::new();
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let opts = SyncOptions {
        progress: Some(display.progress()),
        sources: args.sources.clone(),
        full: args.full,
        trigger: "manual".into(),
        push: !args.no_push,
        confirm_deletes: args.confirm_deletes,
        stop: Some(stop),
    };
    let holder = crate::store::lease::holder_token("cli");
    let span = tracing::info_span!("job", source = %if args.sources.is_empty() { "all".to_string() } else { args.sources.join(",") }, trigger = "manual");
    let report = tracing::Instrument::instrument(
        daemon::sync_with_leases(&ctx, &opts, &holder, |lease, h| {
            errln!(
                "waiting: {lease} is being synced by process {} since {}",
                h.map(|h| h.pid.to_string()).unwrap_or_else(|| "?".into()),
                h.map(|h| h.acquired_at.as_str()).unwrap_or("?")
            );
        }),
        span,
    )
    .await;
    signals.abort();
    display.finish();
    let report = report.context("sync failed")?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_mb"] = serde_json::json!(crate::bench::peak_rss_mb());
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        super::status::print_sync_report(&report);
    }
    if report.interrupted {
        if !args.json {
            print_interrupted(
                &completed_of(&report),
                &report.not_started,
                "stopped by a signal",
            );
        }
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let failed = report.failed_streams() > 0 || report.push_error.is_some();
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An in-process sync and Ctrl-C / SIGTERM: the first lets the streams under way finish and
/// starts no other; the second ends the process at once (what it wrote is kept; an
/// interrupted run resumes from its cursor).
async fn stop_on_signals(stop: Stop) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n == 0 {
            stop.raise();
            errln!("stopping: the streams under way finish, no other starts (press Ctrl-C again to stop at once)");
        } else {
            errln!("stopped at once; the interrupted runs resume from their cursors");
            std::process::exit(130);
        }
    }
}

/// `community-sync push`: drains the outbox now, under the push lease (so it never overlaps
/// the daemon's scheduled push); exit 1 when the platform failed.
pub async fn push(config: Config) -> anyhow::Result<ExitCode> {
    if !config.store.path.exists() {
        // Nothing to push, and no store to create here.
        super::report::open_existing(&config)?;
    }
    let ctx = open_context(config)?;
    let holder = crate::store::lease::holder_token("cli-push");
    let _lease = daemon::lease::acquire(
        ctx.store.clone(),
        &[daemon::PUSH_LEASE.to_string()],
        &holder,
        |_, h| {
            errln!(
                "waiting: another push (process {}) is draining the outbox",
                h.map(|h| h.pid.to_string()).unwrap_or_else(|| "?".into())
            )
        },
    )
    .await?;
    match crate::pipeline::push(&ctx).await {
        Ok(stats) => {
            outln!(
                "pushed {} events in {} batches ({} dead letters, {} superseded)",
                stats.sent,
                stats.batches,
                stats.dead,
                stats.superseded
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (crate::push::PushError::Setup(_) | crate::push::PushError::Store(_))) => {
            Err(e.into())
        }
        Err(e) => {
            // The platform (not the set-up) failed: exit 1, as documented.
            errln!("error: {}", crate::mask::scrub_text(&e.to_string()));
            errln!("the events stay in the outbox and are sent by the next push");
            Ok(ExitCode::from(1))
        }
    }
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

/// The sync summary table, from the daemon's JSON report.
fn print_report_value(r: &serde_json::Value) {
    let empty = Vec::new();
    let streams = r
        .get("streams")
        .and_then(|s| s.as_array())
        .unwrap_or(&empty);
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
        outln!(
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
            outln!("           └ {}", crate::mask::scrub_text(e));
        }
    }
    if let Some(rc) = r.get("reconcile") {
        let n = |k: &str| rc.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        outln!(
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
        outln!(
            "push: {} events sent in {} batches, {} dead letters",
            n("sent"),
            n("batches"),
            n("dead")
        );
    }
    if let Some(e) = r.get("push_error").and_then(|v| v.as_str()) {
        outln!("push FAILED: {}", crate::mask::scrub_text(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn waiting_lines_name_the_lease_and_its_holder() {
        let line = json!({"type": "waiting", "lease": "source:health", "holder_pid": 42});
        assert_eq!(
            waiting_line(&line),
            "waiting: source:health is being synced by process 42"
        );
        let line = json!({"type": "waiting", "lease": "push", "holder_pid": null});
        assert_eq!(
            waiting_line(&line),
            "waiting: push is being synced by process ?"
        );
    }

    #[test]
    fn streamed_progress_reads_back_as_events() {
        let line = json!({"event": "page", "source": "health", "stream": "patients", "pages": 2, "records": 400, "total": 900});
        let e: ProgressEvent = serde_json::from_value(line).unwrap();
        assert!(matches!(
            e,
            ProgressEvent::Page {
                records: 400,
                total: Some(900),
                ..
            }
        ));
    }
}
