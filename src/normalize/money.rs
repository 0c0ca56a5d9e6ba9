//! Money to integer fen (分, 1/100 yuan), never through floating point.
//!
//! Accepted: an optional sign (`-`, `+`, `−`), an optional currency marker (`¥`, `￥`, `RMB`,
//! `CNY`, and a trailing `元` for yuan or `分` for fen), thousands separators in groups of
//! three (`1,234.50`), full-width digits. A yuan amount may have at most two significant
//! decimal places (`35.5`, `35.50`, `35.500`); `35.505` is rejected rather than rounded. A fen
//! amount must be whole (`3550`, `3550.00`). Overflow of `i64` is rejected.

use crate::model::{Reject, RejectReason};
use crate::normalize::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyUnit {
    Yuan,
    Fen,
}

fn invalid(detail: impl Into<String>) -> Reject {
    Reject::new(RejectReason::MoneyInvalid, detail)
}

/// Reads an amount in the given unit as integer fen.
pub fn to_fen(raw: &str, unit: MoneyUnit) -> Result<i64, Reject> {
    // Spaces carry nothing in an amount ("¥ 1 234.50").
    let s: String = text::clean(raw)
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| if c == '\u{FFE5}' { '¥' } else { c })
        .collect();
    if s.is_empty() {
        return Err(invalid("amount is empty"));
    }
    let mut rest: &str = &s;
    let mut negative = false;
    let mut sign_seen = false;
    let mut currency_seen = false;
    // Leading sign and currency marker, in either order.
    loop {
        if let Some(r) = rest.strip_prefix(['-', '\u{2212}']) {
            if sign_seen {
                return Err(invalid("more than one sign"));
            }
            (negative, sign_seen, rest) = (true, true, r);
        } else if let Some(r) = rest.strip_prefix('+') {
            if sign_seen {
                return Err(invalid("more than one sign"));
            }
            (sign_seen, rest) = (true, r);
        } else if let Some(r) = ["¥", "RMB", "rmb", "CNY", "cny"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
        {
            if currency_seen {
                return Err(invalid("more than one currency marker"));
            }
            (currency_seen, rest) = (true, r);
        } else {
            break;
        }
    }
    let suffix = match unit {
        MoneyUnit::Yuan => ["元", "圆"].iter().find_map(|p| rest.strip_suffix(p)),
        MoneyUnit::Fen => rest.strip_suffix('分'),
    };
    if let Some(r) = suffix {
        rest = r;
    }
    if unit == MoneyUnit::Fen && currency_seen {
        return Err(invalid(
            "amount carries a yuan currency marker but the field is configured in fen",
        ));
    }
    let (int_part, frac_part) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let int_digits = integer_digits(int_part)?;
    let frac = match frac_part {
        Some(f) => {
            if f.is_empty() && int_digits.is_empty() {
                return Err(invalid("no digits"));
            }
            if !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    "decimal part contains a character that is not a digit",
                ));
            }
            f.trim_end_matches('0')
        }
        None => "",
    };
    if int_digits.is_empty() && frac_part.is_none_or(str::is_empty) {
        return Err(invalid("no digits"));
    }
    let (scale, max_frac) = match unit {
        MoneyUnit::Yuan => (100i64, 2usize),
        MoneyUnit::Fen => (1, 0),
    };
    if frac.len() > max_frac {
        return Err(invalid(match unit {
            MoneyUnit::Yuan => format!(
                "{} decimal places; amounts are exact to the fen (2 places), not rounded",
                frac.len()
            ),
            MoneyUnit::Fen => "fen amount has a fractional part".to_string(),
        }));
    }
    let overflow = || invalid("amount is too large");
    let mut value: i64 = 0;
    for b in int_digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    value = value.checked_mul(scale).ok_or_else(overflow)?;
    if !frac.is_empty() {
        // 1 or 2 digits: "5" is 50 fen, "05" is 5 fen.
        let f: i64 = format!("{frac:0<2}")
            .parse()
            .map_err(|_| invalid("bad decimal part"))?;
        value = value.checked_add(f).ok_or_else(overflow)?;
    }
    Ok(if negative { -value } else { value })
}

/// The integer part's digits with thousands separators removed; separators must group by 3.
fn integer_digits(s: &str) -> Result<String, Reject> {
    if !s.contains(',') {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("contains a character that is not a digit"));
        }
        return Ok(s.to_string());
    }
    let groups: Vec<&str> = s.split(',').collect();
    let well_grouped = groups
        .iter()
        .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
        && groups.first().is_some_and(|g| g.len() <= 3)
        && groups.iter().skip(1).all(|g| g.len() == 3);
    if !well_grouped {
        return Err(invalid(
            "comma is not a thousands separator (groups of 3 digits expected)",
        ));
    }
    Ok(groups.concat())
}

/// Formats fen as a yuan decimal with two places (`-320` → `-3.20`).
pub fn format_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_table() {
        let cases = [
            ("35.5", 3550),
            ("35.50", 3550),
            ("35.500", 3550),
            ("35", 3500),
            ("35.", 3500),
            (".5", 50),
            ("0.05", 5),
            ("¥35.50", 3550),
            ("￥35.50", 3550),
            ("¥ 35.50", 3550),
            ("35.50元", 3550),
            ("RMB 35.50", 3550),
            ("1,234.50", 123450),
            ("1,234,567.89", 123456789),
            ("-3.2", -320),
            ("-¥3.20", -320),
            ("¥-3.20", -320),
            ("+3.2", 320),
            ("－３．２", -320),
            ("３５．５０", 3550),
            ("-0", 0),
            ("0", 0),
            ("92233720368547758.07", i64::MAX),
        ];
        for (raw, want) in cases {
            assert_eq!(to_fen(raw, MoneyUnit::Yuan), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn fen_table() {
        assert_eq!(to_fen("3550", MoneyUnit::Fen), Ok(3550));
        assert_eq!(to_fen("3550.00", MoneyUnit::Fen), Ok(3550));
        assert_eq!(to_fen("-12", MoneyUnit::Fen), Ok(-12));
        assert_eq!(to_fen("12分", MoneyUnit::Fen), Ok(12));
        assert_eq!(to_fen("1,000", MoneyUnit::Fen), Ok(1000));
        assert_eq!(to_fen("9223372036854775807", MoneyUnit::Fen), Ok(i64::MAX));
    }

    #[test]
    fn rejects() {
        let cases = [
            ("35.505", MoneyUnit::Yuan, "3 decimal places"),
            ("0.001", MoneyUnit::Yuan, "3 decimal places"),
            ("", MoneyUnit::Yuan, "empty"),
            ("abc", MoneyUnit::Yuan, "not a digit"),
            ("1e3", MoneyUnit::Yuan, "not a digit"),
            ("35,5", MoneyUnit::Yuan, "thousands"),
            ("1,23,456", MoneyUnit::Yuan, "thousands"),
            (",123", MoneyUnit::Yuan, "thousands"),
            ("--3", MoneyUnit::Yuan, "sign"),
            ("-", MoneyUnit::Yuan, "no digits"),
            (".", MoneyUnit::Yuan, "no digits"),
            ("1.2.3", MoneyUnit::Yuan, "not a digit"),
            ("92233720368547758.08", MoneyUnit::Yuan, "too large"),
            ("99999999999999999999", MoneyUnit::Fen, "too large"),
            ("35.5", MoneyUnit::Fen, "fractional"),
            ("¥35", MoneyUnit::Fen, "fen"),
            ("NaN", MoneyUnit::Yuan, "not a digit"),
        ];
        for (raw, unit, want) in cases {
            let e = to_fen(raw, unit).unwrap_err();
            assert_eq!(e.reason, RejectReason::MoneyInvalid, "{raw:?}");
            assert!(e.detail.contains(want), "{raw:?}: {}", e.detail);
        }
    }

    #[test]
    fn format_round_trip() {
        assert_eq!(format_yuan(-320), "-3.20");
        assert_eq!(format_yuan(5), "0.05");
        assert_eq!(format_yuan(i64::MIN), "-92233720368547758.08");
        for v in [0, 1, -1, 99, 100, 123456, i64::MAX, i64::MIN + 1] {
            assert_eq!(to_fen(&format_yuan(v), MoneyUnit::Yuan), Ok(v));
        }
    }
}
