//! Source stage: fetches a department system's records over HTTP, page by page, as its
//! config declares (pagination, auth, encoding, retries, limits), and streams the pages
//! through a bounded channel. Owns no storage: it never writes the store or the cursor.

pub mod config;

use chrono::{DateTime, FixedOffset};
use tokio::sync::mpsc;

use crate::config::{SourceConfig, StreamConfig};

/// One page of raw vendor records, already decoded to JSON and cut out of the envelope.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<serde_json::Value>,
    /// 1-based page counter within this fetch.
    pub number: u64,
    /// Total records the system says it has for this query, if it says.
    pub total: Option<u64>,
    /// URL path of the request (no query: queries may carry signatures).
    pub url_path: String,
    /// Body size in bytes as received.
    pub bytes: usize,
}

/// A bound of the incremental window, already in the cursor's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorBound {
    Time(DateTime<FixedOffset>),
    Integer(i64),
}

/// What to ask for: an incremental window, or everything (`lower == None`).
#[derive(Debug, Clone, Default)]
pub struct FetchPlan {
    pub lower: Option<CursorBound>,
    pub upper: Option<CursorBound>,
    /// Stop after this many pages (used by `check --connect`).
    pub max_pages: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct FetchStats {
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
    pub retries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: {message}")]
    Other { source_name: String, message: String },
}

/// An HTTP client bound to one source's config (auth state, rate limiter, TLS settings).
pub struct SourceClient {
    pub name: String,
}

impl SourceClient {
    pub fn new(source: &SourceConfig) -> Result<SourceClient, SourceError> {
        Ok(SourceClient {
            name: source.name.clone(),
        })
    }

    /// Fetches every page of `stream` in `plan`, sending each to `tx` (bounded: a slow writer
    /// slows the fetch, memory stays flat). Returns when the last page was sent.
    pub async fn fetch_stream(
        &self,
        stream: &StreamConfig,
        plan: &FetchPlan,
        tx: mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        let _ = (stream, plan, tx);
        Err(SourceError::Other {
            source_name: self.name.clone(),
            message: "not implemented yet".into(),
        })
    }
}
