//! Shared helpers for the source-stage integration tests.
#![allow(dead_code)]

use community_sync::config::{SourceConfig, StreamConfig};
use community_sync::source::{FetchPlan, FetchStats, Page, SourceClient, SourceError};
use serde_json::Value;
use tokio::sync::mpsc;

/// Builds a source from TOML pieces: `extra` goes at source level, `auth` in `[auth]`,
/// `http` in `[http]`, `stream` in the one `[[streams]]` (must set `pagination`).
pub fn source(base_url: &str, extra: &str, auth: &str, http: &str, stream: &str) -> SourceConfig {
    let auth = if auth.is_empty() {
        r#"type = "none""#
    } else {
        auth
    };
    let mut http_lines = String::new();
    for (k, v) in [
        ("timeout_secs", "5"),
        ("backoff_initial_ms", "1"),
        ("backoff_max_ms", "20"),
    ] {
        if !http.contains(k) {
            http_lines.push_str(&format!("{k} = {v}\n"));
        }
    }
    let text = format!(
        r#"
name = "t"
base_url = "{base_url}"
{extra}
[auth]
{auth}
[http]
{http_lines}{http}
[[streams]]
name = "s"
entity = "volunteer"
path = "/api/items"
key = "id"
mode = "full_refresh"
{stream}
[streams.fields]
"#
    );
    match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => panic!("test config does not parse: {e}\n{text}"),
    }
}

pub fn stream(s: &SourceConfig) -> &StreamConfig {
    &s.streams[0]
}

pub struct Fetched {
    pub records: Vec<Value>,
    pub pages: Vec<Page>,
    pub stats: FetchStats,
}

/// Runs a fetch with a small bounded channel and collects what arrives.
pub async fn fetch(
    client: &SourceClient,
    stream: &StreamConfig,
    plan: &FetchPlan,
) -> Result<Fetched, SourceError> {
    let (tx, mut rx) = mpsc::channel(2);
    let collect = async move {
        let mut pages = Vec::new();
        while let Some(p) = rx.recv().await {
            pages.push(p);
        }
        pages
    };
    let (res, mut pages) = tokio::join!(client.fetch_stream(stream, plan, tx), collect);
    let stats = res?;
    let records = pages
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.records))
        .collect();
    Ok(Fetched {
        records,
        pages,
        stats,
    })
}

/// Fetches everything with a fresh client.
pub async fn fetch_all(src: &SourceConfig) -> Result<Fetched, SourceError> {
    let client = SourceClient::new(src)?;
    fetch(&client, stream(src), &FetchPlan::default()).await
}

/// The `seq` numbers of records, asserting each appears once; returns them sorted.
pub fn seqs(records: &[Value]) -> Vec<u64> {
    let mut v: Vec<u64> = records
        .iter()
        .map(|r| r.get("seq").and_then(Value::as_u64).unwrap_or(u64::MAX))
        .collect();
    v.sort_unstable();
    v
}

/// Asserts the records are exactly 0..n, each once.
pub fn assert_all_once(records: &[Value], n: usize) {
    assert_eq!(seqs(records), (0..n as u64).collect::<Vec<_>>());
}
