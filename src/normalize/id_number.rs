//! GB 11643-1999 citizen identity numbers (公民身份号码).
//!
//! Layout of the 18-character number: 6-digit county code (GB/T 2260) of first issue,
//! 8-digit birth date `YYYYMMDD`, 3-digit sequence (odd = male, even = female), and an
//! ISO 7064 MOD 11-2 check character (`0`-`9` or `X`). The older 15-digit number has a 6-digit
//! birth date `YYMMDD` (always 19xx) and no check character; it is upgraded to 18 characters.
//!
//! [`normalize`] checks in this order and reports the first failure:
//! 1. **format** ([`RejectReason::IdNumberFormat`]): after removing separators and converting
//!    full-width characters, 18 characters (17 digits + digit or `X`) or 15 digits;
//! 2. **region** ([`RejectReason::IdNumberRegion`]): the first two digits are a province in
//!    the division table (an unknown 6-digit county code is only a warning:
//!    `county_known = false`, because counties are renamed and merged over time);
//! 3. **birth date** ([`RejectReason::IdNumberBirthDate`]): a real calendar date, not before
//!    1900-01-01 and not after today (Asia/Shanghai);
//! 4. **check digit** ([`RejectReason::IdNumberCheckDigit`]), 18-character input only (a
//!    15-digit number has none; its check character is computed).
//!
//! The structural checks come first so that a mistyped birth date or region is reported as
//! what it is rather than as a check-digit mismatch.

use chrono::{Datelike, NaiveDate, Utc};

use crate::model::{Gender, Reject, RejectReason};
use crate::normalize::{divisions, text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdNumber {
    /// 18 characters, `X` upper-case.
    pub value: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    /// First 6 digits.
    pub county_code: String,
    /// False when the county is not in the current division table (a warning only).
    pub county_known: bool,
    /// True when the input was an old 15-digit number (the value is the 18-character form).
    pub upgraded_from_15: bool,
}

impl IdNumber {
    /// The 2-digit province code.
    pub fn province_code(&self) -> &str {
        self.value.get(..2).unwrap_or("")
    }

    /// The county's name when it is in the division table.
    pub fn county_name(&self) -> Option<&'static str> {
        divisions::county_name(&self.county_code)
    }
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// ISO 7064 MOD 11-2 check character for the first 17 digits; `None` unless the input is
/// exactly 17 ASCII digits.
pub fn check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (i, c) in first17.chars().enumerate() {
        sum += c.to_digit(10)? * WEIGHTS.get(i)?;
    }
    CHECK.get((sum % 11) as usize).copied()
}

/// Today's date in Asia/Shanghai (the birth-date upper bound).
fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

/// Normalizes and validates an ID number (see the module docs for the order of checks).
pub fn normalize(raw: &str) -> Result<IdNumber, Reject> {
    normalize_at(raw, today())
}

/// [`normalize`] with an explicit "today" for the future-birth-date check.
pub fn normalize_at(raw: &str, today: NaiveDate) -> Result<IdNumber, Reject> {
    let s = strip(raw);
    let n = s.chars().count();
    let format = |d: String| Reject::new(RejectReason::IdNumberFormat, d);
    if let Some(pos) = s.chars().position(|c| !c.is_ascii_alphanumeric()) {
        return Err(format(format!(
            "character {} of {n} is not a digit or X",
            pos + 1
        )));
    }
    // From here on `s` is ASCII: byte offsets are character offsets.

    // 1. Format.
    let (first17, given_check, upgraded) = match n {
        18 => {
            if let Some(pos) = s[..17].find(|c: char| !c.is_ascii_digit()) {
                return Err(format(format!(
                    "character {} of 18 is not a digit",
                    pos + 1
                )));
            }
            let last = s.as_bytes()[17];
            if !(last.is_ascii_digit() || last == b'X') {
                return Err(format(
                    "last character is neither a digit nor X".to_string(),
                ));
            }
            (s[..17].to_string(), Some(last as char), false)
        }
        15 => {
            if let Some(pos) = s.find(|c: char| !c.is_ascii_digit()) {
                return Err(format(format!(
                    "character {} of a 15-digit number is not a digit",
                    pos + 1
                )));
            }
            (format!("{}19{}", &s[..6], &s[6..]), None, true)
        }
        0 => return Err(format("empty".to_string())),
        _ => {
            return Err(format(format!(
                "has {n} characters, expected 18 (or an old 15-digit number)"
            )))
        }
    };

    // 2. Region.
    let province = &first17[..2];
    if divisions::province_name(province).is_none() {
        return Err(Reject::new(
            RejectReason::IdNumberRegion,
            format!("province code {province} is not a province of mainland China"),
        ));
    }
    let county_code = first17[..6].to_string();
    let county_known = divisions::county_name(&county_code).is_some();

    // 3. Birth date.
    let (y, m, d) = (&first17[6..10], &first17[10..12], &first17[12..14]);
    let birth_date = match (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) {
        (Ok(y), Ok(m), Ok(d)) => NaiveDate::from_ymd_opt(y, m, d),
        _ => None,
    }
    .ok_or_else(|| {
        Reject::new(
            RejectReason::IdNumberBirthDate,
            format!("birth date {y}-{m}-{d} is not a real date"),
        )
    })?;
    if birth_date.year() < 1900 {
        return Err(Reject::new(
            RejectReason::IdNumberBirthDate,
            format!("birth year {y} is before 1900"),
        ));
    }
    if birth_date > today {
        return Err(Reject::new(
            RejectReason::IdNumberBirthDate,
            "birth date is in the future",
        ));
    }

    // 4. Check digit.
    let expected = check_char(&first17).ok_or_else(|| format("not 17 digits".to_string()))?;
    if let Some(given) = given_check {
        if given != expected {
            return Err(Reject::new(
                RejectReason::IdNumberCheckDigit,
                format!("check digit is {given}, expected {expected}"),
            ));
        }
    }

    let gender = if first17.as_bytes()[16] % 2 == 1 {
        Gender::Male
    } else {
        Gender::Female
    };
    let mut value = first17;
    value.push(expected);
    Ok(IdNumber {
        value,
        birth_date,
        gender,
        county_code,
        county_known,
        upgraded_from_15: upgraded,
    })
}

/// Removes separators (any whitespace incl. U+3000, `-`, `_`, invisible characters),
/// converts full-width to half-width and upper-cases `x`.
fn strip(raw: &str) -> String {
    raw.chars()
        .filter(|c| !text::is_invisible(*c))
        .map(text::half_width_char)
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '_' | '\u{2010}'..='\u{2015}'))
        .map(|c| if c == 'x' { 'X' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
    }

    fn ok(raw: &str) -> IdNumber {
        match normalize_at(raw, today()) {
            Ok(id) => id,
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    fn reason(raw: &str) -> RejectReason {
        match normalize_at(raw, today()) {
            Ok(id) => panic!("{raw} accepted as {id:?}"),
            Err(e) => {
                assert!(
                    !e.detail.contains(raw.trim()) || raw.trim().len() < 6,
                    "detail leaks the raw value: {}",
                    e.detail
                );
                e.reason
            }
        }
    }

    #[test]
    fn published_examples() {
        // The GB 11643 example number.
        assert_eq!(check_char("11010519491231002"), Some('X'));
        let id = ok("11010519491231002X");
        assert_eq!(
            id.birth_date,
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
        assert_eq!(id.gender, Gender::Female);
        assert_eq!(id.county_code, "110105");
        assert!(id.county_known);
        assert_eq!(id.county_name(), Some("朝阳区"));
        assert_eq!(id.province_code(), "11");
        assert!(!id.upgraded_from_15);
        // Commonly cited as valid: the check digit is right, but 1880 is before 1900.
        assert_eq!(check_char("44052418800101001"), Some('4'));
        assert_eq!(
            reason("440524188001010014"),
            RejectReason::IdNumberBirthDate
        );
    }

    #[test]
    fn separators_width_and_case() {
        for raw in [
            "11010519491231002x",
            " 110105 19491231 002X ",
            "110105-19491231-002X",
            "110105_19491231_002x",
            "１１０１０５１９４９１２３１００２Ｘ",
            "１１０１０５　１９４９１２３１　００２ｘ",
            "\u{FEFF}11010519491231002X",
        ] {
            assert_eq!(ok(raw).value, "11010519491231002X", "{raw:?}");
        }
    }

    #[test]
    fn upgrades_15_digit_numbers() {
        // 15-digit: county 360102, born 1980-01-01, sequence 123 (odd: male).
        let id = ok("360102800101123");
        assert_eq!(&id.value[..17], "36010219800101123");
        assert_eq!(id.value.len(), 18);
        assert_eq!(check_char(&id.value[..17]), id.value.chars().last());
        assert!(id.upgraded_from_15);
        assert_eq!(id.gender, Gender::Male);
        assert_eq!(id.birth_date, NaiveDate::from_ymd_opt(1980, 1, 1).unwrap());
        // Female (even sequence).
        let f = ok("360102800101124");
        assert_eq!(f.gender, Gender::Female);
        assert_eq!(&f.value[..17], "36010219800101124");
        // A 15-digit number whose upgraded check character is X.
        let x = ok("110105491231002");
        assert_eq!(x.value, "11010519491231002X");
        assert!(x.upgraded_from_15);
        assert_eq!(x.gender, Gender::Female);
        // The upgraded form normalizes to itself, without the upgrade flag.
        let again = ok(&x.value);
        assert_eq!(again.value, x.value);
        assert!(!again.upgraded_from_15);
        // 15-digit with an impossible birth date.
        assert_eq!(reason("360102800230123"), RejectReason::IdNumberBirthDate);
        // 15 characters with a letter.
        assert_eq!(reason("36010280010112X"), RejectReason::IdNumberFormat);
    }

    fn with_check(first17: &str) -> String {
        format!("{first17}{}", check_char(first17).unwrap())
    }

    #[test]
    fn leap_days() {
        let leap = with_check("36010219840229001");
        assert_eq!(
            ok(&leap).birth_date,
            NaiveDate::from_ymd_opt(1984, 2, 29).unwrap()
        );
        assert_eq!(ok(&leap).gender, Gender::Male);
        assert_eq!(
            reason(&with_check("36010219850229001")),
            RejectReason::IdNumberBirthDate
        );
        // 2000 is a leap year, 1900 is not.
        assert!(normalize_at(&with_check("36010220000229002"), today()).is_ok());
        assert_eq!(
            reason(&with_check("36010219000229002")),
            RejectReason::IdNumberBirthDate
        );
    }

    #[test]
    fn birth_date_bounds() {
        assert_eq!(
            reason(&with_check("36010219801301001")),
            RejectReason::IdNumberBirthDate
        );
        assert_eq!(
            reason(&with_check("36010219800132001")),
            RejectReason::IdNumberBirthDate
        );
        assert_eq!(
            reason(&with_check("36010219800000001")),
            RejectReason::IdNumberBirthDate
        );
        assert_eq!(
            reason(&with_check("36010218991231001")),
            RejectReason::IdNumberBirthDate
        );
        assert!(normalize_at(&with_check("36010219000101001"), today()).is_ok());
        // Today is fine, tomorrow is in the future.
        assert!(normalize_at(&with_check("36010220250601001"), today()).is_ok());
        assert_eq!(
            reason(&with_check("36010220250602001")),
            RejectReason::IdNumberBirthDate
        );
        // And with the real clock, a far-future date.
        assert_eq!(
            normalize(&with_check("36010220990101001"))
                .unwrap_err()
                .reason,
            RejectReason::IdNumberBirthDate
        );
    }

    #[test]
    fn region() {
        // Province 99 does not exist.
        assert_eq!(
            reason(&with_check("99010219800101001")),
            RejectReason::IdNumberRegion
        );
        assert_eq!(
            reason(&with_check("00010219800101001")),
            RejectReason::IdNumberRegion
        );
        // Known province, retired county (新建县 360122): accepted with a warning.
        let old = ok(&with_check("36012219800101001"));
        assert!(!old.county_known);
        assert_eq!(old.county_code, "360122");
        assert!(ok(&with_check("36010219800101001")).county_known);
    }

    #[test]
    fn check_digit_and_format() {
        let good = with_check("36010219800101123");
        let last = good.chars().last().unwrap();
        let wrong = if last == '0' { '1' } else { '0' };
        let bad = format!("{}{wrong}", &good[..17]);
        let e = normalize_at(&bad, today()).unwrap_err();
        assert_eq!(e.reason, RejectReason::IdNumberCheckDigit);
        assert_eq!(e.detail, format!("check digit is {wrong}, expected {last}"));
        assert_eq!(reason("3601021980010112"), RejectReason::IdNumberFormat);
        assert_eq!(reason("3601021980010112345"), RejectReason::IdNumberFormat);
        assert_eq!(reason("36010219800101123Y"), RejectReason::IdNumberFormat);
        assert_eq!(reason("3601021980A101123X"), RejectReason::IdNumberFormat);
        assert_eq!(reason(""), RejectReason::IdNumberFormat);
        assert_eq!(reason("   "), RejectReason::IdNumberFormat);
        assert_eq!(
            reason("张三李四王五赵六钱七孙八周九吴十郑"),
            RejectReason::IdNumberFormat
        );
        // X only allowed last.
        assert_eq!(reason("3601021980010112X3"), RejectReason::IdNumberFormat);
    }

    #[test]
    fn check_char_rejects_bad_input() {
        assert_eq!(check_char("1101051949123100"), None);
        assert_eq!(check_char("110105194912310021"), None);
        assert_eq!(check_char("1101051949123100A"), None);
        assert_eq!(check_char("１１０１０５１９４９１２３１００"), None);
    }
}
