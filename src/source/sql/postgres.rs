//! The PostgreSQL protocol through tokio-postgres (PostgreSQL, KingbaseES, openGauss with
//! md5 or SCRAM authentication): a read-only session (`SET SESSION CHARACTERISTICS AS
//! TRANSACTION READ ONLY`), `statement_timeout`, TLS through rustls (the web PKI roots and
//! `ca_file`), and every value read in the binary format and decoded here by its type, so
//! nothing is lost on the way: `numeric` to its exact decimal text, `int8` exact,
//! `timestamp` (no zone) in the configured zone, `timestamptz` as the instant it is.
//! Keyset positions are bound back in the very bytes the row carried.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::BytesMut;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::{
    bound_local, instant_text, local_text, text_value, ColumnInfo, Native, Order, Param, RowsPage,
    SqlSource, WatermarkKind,
};
use crate::config::StreamConfig;
use crate::source::config::{ColumnEncoding, DbTls};
use crate::source::CursorBound;

pub(crate) struct PgConn {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// A value exactly as the server sent it (binary format), whatever its type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A parameter in the binary format of the type the server expects.
#[derive(Debug)]
struct PgParam(Option<Vec<u8>>);

impl ToSql for PgParam {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

fn e(err: tokio_postgres::Error) -> String {
    // The server's message (with its detail) when there is one.
    if let Some(db) = err.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    // The cause too ("error performing TLS handshake: invalid peer certificate: …").
    let mut text = err.to_string();
    let mut cause = StdError::source(&err);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// 2000-01-01, PostgreSQL's epoch for dates and times.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn tls_config(src: &SqlSource) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_root_certificates(roots(src.ca_file.as_deref())?)
    .with_no_client_auth())
}

/// Whom the connection trusts: the CA bundle `ca_file` alone (a private CA replaces the public
/// roots, as for HTTP peers), else the public web PKI.
fn roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let Some(ca) = ca_file else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|err| format!("ca_file {}: {err}", ca.display()))?
    {
        let cert = cert.map_err(|err| format!("ca_file {}: {err}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|err| format!("ca_file {}: {err}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {} holds no certificate", ca.display()));
    }
    Ok(roots)
}

impl PgConn {
    pub(crate) async fn connect(src: &SqlSource) -> Result<PgConn, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&src.host)
            .port(src.port)
            .user(&src.user)
            .dbname(&src.database)
            .application_name("community-sync")
            .connect_timeout(std::time::Duration::from_secs_f64(
                src.cfg.connect_timeout_secs.max(0.1),
            ));
        if let Some(p) = &src.password {
            cfg.password(p.expose());
        }
        let (client, driver) = if src.cfg.tls == DbTls::Require {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(src)?);
            let (client, conn) = cfg.connect(tls).await.map_err(e)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        } else {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(e)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        };
        client
            .batch_execute(&format!(
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET statement_timeout = {}",
                src.cfg.statement_timeout_secs * 1000
            ))
            .await
            .map_err(e)?;
        Ok(PgConn { client, driver })
    }

    pub(crate) async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.driver).await;
    }

    pub(crate) async fn describe(&mut self, sql: &str) -> Result<Vec<ColumnInfo>, String> {
        let stmt = self.client.prepare(sql).await.map_err(e)?;
        Ok(stmt
            .columns()
            .iter()
            .map(|c| {
                let ty = base_type(c.type_());
                ColumnInfo {
                    name: c.name().to_string(),
                    type_name: c.type_().name().to_string(),
                    watermark: match *ty {
                        Type::TIMESTAMP => Some(WatermarkKind::LocalTime),
                        Type::TIMESTAMPTZ => Some(WatermarkKind::Instant),
                        Type::DATE => Some(WatermarkKind::Date),
                        Type::INT2 | Type::INT4 | Type::INT8 => Some(WatermarkKind::Integer),
                        _ => None,
                    },
                }
            })
            .collect())
    }

    pub(crate) async fn now(&mut self) -> Result<DateTime<Utc>, String> {
        let row = self
            .client
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(e)?;
        let raw: Raw = row.try_get(0).map_err(e)?;
        raw.0
            .and_then(micros)
            .map(|us| (pg_epoch() + ChronoDuration::microseconds(us)).and_utc())
            .ok_or_else(|| "the server did not say what time it is (clock_timestamp())".into())
    }

    pub(crate) async fn max_integer(&mut self, sql: &str) -> Result<Option<i64>, String> {
        let stmt = self.client.prepare(sql).await.map_err(e)?;
        let row = self.client.query_one(&stmt, &[]).await.map_err(e)?;
        let raw: Raw = row.try_get(0).map_err(e)?;
        Ok(raw.0.and_then(int_of))
    }

    pub(crate) async fn page(
        &mut self,
        src: &SqlSource,
        stream: &StreamConfig,
        sql: &str,
        params: Vec<Param<Native>>,
        order: &Order,
    ) -> Result<RowsPage<Native>, String> {
        let stmt: Statement = self.client.prepare(sql).await.map_err(e)?;
        let bound: Vec<PgParam> = params
            .into_iter()
            .zip(stmt.params())
            .map(|(p, ty)| param(p, ty, src))
            .collect::<Result<_, _>>()?;
        let rows = self
            .client
            .query_raw(&stmt, bound.iter().map(|p| p as &(dyn ToSql + Sync)))
            .await
            .map_err(e)?;
        let mut page = RowsPage {
            records: Vec::new(),
            last: None,
            last_cursor: None,
            bytes: 0,
        };
        let columns = stmt.columns();
        let mut last: Option<Vec<Option<Vec<u8>>>> = None;
        let mut unreadable: Vec<String> = Vec::new();
        futures::pin_mut!(rows);
        while let Some(row) = futures::StreamExt::next(&mut rows).await {
            let row = row.map_err(e)?;
            let mut rec = Map::new();
            for (i, col) in columns.iter().enumerate() {
                let raw: Raw = row.try_get(i).map_err(e)?;
                let enc = stream.column_encoding.get(col.name()).copied();
                let v = match raw.0 {
                    None => Value::Null,
                    Some(b) => to_json(col.type_(), b, src.tz, enc).unwrap_or_else(|| {
                        if !unreadable.iter().any(|n| n == col.name()) {
                            unreadable.push(col.name().to_string());
                        }
                        Value::Null
                    }),
                };
                page.bytes += raw.0.map_or(0, <[u8]>::len);
                rec.insert(col.name().to_string(), v);
            }
            page.records.push(Value::Object(rec));
            last = Some(
                order
                    .positions
                    .iter()
                    .map(|&i| row.try_get::<_, Raw>(i).map(|r| r.0.map(<[u8]>::to_vec)))
                    .collect::<Result<_, _>>()
                    .map_err(e)?,
            );
        }
        for name in unreadable {
            let ty = columns
                .iter()
                .find(|c| c.name() == name)
                .map(|c| c.type_().name().to_string())
                .unwrap_or_default();
            tracing::warn!(source = %src.name, stream = %stream.name, column = %name, r#type = %ty,
                "column of a type community-sync does not read is left empty; cast it in the stream's query (e.g. {name}::text) if it is needed");
        }
        if let Some(values) = last {
            if let Some(kind) = order.watermark {
                let ty = columns[order.positions[0]].type_();
                page.last_cursor = values[0]
                    .as_deref()
                    .and_then(|b| cursor_text(ty, b, kind, src.tz));
            }
            page.last = Some(values.into_iter().map(Native::Pg).collect());
        }
        Ok(page)
    }
}

/// A domain's base type; others as they are.
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

fn micros(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

fn int_of(b: &[u8]) -> Option<i64> {
    match b.len() {
        2 => Some(i16::from_be_bytes(b.try_into().ok()?) as i64),
        4 => Some(i32::from_be_bytes(b.try_into().ok()?) as i64),
        8 => Some(i64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

fn naive_of_micros(b: &[u8]) -> Option<NaiveDateTime> {
    pg_epoch().checked_add_signed(ChronoDuration::microseconds(micros(b)?))
}

fn date_of(b: &[u8]) -> Option<NaiveDate> {
    let days = i32::from_be_bytes(b.try_into().ok()?);
    pg_epoch()
        .date()
        .checked_add_signed(ChronoDuration::days(days as i64))
}

fn cursor_text(ty: &Type, b: &[u8], kind: WatermarkKind, tz: chrono_tz::Tz) -> Option<String> {
    let _ = ty;
    match kind {
        WatermarkKind::Integer => int_of(b).map(|i| i.to_string()),
        WatermarkKind::Instant => naive_of_micros(b).map(|n| instant_text(n.and_utc(), tz)),
        WatermarkKind::LocalTime => naive_of_micros(b).map(|n| local_text(n, tz)),
        WatermarkKind::Date => date_of(b)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| local_text(n, tz)),
    }
}

/// A parameter in the binary format of `ty`.
fn param(p: Param<Native>, ty: &Type, src: &SqlSource) -> Result<PgParam, String> {
    let micros_since = |n: NaiveDateTime| (n - pg_epoch()).num_microseconds();
    let bytes = match p {
        Param::Native(Native::Pg(b)) => return Ok(PgParam(b)),
        Param::Native(Native::My(_)) => return Ok(PgParam(None)),
        Param::Bound(CursorBound::Integer(i), _) => match *base_type(ty) {
            Type::INT2 => i16::try_from(i)
                .map(|v| v.to_be_bytes().to_vec())
                .unwrap_or_else(|_| {
                    if i < 0 { i16::MIN } else { i16::MAX }
                        .to_be_bytes()
                        .to_vec()
                }),
            Type::INT4 => i32::try_from(i)
                .map(|v| v.to_be_bytes().to_vec())
                .unwrap_or_else(|_| {
                    if i < 0 { i32::MIN } else { i32::MAX }
                        .to_be_bytes()
                        .to_vec()
                }),
            _ => i.to_be_bytes().to_vec(),
        },
        Param::Bound(CursorBound::Time(t), kind) => match (kind, base_type(ty)) {
            (_, &Type::TIMESTAMPTZ) => micros_since(t.naive_utc())
                .ok_or("time bound out of range")?
                .to_be_bytes()
                .to_vec(),
            (_, &Type::DATE) => {
                let d = bound_local(&t, src.tz).date();
                ((d - pg_epoch().date()).num_days() as i32)
                    .to_be_bytes()
                    .to_vec()
            }
            (WatermarkKind::Instant, _) => micros_since(t.naive_utc())
                .ok_or("time bound out of range")?
                .to_be_bytes()
                .to_vec(),
            _ => micros_since(bound_local(&t, src.tz))
                .ok_or("time bound out of range")?
                .to_be_bytes()
                .to_vec(),
        },
    };
    Ok(PgParam(Some(bytes)))
}

/// One value as JSON by its type; None for a type this reader does not know.
fn to_json(ty: &Type, b: &[u8], tz: chrono_tz::Tz, enc: Option<ColumnEncoding>) -> Option<Value> {
    if let Kind::Enum(_) = ty.kind() {
        return Some(text_value(b, enc, true));
    }
    let ty = base_type(ty);
    Some(match *ty {
        Type::BOOL => Value::Bool(b.first().copied()? != 0),
        Type::INT2 | Type::INT4 | Type::INT8 => Value::from(int_of(b)?),
        Type::OID => Value::from(u32::from_be_bytes(b.try_into().ok()?)),
        Type::FLOAT4 => {
            let f = f32::from_be_bytes(b.try_into().ok()?);
            // Through its shortest decimal text, so 0.1f32 stays "0.1".
            serde_json::Number::from_f64(f.to_string().parse().ok()?)
                .map_or(Value::Null, Value::Number)
        }
        Type::FLOAT8 => serde_json::Number::from_f64(f64::from_be_bytes(b.try_into().ok()?))
            .map_or(Value::Null, Value::Number),
        Type::NUMERIC => numeric_text(b).map_or(Value::Null, Value::String),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
            text_value(b, enc, true)
        }
        Type::BYTEA => match enc {
            Some(enc) => text_value(b, Some(enc), false),
            None => Value::String(format!("0x{}", hex::encode(b))),
        },
        Type::DATE => Value::String(date_of(b)?.to_string()),
        Type::TIMESTAMP => Value::String(local_text(naive_of_micros(b)?, tz)),
        Type::TIMESTAMPTZ => Value::String(instant_text(naive_of_micros(b)?.and_utc(), tz)),
        Type::TIME => {
            let us = micros(b)?;
            let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                (us / 1_000_000) as u32,
                ((us % 1_000_000) * 1000) as u32,
            )?;
            Value::String(t.to_string())
        }
        Type::JSON => serde_json::from_slice(b).ok()?,
        Type::JSONB => serde_json::from_slice(b.get(1..)?).ok()?,
        Type::UUID => {
            let h = hex::encode(b);
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                h.get(0..8)?,
                h.get(8..12)?,
                h.get(12..16)?,
                h.get(16..20)?,
                h.get(20..32)?
            ))
        }
        _ => return None,
    })
}

/// PostgreSQL's binary `numeric` as exact decimal text: base-10000 digits, a weight (the
/// power of 10000 of the first digit), a sign and the display scale. None for NaN/±Infinity.
pub(crate) fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    let digit = |pos: i32| -> u16 {
        // pos: the power of 10000 (weight down to negative).
        let idx = weight - pos;
        if idx >= 0 && (idx as usize) < digits.len() {
            digits[idx as usize]
        } else {
            0
        }
    };
    let mut int_part = String::new();
    if weight < 0 {
        int_part.push('0');
    } else {
        for pos in (0..=weight).rev() {
            let d = digit(pos);
            if int_part.is_empty() {
                int_part.push_str(&d.to_string());
            } else {
                int_part.push_str(&format!("{d:04}"));
            }
        }
    }
    let mut frac = String::new();
    let mut pos = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(pos)));
        pos -= 1;
    }
    frac.truncate(dscale);
    let mut out = String::new();
    if sign == 0x4000 && (int_part != "0" || frac.bytes().any(|c| c != b'0')) {
        out.push('-');
    }
    out.push_str(&int_part);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::numeric_text;

    /// Before, a ca_file was added to the public roots.
    #[test]
    fn a_ca_file_replaces_the_public_roots() {
        let ca = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem"));
        assert_eq!(super::roots(Some(ca)).unwrap().len(), 1);
        assert_eq!(
            super::roots(None).unwrap().len(),
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
    }

    fn numeric(ndigits: &[u16], weight: i16, neg: bool, dscale: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((ndigits.len() as u16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(if neg { 0x4000u16 } else { 0 }.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in ndigits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numeric_is_exact_text() {
        // 12345678.90 = [1234, 5678, 9000] weight 1, scale 2
        assert_eq!(
            numeric_text(&numeric(&[1234, 5678, 9000], 1, false, 2)).as_deref(),
            Some("12345678.90")
        );
        assert_eq!(
            numeric_text(&numeric(&[5], -1, true, 4)).as_deref(),
            Some("-0.0005")
        );
        assert_eq!(
            numeric_text(&numeric(&[], 0, false, 2)).as_deref(),
            Some("0.00")
        );
        assert_eq!(
            numeric_text(&numeric(&[1], 2, false, 0)).as_deref(),
            Some("100000000")
        );
        // 99999999999999999999.99: beyond f64, still exact.
        assert_eq!(
            numeric_text(&numeric(&[9999, 9999, 9999, 9999, 9999, 9900], 4, false, 2)).as_deref(),
            Some("99999999999999999999.99")
        );
    }
}
