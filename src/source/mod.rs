//! Source stage: reads a department system's records page by page, as its config declares,
//! and streams the pages through a bounded channel. Three kinds of system ([`Source`]): an
//! HTTP API (pagination, auth, encoding, retries, limits), a database read with keyset
//! pagination ([`sql`]), and a drop folder of ledger files ([`files`]). Owns no storage: it
//! never writes the store or the cursor; each read says whether it was complete
//! ([`FetchStats::complete`]), which is what a full refresh's deletions depend on.

pub mod auth;
pub mod classify;
pub mod config;
pub mod decode;
mod error;
pub mod files;
mod http;
mod pager;
pub mod secret;
pub mod sign;
pub mod sql;

use std::path::Path;

use chrono::{DateTime, FixedOffset};
use tokio::sync::mpsc;

use crate::config::{SourceConfig, StreamConfig};

pub use error::SourceError;
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
    /// The newest cursor value on this page (RFC 3339 or an integer), when the source reads
    /// it by type rather than through the mapping (SQL watermarks).
    pub cursor: Option<String>,
    /// Where each record came from (`老人台账.xlsx row 12`), parallel to `records`; empty when
    /// the source has no rows to name. Rejects carry it.
    pub locations: Vec<String>,
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
    /// The read saw everything it was asked for, as the system said (the last page ended
    /// the list; a file was read to its end). Only a complete full refresh may delete.
    pub complete: bool,
    /// The last total the system stated for the query, if it states one.
    pub total: Option<u64>,
    /// Set when paging stopped before the system said it would (an empty page while it
    /// still announced more): the fetch did not see everything.
    pub incomplete: Option<String>,
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
    /// non-loopback host that the HTTP layer refuses ([`crate::net::check_scheme`]).
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
        let classifier = classify::Classifier::new(&stream.response_config(&self.inner.cfg));
        let mut stats = FetchStats::default();
        // Complete unless a page limit stops the fetch before the system said it ended.
        let mut complete = true;
        while let Some(req) = pager.next_request() {
            if plan.max_pages.is_some_and(|m| stats.pages >= m) {
                complete = false;
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
                .fetch_page(
                    stream,
                    &classifier,
                    &mut pager,
                    req,
                    number,
                    &mut stats.retries,
                )
                .await?;
            stats.pages = number;
            stats.records += fetched.records.len() as u64;
            stats.bytes += fetched.bytes as u64;
            stats.total = fetched.total.or(stats.total);
            if !fetched.records.is_empty() {
                tx.send(fetched).await.map_err(|_| SourceError::Cancelled {
                    source_name: self.name.clone(),
                    stream: stream.name.clone(),
                })?;
            }
        }
        stats.complete = complete;
        stats.incomplete = pager.ended_early();
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
        let classifier = classify::Classifier::new(&stream.response_config(&self.inner.cfg));
        let page = self
            .inner
            .fetch_page(stream, &classifier, &mut pager, req, 1, &mut retries)
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

/// A configured source of any kind, ready to read its streams.
pub enum Source {
    /// Boxed (as the SQL source): the clients are large, and a `Source` is made once per
    /// source and run.
    Http(Box<SourceClient>),
    Sql(Box<sql::SqlSource>),
    Files(files::FileSource),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Http(_) => "Source::Http",
            Source::Sql(_) => "Source::Sql",
            Source::Files(_) => "Source::Files",
        })
    }
}

impl Source {
    /// Builds the reader of `source` (secrets resolved, relative paths against `config_dir`).
    pub fn open(
        source: &SourceConfig,
        config_dir: &Path,
        tz: chrono_tz::Tz,
    ) -> Result<Source, SourceError> {
        use config::SourceKind;
        Ok(match source.kind {
            SourceKind::Http => {
                Source::Http(Box::new(SourceClient::with_config_dir(source, config_dir)?))
            }
            SourceKind::Sql => Source::Sql(Box::new(sql::SqlSource::new(source, config_dir, tz)?)),
            SourceKind::Files => Source::Files(files::FileSource::new(source, config_dir)?),
        })
    }

    /// Reads one run of `stream` (for a file stream: the file `file`), sending pages to `tx`.
    pub async fn fetch_stream(
        &self,
        stream: &StreamConfig,
        plan: &FetchPlan,
        file: Option<&files::PendingFile>,
        tx: mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        match self {
            Source::Http(c) => c.fetch_stream(stream, plan, tx).await,
            Source::Sql(s) => s.fetch_stream(stream, plan, tx).await,
            Source::Files(f) => match file {
                Some(file) => f.read_file(stream, file, tx).await,
                // No file: nothing was read, and an empty read must never count as a
                // complete list (it would delete every record of a `replace` stream).
                None => Ok(FetchStats::default()),
            },
        }
    }

    /// `check --connect` for one stream: one line on what was reached.
    pub async fn probe(&self, stream: &StreamConfig) -> Result<String, SourceError> {
        match self {
            Source::Http(c) => c.probe(stream).await.map(|p| {
                format!(
                    "{} records on the first page{} ({} bytes, {})",
                    p.records,
                    p.total.map(|t| format!(" of {t}")).unwrap_or_default(),
                    p.bytes,
                    p.url_path
                )
            }),
            Source::Sql(s) => s.probe(stream).await,
            Source::Files(f) => f.probe(stream).await,
        }
    }
}
