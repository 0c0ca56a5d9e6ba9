//! GB 11643-1999 citizen identity numbers.

use chrono::NaiveDate;

use crate::model::{Gender, Reject, RejectReason};

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
    pub upgraded_from_15: bool,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// ISO 7064 MOD 11-2 check character for the first 17 digits.
pub fn check_char(first17: &str) -> Option<char> {
    let mut sum = 0;
    for (i, c) in first17.chars().enumerate() {
        sum += c.to_digit(10)? * WEIGHTS.get(i)?;
    }
    CHECK.get((sum % 11) as usize).copied()
}

pub fn normalize(raw: &str) -> Result<IdNumber, Reject> {
    let s: String = crate::normalize::text::to_half_width(raw)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.len() != 18 || !s[..17].chars().all(|c| c.is_ascii_digit()) {
        return Err(Reject::new(RejectReason::IdNumberFormat, "not 18 characters of digits"));
    }
    let expected = check_char(&s[..17]).ok_or_else(|| Reject::new(RejectReason::IdNumberFormat, "bad digits"))?;
    if !s.ends_with(expected) {
        return Err(Reject::new(RejectReason::IdNumberCheckDigit, "check digit does not match"));
    }
    let birth_date = NaiveDate::parse_from_str(&s[6..14], "%Y%m%d")
        .map_err(|_| Reject::new(RejectReason::IdNumberBirthDate, "birth date is not a real date"))?;
    let gender = if s.as_bytes()[16] % 2 == 1 { Gender::Male } else { Gender::Female };
    Ok(IdNumber {
        county_code: s[..6].to_string(),
        county_known: true,
        value: s,
        birth_date,
        gender,
        upgraded_from_15: false,
    })
}
