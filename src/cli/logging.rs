//! Log output: readable on a terminal, journald-friendly under systemd, JSON for shippers.
//! Every line passes through the masking safety net before it is written.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text with colour on a terminal; under journald (JOURNAL_STREAM set) no timestamps and
    /// no colour, since the journal stamps each line itself.
    Auto,
    Text,
    Json,
}

/// A writer that masks ID numbers and phones in whatever passes through it.
pub struct ScrubWriter<W: Write> {
    inner: W,
}

impl<W: Write> Write for ScrubWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::mask::scrub_log(&text);
        self.inner.write_all(clean.as_bytes())?;
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
        ScrubWriter { inner: io::stderr() }
    }
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
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Auto if journald && !terminal => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Text | LogFormat::Auto => builder.with_ansi(terminal).try_init(),
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
