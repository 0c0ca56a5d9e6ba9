//! Progress of a sync as it happens, for whoever wants to show it: a progress bar on a
//! terminal, periodic log lines under journald, or the control socket streaming to a
//! `community-sync sync` client. The pipeline only emits; it never formats.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One step of a sync.
/// Serialised as the control socket sends it (`{"event":"page",...}`), and read back by the
/// client that shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    StreamStarted {
        source: String,
        stream: String,
        run_id: i64,
    },
    /// A page was written: running totals for the stream.
    Page {
        source: String,
        stream: String,
        pages: u64,
        records: u64,
        /// Records the system says the query has, when it says.
        total: Option<u64>,
    },
    StreamFinished {
        source: String,
        stream: String,
        ok: bool,
        records: u64,
        error: Option<String>,
    },
    Reconciled {
        records: u64,
        events: u64,
    },
    Pushed {
        sent: u64,
        dead: u64,
    },
}

/// A cheap, cloneable callback receiving progress events. Must not block.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl Progress {
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }

    pub fn emit(&self, event: ProgressEvent) {
        (self.0)(&event)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}
