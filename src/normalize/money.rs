//! Money to integer fen, never through floating point.

use crate::model::{Reject, RejectReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyUnit {
    Yuan,
    Fen,
}

pub fn to_fen(raw: &str, unit: MoneyUnit) -> Result<i64, Reject> {
    let s = crate::normalize::text::clean(raw);
    let bad = || Reject::new(RejectReason::MoneyInvalid, "not an amount");
    match unit {
        MoneyUnit::Fen => s.parse::<i64>().map_err(|_| bad()),
        MoneyUnit::Yuan => {
            let (neg, s) = match s.strip_prefix('-') { Some(r) => (true, r), None => (false, s.as_str()) };
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            if frac.len() > 2 || int.is_empty() { return Err(bad()); }
            let i: i64 = int.parse().map_err(|_| bad())?;
            let f: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().map_err(|_| bad())? };
            let v = i * 100 + f;
            Ok(if neg { -v } else { v })
        }
    }
}
