//! Personal names.
//!
//! - full-width ASCII to half-width, invisible characters dropped, whitespace (incl. U+3000)
//!   trimmed and collapsed;
//! - spaces next to a Han character or a middle dot are removed (`张 三` → `张三`,
//!   `阿卜杜 · 热合曼` → `阿卜杜·热合曼`); single spaces between Latin words are kept;
//! - the separator of minority and foreign names is unified to U+00B7 `·`: U+30FB `・`,
//!   U+FF65 `･`, U+2022 `•`, U+2027 `‧`, U+2219 `∙`, U+22C5 `⋅`, U+0387 anywhere, and `.` /
//!   `．` when between Han characters (a Latin initial `John F. Kennedy` keeps its dot);
//! - a clerk's note in brackets is not part of the name: `王秀英（独居）`, `李建国(低保)`,
//!   `【空巢】张桂兰`, `Zhang Wei [carer]` keep only the name (an unclosed bracket ends the
//!   name; a name written wholly in brackets, `（张三）`, keeps what they hold). No
//!   personal name contains a bracket; every system that lets a clerk type into the name
//!   field gets remarks there;
//! - so is a remark set off by a space or a punctuation mark before or after the name when
//!   it is made of words clerks write there ([`REMARKS`]: `王秀英 代办`, `张桂兰，独居低保`,
//!   `空巢/李建国`). Only those words: `阿卜杜 热合曼` (a minority name spaced instead of
//!   dotted) and `欧阳 明月` keep every part.

use crate::model::{Reject, RejectReason};
use crate::normalize::text;

/// The canonical middle dot.
pub const MIDDLE_DOT: char = '\u{00B7}';

fn is_dot_like(c: char) -> bool {
    matches!(
        c,
        '\u{00B7}'
            | '\u{30FB}'
            | '\u{FF65}'
            | '\u{2022}'
            | '\u{2027}'
            | '\u{2219}'
            | '\u{22C5}'
            | '\u{0387}'
    )
}

/// Opening and closing brackets of notes (after `text::clean`, full-width ASCII brackets
/// are half-width already).
fn bracket(c: char) -> Option<bool> {
    match c {
        '(' | '[' | '{' | '<' | '【' | '〔' | '〖' | '《' | '〈' | '「' | '『' => Some(true),
        ')' | ']' | '}' | '>' | '】' | '〕' | '〗' | '》' | '〉' | '」' | '』' => {
            Some(false)
        }
        _ => None,
    }
}

/// The name without bracketed notes (if nothing is left outside brackets, the text inside
/// them); `None` when it has no bracket.
fn without_notes(s: &str) -> Option<String> {
    if !s.chars().any(|c| bracket(c).is_some()) {
        return None;
    }
    let (mut outside, mut all) = (String::with_capacity(s.len()), String::new());
    let mut depth = 0usize;
    for c in s.chars() {
        match bracket(c) {
            Some(true) => depth += 1,
            Some(false) => depth = depth.saturating_sub(1),
            None if depth == 0 => {
                outside.push(c);
                all.push(c);
            }
            None => all.push(c),
        }
    }
    Some(if outside.trim().is_empty() {
        all
    } else {
        outside
    })
}

/// Words a clerk writes into a name field about the person or the registration, never part
/// of a name: living alone, minimum living allowance, empty nest, no family, the "five
/// guarantees", extreme hardship, disabled, loss of the only child, a priority or special
/// case, entitled families, someone acting or collecting on the person's behalf, deceased,
/// moved out, cancelled, duplicate, to be checked, the person themself. Not 家属 (`王秀英
/// 家属` is a family member of 王秀英, not her) nor 测试 (a test entry is not a person).
const REMARKS: &[&str] = &[
    "独居",
    "低保",
    "空巢",
    "孤寡",
    "孤老",
    "五保",
    "特困",
    "残疾",
    "失独",
    "失能",
    "半失能",
    "重点",
    "特殊",
    "优抚",
    "烈属",
    "军属",
    "代办",
    "代领",
    "代签",
    "代理",
    "已故",
    "去世",
    "死亡",
    "迁出",
    "已迁",
    "注销",
    "作废",
    "重复",
    "待核",
    "待查",
    "核实",
    "本人",
];

/// Characters that set a remark off from the name (after `text::clean`).
fn remark_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | '，' | '、' | '/' | ';' | '；' | ':' | '：' | '-' | '—'
        )
}

/// True when `s` is one or more [`REMARKS`] and nothing else.
fn is_remark(s: &str) -> bool {
    let s = s.trim_matches(remark_separator);
    !s.is_empty()
        && (REMARKS.contains(&s)
            || REMARKS
                .iter()
                .any(|r| s.strip_prefix(r).is_some_and(is_remark)))
}

/// The name without a remark set off before or after it (see the module docs); `None` when
/// there is none.
fn without_remark(s: &str) -> Option<String> {
    let cut = |at: usize, after: bool| -> Option<String> {
        let (name, remark) = if after {
            (&s[..at], &s[at..])
        } else {
            (&s[at..], &s[..at])
        };
        let name = name.trim_matches(remark_separator);
        // A surname alone is not a name: `王 重点` is a spaced name, whatever its words.
        (is_remark(remark) && name.chars().any(text::is_han) && name.chars().count() >= 2)
            .then(|| name.to_string())
    };
    let first = s.find(remark_separator);
    let last = s.rfind(remark_separator);
    last.and_then(|i| cut(i, true)).or_else(|| {
        first.and_then(|i| cut(i + s[i..].chars().next().map_or(1, char::len_utf8), false))
    })
}

/// The name without any remarks set off before or after it, peeled one at a time
/// (`独居 王秀英 代办 低保` → `王秀英`); `None` when there is none.
fn without_remarks(s: &str) -> Option<String> {
    let mut out = without_remark(s)?;
    while let Some(next) = without_remark(&out) {
        out = next;
    }
    Some(out)
}

/// Cleans a name; an empty name is rejected ([`RejectReason::RecordMalformed`]).
pub fn normalize(raw: &str) -> Result<String, Reject> {
    let s = text::clean(raw);
    let s = without_notes(&s).map_or(s, |n| text::clean(&n));
    let s = without_remarks(&s).unwrap_or(s);
    let chars: Vec<char> = s.chars().collect();
    // Pass 1: unify dots. A '.' counts when its nearest non-space neighbours are both Han.
    let neighbour = |i: usize, step: isize| -> Option<char> {
        let mut j = i as isize + step;
        while j >= 0 && (j as usize) < chars.len() {
            let c = chars[j as usize];
            if c != ' ' {
                return Some(c);
            }
            j += step;
        }
        None
    };
    let unified: Vec<char> = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let han_dot = c == '.'
                && neighbour(i, -1).is_some_and(text::is_han)
                && neighbour(i, 1).is_some_and(text::is_han);
            if is_dot_like(c) || han_dot {
                MIDDLE_DOT
            } else {
                c
            }
        })
        .collect();
    // Pass 2: drop spaces that touch a Han character or a middle dot.
    let joins = |c: Option<&char>| c.is_some_and(|c| text::is_han(*c) || *c == MIDDLE_DOT);
    let mut out = String::with_capacity(s.len());
    for (i, c) in unified.iter().enumerate() {
        if *c == ' ' && (joins(unified.get(i.wrapping_sub(1))) || joins(unified.get(i + 1))) {
            continue;
        }
        out.push(*c);
    }
    // Separators at the ends carry nothing.
    let out = out
        .trim_matches(|c: char| c == MIDDLE_DOT || c == ' ')
        .to_string();
    // Collapse repeated dots ("买买提··艾力").
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == MIDDLE_DOT && collapsed.ends_with(MIDDLE_DOT) {
            continue;
        }
        collapsed.push(c);
    }
    if collapsed.is_empty() {
        return Err(Reject::new(
            RejectReason::RecordMalformed,
            "name is empty after removing spaces and separators",
        ));
    }
    Ok(collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("张三", "张三"),
            ("  张三  ", "张三"),
            ("张 三", "张三"),
            ("张　三", "张三"),
            ("欧阳  娜娜", "欧阳娜娜"),
            ("\u{3000}李四\u{3000}", "李四"),
            ("阿卜杜·热合曼", "阿卜杜·热合曼"),
            ("阿卜杜・热合曼", "阿卜杜·热合曼"),
            ("阿卜杜•热合曼", "阿卜杜·热合曼"),
            ("阿卜杜‧热合曼", "阿卜杜·热合曼"),
            ("阿卜杜．热合曼", "阿卜杜·热合曼"),
            ("阿卜杜.热合曼", "阿卜杜·热合曼"),
            ("阿卜杜 · 热合曼", "阿卜杜·热合曼"),
            ("阿卜杜 . 热合曼", "阿卜杜·热合曼"),
            ("买买提··艾力", "买买提·艾力"),
            ("·张三·", "张三"),
            ("John  Smith", "John Smith"),
            (" John F. Kennedy ", "John F. Kennedy"),
            ("Ｊｏｈｎ　Ｓｍｉｔｈ", "John Smith"),
            ("王\u{200B}五", "王五"),
            ("王秀英（独居）", "王秀英"),
            ("李建国(低保)", "李建国"),
            ("【空巢】张桂兰", "张桂兰"),
            ("张桂兰 〔代办〕 ", "张桂兰"),
            ("Zhang Wei [carer]", "Zhang Wei"),
            ("王秀英（独居", "王秀英"),
            ("王秀英）", "王秀英"),
            ("（张三）", "张三"),
            ("阿卜杜·热合曼（维）", "阿卜杜·热合曼"),
            ("王秀英 代办", "王秀英"),
            ("王秀英　代办", "王秀英"),
            ("张桂兰，独居低保", "张桂兰"),
            ("空巢/李建国", "李建国"),
            ("李建国-已故", "李建国"),
            ("阿卜杜 热合曼", "阿卜杜热合曼"),
            ("欧阳 明月", "欧阳明月"),
            ("代办", "代办"),
            ("王 重点", "王重点"),
            ("张桂兰，独居，低保", "张桂兰"),
            ("独居 王秀英 代办 低保", "王秀英"),
            ("空巢/李建国/独居", "李建国"),
            // A family member of 王秀英 is not 王秀英.
            ("王秀英 家属", "王秀英家属"),
            ("Xiao-Wei Zhang", "Xiao-Wei Zhang"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn empty_is_rejected() {
        for raw in ["", "   ", "\u{3000}", "·", " ・ ", "（）", "( )"] {
            let e = normalize(raw).unwrap_err();
            assert_eq!(e.reason, RejectReason::RecordMalformed, "{raw:?}");
        }
    }
}
