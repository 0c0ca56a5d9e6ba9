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
/// text with a masked form. Used on error messages that may quote input.
pub fn scrub_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if is_digit(chars[i]) {
            let start = i;
            let mut j = i;
            let mut digits = 0;
            while j < chars.len()
                && (is_digit(chars[j])
                    || (matches!(chars[j], ' ' | '-') && j + 1 < chars.len() && is_digit(chars[j + 1])))
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
            if digits >= 7 {
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

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

fn keep_ends(raw: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let n = chars.len();
    if n == 0 {
        return String::new();
    }
    // Always hide at least half, so a short value is never shown whole.
    let (head, tail) = if head + tail >= n.div_ceil(2) {
        let keep = n / 2;
        (head.min(keep), tail.min(keep.saturating_sub(head.min(keep))))
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
        assert_eq!(m.chars().filter(|c| *c == '*').count() >= 3, true, "{m}");
    }

    #[test]
    fn scrub_hides_digit_runs() {
        let s = scrub_text("bad id 36010219800101123X and phone 138-1234-5678, page 12");
        assert!(!s.contains("36010219800101123X"), "{s}");
        assert!(!s.contains("1234-5678"), "{s}");
        assert!(s.contains("page 12"), "{s}");
    }

    #[test]
    fn address_hides_building_and_room() {
        assert_eq!(address("南昌市东湖区滕王阁街道豫章社区3栋2单元501室"), "南昌市东湖区滕王阁街道豫章社区***");
    }
}
