//! MySQL / MariaDB through mysql_async: a read-only session (`SET SESSION TRANSACTION READ
//! ONLY`), a server-side statement timeout (`max_statement_time` on MariaDB,
//! `max_execution_time` on MySQL), the session's `time_zone` set to UTC (so a `TIMESTAMP`
//! column reads as the instant it is; a `DATETIME` has no zone and is read in the configured
//! one), and utf8mb4 text (the server converts GBK and other declared charsets).
//! Prepared statements: the binary protocol gives integers, dates and times typed.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, OptsBuilder, Params, SslOpts, Value as MyValue};
use serde_json::{Map, Value};

use super::{
    bound_local, instant_text, local_text, text_value, ColumnInfo, Native, Order, Param, RowsPage,
    SqlSource, WatermarkKind,
};
use crate::config::StreamConfig;
use crate::source::config::DbTls;
use crate::source::CursorBound;

pub(crate) struct MyConn {
    conn: Conn,
}

fn e(err: mysql_async::Error) -> String {
    err.to_string()
}

impl MyConn {
    pub(crate) async fn connect(src: &SqlSource) -> Result<MyConn, String> {
        let mut opts = OptsBuilder::default()
            .ip_or_hostname(src.host.clone())
            .tcp_port(src.port)
            .user(Some(src.user.clone()))
            .pass(src.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(Some(src.database.clone()))
            .prefer_socket(false)
            .stmt_cache_size(16)
            .init(vec![
                "SET NAMES utf8mb4".to_string(),
                "SET SESSION TRANSACTION READ ONLY".to_string(),
                "SET time_zone = '+00:00'".to_string(),
            ]);
        if src.cfg.tls == DbTls::Require {
            opts = opts.ssl_opts(Some(ssl_opts(src.ca_file.as_deref())));
        }
        let mut conn = Conn::new(opts).await.map_err(e)?;
        // MariaDB counts seconds in max_statement_time; MySQL milliseconds in
        // max_execution_time (SELECTs only). An old server with neither still has this side's
        // timeout.
        let secs = src.cfg.statement_timeout_secs;
        if conn
            .query_drop(format!("SET SESSION max_statement_time = {secs}"))
            .await
            .is_err()
            && conn
                .query_drop(format!("SET SESSION max_execution_time = {}", secs * 1000))
                .await
                .is_err()
        {
            tracing::warn!(source = %src.name, "the server has no statement timeout setting; statements are abandoned after statement_timeout_secs on this side only");
        }
        Ok(MyConn { conn })
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.disconnect().await;
    }

    pub(crate) async fn describe(&mut self, sql: &str) -> Result<Vec<ColumnInfo>, String> {
        let stmt = self.conn.prep(sql).await.map_err(e)?;
        let cols = stmt.columns().iter().map(column_info).collect();
        self.conn.close(stmt).await.map_err(e)?;
        Ok(cols)
    }

    pub(crate) async fn now(&mut self) -> Result<DateTime<Utc>, String> {
        let row: Option<MyValue> = self
            .conn
            .query_first("SELECT UTC_TIMESTAMP(6)")
            .await
            .map_err(e)?;
        match row.as_ref().and_then(naive_of) {
            Some(n) => Ok(n.and_utc()),
            None => Err("the server did not say what time it is (SELECT UTC_TIMESTAMP())".into()),
        }
    }

    pub(crate) async fn max_integer(&mut self, sql: &str) -> Result<Option<i64>, String> {
        let v: Option<MyValue> = self.conn.query_first(sql).await.map_err(e)?;
        Ok(match v {
            Some(MyValue::Int(i)) => Some(i),
            Some(MyValue::UInt(u)) => Some(i64::try_from(u).unwrap_or(i64::MAX)),
            Some(MyValue::Bytes(b)) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()),
            _ => None,
        })
    }

    pub(crate) async fn page(
        &mut self,
        src: &SqlSource,
        stream: &StreamConfig,
        sql: &str,
        params: Vec<Param<Native>>,
        order: &Order,
    ) -> Result<RowsPage<Native>, String> {
        let values: Vec<MyValue> = params.into_iter().map(|p| param(p, src)).collect();
        let params = if values.is_empty() {
            Params::Empty
        } else {
            Params::Positional(values)
        };
        let mut result = self.conn.exec_iter(sql, params).await.map_err(e)?;
        let columns = result.columns();
        let mut page = RowsPage {
            records: Vec::new(),
            last: None,
            last_cursor: None,
            bytes: 0,
        };
        let Some(columns) = columns else {
            return Ok(page);
        };
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        let mut last_row: Option<Vec<MyValue>> = None;
        while let Some(row) = result.next().await.map_err(e)? {
            let values = row.unwrap();
            let mut rec = Map::new();
            for ((col, name), v) in columns.iter().zip(&names).zip(&values) {
                let enc = stream.column_encoding.get(name).copied();
                let j = to_json(col, v, src.tz, enc);
                page.bytes += name.len() + j.to_string().len();
                rec.insert(name.clone(), j);
            }
            page.records.push(Value::Object(rec));
            last_row = Some(values);
        }
        if let Some(values) = last_row {
            if let Some(kind) = order.watermark {
                let at = order.positions[0];
                page.last_cursor = cursor_text(&values[at], kind, src.tz);
            }
            page.last = Some(
                order
                    .positions
                    .iter()
                    .map(|&i| Native::My(values[i].clone()))
                    .collect(),
            );
        }
        Ok(page)
    }
}

fn column_info(c: &Column) -> ColumnInfo {
    use ColumnType::*;
    let ty = c.column_type();
    let watermark = match ty {
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Some(WatermarkKind::LocalTime),
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Some(WatermarkKind::Instant),
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Some(WatermarkKind::Date),
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG => Some(WatermarkKind::Integer),
        _ => None,
    };
    ColumnInfo {
        name: c.name_str().into_owned(),
        type_name: format!("{ty:?}")
            .trim_start_matches("MYSQL_TYPE_")
            .to_string(),
        watermark,
    }
}

/// TLS with the certificate and host name checked: against `ca_file` alone when given (a
/// private CA replaces the public roots, as for HTTP peers), else the public roots.
fn ssl_opts(ca_file: Option<&std::path::Path>) -> SslOpts {
    match ca_file {
        Some(ca) => SslOpts::default()
            .with_root_certs(vec![ca.to_path_buf().into()])
            .with_disable_built_in_roots(true),
        None => SslOpts::default(),
    }
}

fn naive_of(v: &MyValue) -> Option<NaiveDateTime> {
    match v {
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(*y as i32, *mo as u32, *d as u32)?
                .and_hms_micro_opt(*h as u32, *mi as u32, *s as u32, *us)
        }
        MyValue::Bytes(b) => {
            let s = std::str::from_utf8(b).ok()?;
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()
        }
        _ => None,
    }
}

/// A watermark value as cursor text.
fn cursor_text(v: &MyValue, kind: WatermarkKind, tz: chrono_tz::Tz) -> Option<String> {
    match kind {
        WatermarkKind::Integer => match v {
            MyValue::Int(i) => Some(i.to_string()),
            MyValue::UInt(u) => Some(u.to_string()),
            _ => None,
        },
        WatermarkKind::Instant => naive_of(v).map(|n| instant_text(n.and_utc(), tz)),
        WatermarkKind::LocalTime | WatermarkKind::Date => naive_of(v).map(|n| local_text(n, tz)),
    }
}

fn date_value(n: NaiveDateTime) -> MyValue {
    use chrono::{Datelike, Timelike};
    MyValue::Date(
        n.year() as u16,
        n.month() as u8,
        n.day() as u8,
        n.hour() as u8,
        n.minute() as u8,
        n.second() as u8,
        n.nanosecond() / 1000,
    )
}

/// A statement parameter: a window bound in the watermark column's terms, or a value as
/// a row carried it.
fn param(p: Param<Native>, src: &SqlSource) -> MyValue {
    match p {
        Param::Native(Native::My(v)) => v,
        Param::Native(Native::Pg(_)) => MyValue::NULL,
        Param::Bound(CursorBound::Integer(i), _) => MyValue::Int(i),
        Param::Bound(CursorBound::Time(t), kind) => match kind {
            WatermarkKind::Instant => date_value(t.naive_utc()),
            WatermarkKind::Date => {
                let n = bound_local(&t, src.tz);
                // Whole days: a date column compares with the day of the bound.
                date_value(n.date().and_hms_opt(0, 0, 0).unwrap_or(n))
            }
            WatermarkKind::LocalTime | WatermarkKind::Integer => {
                date_value(bound_local(&t, src.tz))
            }
        },
    }
}

/// One cell as JSON, its meaning kept: exact integers, DECIMAL as its decimal text,
/// date-times as RFC 3339 (without zone: in `tz`), text decoded.
fn to_json(
    col: &Column,
    v: &MyValue,
    tz: chrono_tz::Tz,
    enc: Option<crate::source::config::ColumnEncoding>,
) -> Value {
    use ColumnType::*;
    let ty = col.column_type();
    match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => Value::from(*i),
        MyValue::UInt(u) => Value::from(*u),
        MyValue::Float(f) => serde_json::Number::from_f64(*f as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        MyValue::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        MyValue::Date(..) => {
            let Some(n) = naive_of(v) else {
                // A zero date ('0000-00-00'): no date at all.
                return Value::Null;
            };
            match ty {
                MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Value::String(n.date().to_string()),
                MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => {
                    Value::String(instant_text(n.and_utc(), tz))
                }
                _ => Value::String(local_text(n, tz)),
            }
        }
        MyValue::Time(neg, d, h, m, s, us) => {
            let hours = *d as u64 * 24 + *h as u64;
            let frac = if *us > 0 {
                format!(".{us:06}")
            } else {
                String::new()
            };
            Value::String(format!(
                "{}{hours:02}:{m:02}:{s:02}{frac}",
                if *neg { "-" } else { "" }
            ))
        }
        MyValue::Bytes(b) => match ty {
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
                Value::String(String::from_utf8_lossy(b).into_owned())
            }
            MYSQL_TYPE_JSON => {
                serde_json::from_slice(b).unwrap_or_else(|_| text_value(b, enc, true))
            }
            MYSQL_TYPE_BIT => {
                let n = b.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64);
                Value::from(n)
            }
            _ => {
                let binary =
                    col.character_set() == 63 && col.flags().contains(ColumnFlags::BINARY_FLAG);
                if binary && enc.is_none() {
                    match std::str::from_utf8(b) {
                        Ok(s) => Value::String(s.to_string()),
                        Err(_) => Value::String(format!("0x{}", hex::encode(b))),
                    }
                } else {
                    text_value(b, enc, !binary)
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    /// Before, a ca_file was added to the built-in roots.
    #[test]
    fn a_ca_file_replaces_the_built_in_roots() {
        let ca = std::path::Path::new("/etc/community-sync/db-ca.pem");
        let with_ca = super::ssl_opts(Some(ca));
        assert!(with_ca.disable_built_in_roots());
        assert_eq!(with_ca.root_certs().len(), 1);
        assert!(!super::ssl_opts(None).disable_built_in_roots());
    }
}
