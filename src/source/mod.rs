//! Source stage: fetches a department system's records over HTTP, page by page, as its
//! config declares (pagination, auth, encoding, retries, limits), and streams the pages
//! through a bounded channel. Owns no storage: it never writes the store or the cursor.

pub mod auth;
pub mod config;
pub mod decode;
mod error;
mod http;
mod pager;
pub mod secret;
pub mod sign;

use std::path::Path;

use chrono::{DateTime, FixedOffset};
use tokio::sync::mpsc;

use crate::config::{SourceConfig, StreamConfig};

pub use error::SourceError;
pub use http::{describe as describe_http_error, host_port, parse_retry_after, retry_delay};
pub use pager::format_bound;

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

/// What `check --connect` learns from one authenticated page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Records on the first page.
    pub records: usize,
    /// Total the system reports, if it does.
    pub total: Option<u64>,
    pub url_path: String,
    pub bytes: usize,
    /// Whether the system indicated another page.
    pub has_more: bool,
}

/// An HTTP client bound to one source's config (auth state, rate limiter, TLS settings).
/// Share it across the source's streams with an `Arc`: the rate and concurrency limits and
/// the OAuth2 token are per client.
pub struct SourceClient {
    pub name: String,
    inner: http::Http,
}

impl std::fmt::Debug for SourceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SourceClient {
    /// Builds the client; relative secret file paths are taken from the current directory.
    /// Prefer [`SourceClient::with_config_dir`] when the config file's location is known.
    pub fn new(source: &SourceConfig) -> Result<SourceClient, SourceError> {
        SourceClient::with_config_dir(source, Path::new("."))
    }

    /// Builds the client, resolving secrets (relative `file` paths against `config_dir`),
    /// TLS roots and limits. Fails on a missing secret, a bad CA file, or plain http to a
    /// non-loopback host without `allow_insecure_http`.
    pub fn with_config_dir(
        source: &SourceConfig,
        config_dir: &Path,
    ) -> Result<SourceClient, SourceError> {
        Ok(SourceClient {
            name: source.name.clone(),
            inner: http::Http::new(source, config_dir)?,
        })
    }

    /// Fetches every page of `stream` in `plan`, sending each to `tx` (bounded: a slow writer
    /// slows the fetch, memory stays flat). Returns when the last page was sent. Pages
    /// without records are not sent.
    pub async fn fetch_stream(
        &self,
        stream: &StreamConfig,
        plan: &FetchPlan,
        tx: mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        let mut pager = pager::Pager::new(&self.inner, stream, plan)?;
        let mut stats = FetchStats::default();
        while let Some(req) = pager.next_request() {
            if plan.max_pages.is_some_and(|m| stats.pages >= m) {
                break;
            }
            let number = stats.pages + 1;
            if number > self.inner.cfg.http.max_pages {
                return Err(SourceError::TooManyPages {
                    source_name: self.name.clone(),
                    stream: stream.name.clone(),
                    path: req.url.path().to_string(),
                    max: self.inner.cfg.http.max_pages,
                });
            }
            let fetched = self
                .inner
                .fetch_page(stream, &mut pager, req, number, &mut stats.retries)
                .await?;
            stats.pages = number;
            stats.records += fetched.records.len() as u64;
            stats.bytes += fetched.bytes as u64;
            if !fetched.records.is_empty() {
                tx.send(fetched).await.map_err(|_| SourceError::Cancelled {
                    source_name: self.name.clone(),
                    stream: stream.name.clone(),
                })?;
            }
        }
        Ok(stats)
    }

    /// Authenticates and fetches the first page of `stream` (no incremental window).
    pub async fn probe(&self, stream: &StreamConfig) -> Result<ProbeReport, SourceError> {
        let plan = FetchPlan::default();
        let mut pager = pager::Pager::new(&self.inner, stream, &plan)?;
        let Some(req) = pager.next_request() else {
            return Err(SourceError::Other {
                source_name: self.name.clone(),
                message: format!("stream {}: nothing to request", stream.name),
            });
        };
        let mut retries = 0;
        let page = self
            .inner
            .fetch_page(stream, &mut pager, req, 1, &mut retries)
            .await?;
        Ok(ProbeReport {
            records: page.records.len(),
            total: page.total,
            url_path: page.url_path,
            bytes: page.bytes,
            has_more: pager.next_request().is_some(),
        })
    }
}
