//! Dates and times: many spellings in, ISO 8601 out; naive values are local time.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::model::{Reject, RejectReason};

pub fn parse_date(raw: &str, format: Option<&str>) -> Result<NaiveDate, Reject> {
    let s = crate::normalize::text::clean(raw);
    if let Some(f) = format {
        return NaiveDate::parse_from_str(&s, f).map_err(|_| Reject::new(RejectReason::DateInvalid, "date does not match format"));
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日"] {
        if let Ok(d) = NaiveDate::parse_from_str(&s, f) {
            return Ok(d);
        }
    }
    Err(Reject::new(RejectReason::DateInvalid, "unrecognised date"))
}

pub fn parse_datetime(raw: &str, format: Option<&str>, tz: Tz) -> Result<DateTime<FixedOffset>, Reject> {
    let s = crate::normalize::text::clean(raw);
    if format == Some("epoch_ms") || (format.is_none() && s.len() == 13 && s.chars().all(|c| c.is_ascii_digit())) {
        let ms: i64 = s.parse().map_err(|_| Reject::new(RejectReason::DateInvalid, "bad epoch"))?;
        return tz.timestamp_millis_opt(ms).single().map(|d| d.fixed_offset()).ok_or_else(|| Reject::new(RejectReason::DateInvalid, "bad epoch"));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(&s) {
        return Ok(d);
    }
    let formats: Vec<&str> = match format {
        Some(f) => vec![f],
        None => vec!["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S"],
    };
    for f in formats {
        if let Ok(n) = NaiveDateTime::parse_from_str(&s, f) {
            if let Some(d) = tz.from_local_datetime(&n).earliest() {
                return Ok(d.fixed_offset());
            }
        }
    }
    if let Ok(d) = parse_date(&s, None) {
        if let Some(d) = d.and_hms_opt(0, 0, 0).and_then(|n| tz.from_local_datetime(&n).earliest()) {
            return Ok(d.fixed_offset());
        }
    }
    Err(Reject::new(RejectReason::DateInvalid, "unrecognised date-time"))
}
