//! Log output: readable on a terminal, journald-friendly under systemd, JSON for shippers.
//! Every line passes through the masking safety net before it is written.

use std::io::{self, Write};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text with colour on a terminal; under journald (JOURNAL_STREAM set) no timestamps and
    /// no colour, since the journal stamps each line itself.
    Auto,
    Text,
    Json,
}

/// Progress bars on the terminal that log lines must not tear: while set, every log line is
/// written with the bars lifted (`MultiProgress::suspend`) and drawn again below it.
static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// Routes log lines around these bars (`None`: straight to stderr again).
pub fn around_bars(bars: Option<indicatif::MultiProgress>) {
    if let Ok(mut b) = BARS.lock() {
        *b = bars;
    }
}

/// A writer that masks ID numbers and phones in whatever passes through it.
pub struct ScrubWriter<W: Write> {
    inner: W,
}

impl<W: Write> Write for ScrubWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::mask::scrub_log(&text);
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        match bars {
            Some(bars) => bars.suspend(|| self.inner.write_all(clean.as_bytes()))?,
            None => self.inner.write_all(clean.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Clone, Copy)]
pub struct StderrScrubbed;

impl<'a> MakeWriter<'a> for StderrScrubbed {
    type Writer = ScrubWriter<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubWriter {
            inner: io::stderr(),
        }
    }
}

/// The syslog priority journald reads from a `<N>` line prefix (sd-daemon(3)).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each event with its syslog priority (`<3>` error … `<7>` debug) for journald,
/// which then files it at that priority and shows it in colour; the level word and the
/// timestamp are left out (the journal keeps both).
pub struct JournalFormat<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

type LevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Changes the level of the installed subscriber (a SIGHUP with a new `[log] level`).
static SET_LEVEL: std::sync::OnceLock<LevelSetter> = std::sync::OnceLock::new();

/// Sets a new level unless RUST_LOG is set (it wins). Returns whether the level changed.
pub fn set_level(level: &str) -> Result<bool, String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(false);
    }
    match SET_LEVEL.get() {
        Some(f) => f(level).map(|_| true),
        None => Ok(false),
    }
}

macro_rules! install_reloadable {
    ($builder:expr) => {{
        let builder = $builder.with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = SET_LEVEL.set(Box::new(move |level: &str| {
            let filter =
                EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?;
            handle.reload(filter).map_err(|e| e.to_string())
        }));
        builder.try_init()
    }};
}

/// Installs the global subscriber. `level` is the config's level; RUST_LOG wins when set.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let terminal = std::io::IsTerminal::is_terminal(&io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrScrubbed)
        .with_target(false);
    let result = match format {
        LogFormat::Json => install_reloadable!(builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)),
        LogFormat::Auto if journald && !terminal => {
            let inner = tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_ansi(false);
            install_reloadable!(builder.with_ansi(false).event_format(JournalFormat(inner)))
        }
        LogFormat::Text | LogFormat::Auto => install_reloadable!(builder.with_ansi(terminal)),
    };
    // A second init (tests, demo inside a process that already logs) is harmless.
    let _ = result;
}

pub fn parse_format(s: &str) -> LogFormat {
    match s {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        _ => LogFormat::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn journald_lines_carry_a_priority_prefix_no_timestamp_and_the_run_span() {
        let buf = Buf::default();
        let inner = tracing_subscriber::fmt::format()
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .event_format(JournalFormat(inner))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("run", run_id = 42, source = "eldercare");
            let _g = span.enter();
            tracing::error!("stream sync failed");
            tracing::info!("stream sync finished");
            tracing::debug!("batch written");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("<3>"), "{text}");
        assert!(lines[1].starts_with("<6>"), "{text}");
        assert!(lines[2].starts_with("<7>"), "{text}");
        for l in &lines {
            assert!(
                l.contains("run_id=42") && l.contains("source=\"eldercare\""),
                "{l}"
            );
            assert!(
                !l.contains("INFO") && !l.contains("ERROR"),
                "no level word: {l}"
            );
            assert!(
                !l.contains(":00Z") && !l.contains("2026-"),
                "no timestamp: {l}"
            );
        }
    }
}
