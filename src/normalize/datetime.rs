//! Dates and times: many spellings in, ISO 8601 out; naive values are local time.
//!
//! `format` is a chrono format string (`%Y-%m-%d %H:%M:%S`) or one of the special names:
//! - `auto` (same as no format): every spelling below is tried;
//! - `rfc3339`: RFC 3339 / ISO 8601 / FHIR (`2024-05-01T10:00:00+08:00`, also partial FHIR
//!   dates and a missing offset, read as local time);
//! - `epoch_s`, `epoch_ms`: Unix seconds or milliseconds;
//! - `excel`: an Excel serial day number (1900 system, fraction = time of day).
//!
//! Automatic detection reads `2020-07-21`, `2020/7/21`, `2020.7.21`, `2020年7月21日`,
//! `20200721`, date-times with `T` or a space, optional seconds and fraction and an optional
//! offset (`Z`, `+08:00`, `+0800`, `+08`), `20240501103000`, 10-digit epoch seconds, 13-digit
//! epoch milliseconds and (5 digits, 20000..=80000) Excel serial days.
//!
//! [`parse_datetime`] returns the instant in the given time zone's offset (so that RFC 3339
//! text of two instants compares like the instants); a naive local time that falls into a DST
//! gap is read with the offset before the gap, an ambiguous one takes the earliest instant.
//! [`parse_date`] returns the calendar date as written (a date-time's date part, before any
//! zone conversion); epoch and Excel values are dated in Asia/Shanghai.

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
};
use chrono_tz::Tz;

use crate::model::{Reject, RejectReason};
use crate::normalize::text;

fn invalid(detail: impl Into<String>) -> Reject {
    Reject::new(RejectReason::DateInvalid, detail)
}

/// A date-time as read, before the zone is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Parsed {
    /// Calendar date and wall time; `None` offset means local time.
    Local(NaiveDateTime, Option<FixedOffset>),
    /// An instant (epoch values).
    Instant(DateTime<chrono::Utc>),
}

/// Reads a calendar date.
pub fn parse_date(raw: &str, format: Option<&str>) -> Result<NaiveDate, Reject> {
    parse_date_in(raw, format, chrono_tz::Asia::Shanghai)
}

/// [`parse_date`] with the zone used to date epoch values.
pub fn parse_date_in(raw: &str, format: Option<&str>, tz: Tz) -> Result<NaiveDate, Reject> {
    match parse_any(raw, format)? {
        Parsed::Local(n, _) => Ok(n.date()),
        Parsed::Instant(i) => Ok(i.with_timezone(&tz).date_naive()),
    }
}

/// Reads a date-time; naive values are local time in `tz`. The result carries `tz`'s offset
/// at that instant.
pub fn parse_datetime(
    raw: &str,
    format: Option<&str>,
    tz: Tz,
) -> Result<DateTime<FixedOffset>, Reject> {
    let instant = match parse_any(raw, format)? {
        Parsed::Instant(i) => i,
        Parsed::Local(n, Some(off)) => off
            .from_local_datetime(&n)
            .single()
            .ok_or_else(|| invalid("date-time with offset is out of range"))?
            .with_timezone(&chrono::Utc),
        Parsed::Local(n, None) => local_to_utc(n, tz)?,
    };
    Ok(instant.with_timezone(&tz).fixed_offset())
}

/// Local wall time in `tz` to an instant: earliest of an ambiguous pair; in a gap, the offset
/// in force before the gap.
fn local_to_utc(n: NaiveDateTime, tz: Tz) -> Result<DateTime<chrono::Utc>, Reject> {
    if let Some(d) = tz.from_local_datetime(&n).earliest() {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    let before = n
        .checked_sub_signed(Duration::days(1))
        .ok_or_else(|| invalid("date-time is out of range"))?;
    let off = tz.offset_from_utc_datetime(&before).fix();
    off.from_local_datetime(&n)
        .single()
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok_or_else(|| invalid("local time does not exist in the time zone"))
}

fn parse_any(raw: &str, format: Option<&str>) -> Result<Parsed, Reject> {
    let s = text::clean(raw);
    if s.is_empty() {
        return Err(invalid("date is empty"));
    }
    match format.map(str::trim) {
        None | Some("") | Some("auto") => auto(&s),
        Some("rfc3339") | Some("iso8601") | Some("fhir") => {
            if let Ok(d) = DateTime::parse_from_rfc3339(&s) {
                return Ok(Parsed::Local(d.naive_local(), Some(d.offset().fix())));
            }
            iso(&s).ok_or_else(|| invalid("not an RFC 3339 / ISO 8601 date-time"))?
        }
        Some("epoch_s") => epoch(&s, 1),
        Some("epoch_ms") => epoch(&s, 1000),
        Some("excel") => excel(&s),
        Some(f) => with_format(&s, f),
    }
}

/// Automatic detection (see the module docs).
fn auto(s: &str) -> Result<Parsed, Reject> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.len() {
            8 => compact(s),
            12 | 14 => compact(s),
            10 => epoch(s, 1),
            13 => epoch(s, 1000),
            5 => match s.parse::<u32>() {
                Ok(n) if (20_000..=80_000).contains(&n) => excel(s),
                _ => Err(invalid("5-digit number outside the Excel serial range 20000..80000")),
            },
            n => Err(invalid(format!(
                "{n}-digit number is neither YYYYMMDD[HHMMSS], epoch seconds (10) nor milliseconds (13)"
            ))),
        };
    }
    if let Some(p) = iso(s) {
        return p;
    }
    if s.contains('年') {
        return chinese(s);
    }
    Err(invalid("unrecognised date spelling"))
}

/// `YYYYMMDD`, `YYYYMMDDHHMM`, `YYYYMMDDHHMMSS`.
fn compact(s: &str) -> Result<Parsed, Reject> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(4..6), num(6..8)) else {
        return Err(invalid("not YYYYMMDD"));
    };
    let date = ymd(y as i32, m, d)?;
    let time = match s.len() {
        8 => NaiveTime::MIN,
        12 | 14 => {
            let sec = if s.len() == 14 { num(12..14) } else { Some(0) };
            hms(num(8..10), num(10..12), sec, 0)?
        }
        _ => return Err(invalid("not YYYYMMDD[HHMM[SS]]")),
    };
    Ok(Parsed::Local(date.and_time(time), None))
}

fn ymd(y: i32, m: u32, d: u32) -> Result<NaiveDate, Reject> {
    NaiveDate::from_ymd_opt(y, m, d)
        .ok_or_else(|| invalid(format!("{y:04}-{m:02}-{d:02} is not a real date")))
}

fn hms(h: Option<u32>, m: Option<u32>, s: Option<u32>, nanos: u32) -> Result<NaiveTime, Reject> {
    match (h, m, s) {
        // A leap second is folded into :59.
        (Some(h), Some(m), Some(60)) => NaiveTime::from_hms_nano_opt(h, m, 59, 999_999_999),
        (Some(h), Some(m), Some(s)) => NaiveTime::from_hms_nano_opt(h, m, s, nanos),
        _ => None,
    }
    .ok_or_else(|| invalid("not a real time of day"))
}

/// Epoch seconds (`scale` 1) or milliseconds (`scale` 1000); an optional fraction.
fn epoch(s: &str, scale: i64) -> Result<Parsed, Reject> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let (neg, digits) = match int.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, int),
    };
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid("not an epoch number"));
    }
    let whole: i64 = digits
        .parse()
        .map_err(|_| invalid("epoch number too large"))?;
    let whole = if neg { -whole } else { whole };
    // Fraction of one unit, in nanoseconds of that unit.
    let unit_nanos: i64 = 1_000_000_000 / scale;
    let frac_nanos: i64 = frac
        .bytes()
        .take(9)
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'))
        * unit_nanos
        / 1_000_000_000;
    let secs = whole.div_euclid(scale);
    let sub_nanos =
        whole.rem_euclid(scale) * unit_nanos + if neg { -frac_nanos } else { frac_nanos };
    let total = DateTime::from_timestamp(secs, 0)
        .and_then(|d| d.checked_add_signed(Duration::nanoseconds(sub_nanos)))
        .ok_or_else(|| invalid("epoch value is out of range"))?;
    Ok(Parsed::Instant(total))
}

/// Excel serial day (1900 date system, with its fictitious 1900-02-29 = 60); the fraction is
/// the time of day, rounded to the millisecond.
fn excel(s: &str) -> Result<Parsed, Reject> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || int.len() > 7
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid("not an Excel serial day number"));
    }
    let n: i64 = int
        .parse()
        .map_err(|_| invalid("not an Excel serial day number"))?;
    let base = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    let date = match n {
        1..=59 => base(1899, 12, 31) + Duration::days(n),
        60 => return Err(invalid("Excel serial 60 is the non-existent 1900-02-29")),
        61..=2_958_465 => base(1899, 12, 30) + Duration::days(n),
        _ => return Err(invalid("Excel serial day outside 1..2958465")),
    };
    // Fraction of a day to milliseconds, exactly from the decimal digits (up to 9 used).
    let mut num: i64 = 0;
    let mut den: i64 = 1;
    for b in frac.bytes().take(9) {
        num = num * 10 + i64::from(b - b'0');
        den *= 10;
    }
    let ms = (num * 86_400_000 + den / 2) / den;
    let dt = date
        .and_time(NaiveTime::MIN)
        .checked_add_signed(Duration::milliseconds(ms))
        .ok_or_else(|| invalid("Excel serial day out of range"))?;
    Ok(Parsed::Local(dt, None))
}

/// A configured chrono format: with an offset, as a naive date-time, or as a date alone.
fn with_format(s: &str, f: &str) -> Result<Parsed, Reject> {
    if let Ok(d) = DateTime::parse_from_str(s, f) {
        return Ok(Parsed::Local(d.naive_local(), Some(d.offset().fix())));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
        return Ok(Parsed::Local(n, None));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, f) {
        return Ok(Parsed::Local(d.and_time(NaiveTime::MIN), None));
    }
    Err(invalid(format!(
        "does not match the configured format {:?}",
        f.chars().take(40).collect::<String>()
    )))
}

/// `Y-M-D`, `Y/M/D`, `Y.M.D` (1-2 digit month and day, one separator throughout), FHIR
/// partial `YYYY` and `YYYY-MM`, optionally followed by `T` or spaces and a time of day
/// `H:MM[:SS[.fff]]` and an offset. `None` when the text does not start like a date.
fn iso(s: &str) -> Option<Result<Parsed, Reject>> {
    let b = s.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year: i32 = s[..4].parse().ok()?;
    // FHIR partial dates.
    if b.len() == 4 {
        return Some(ymd(year, 1, 1).map(|d| Parsed::Local(d.and_time(NaiveTime::MIN), None)));
    }
    let sep = b[4];
    if !matches!(sep, b'-' | b'/' | b'.') {
        return None;
    }
    let rest = &s[5..];
    let (month, rest) = take_digits(rest, 1, 2)?;
    if rest.is_empty() && sep == b'-' {
        return Some(ymd(year, month, 1).map(|d| Parsed::Local(d.and_time(NaiveTime::MIN), None)));
    }
    let rest = rest.strip_prefix(sep as char)?;
    let (day, rest) = take_digits(rest, 1, 2)?;
    let date = match ymd(year, month, day) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    Some(time_part(rest).map(|(t, off)| Parsed::Local(date.and_time(t), off)))
}

/// `2020年7月21日`, `2020年07月21号`, optionally with `10:30[:00]` or `10时30分[00秒]`.
fn chinese(s: &str) -> Result<Parsed, Reject> {
    let bad = || invalid("unrecognised Chinese date spelling");
    let (y_text, rest) = s.split_once('年').ok_or_else(bad)?;
    let (m, rest) = rest.split_once('月').ok_or_else(bad)?;
    let (d, rest) = rest.split_once(['日', '号']).unwrap_or((rest, ""));
    let num = |x: &str| {
        let x = x.trim();
        if x.is_empty() || x.len() > 4 || !x.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            x.parse::<u32>().ok()
        }
    };
    let (Some(y), Some(m), Some(d)) = (num(y_text), num(m), num(d)) else {
        return Err(bad());
    };
    if y_text.trim().len() != 4 {
        return Err(bad());
    }
    let date = ymd(y as i32, m, d)?;
    let rest = rest.trim();
    let time = if rest.is_empty() {
        NaiveTime::MIN
    } else if rest.contains('时') || rest.contains('点') {
        let (h, r) = rest.split_once(['时', '点']).ok_or_else(bad)?;
        let (mi, r) = r.split_once('分').unwrap_or((r, ""));
        let sec = r.trim().trim_end_matches('秒');
        let mi = if mi.trim().is_empty() {
            Some(0)
        } else {
            num(mi)
        };
        let sec = if sec.is_empty() { Some(0) } else { num(sec) };
        hms(num(h), mi, sec, 0)?
    } else {
        let (t, off) = time_part(&format!(" {rest}"))?;
        if off.is_some() {
            return Err(bad());
        }
        t
    };
    Ok(Parsed::Local(date.and_time(time), None))
}

/// Parses 1..=max digits (at least `min`) from the start of `s`.
fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// Time of day and offset after a date: empty, or `T`/space + `H:MM[:SS[.f]]` + offset.
fn time_part(s: &str) -> Result<(NaiveTime, Option<FixedOffset>), Reject> {
    let bad = || invalid("unrecognised time of day after the date");
    if s.is_empty() {
        return Ok((NaiveTime::MIN, None));
    }
    let s = s
        .strip_prefix(['T', 't', ' '])
        .ok_or_else(bad)?
        .trim_start();
    let (h, s) = take_digits(s, 1, 2).ok_or_else(bad)?;
    let s = s.strip_prefix(':').ok_or_else(bad)?;
    let (mi, s) = take_digits(s, 2, 2).ok_or_else(bad)?;
    let (sec, s) = match s.strip_prefix(':') {
        Some(r) => take_digits(r, 2, 2).ok_or_else(bad)?,
        None => (0, s),
    };
    let (nanos, s) = match s.strip_prefix(['.', ',']) {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(bad());
            }
            let digits = &r[..n];
            let mut v: u32 = 0;
            for b in digits.bytes().chain(std::iter::repeat(b'0')).take(9) {
                v = v * 10 + u32::from(b - b'0');
            }
            (v, &r[n..])
        }
        None => (0, s),
    };
    let time = hms(Some(h), Some(mi), Some(sec), nanos)?;
    let off = offset(s.trim_start())?;
    Ok((time, off))
}

/// `""`, `Z`, `+08:00`, `+0800`, `+08`, `-05:30`, `UTC`, `GMT`.
fn offset(s: &str) -> Result<Option<FixedOffset>, Reject> {
    let bad = || invalid("unrecognised UTC offset");
    match s {
        "" => return Ok(None),
        "Z" | "z" | "UTC" | "GMT" => return Ok(FixedOffset::east_opt(0)),
        _ if !s.is_ascii() => return Err(bad()),
        _ => {}
    }
    let (sign, r) = match s.as_bytes()[0] {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match r.len() {
        2 => (r, "00"),
        4 => (&r[..2], &r[2..]),
        5 if r.as_bytes()[2] == b':' => (&r[..2], &r[3..]),
        _ => return Err(bad()),
    };
    let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
        (Ok(h), Ok(m)) if h <= 23 && m <= 59 => (h, m),
        _ => return Err(bad()),
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
        .map(Some)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn dates_auto() {
        let want = d(2020, 7, 21);
        for raw in [
            "2020-07-21",
            "2020-7-21",
            "2020/7/21",
            "2020/07/21",
            "2020.7.21",
            "2020年7月21日",
            "2020年07月21号",
            "2020年7月21",
            "20200721",
            " ２０２０－０７－２１ ",
            "2020-07-21T10:00:00",
            "2020-07-21T23:30:00-05:00",
            "2020-07-21 10:00",
            "2020/7/21 10:00:00",
            "2020年7月21日 10:30",
            "2020年7月21日10时30分",
            "20200721103000",
            "44033",
        ] {
            assert_eq!(parse_date(raw, None), Ok(want), "{raw:?}");
        }
        // The date as written, not converted: 23:30 at -05:00 is 7-22 in Shanghai.
        assert_eq!(
            parse_date("2020-07-21T23:30:00-05:00", Some("rfc3339")),
            Ok(want)
        );
        // Epoch values are dated in Shanghai: 2020-07-20T16:00:00Z is 7-21 00:00 there.
        assert_eq!(parse_date("1595260800", None), Ok(want));
        assert_eq!(parse_date("1595260800000", None), Ok(want));
        assert_eq!(parse_date("1595260800000", Some("epoch_ms")), Ok(want));
        assert_eq!(parse_date("1595260800", Some("epoch_s")), Ok(want));
        // FHIR partial dates.
        assert_eq!(parse_date("1980", Some("rfc3339")), Ok(d(1980, 1, 1)));
        assert_eq!(parse_date("1980-05", None), Ok(d(1980, 5, 1)));
    }

    #[test]
    fn excel_serials() {
        assert_eq!(parse_date("44033", Some("excel")), Ok(d(2020, 7, 21)));
        assert_eq!(parse_date("1", Some("excel")), Ok(d(1900, 1, 1)));
        assert_eq!(parse_date("59", Some("excel")), Ok(d(1900, 2, 28)));
        assert_eq!(parse_date("61", Some("excel")), Ok(d(1900, 3, 1)));
        assert_eq!(parse_date("25569", Some("excel")), Ok(d(1970, 1, 1)));
        assert!(parse_date("60", Some("excel")).is_err());
        assert!(parse_date("0", Some("excel")).is_err());
        assert!(parse_date("99999999", Some("excel")).is_err());
        assert!(
            parse_date("19999", None).is_err(),
            "5-digit outside the auto range"
        );
        let t = parse_datetime("44033.5", Some("excel"), Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2020-07-21T12:00:00+08:00");
    }

    #[test]
    fn configured_formats() {
        assert_eq!(
            parse_date("21/07/2020", Some("%d/%m/%Y")),
            Ok(d(2020, 7, 21))
        );
        assert_eq!(
            parse_date("2020-07-21 10:00:00", Some("%Y-%m-%d %H:%M:%S")),
            Ok(d(2020, 7, 21))
        );
        assert!(parse_date("2020-07-21", Some("%d/%m/%Y")).is_err());
        assert!(
            parse_date("2020-07-21", Some("%Q")).is_err(),
            "a bad format is an error, not a panic"
        );
        let t = parse_datetime("2024/05/01 10:00", Some("%Y/%m/%d %H:%M"), Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T10:00:00+08:00");
        let t = parse_datetime("20240501103000", Some("%Y%m%d%H%M%S"), Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T10:30:00+08:00");
        let t = parse_datetime(
            "2024-05-01 10:00:00 +0000",
            Some("%Y-%m-%d %H:%M:%S %z"),
            Shanghai,
        )
        .unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T18:00:00+08:00");
        let t = parse_datetime("2024-05-01", Some("%Y-%m-%d"), Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T00:00:00+08:00");
    }

    #[test]
    fn date_rejects() {
        for raw in [
            "",
            "abc",
            "2019-02-29",
            "1985-02-29",
            "2020-13-01",
            "2020-00-10",
            "2020-07-32",
            "2020/07-21",
            "20201321",
            "07/21/2020",
            "2020年13月1日",
            "2020-07-21X",
            "2020-07-21T25:00:00",
            "123",
            "99999999999999999999999999",
            "2020-07-21T10:00:00+25:00",
        ] {
            let e = parse_date(raw, None).unwrap_err();
            assert_eq!(e.reason, RejectReason::DateInvalid, "{raw:?}");
        }
        assert_eq!(parse_date("1984-02-29", None), Ok(d(1984, 2, 29)));
        assert!(parse_date("99999999999999999999", Some("epoch_ms")).is_err());
        assert!(parse_date("9223372036854775807", Some("epoch_s")).is_err());
        assert!(parse_date("-9223372036854775808", Some("epoch_ms")).is_err());
    }

    #[test]
    fn datetimes() {
        let cases = [
            ("2024-05-01 10:00:00", "2024-05-01T10:00:00+08:00"),
            ("2024/5/1 10:00", "2024-05-01T10:00:00+08:00"),
            ("20240501103000", "2024-05-01T10:30:00+08:00"),
            ("2024-05-01T10:00:00Z", "2024-05-01T18:00:00+08:00"),
            ("2024-05-01T10:00:00+08:00", "2024-05-01T10:00:00+08:00"),
            (
                "2024-05-01T10:00:00.123+08:00",
                "2024-05-01T10:00:00.123+08:00",
            ),
            ("2024-05-01T10:00:00+0800", "2024-05-01T10:00:00+08:00"),
            ("2024-05-01T10:00:00-05:00", "2024-05-01T23:00:00+08:00"),
            ("2024-05-01T10:00:00", "2024-05-01T10:00:00+08:00"),
            ("2024-05-01", "2024-05-01T00:00:00+08:00"),
            ("2024年5月1日 10:00", "2024-05-01T10:00:00+08:00"),
            ("1714528800", "2024-05-01T10:00:00+08:00"),
            ("1714528800000", "2024-05-01T10:00:00+08:00"),
            ("1714528800123", "2024-05-01T10:00:00.123+08:00"),
        ];
        for (raw, want) in cases {
            let got = parse_datetime(raw, None, Shanghai).map(|t| t.to_rfc3339());
            assert_eq!(got.as_deref(), Ok(want), "{raw:?}");
        }
        // FHIR instant with the rfc3339 format.
        let t = parse_datetime("2024-05-01T02:00:00.000Z", Some("rfc3339"), Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T10:00:00+08:00");
        assert_eq!(
            parse_datetime("1714528800000", Some("epoch_ms"), Shanghai)
                .unwrap()
                .to_rfc3339(),
            "2024-05-01T10:00:00+08:00"
        );
        assert_eq!(
            parse_datetime("1714528800", Some("epoch_s"), Shanghai)
                .unwrap()
                .to_rfc3339(),
            "2024-05-01T10:00:00+08:00"
        );
        // Round trip: our own output reads back as the same instant.
        let t = parse_datetime("2024-05-01 10:00:00", None, Shanghai).unwrap();
        assert_eq!(
            parse_datetime(&t.to_rfc3339(), Some("rfc3339"), Shanghai),
            Ok(t)
        );
        assert_eq!(parse_datetime(&t.to_rfc3339(), None, Shanghai), Ok(t));
    }

    #[test]
    fn dst_gap_and_ambiguity() {
        let ny = chrono_tz::America::New_York;
        // 2024-03-10 02:30 does not exist in New York: read with the offset before (-05:00).
        let t = parse_datetime("2024-03-10 02:30:00", None, ny).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-10T03:30:00-04:00");
        // 2024-11-03 01:30 happens twice: the earliest (-04:00).
        let t = parse_datetime("2024-11-03 01:30:00", None, ny).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-11-03T01:30:00-04:00");
    }

    #[test]
    fn huge_and_odd_numbers_do_not_panic() {
        for raw in [
            "99999999999999999999",
            "9999999999999",
            "9999999999",
            "-1",
            "1e10",
            "0000000000",
            "00000000",
            "99991231235959",
            "0000-01-01",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
        ] {
            for f in [
                None,
                Some("epoch_ms"),
                Some("epoch_s"),
                Some("excel"),
                Some("rfc3339"),
            ] {
                let _ = parse_date(raw, f);
                let _ = parse_datetime(raw, f, Shanghai);
            }
        }
        assert!(parse_datetime("9999999999999", None, Shanghai).is_ok());
        assert!(parse_datetime("99999999999999999999", Some("epoch_ms"), Shanghai).is_err());
    }
}
