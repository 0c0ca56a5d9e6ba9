//! The one masking layer: every log line, error, status, rejects list, review and report that
//! shows personal data goes through here, so a full ID number or phone never leaves the store.

/// Masks a resident ID number: keeps the 4-digit region prefix and the last 4 characters of an
/// 18-digit number (`3601**********123X`); shorter or odd input keeps less.
pub fn id_number(raw: &str) -> String {
    keep_ends(raw, 4, 4)
}

/// Masks a phone number: mobile `138****5678`; anything else keeps at most 3 + 2.
pub fn phone(raw: &str) -> String {
    let n = raw.chars().count();
    if n >= 11 {
        keep_ends(raw, 3, 4)
    } else {
        keep_ends(raw, 3.min(n / 3), 2.min(n / 4))
    }
}

/// Masks a personal name: keeps the first character (`张*`, `阿**`).
pub fn name(raw: &str) -> String {
    keep_ends(raw, 1, 0)
}

/// Masks any value of a field by the field's canonical name; non-sensitive fields pass.
pub fn field(field: &str, raw: &str) -> String {
    match field {
        "id_number" => id_number(raw),
        "phone" => phone(raw),
        "name" => name(raw),
        "address" => address(raw),
        _ if is_sensitive_looking(raw) => generic(raw),
        _ => raw.to_string(),
    }
}

/// Masks an address after its community part: building, unit and room are hidden.
pub fn address(raw: &str) -> String {
    match raw.find("社区") {
        Some(i) => format!("{}社区***", &raw[..i]),
        None => keep_ends(raw, 6, 0),
    }
}

/// Masks an unknown value that is long and digit-heavy, as a safety net: `12**********89`.
pub fn generic(raw: &str) -> String {
    keep_ends(raw, 2, 2)
}

/// True for values that look like they could be an ID number or phone (7+ digits in a row).
pub fn is_sensitive_looking(raw: &str) -> bool {
    let mut run = 0;
    for c in raw.chars() {
        if c.is_ascii_digit() || ('０'..='９').contains(&c) {
            run += 1;
            if run >= 7 {
                return true;
            }
        } else if !matches!(c, ' ' | '-' | '+' | '　') {
            run = 0;
        }
    }
    false
}

/// Replaces every run of 7 or more digits (allowing spaces, dashes and a trailing X) in free
/// text with a masked form. Used on error messages that may quote input. A calendar date
/// written `YYYY-MM-DD` (as in every timestamp we print) is a time, not a value: it is kept.
pub fn scrub_text(text: &str) -> String {
    scrub_runs(text, 7)
}

/// A department system's record key (`pat-0000025`, `NC00012345`), shown in full so that a
/// quarantined record or a review item can be followed up in that system: a key is the
/// vendor's identifier, not personal data. A key that carries an ID number or a phone (11 or
/// more digits in a row, as some vendors key records by them) is masked like a log line.
pub fn record_key(key: &str) -> String {
    scrub_log(key)
}

/// The log-line safety net: masks runs of 11 or more digits (a phone, a 15- or 18-digit ID
/// number), leaving ordinary counts alone. Every log line passes through it.
pub fn scrub_log(text: &str) -> String {
    if !text.bytes().any(|b| b.is_ascii_digit() || b >= 0x80) {
        return text.to_string();
    }
    scrub_runs(text, 11)
}

fn scrub_runs(text: &str, min_digits: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if is_digit(chars[i]) && (i == 0 || !is_digit(chars[i - 1])) && is_date_at(&chars, i) {
            out.extend(&chars[i..i + 10]);
            i += 10;
        } else if is_digit(chars[i]) {
            let start = i;
            let mut j = i;
            let mut digits = 0;
            while j < chars.len()
                && (is_digit(chars[j])
                    || (matches!(chars[j], ' ' | '-')
                        && j + 1 < chars.len()
                        && is_digit(chars[j + 1])))
            {
                if is_digit(chars[j]) {
                    digits += 1;
                }
                j += 1;
            }
            if j < chars.len() && matches!(chars[j], 'X' | 'x') && digits >= 14 {
                j += 1;
                digits += 1;
            }
            let run: String = chars[start..j].iter().collect();
            if digits >= min_digits {
                out.push_str(&generic(&run));
            } else {
                out.push_str(&run);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `YYYY-MM-DD` (a plausible month and day) at `i`, not followed by another digit or by a
/// dash and a digit (so `0791-86-123456` is not read as a date).
fn is_date_at(chars: &[char], i: usize) -> bool {
    let Some(w) = chars.get(i..i + 10) else {
        return false;
    };
    let d = |k: usize| w[k].is_ascii_digit();
    let shape = (0..4).all(d) && w[4] == '-' && d(5) && d(6) && w[7] == '-' && d(8) && d(9);
    if !shape {
        return false;
    }
    let num = |a: usize, b: usize| {
        w[a..b]
            .iter()
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    };
    let (month, day) = (num(5, 7), num(8, 10));
    let next = chars.get(i + 10).copied();
    let after = chars.get(i + 11).copied();
    (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && !next.is_some_and(is_digit)
        && !(next == Some('-') && after.is_some_and(is_digit))
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

fn keep_ends(raw: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let n = chars.len();
    if n == 0 {
        return String::new();
    }
    // Always hide at least 4 characters (or all but one of a short value), so a short value is
    // never shown whole and a phone keeps the usual 3 + 4 shape.
    let hide_min = 4.min(n.saturating_sub(1)).max(1);
    let (head, tail) = if n.saturating_sub(head + tail) < hide_min {
        let keep = n - hide_min;
        let h = head.min(keep);
        (h, tail.min(keep - h))
    } else {
        (head, tail)
    };
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(chars[n - tail..].iter());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_id_and_phone() {
        assert_eq!(id_number("36010219800101123X"), "3601**********123X");
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(name("张三丰"), "张**");
        assert_eq!(name("张"), "*");
    }

    #[test]
    fn short_values_are_mostly_hidden() {
        let m = phone("12345");
        assert!(m.chars().filter(|c| *c == '*').count() >= 3, "{m}");
    }

    #[test]
    fn scrub_hides_digit_runs() {
        let s = scrub_text("bad id 36010219800101123X and phone 138-1234-5678, page 12");
        assert!(!s.contains("36010219800101123X"), "{s}");
        assert!(!s.contains("1234-5678"), "{s}");
        assert!(s.contains("page 12"), "{s}");
    }

    #[test]
    fn dates_and_times_are_not_values() {
        let s = scrub_text("last push: 2026-01-07T01:00:27.232Z ok, at 2026-01-07 09:00:27");
        assert_eq!(
            s,
            "last push: 2026-01-07T01:00:27.232Z ok, at 2026-01-07 09:00:27"
        );
        // ... but a phone right after a date still is one.
        let s = scrub_text("2026-01-07 13812345678");
        assert!(
            s.starts_with("2026-01-07 ") && !s.contains("12345678"),
            "{s}"
        );
        // Digit groups that only look like a date's start are masked as before.
        for v in ["0791-86-123456", "2026-01-0712345", "1381-12-12-5678"] {
            assert!(
                !scrub_text(v).contains(&v[v.len() - 4..]),
                "{v}: {}",
                scrub_text(v)
            );
        }
    }

    #[test]
    fn record_keys_are_shown_unless_they_carry_an_id_or_phone() {
        assert_eq!(record_key("pat-0000025"), "pat-0000025");
        assert_eq!(record_key("T0000012345"), "T0000012345");
        assert!(!record_key("36010219800101123X").contains("19800101"));
        assert!(!record_key("ykt-13812345678").contains("12345678"));
    }

    #[test]
    fn address_hides_building_and_room() {
        assert_eq!(
            address("南昌市东湖区滕王阁街道豫章社区3栋2单元501室"),
            "南昌市东湖区滕王阁街道豫章社区***"
        );
    }
}
