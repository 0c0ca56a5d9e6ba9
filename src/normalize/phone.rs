//! Mainland phone numbers.
//!
//! - Mobiles become 11 digits `13812345678` (`^1[3-9]\d{9}$`), after removing a `+86`,
//!   `0086` or bare `86` country prefix, spaces, dashes, dots, slashes and brackets;
//! - landlines become `0AAA-NNNNNNNN`: the area code is `010` or `02x` (3 digits) or any other
//!   `0xxx` (4 digits), the local number has 7 or 8 digits starting 2-9. A number written
//!   with the country code and without the trunk `0` (`+86 791 86123456`) gets it back;
//! - an extension (`转123`, `ext 123`, `x123`, `分机123`, `#123`) is dropped.
//!
//! Full-width characters are accepted. Everything else is [`RejectReason::PhoneInvalid`]
//! with a reason that never quotes the number.

use crate::model::{Reject, RejectReason};
use crate::normalize::text;

fn invalid(detail: impl Into<String>) -> Reject {
    Reject::new(RejectReason::PhoneInvalid, detail)
}

/// An 11-digit mobile (`13812345678`) or a landline with area code (`0791-86123456`).
pub fn normalize(raw: &str) -> Result<String, Reject> {
    let s: String = raw
        .chars()
        .filter(|c| !text::is_invisible(*c))
        .map(text::half_width_char)
        .collect::<String>()
        .to_lowercase();
    let s = cut_extension(&s);

    // Keep digits and one leading '+'; separators go; anything else is an error.
    let mut digits = String::with_capacity(s.len());
    let mut plus = false;
    for c in s.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() && !plus => plus = true,
            c if c.is_whitespace() => {}
            '-'
            | '.'
            | '/'
            | '('
            | ')'
            | '['
            | ']'
            | '（'
            | '）'
            | '\u{2010}'..='\u{2015}'
            | '\u{2212}'
            | '・'
            | '·' => {}
            _ => {
                return Err(invalid(
                    "contains a character that is neither a digit nor a separator",
                ))
            }
        }
    }
    if digits.is_empty() {
        return Err(invalid("contains no digits"));
    }

    // Country prefix. A '+' (or 00) must be +86; without the trunk 0, a landline gets it back.
    let mut international = false;
    let mut d: &str = &digits;
    if plus || d.starts_with("00") {
        let rest = if plus { d } else { &d[2..] };
        match rest.strip_prefix("86") {
            Some(r) => {
                d = r;
                international = true;
            }
            None => return Err(invalid("country code is not +86 (mainland China)")),
        }
    } else if d.len() == 13 && d.starts_with("861") {
        d = &d[2..];
    }
    let local_form;
    // Trunk 0 dropped after +86: "+86 791 ..." and "+86 10 ..." (Beijing) are landlines.
    let beijing = d.starts_with("10") && (9..=10).contains(&d.len());
    if international && (d.starts_with(['2', '3', '4', '5', '6', '7', '8', '9']) || beijing) {
        local_form = format!("0{d}");
        d = &local_form;
    }

    if d.starts_with('1') {
        return mobile(d);
    }
    if d.starts_with('0') {
        return landline(d);
    }
    if d.starts_with("400") || d.starts_with("800") {
        return Err(invalid("400/800 service numbers are not personal phones"));
    }
    if (7..=8).contains(&d.len()) {
        return Err(invalid(format!(
            "{}-digit local number without an area code",
            d.len()
        )));
    }
    Err(invalid(format!(
        "{} digits starting with neither 1 (mobile) nor 0 (area code)",
        d.len()
    )))
}

fn mobile(d: &str) -> Result<String, Reject> {
    match d.len() {
        11 => {}
        n if n < 11 => {
            return Err(invalid(format!(
                "mobile number too short: {n} digits, expected 11"
            )))
        }
        n => {
            return Err(invalid(format!(
                "mobile number too long: {n} digits, expected 11"
            )))
        }
    }
    let second = d.as_bytes()[1];
    if !(b'3'..=b'9').contains(&second) {
        return Err(invalid(format!(
            "mobile prefix 1{} is not assigned (expected 13-19)",
            second as char
        )));
    }
    Ok(d.to_string())
}

fn landline(d: &str) -> Result<String, Reject> {
    if d.len() < 3 {
        return Err(invalid("too short for a landline with area code"));
    }
    let second = d.as_bytes()[1];
    if second == b'0' {
        return Err(invalid("area code cannot start with 00"));
    }
    // 010 and 020-029 are 3 digits, every other area code is 4.
    let area_len = if matches!(second, b'1' | b'2') { 3 } else { 4 };
    if second == b'1' && d.as_bytes()[2] != b'0' {
        return Err(invalid("area code 01x other than 010 does not exist"));
    }
    if d.len() <= area_len {
        return Err(invalid("area code without a local number"));
    }
    let (area, local) = d.split_at(area_len);
    if !(7..=8).contains(&local.len()) {
        return Err(invalid(format!(
            "local number after area code has {} digits, expected 7 or 8",
            local.len()
        )));
    }
    if local.starts_with(['0', '1']) {
        return Err(invalid("local number cannot start with 0 or 1"));
    }
    Ok(format!("{area}-{local}"))
}

/// Cuts the string at an extension marker.
fn cut_extension(s: &str) -> &str {
    let mut cut = s.len();
    for marker in ["转", "分机", "ext", "#", "x"] {
        if let Some(i) = s.find(marker) {
            // Only when digits come before the marker (a number, then its extension).
            if s[..i].chars().any(|c| c.is_ascii_digit()) {
                cut = cut.min(i);
            }
        }
    }
    &s[..cut]
}

/// True for an 11-digit mobile in canonical form.
pub fn is_mobile(normalized: &str) -> bool {
    normalized.len() == 11
        && normalized.starts_with('1')
        && normalized.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles() {
        for raw in [
            "13812345678",
            "138 1234 5678",
            "138-1234-5678",
            "138.1234.5678",
            "+86 138 1234 5678",
            "+86-13812345678",
            "(+86)13812345678",
            "0086 13812345678",
            "008613812345678",
            "8613812345678",
            "86 138 1234 5678",
            "１３８１２３４５６７８",
            "＋８６　１３８１２３４５６７８",
            " 13812345678 ",
            "\u{200B}13812345678",
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok("13812345678"), "{raw:?}");
        }
        assert_eq!(normalize("19912345678").as_deref(), Ok("19912345678"));
        assert!(is_mobile("13812345678"));
        assert!(!is_mobile("0791-86123456"));
    }

    #[test]
    fn landlines() {
        for raw in [
            "0791-86123456",
            "(0791)86123456",
            "（0791）86123456",
            "0791 8612 3456",
            "0791 86123456",
            "079186123456",
            "+86 791 86123456",
            "+86-791-86123456",
            "0086 791 86123456",
            "+86 0791 86123456",
            "0791-86123456转123",
            "0791-86123456 ext. 12",
            "0791-86123456-分机8",
            "０７９１－８６１２３４５６",
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok("0791-86123456"), "{raw:?}");
        }
        assert!(
            normalize("010-12345678").is_err(),
            "local numbers start 2-9"
        );
        assert_eq!(normalize("010-62345678").as_deref(), Ok("010-62345678"));
        assert_eq!(normalize("(010)6234 5678").as_deref(), Ok("010-62345678"));
        assert_eq!(normalize("021 5123 4567").as_deref(), Ok("021-51234567"));
        assert_eq!(normalize("0793-8212345").as_deref(), Ok("0793-8212345"));
        assert_eq!(normalize("+86 10 62345678").as_deref(), Ok("010-62345678"));
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            ("", "no digits"),
            ("abc", "neither a digit"),
            ("1381234567", "too short"),
            ("138123456789", "too long"),
            ("12812345678", "prefix 12"),
            ("+1 415 555 2671", "country code"),
            ("86123456", "without an area code"),
            ("4008123456", "service numbers"),
            ("0791-861234", "expected 7 or 8"),
            ("0791-861234567", "expected 7 or 8"),
            ("0791-06123456", "cannot start with 0"),
            ("00-12345678", "country code"),
            ("0123-4567890", "01x"),
            ("13812345678a", "neither a digit"),
            ("手机13812345678", "neither a digit"),
            ("5", "1 digits"),
        ];
        for (raw, want) in cases {
            let e = normalize(raw).unwrap_err();
            assert_eq!(e.reason, RejectReason::PhoneInvalid, "{raw:?}");
            assert!(e.detail.contains(want), "{raw:?}: {}", e.detail);
            let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() >= 4 {
                assert!(
                    !e.detail.contains(&digits),
                    "detail leaks the number: {}",
                    e.detail
                );
            }
        }
    }
}
