//! Whitespace and width cleaning shared by the other normalizers.

/// Full-width ASCII (U+FF01..U+FF5E) to half-width, U+3000 (ideographic space) to a space.
/// Everything else is left as it is (no trimming).
pub fn to_half_width(raw: &str) -> String {
    raw.chars().map(half_width_char).collect()
}

/// One character to half-width (see [`to_half_width`]).
pub fn half_width_char(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// True for characters that carry nothing and are dropped by [`clean`]: zero-width spaces and
/// joiners, the byte-order mark, soft hyphen and C0/C1 control characters other than
/// whitespace.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    ) || (c.is_control() && !c.is_whitespace())
}

/// Half-width, invisible characters removed, trimmed, inner whitespace runs (including
/// U+3000 and tabs/newlines) collapsed to one space.
pub fn clean(raw: &str) -> String {
    let s: String = raw
        .chars()
        .filter(|c| !is_invisible(*c))
        .map(half_width_char)
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True for Han ideographs (CJK unified ideographs, extensions A..G, compatibility
/// ideographs) and U+3007 〇.
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3007}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{323AF}')
}

/// Value of a small number written in Chinese numerals (`三` 3, `十二` 12, `二十` 20,
/// `一百零一` 101, `两千` 2000, `二〇一` 201 digit by digit) or in ASCII digits. Up to 9999;
/// `None` for anything else.
pub fn small_number(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return if s.len() <= 9 { s.parse().ok() } else { None };
    }
    let digit = |c: char| -> Option<u32> {
        Some(match c {
            '零' | '〇' | '0' => 0,
            '一' | '壹' => 1,
            '二' | '两' | '贰' => 2,
            '三' | '叁' => 3,
            '四' | '肆' => 4,
            '五' | '伍' => 5,
            '六' | '陆' => 6,
            '七' | '柒' => 7,
            '八' | '捌' => 8,
            '九' | '玖' => 9,
            _ => return None,
        })
    };
    // Digit by digit ("二〇一"): no multipliers at all.
    if s.chars().count() > 1 && s.chars().all(|c| digit(c).is_some()) {
        let mut v: u32 = 0;
        for c in s.chars() {
            v = v.checked_mul(10)?.checked_add(digit(c)?)?;
        }
        return (v <= 9999).then_some(v);
    }
    let mut total: u32 = 0;
    let mut pending: Option<u32> = None;
    let mut last_unit = u32::MAX;
    for c in s.chars() {
        let unit = match c {
            '十' | '拾' => 10,
            '百' | '佰' => 100,
            '千' | '仟' => 1000,
            _ => {
                let d = digit(c)?;
                if pending.is_some() && d != 0 {
                    return None; // two digits in a row without a unit
                }
                pending = if d == 0 { None } else { Some(d) };
                continue;
            }
        };
        if unit >= last_unit {
            return None; // units must decrease: 三百二十, not 三十百
        }
        last_unit = unit;
        // "十二" means 12: a leading unit has an implicit 1.
        let d = pending.take().unwrap_or(1);
        total += d * unit;
    }
    if let Some(d) = pending {
        total += d;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_width_maps_full_width_ascii_and_ideographic_space() {
        assert_eq!(to_half_width("１３８　ＡＢｃ－＿（）"), "138 ABc-_()");
        assert_eq!(to_half_width("张三"), "张三");
    }

    #[test]
    fn clean_collapses_and_trims() {
        assert_eq!(clean("  a\u{3000}\u{3000}b \t c\n"), "a b c");
        assert_eq!(clean("\u{FEFF}ab\u{200B}c"), "abc");
        assert_eq!(clean("　"), "");
    }

    #[test]
    fn han_detection() {
        assert!(is_han('张'));
        assert!(is_han('〇'));
        assert!(is_han('\u{20000}'));
        assert!(!is_han('A'));
        assert!(!is_han('·'));
    }

    #[test]
    fn small_numbers() {
        let cases = [
            ("3", Some(3)),
            ("三", Some(3)),
            ("十", Some(10)),
            ("十二", Some(12)),
            ("二十", Some(20)),
            ("二十三", Some(23)),
            ("一百零一", Some(101)),
            ("三百二十", Some(320)),
            ("两千", Some(2000)),
            ("二〇一", Some(201)),
            ("五〇二", Some(502)),
            ("三十百", None),
            ("", None),
            ("A", None),
            ("三四", Some(34)),
        ];
        for (s, want) in cases {
            assert_eq!(small_number(s), want, "{s}");
        }
    }
}
