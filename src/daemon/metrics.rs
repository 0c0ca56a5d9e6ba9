//! Optional Prometheus endpoint (`[daemon] metrics_listen`, loopback by default): records
//! fetched/rejected/written per source, run durations, last success time, outbox depth, dead
//! letters and review queue size. The `metrics` macros are no-ops until a recorder is
//! installed, so the recording calls are always made.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rusqlite::OptionalExtension;

use crate::pipeline::SyncReport;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("[daemon] metrics_listen = {0:?}: not an address; write \"127.0.0.1:9464\" (or a bare port for loopback)")]
    Address(String),
    #[error("[daemon] metrics_listen {addr}: cannot listen: {source}. Is the port in use?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics recorder: {0}")]
    Recorder(String),
}

/// `host:port`, or a bare port meaning 127.0.0.1.
pub fn listen_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| MetricsError::Address(s.to_string()))
}

/// Installs the global recorder and serves `GET /metrics` on `addr`. Returns the bound address.
pub async fn serve(addr: SocketAddr) -> Result<(SocketAddr, PrometheusHandle), MetricsError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics endpoint listens beyond loopback; restrict it with a firewall");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    describe();
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = render.clone();
            async move { h.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    tracing::info!(addr = %bound, "metrics endpoint listening");
    Ok((bound, handle))
}

fn describe() {
    metrics::describe_counter!(
        "community_sync_records_fetched_total",
        "Records fetched from a source"
    );
    metrics::describe_counter!(
        "community_sync_records_rejected_total",
        "Records quarantined"
    );
    metrics::describe_counter!(
        "community_sync_records_written_total",
        "Records inserted, updated or deleted"
    );
    metrics::describe_counter!("community_sync_runs_total", "Source runs by outcome");
    metrics::describe_histogram!(
        "community_sync_run_duration_seconds",
        "Duration of source runs"
    );
    metrics::describe_gauge!(
        "community_sync_last_success_timestamp_seconds",
        "Unix time of the last successful run"
    );
    metrics::describe_gauge!(
        "community_sync_outbox_pending",
        "Outbox events waiting to be pushed"
    );
    metrics::describe_gauge!(
        "community_sync_dead_letters",
        "Events the platform refused for good"
    );
    metrics::describe_gauge!(
        "community_sync_review_queue",
        "Identity matches waiting for review"
    );
}

/// Counts one job's streams, per source.
pub fn record_report(report: &SyncReport, seconds: f64) {
    let mut sources: Vec<&str> = report.streams.iter().map(|s| s.source.as_str()).collect();
    sources.sort();
    sources.dedup();
    for s in &report.streams {
        let source = s.source.clone();
        metrics::counter!("community_sync_records_fetched_total", "source" => source.clone())
            .increment(s.fetched);
        metrics::counter!("community_sync_records_rejected_total", "source" => source.clone())
            .increment(s.stats.rejected);
        metrics::counter!("community_sync_records_written_total", "source" => source)
            .increment(s.stats.written());
    }
    for src in sources {
        let ok = report
            .streams
            .iter()
            .filter(|s| s.source == src)
            .all(|s| s.ok);
        let outcome = if ok { "ok" } else { "failed" };
        metrics::counter!("community_sync_runs_total", "source" => src.to_string(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("community_sync_run_duration_seconds", "source" => src.to_string())
            .record(seconds);
        if ok {
            metrics::gauge!("community_sync_last_success_timestamp_seconds", "source" => src.to_string())
                .set(chrono::Utc::now().timestamp() as f64);
        }
    }
}

/// Outbox depth, dead letters and review queue size, read from the store.
pub fn update_store_gauges(store: &Store) {
    let c = store.conn();
    let q = |sql: &str| -> Option<f64> {
        c.query_row(sql, [], |r| r.get::<_, i64>(0))
            .ok()
            .map(|v| v as f64)
    };
    if let Some(v) = q("SELECT count(*) FROM outbox WHERE state = 'pending'") {
        metrics::gauge!("community_sync_outbox_pending").set(v);
    }
    if let Some(v) = q("SELECT count(*) FROM dead_letters") {
        metrics::gauge!("community_sync_dead_letters").set(v);
    }
    // The review queue arrives with the matching work; until its table exists it is 0.
    let has_review: bool = c
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'review_queue'",
            [],
            |_| Ok(()),
        )
        .optional()
        .ok()
        .flatten()
        .is_some();
    let review = if has_review {
        q("SELECT count(*) FROM review_queue WHERE status = 'open'")
            .or_else(|| q("SELECT count(*) FROM review_queue"))
            .unwrap_or(0.0)
    } else {
        0.0
    };
    metrics::gauge!("community_sync_review_queue").set(review);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_port_means_loopback() {
        assert_eq!(
            listen_addr("9464").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9464))
        );
        assert_eq!(
            listen_addr("0.0.0.0:1").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 1))
        );
        assert!(listen_addr("localhost").is_err());
    }
}
