//! SQL sources: a department's exchange database (前置机 / 中间库) read with a read-only
//! account — MySQL/MariaDB ([`mysql`], mysql_async) and the PostgreSQL protocol
//! ([`postgres`], tokio-postgres: PostgreSQL, KingbaseES, openGauss).
//!
//! A stream is a table, a view or the operator's `SELECT`. Each row becomes a JSON object
//! keyed by column name, so the stream's field mapping, code tables and normalisation apply
//! exactly as to an HTTP record. Values keep their meaning: integers (BIGINT keys included)
//! stay exact JSON integers, DECIMAL/NUMERIC becomes its exact decimal text (money reaches
//! fen without a float), a date-time without zone (MySQL DATETIME, PostgreSQL `timestamp`) is
//! read in the configured `timezone` and written as RFC 3339, and text in the wrong declared
//! charset is decoded as `column_encoding` says.
//!
//! Paging is keyset, never OFFSET: ordered by (watermark, key…) for an incremental stream and
//! by (key…) for a full refresh, each page asking for the rows after the previous page's last
//! one. A row that changes while a run pages moves behind the run's upper bound instead of
//! shifting its neighbours, so nothing is skipped; a page shorter than `batch_size` ends the
//! read, which is then complete ([`crate::source::FetchStats::complete`]).
//!
//! The incremental window is the HTTP streams' one: inclusive lower bound (the cursor, minus
//! `lookback_secs` — or `lookback_ids` for an integer watermark), and for a date-time
//! watermark an exclusive upper bound of now − `settle_secs`, "now" being the earlier of this
//! machine's clock and the database's (so a database clock behind ours never lets a late
//! commit slip under the cursor). An integer watermark's run stops at the largest value when
//! it began. Rows tied on the watermark across a page boundary are taken by the key order;
//! rows tied with the cursor are read again by the next run and cost nothing (content hash).
//!
//! Politeness: the session is read-only (`SET SESSION TRANSACTION READ ONLY` /
//! `default_transaction_read_only`), each statement has a server-side timeout
//! (`statement_timeout_secs`, and is abandoned here a little later), pages are
//! `batch_size` rows, and a source holds at most `max_connections` connections (1). Rows are
//! never loaded whole: one page at a time travels to the writer.

mod mysql;
mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Semaphore};

use super::config::{ColumnEncoding, DatabaseConfig, DbTls};
use super::secret::Secret;
use super::{CursorBound, FetchPlan, FetchStats, Page, SourceError};
use crate::config::{SourceConfig, StreamConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    MySql,
    Postgres,
}

/// What kind of values a watermark column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatermarkKind {
    /// A date-time without zone, read in the configured time zone.
    LocalTime,
    /// A date-time that is an instant (PostgreSQL `timestamptz`, MySQL `TIMESTAMP`).
    Instant,
    /// A date only (read as midnight in the configured zone).
    Date,
    Integer,
}

/// One column of a statement's result.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    pub name: String,
    /// The database's name of its type (for messages).
    pub type_name: String,
    /// What it is as a watermark, if it can be one.
    pub watermark: Option<WatermarkKind>,
}

/// A value bound to a statement: a window bound (converted to the column's type by the
/// driver) or a value exactly as a row carried it (keyset positions).
#[derive(Debug, Clone)]
pub(crate) enum Param<N> {
    Bound(CursorBound, WatermarkKind),
    Native(N),
}

/// One page of rows, turned into records.
pub(crate) struct RowsPage<N> {
    pub records: Vec<Value>,
    /// The order columns (watermark first, then the key) of the last row, as it carried them.
    pub last: Option<Vec<N>>,
    /// The last row's watermark as cursor text.
    pub last_cursor: Option<String>,
    pub bytes: usize,
}

/// A database source: where it is and how to talk to it; connections are opened per run.
pub struct SqlSource {
    pub name: String,
    pub(crate) dialect: Dialect,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) password: Option<Secret>,
    pub(crate) cfg: DatabaseConfig,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) tz: Tz,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("name", &self.name)
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

impl SqlSource {
    /// Resolves the password and CA file; refuses plain connections to another host unless
    /// `allow_plaintext`.
    pub fn new(source: &SourceConfig, config_dir: &Path, tz: Tz) -> Result<SqlSource, SourceError> {
        let config_err = |message: String| SourceError::Config {
            source_name: source.name.clone(),
            message,
        };
        let cfg = source
            .database
            .clone()
            .ok_or_else(|| config_err("[sources.database] is missing".into()))?;
        let url = url::Url::parse(&cfg.url)
            .map_err(|e| config_err(format!("database.url is not a URL: {e}")))?;
        let dialect = match url.scheme() {
            "mysql" | "mariadb" => Dialect::MySql,
            "postgres" | "postgresql" => Dialect::Postgres,
            other => {
                return Err(config_err(format!(
                    "database.url scheme {other:?}: use mysql:// or postgres://"
                )))
            }
        };
        let host = url.host_str().unwrap_or_default().to_string();
        if cfg.tls == DbTls::Disable && !cfg.allow_plaintext && !crate::net::is_loopback_host(&host)
        {
            return Err(config_err(format!(
                "database {host} would be reached without TLS: the account's password and personal data would travel unencrypted. Set [sources.database] tls = \"require\" (with ca_file for a private CA), or allow_plaintext = true if the link is protected otherwise"
            )));
        }
        let password = match &cfg.password {
            Some(r) => Some(
                super::secret::resolve(r, config_dir)
                    .map_err(|p| config_err(format!("database.password: {}", p.0)))?,
            ),
            None => None,
        };
        let ca_file = match &cfg.ca_file {
            Some(f) => {
                let p = super::secret::expand_path(f, config_dir)
                    .map_err(|p| config_err(format!("database.ca_file: {}", p.0)))?;
                if !p.is_file() {
                    return Err(config_err(format!(
                        "database.ca_file {} does not exist or is not a file; give the PEM file of the CA that signed the database's certificate",
                        p.display()
                    )));
                }
                Some(p)
            }
            None => None,
        };
        let port = url.port().unwrap_or(match dialect {
            Dialect::MySql => 3306,
            Dialect::Postgres => 5432,
        });
        let decode = |s: &str| {
            url::form_urlencoded::parse(s.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect::<String>()
        };
        Ok(SqlSource {
            name: source.name.clone(),
            dialect,
            host,
            port,
            user: decode(url.username()),
            database: decode(url.path().trim_start_matches('/')),
            password,
            permits: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
            cfg,
            ca_file,
            tz,
        })
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    pub(crate) fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.statement_timeout_secs)
    }

    /// How long this side waits for a statement: the server's timeout and a margin.
    pub(crate) fn client_timeout(&self) -> Duration {
        self.statement_timeout() + Duration::from_secs(5)
    }

    fn err(&self, stream: &str, message: impl Into<String>) -> SourceError {
        SourceError::Database {
            source_name: self.name.clone(),
            stream: stream.to_string(),
            target: self.target(),
            message: crate::mask::scrub_text(&message.into()),
        }
    }

    async fn connect(&self, stream: &str) -> Result<Conn, SourceError> {
        let wait = Duration::from_secs_f64(self.cfg.connect_timeout_secs.max(0.1));
        let connected = tokio::time::timeout(wait, async {
            match self.dialect {
                Dialect::MySql => mysql::MyConn::connect(self).await.map(Conn::My),
                Dialect::Postgres => postgres::PgConn::connect(self).await.map(Conn::Pg),
            }
        })
        .await;
        match connected {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.err(stream, format!("cannot connect: {e}; check the URL, the account and its password, that the server accepts this host, and the network"))),
            Err(_) => Err(self.err(stream, format!("no connection within {:.0} s (connect_timeout_secs); check the host, the port and any firewall", wait.as_secs_f64()))),
        }
    }

    /// Reads one run of `stream` in keyset pages, sending each page to `tx`.
    pub async fn fetch_stream(
        &self,
        stream: &StreamConfig,
        plan: &FetchPlan,
        tx: mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.err(&stream.name, "the source is shutting down"))?;
        let mut conn = self.connect(&stream.name).await?;
        let result = self.read(&mut conn, stream, plan, &tx).await;
        conn.close().await;
        result
    }

    async fn read(
        &self,
        conn: &mut Conn,
        stream: &StreamConfig,
        plan: &FetchPlan,
        tx: &mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        let q = Query::new(self, stream);
        let columns = self.timed(stream, conn.describe(&q.base)).await?;
        let order = q.order_columns(self, stream, &columns)?;
        let window = self.window(conn, stream, &q, &order, plan).await?;
        let mut stats = FetchStats::default();
        let mut last: Option<LastRow> = None;
        loop {
            if plan.max_pages.is_some_and(|m| stats.pages >= m) {
                return Ok(stats);
            }
            let (sql, params) = q.page(self, &order, &window, last.as_ref());
            let page = self
                .timed(stream, conn.page(self, stream, &sql, params, &order))
                .await?;
            let n = page.records.len() as u64;
            stats.pages += 1;
            stats.records += n;
            stats.bytes += page.bytes as u64;
            tracing::debug!(source = %self.name, stream = %stream.name, page = stats.pages, rows = n, "read page");
            last = page.last.map(|values| LastRow { values });
            if n > 0 {
                let out = Page {
                    records: page.records,
                    number: stats.pages,
                    total: None,
                    url_path: q.label.clone(),
                    bytes: page.bytes,
                    cursor: page.last_cursor,
                    locations: Vec::new(),
                };
                tx.send(out).await.map_err(|_| SourceError::Cancelled {
                    source_name: self.name.clone(),
                    stream: stream.name.clone(),
                })?;
            }
            if n < self.cfg.batch_size {
                stats.complete = true;
                return Ok(stats);
            }
        }
    }

    async fn timed<T>(
        &self,
        stream: &StreamConfig,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.client_timeout(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(&stream.name, e)),
            Err(_) => Err(self.err(
                &stream.name,
                format!(
                    "a statement ran longer than {} s (statement_timeout_secs) and was abandoned; index the watermark and key columns, or lower batch_size",
                    self.cfg.statement_timeout_secs
                ),
            )),
        }
    }

    /// The run's bounds: lower from the plan (minus an integer lookback), upper from the
    /// settle window (the earlier clock) or the largest integer watermark now.
    async fn window(
        &self,
        conn: &mut Conn,
        stream: &StreamConfig,
        q: &Query,
        order: &Order,
        plan: &FetchPlan,
    ) -> Result<Window, SourceError> {
        let (Some(inc), Some(kind)) = (&stream.incremental, order.watermark) else {
            return Ok(Window::default());
        };
        let lower = plan.lower.clone().map(|b| match b {
            CursorBound::Integer(i) => {
                CursorBound::Integer(i.saturating_sub(inc.lookback_ids as i64))
            }
            other => other,
        });
        let upper = match kind {
            WatermarkKind::Integer => {
                let max = self
                    .timed(
                        stream,
                        conn.max_integer(&q.max_sql(self, &order.columns[0])),
                    )
                    .await?;
                // An empty table: nothing to read, and nothing above the lower bound either.
                Some(UpperBound::Inclusive(CursorBound::Integer(
                    max.unwrap_or(i64::MIN),
                )))
            }
            _ => {
                let db_now = self.timed(stream, conn.now()).await?;
                let now = db_now.min(Utc::now());
                let settle = now - ChronoDuration::seconds(inc.settle_secs as i64);
                let mut upper = settle.with_timezone(&self.tz).fixed_offset();
                if let Some(CursorBound::Time(u)) = &plan.upper {
                    upper = upper.min(*u);
                }
                Some(UpperBound::Exclusive(CursorBound::Time(upper)))
            }
        };
        Ok(Window { lower, upper })
    }

    /// `check --connect`: connects, checks that the key, watermark and mapped columns are in
    /// the result, reads one row (`LIMIT 1`) and maps it.
    pub async fn probe(&self, stream: &StreamConfig) -> Result<String, SourceError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.err(&stream.name, "the source is shutting down"))?;
        let mut conn = self.connect(&stream.name).await?;
        let result = self.probe_on(&mut conn, stream).await;
        conn.close().await;
        result
    }

    async fn probe_on(
        &self,
        conn: &mut Conn,
        stream: &StreamConfig,
    ) -> Result<String, SourceError> {
        let q = Query::new(self, stream);
        let columns = self.timed(stream, conn.describe(&q.base)).await?;
        let order = q.order_columns(self, stream, &columns)?;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        for (field, mapping) in &stream.fields {
            let spec = mapping.spec();
            // A fallback list needs one of its columns; a single path its own.
            let heads: Vec<String> = spec
                .path
                .texts()
                .iter()
                .map(|p| {
                    p.trim_start_matches('/')
                        .split(['.', '/', '['])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            let head = heads.join(" or ");
            if !heads.iter().any(|h| names.iter().any(|n| n == h)) {
                return Err(self.err(
                    &stream.name,
                    format!(
                        "fields.{field} reads column {head:?}, which {} does not return (its columns: {}); fix the column name in the mapping",
                        q.label,
                        names.join(", ")
                    ),
                ));
            }
        }
        let window = Window::default();
        let (sql, params) = q.page_limited(self, &order, &window, None, 1);
        let page = self
            .timed(stream, conn.page(self, stream, &sql, params, &order))
            .await?;
        let watermark = match (&stream.incremental, order.watermark) {
            (Some(inc), Some(kind)) => format!(
                ", watermark {} ({})",
                inc.cursor_field,
                match kind {
                    WatermarkKind::LocalTime =>
                        format!("date-time without zone, read in {}", self.tz),
                    WatermarkKind::Instant => "date-time with zone".to_string(),
                    WatermarkKind::Date => format!("date, read in {}", self.tz),
                    WatermarkKind::Integer => "integer".to_string(),
                }
            ),
            _ => String::new(),
        };
        Ok(format!(
            "{} ({}): {} row read with LIMIT 1, {} columns{watermark}",
            q.label,
            self.target(),
            page.records.len(),
            columns.len()
        ))
    }
}

/// A connection of either protocol.
pub(crate) enum Conn {
    My(mysql::MyConn),
    Pg(postgres::PgConn),
}

impl Conn {
    async fn describe(&mut self, sql: &str) -> Result<Vec<ColumnInfo>, String> {
        match self {
            Conn::My(c) => c.describe(sql).await,
            Conn::Pg(c) => c.describe(sql).await,
        }
    }

    async fn now(&mut self) -> Result<DateTime<Utc>, String> {
        match self {
            Conn::My(c) => c.now().await,
            Conn::Pg(c) => c.now().await,
        }
    }

    async fn max_integer(&mut self, sql: &str) -> Result<Option<i64>, String> {
        match self {
            Conn::My(c) => c.max_integer(sql).await,
            Conn::Pg(c) => c.max_integer(sql).await,
        }
    }

    async fn page(
        &mut self,
        src: &SqlSource,
        stream: &StreamConfig,
        sql: &str,
        params: Vec<Param<Native>>,
        order: &Order,
    ) -> Result<RowsPage<Native>, String> {
        match self {
            Conn::My(c) => c.page(src, stream, sql, params, order).await,
            Conn::Pg(c) => c.page(src, stream, sql, params, order).await,
        }
    }

    async fn close(self) {
        match self {
            Conn::My(c) => c.close().await,
            Conn::Pg(c) => c.close().await,
        }
    }
}

/// A value as a row of either protocol carried it.
#[derive(Debug, Clone)]
pub(crate) enum Native {
    My(::mysql_async::Value),
    /// PostgreSQL binary format (None = NULL).
    Pg(Option<Vec<u8>>),
}

#[derive(Debug, Clone)]
struct LastRow {
    values: Vec<Native>,
}

#[derive(Debug, Clone)]
enum UpperBound {
    Exclusive(CursorBound),
    Inclusive(CursorBound),
}

#[derive(Debug, Clone, Default)]
struct Window {
    lower: Option<CursorBound>,
    upper: Option<UpperBound>,
}

/// The columns a stream is ordered by: the watermark (incremental) then the key.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub columns: Vec<String>,
    /// Set when the first column is the watermark.
    pub watermark: Option<WatermarkKind>,
    /// Index of each order column in the result.
    pub positions: Vec<usize>,
}

/// The statements of one stream.
struct Query {
    /// `SELECT * FROM <table>` or the operator's query.
    base: String,
    /// What `FROM` reads: the table, or the query as a derived table.
    from: String,
    /// `table schema.t` or `query`, for messages.
    label: String,
}

impl Query {
    fn new(src: &SqlSource, stream: &StreamConfig) -> Query {
        match (&stream.table, &stream.sql) {
            (Some(t), _) => {
                let from = t
                    .split('.')
                    .map(|p| quote(src.dialect, p.trim_matches(|c| c == '`' || c == '"')))
                    .collect::<Vec<_>>()
                    .join(".");
                Query {
                    base: format!("SELECT * FROM {from}"),
                    from,
                    label: format!("table {t}"),
                }
            }
            (None, q) => {
                let q = q
                    .as_deref()
                    .unwrap_or("SELECT 1")
                    .trim()
                    .trim_end_matches(';')
                    .to_string();
                Query {
                    from: format!("({q}) AS cs_q"),
                    base: q,
                    label: "the stream's query".to_string(),
                }
            }
        }
    }

    /// Finds the watermark and key columns in the result and checks the watermark's type.
    fn order_columns(
        &self,
        src: &SqlSource,
        stream: &StreamConfig,
        columns: &[ColumnInfo],
    ) -> Result<Order, SourceError> {
        let find = |name: &str, key: &str| -> Result<usize, SourceError> {
            columns.iter().position(|c| c.name == name).ok_or_else(|| {
                src.err(
                    &stream.name,
                    format!(
                        "{key} names column {name:?}, which {} does not return (its columns: {}); fix {key}",
                        self.label,
                        columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        };
        let mut order = Order {
            columns: Vec::new(),
            watermark: None,
            positions: Vec::new(),
        };
        if let Some(inc) = &stream.incremental {
            let at = find(&inc.cursor_field, "incremental.cursor_field")?;
            let col = &columns[at];
            let kind = col.watermark.ok_or_else(|| {
                src.err(
                    &stream.name,
                    format!(
                        "watermark column {} is {}, not a date/time or integer column; name a change time or a growing version/ID column in incremental.cursor_field",
                        col.name, col.type_name
                    ),
                )
            })?;
            let wants_integer = inc.cursor_format.as_deref() == Some("integer");
            if wants_integer != (kind == WatermarkKind::Integer) {
                let fix = if kind == WatermarkKind::Integer {
                    "set incremental.cursor_format = \"integer\""
                } else {
                    "remove incremental.cursor_format"
                };
                return Err(src.err(
                    &stream.name,
                    format!("watermark column {} is {}: {fix}", col.name, col.type_name),
                ));
            }
            order.columns.push(inc.cursor_field.clone());
            order.positions.push(at);
            order.watermark = Some(kind);
        }
        for k in stream.key_paths() {
            order.positions.push(find(k, "key")?);
            order.columns.push(k.to_string());
        }
        Ok(order)
    }

    fn max_sql(&self, src: &SqlSource, column: &str) -> String {
        format!(
            "SELECT MAX({}) FROM {}",
            quote(src.dialect, column),
            self.from
        )
    }

    fn page(
        &self,
        src: &SqlSource,
        order: &Order,
        window: &Window,
        last: Option<&LastRow>,
    ) -> (String, Vec<Param<Native>>) {
        self.page_limited(src, order, window, last, src.cfg.batch_size)
    }

    /// One keyset page: the window's bounds, then "after the last row" in (watermark, key…)
    /// order, ordered and limited.
    fn page_limited(
        &self,
        src: &SqlSource,
        order: &Order,
        window: &Window,
        last: Option<&LastRow>,
        limit: u64,
    ) -> (String, Vec<Param<Native>>) {
        let mut b = Builder::new(src.dialect);
        let mut conds: Vec<String> = Vec::new();
        let wm = order
            .watermark
            .map(|k| (quote(src.dialect, &order.columns[0]), k));
        if let Some((col, kind)) = &wm {
            if let Some(lower) = &window.lower {
                let p = b.bind(Param::Bound(lower.clone(), *kind));
                conds.push(format!("{col} >= {p}"));
            }
            match &window.upper {
                Some(UpperBound::Exclusive(u)) => {
                    let p = b.bind(Param::Bound(u.clone(), *kind));
                    conds.push(format!("{col} < {p}"));
                }
                Some(UpperBound::Inclusive(u)) => {
                    let p = b.bind(Param::Bound(u.clone(), *kind));
                    conds.push(format!("{col} <= {p}"));
                }
                None => {}
            }
            conds.push(format!("{col} IS NOT NULL"));
        }
        if let Some(last) = last {
            let cols: Vec<String> = order
                .columns
                .iter()
                .map(|c| quote(src.dialect, c))
                .collect();
            if wm.is_some() {
                // A sargable prefix for the index on (watermark, key…).
                let p = b.bind(Param::Native(last.values[0].clone()));
                conds.push(format!("{} >= {p}", cols[0]));
            }
            conds.push(after(&mut b, &cols, &last.values));
        }
        let mut sql = format!("SELECT * FROM {}", self.from);
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        let by: Vec<String> = order
            .columns
            .iter()
            .map(|c| quote(src.dialect, c))
            .collect();
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", by.join(", ")));
        (sql, b.params)
    }
}

/// `(c0, c1, …) > (v0, v1, …)` spelled out (row-value comparisons use no index on MySQL):
/// `c0 > v0 OR (c0 = v0 AND (c1 > v1 OR …))`.
fn after(b: &mut Builder, cols: &[String], values: &[Native]) -> String {
    let p = b.bind(Param::Native(values[0].clone()));
    if cols.len() == 1 {
        return format!("{} > {p}", cols[0]);
    }
    let q = b.bind(Param::Native(values[0].clone()));
    let rest = after(b, &cols[1..], &values[1..]);
    format!("({c} > {p} OR ({c} = {q} AND {rest}))", c = cols[0])
}

/// Placeholders in the dialect's spelling, with their values in order.
struct Builder {
    dialect: Dialect,
    params: Vec<Param<Native>>,
}

impl Builder {
    fn new(dialect: Dialect) -> Builder {
        Builder {
            dialect,
            params: Vec::new(),
        }
    }

    fn bind(&mut self, p: Param<Native>) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::MySql => "?".to_string(),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }
}

/// An identifier quoted for the dialect.
fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A local date-time (no zone) read in `tz`, as RFC 3339.
pub(crate) fn local_text(n: NaiveDateTime, tz: Tz) -> String {
    match tz.from_local_datetime(&n).earliest() {
        Some(d) => d.fixed_offset().to_rfc3339(),
        // In a gap (no such wall time): the offset before it.
        None => {
            let off = tz.offset_from_utc_datetime(&n).fix_offset();
            off.from_local_datetime(&n)
                .single()
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| n.to_string())
        }
    }
}

trait FixOffset {
    fn fix_offset(&self) -> FixedOffset;
}

impl<O: chrono::Offset> FixOffset for O {
    fn fix_offset(&self) -> FixedOffset {
        self.fix()
    }
}

/// An instant, as RFC 3339 in `tz`.
pub(crate) fn instant_text(d: DateTime<Utc>, tz: Tz) -> String {
    d.with_timezone(&tz).fixed_offset().to_rfc3339()
}

/// A window bound as the wall time of `tz` (for columns without zone).
pub(crate) fn bound_local(t: &DateTime<FixedOffset>, tz: Tz) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// Text of a column read in an encoding other than the one declared. `declared_text` is
/// what the server sent as text (a latin1 column converted to UTF-8: the bytes come back
/// through windows-1252, MySQL's latin1), `raw` bytes of a binary column. None when the bytes
/// are not valid in `enc`.
pub(crate) fn decode_column(
    enc: ColumnEncoding,
    raw: &[u8],
    declared_text: bool,
) -> Option<String> {
    let bytes: std::borrow::Cow<[u8]> = if declared_text {
        match std::str::from_utf8(raw) {
            Ok(s) => {
                let (b, _, unmappable) = encoding_rs::WINDOWS_1252.encode(s);
                if unmappable {
                    // Characters outside latin1: the column was decoded right already.
                    return Some(s.to_string());
                }
                b.into_owned().into()
            }
            Err(_) => raw.into(),
        }
    } else {
        raw.into()
    };
    let codec = match enc {
        ColumnEncoding::Gbk => encoding_rs::GBK,
        ColumnEncoding::Gb18030 => encoding_rs::GB18030,
        ColumnEncoding::Utf8 => encoding_rs::UTF_8,
    };
    codec
        .decode_without_bom_handling_and_without_replacement(&bytes)
        .map(|c| c.into_owned())
}

/// What a value that could not be decoded becomes: an object, so the mapping quarantines
/// the field ("an object or array, expected a value") instead of storing mojibake.
pub(crate) fn undecodable(raw: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert(
        "undecodable_bytes".into(),
        Value::String(hex::encode(&raw[..raw.len().min(32)])),
    );
    Value::Object(m)
}

/// Text of bytes the database declared as text: UTF-8, or [`undecodable`].
pub(crate) fn text_value(raw: &[u8], enc: Option<ColumnEncoding>, declared_text: bool) -> Value {
    if let Some(enc) = enc {
        return decode_column(enc, raw, declared_text)
            .map(Value::String)
            .unwrap_or_else(|| undecodable(raw));
    }
    match std::str::from_utf8(raw) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => undecodable(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_stored_in_latin1_is_recovered() {
        let (gbk, _, _) = encoding_rs::GBK.encode("张三丰");
        // What MySQL sends for those bytes in a latin1 column on a utf8mb4 connection.
        let (as_latin1, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&gbk);
        let got = decode_column(ColumnEncoding::Gbk, as_latin1.as_bytes(), true);
        assert_eq!(got.as_deref(), Some("张三丰"));
        // A column decoded right already stays as it is.
        assert_eq!(
            decode_column(ColumnEncoding::Gbk, "李四".as_bytes(), true).as_deref(),
            Some("李四")
        );
        // Raw GBK bytes of a binary column.
        assert_eq!(
            decode_column(ColumnEncoding::Gbk, &gbk, false).as_deref(),
            Some("张三丰")
        );
        assert!(decode_column(ColumnEncoding::Utf8, &[0xff, 0xfe], false).is_none());
    }

    #[test]
    fn keyset_condition_spells_out_composite_keys() {
        let mut b = Builder::new(Dialect::Postgres);
        let cols = vec![
            "\"w\"".to_string(),
            "\"a\"".to_string(),
            "\"b\"".to_string(),
        ];
        let vals = vec![Native::Pg(None), Native::Pg(None), Native::Pg(None)];
        let s = after(&mut b, &cols, &vals);
        assert_eq!(
            s,
            "(\"w\" > $1 OR (\"w\" = $2 AND (\"a\" > $3 OR (\"a\" = $4 AND \"b\" > $5))))"
        );
        assert_eq!(b.params.len(), 5);
    }
}
