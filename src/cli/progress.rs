//! Showing sync progress: a bar per stream on a terminal (records, pages, rate and, when the
//! system reports a total, ETA); on anything else (journald, a pipe, a file) plain log lines,
//! at most one per stream every few seconds, with no control characters.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{Progress, ProgressEvent};

/// How often a non-terminal prints a line per stream.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// Bars when stderr is a terminal, periodic log lines otherwise.
pub fn auto() -> Progress {
    auto_display().progress()
}

/// Where progress goes, and what to do when the sync is over.
pub struct Display {
    progress: Progress,
    /// The bars' terminal, to leave on a clean line (none for log lines).
    multi: Option<MultiProgress>,
}

impl Display {
    /// The callback to hand to the sync.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Ends the display so that what is printed next (the summary table) starts on a line
    /// of its own: bars still running are abandoned where they stand and the cursor moves
    /// below the last bar.
    pub fn finish(self) {
        if let Some(multi) = self.multi {
            crate::cli::logging::around_bars(None);
            // The bars that are left (finished ones show their result) stay where they are;
            // what comes next starts on the line below the last one.
            let _ = multi.clear();
            drop(multi);
        }
    }
}

/// [`auto`], with a handle to finish the display before printing a summary.
pub fn auto_display() -> Display {
    if std::io::stderr().is_terminal() {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        crate::cli::logging::around_bars(Some(multi.clone()));
        Display {
            progress: bars_on(multi.clone()),
            multi: Some(multi),
        }
    } else {
        Display {
            progress: lines(LINE_INTERVAL, |line| tracing::info!("{line}")),
            multi: None,
        }
    }
}

fn key(source: &str, stream: &str) -> String {
    format!("{source}/{stream}")
}

/// Records per second, whole: `22,795/s` (indicatif's `{per_sec:>12}` reads the width as
/// a precision and printed `22,794.908720043695/s`).
fn rate_key(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:>9}/s", thousands(state.per_sec().round() as u64));
}

/// `22795` → `22,795`.
fn thousands(n: u64) -> String {
    crate::report::thousands(n.min(i64::MAX as u64) as i64)
}

fn style_known() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:<28} [{bar:30.cyan/blue}] {human_pos:>9}/{human_len:<9} {msg} {rate} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", rate_key)
    .progress_chars("=> ")
}

fn style_unknown() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:<28} {spinner} {human_pos:>9} records {msg} {rate} {elapsed}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
    .with_key("rate", rate_key)
}

fn style_done() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<28} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Progress bars on stderr, one per stream.
pub fn bars() -> Progress {
    bars_on(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn bars_on(multi: MultiProgress) -> Progress {
    let bars: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
    Progress::new(move |event| {
        let Ok(mut bars) = bars.lock() else { return };
        match event {
            ProgressEvent::StreamStarted { source, stream, .. } => {
                let bar = multi.add(ProgressBar::no_length());
                bar.set_style(style_unknown());
                bar.set_prefix(key(source, stream));
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(key(source, stream), bar);
            }
            ProgressEvent::Page {
                source,
                stream,
                pages,
                records,
                total,
            } => {
                if let Some(bar) = bars.get(&key(source, stream)) {
                    if let Some(t) = total.filter(|t| *t >= *records && bar.length() != Some(*t)) {
                        bar.set_style(style_known());
                        bar.set_length(t);
                    }
                    bar.set_position(*records);
                    bar.set_message(format!("{pages} pages"));
                }
            }
            ProgressEvent::StreamFinished {
                source,
                stream,
                ok,
                records,
                error,
            } => {
                if let Some(bar) = bars.remove(&key(source, stream)) {
                    bar.set_style(style_done());
                    let msg = if *ok {
                        format!("✓ {records} records in {:.1}s", bar.elapsed().as_secs_f64())
                    } else {
                        format!(
                            "✗ failed after {records} records: {}",
                            crate::mask::scrub_text(error.as_deref().unwrap_or("unknown error"))
                        )
                    };
                    bar.finish_with_message(msg);
                }
            }
            // Lines of their own above the bars (`println` leaves the cursor at the end of
            // its line when no bar is left to draw below it).
            ProgressEvent::Reconciled { records, events } => multi.suspend(|| {
                crate::cli::out::errln!("reconciled {records} records → {events} events")
            }),
            ProgressEvent::Pushed { sent, dead } => multi.suspend(|| {
                crate::cli::out::errln!(
                    "pushed {sent} events to the platform ({dead} dead letters)"
                )
            }),
        }
    })
}

/// Per-stream state of the line printer.
struct LineState {
    started: Instant,
    last_line: Instant,
}

/// Plain log lines through `sink`: one when a stream starts, at most one per `every` while it
/// runs, one when it ends.
pub fn lines(every: Duration, sink: impl Fn(&str) + Send + Sync + 'static) -> Progress {
    let state: Mutex<HashMap<String, LineState>> = Mutex::default();
    Progress::new(move |event| {
        let Ok(mut state) = state.lock() else { return };
        let line = match event {
            ProgressEvent::StreamStarted {
                source,
                stream,
                run_id,
            } => {
                let now = Instant::now();
                state.insert(
                    key(source, stream),
                    LineState {
                        started: now,
                        last_line: now,
                    },
                );
                Some(format!(
                    "{}: sync started (run {run_id})",
                    key(source, stream)
                ))
            }
            ProgressEvent::Page {
                source,
                stream,
                pages,
                records,
                total,
            } => {
                let now = Instant::now();
                let st = state.entry(key(source, stream)).or_insert(LineState {
                    started: now,
                    last_line: now,
                });
                if now.duration_since(st.last_line) >= every {
                    st.last_line = now;
                    Some(page_line(
                        &key(source, stream),
                        *pages,
                        *records,
                        *total,
                        now.duration_since(st.started),
                    ))
                } else {
                    None
                }
            }
            ProgressEvent::StreamFinished {
                source,
                stream,
                ok,
                records,
                error,
            } => {
                let elapsed = state
                    .remove(&key(source, stream))
                    .map(|s| s.started.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                Some(if *ok {
                    format!(
                        "{}: done, {records} records in {elapsed:.1}s",
                        key(source, stream)
                    )
                } else {
                    format!(
                        "{}: FAILED after {records} records: {}",
                        key(source, stream),
                        crate::mask::scrub_text(error.as_deref().unwrap_or("unknown error"))
                    )
                })
            }
            ProgressEvent::Reconciled { records, events } => {
                Some(format!("reconciled {records} records, {events} events"))
            }
            ProgressEvent::Pushed { sent, dead } => {
                Some(format!("pushed {sent} events, {dead} dead letters"))
            }
        };
        if let Some(l) = line {
            sink(&plain(&l));
        }
    })
}

fn page_line(key: &str, pages: u64, records: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    };
    match total {
        Some(t) if t >= records && t > 0 => {
            let pct = records as f64 * 100.0 / t as f64;
            let eta = if rate > 0.0 {
                format!(
                    ", about {}s left",
                    ((t - records) as f64 / rate).ceil() as u64
                )
            } else {
                String::new()
            };
            format!(
                "{key}: {records}/{t} records ({pct:.0}%), {pages} pages, {rate:.0} records/s{eta}"
            )
        }
        _ => format!("{key}: {records} records, {pages} pages, {rate:.0} records/s"),
    }
}

/// Drops control characters (escape sequences, carriage returns) from a log line.
fn plain(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(every: Duration) -> (Progress, Arc<Mutex<Vec<String>>>) {
        let out: Arc<Mutex<Vec<String>>> = Arc::default();
        let o = out.clone();
        (
            lines(every, move |l| o.lock().unwrap().push(l.to_string())),
            out,
        )
    }

    fn page(records: u64, total: Option<u64>) -> ProgressEvent {
        ProgressEvent::Page {
            source: "onecard".into(),
            stream: "cardholders".into(),
            pages: records / 100,
            records,
            total,
        }
    }

    #[test]
    fn lines_are_throttled_per_stream_and_carry_counts() {
        let (p, out) = collect(Duration::from_secs(3600));
        p.emit(ProgressEvent::StreamStarted {
            source: "onecard".into(),
            stream: "cardholders".into(),
            run_id: 3,
        });
        for r in [100, 200, 300] {
            p.emit(page(r, Some(1000)));
        }
        p.emit(ProgressEvent::StreamFinished {
            source: "onecard".into(),
            stream: "cardholders".into(),
            ok: true,
            records: 1000,
            error: None,
        });
        let out = out.lock().unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("onecard/cardholders") && out[0].contains("started"));
        assert!(out[1].contains("1000 records"));
    }

    #[test]
    fn every_page_prints_when_the_interval_is_zero_with_total_and_percent() {
        let (p, out) = collect(Duration::ZERO);
        p.emit(page(250, Some(1000)));
        p.emit(page(300, None));
        let out = out.lock().unwrap();
        assert!(out[0].contains("250/1000 records (25%)"), "{out:?}");
        assert!(out[1].contains("300 records, 3 pages"), "{out:?}");
    }

    #[test]
    fn lines_never_contain_control_characters() {
        let (p, out) = collect(Duration::ZERO);
        p.emit(ProgressEvent::StreamFinished {
            source: "health".into(),
            stream: "patients".into(),
            ok: false,
            records: 5,
            error: Some("bad\u{1b}[31m credentials\r\nfor 13812345678".into()),
        });
        let out = out.lock().unwrap();
        assert!(out[0].contains("FAILED"));
        assert!(!out[0].chars().any(|c| c.is_control()), "{:?}", out[0]);
        assert!(!out[0].contains("13812345678"), "{}", out[0]);
    }
}
