//! Chinese street addresses split into their parts:
//! district (区/县/市) / street (街道/镇/乡) / community (社区/村) / building / unit / room.
//!
//! The parser is forgiving: a leading `中国`, province and city (`江西省南昌市`) are skipped
//! when present; spaces and commas are ignored; full-width digits and small Chinese numerals
//! are read as numbers (`三栋` → `3栋`). Known names come from the division tables (all
//! counties nationwide, the township-level divisions of Nanchang); unknown ones are
//! recognised by their suffix. Parts that cannot be found are `None`.
//!
//! Canonical forms: `building` is `N栋` (from 栋/幢/号楼/座, and the `3#` / `3#楼` of
//! property-management systems), `unit` is `N单元`, `room` is `N室` (from 室/房, or 号 after a
//! building or unit: before one, `12号` is a house number; or a bare 3- or 4-digit number
//! ending the address after a building or unit, `3栋2单元501`); `XX社区居委会` → `XX社区`,
//! `XX村委会` → `XX村`. A trailing `3-2-501` is building 3, unit 2, room 501.

use crate::normalize::{divisions, text};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub district: Option<String>,
    pub street: Option<String>,
    pub community: Option<String>,
    pub building: Option<String>,
    pub unit: Option<String>,
    pub room: Option<String>,
}

impl Address {
    /// A canonical key, `东湖区|滕王阁街道|豫章社区|3|2|501`: the parts in order, building, unit
    /// and room without their suffixes, missing parts empty.
    pub fn normalized_key(&self) -> String {
        let part = |p: &Option<String>, suffix: &str| {
            p.as_deref()
                .map(|s| s.strip_suffix(suffix).unwrap_or(s).to_string())
                .unwrap_or_default()
        };
        [
            part(&self.district, ""),
            part(&self.street, ""),
            part(&self.community, ""),
            part(&self.building, "栋"),
            part(&self.unit, "单元"),
            part(&self.room, "室"),
        ]
        .join("|")
    }

    /// True when nothing was recognised.
    pub fn is_empty(&self) -> bool {
        *self == Address::default()
    }
}

/// Former names still found in records, mapped to the current district name.
const DISTRICT_ALIASES: [(&str, &str); 3] = [
    ("红谷滩新区", "红谷滩区"),
    ("新建县", "新建区"),
    ("红谷滩", "红谷滩区"),
];

/// Splits an address into its parts (see the module docs). Never fails: unrecognised parts
/// are `None`.
pub fn parse(raw: &str) -> Address {
    let cleaned: Vec<char> = text::clean(raw)
        .chars()
        .filter(|c| !matches!(c, ' ' | ',' | '、' | '，' | ';'))
        .collect();
    let mut s: &[char] = &cleaned;
    let mut addr = Address::default();

    s = strip_str(s, "中国").unwrap_or(s);
    // A township-level name may begin with a province name ("江西省良种繁殖场").
    if known_street_len(s) == 0 {
        s = strip_province(s);
    }
    if known_street_len(s) == 0 {
        s = strip_city(s);
    }

    // District.
    if let Some((name, rest)) = district(s) {
        addr.district = Some(name);
        s = rest;
        s = strip_any(s, &["(", ")"]);
    }
    // Street.
    if let Some((name, rest)) = street(s) {
        addr.street = Some(name);
        s = rest;
    }
    // Community.
    if let Some((name, rest)) = community(s) {
        addr.community = Some(name);
        s = rest;
    }
    building_unit_room(s, &mut addr);
    addr
}

/// The 9-digit street code of the address's street in Nanchang, restricted to the address's
/// district when it has one; `None` when unknown or ambiguous.
pub fn street_code(addr: &Address) -> Option<String> {
    let street = addr.street.as_deref()?;
    let district_code = match addr.district.as_deref() {
        Some(d) => Some(
            divisions::nanchang_counties()
                .iter()
                .find(|(_, n)| *n == d)
                .map(|(c, _)| *c)?,
        ),
        None => None,
    };
    let mut hits = divisions::nanchang_streets()
        .iter()
        .filter(|(_, name, area)| *name == street && district_code.is_none_or(|dc| dc == *area));
    let first = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    Some(first.0.to_string())
}

fn starts_with(s: &[char], p: &str) -> bool {
    p.chars().enumerate().all(|(i, c)| s.get(i) == Some(&c))
}

fn strip_str<'a>(s: &'a [char], p: &str) -> Option<&'a [char]> {
    starts_with(s, p).then(|| &s[p.chars().count()..])
}

fn strip_any<'a>(mut s: &'a [char], ps: &[&str]) -> &'a [char] {
    while let Some(r) = ps.iter().find_map(|p| strip_str(s, p)) {
        s = r;
    }
    s
}

fn find(s: &[char], p: &str) -> Option<usize> {
    (0..s.len()).find(|&i| starts_with(&s[i..], p))
}

fn to_string(s: &[char]) -> String {
    s.iter().collect()
}

fn strip_province(s: &[char]) -> &[char] {
    for (_, name) in divisions::provinces() {
        if let Some(r) = strip_str(s, name) {
            return r;
        }
    }
    // Short province names ("江西南昌...") only before a city name.
    for (_, name) in divisions::provinces() {
        let short = name
            .trim_end_matches("省")
            .trim_end_matches("自治区")
            .trim_end_matches("市");
        if short.chars().count() >= 2 {
            if let Some(r) = strip_str(s, short) {
                if city_prefix(r).is_some() {
                    return r;
                }
            }
        }
    }
    s
}

/// Length of a city name at the start of `s`, full (`南昌市`) or short (`南昌`, only when not
/// followed by 县/区/市, so `南昌县` stays a county).
fn city_prefix(s: &[char]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let first = s.first().copied()?;
    for (_, name) in divisions::cities() {
        // Full and short forms share the first character: most names are skipped here.
        if !name.starts_with(first) {
            continue;
        }
        if matches!(
            name,
            "市辖区" | "县" | "省直辖县级行政区划" | "自治区直辖县级行政区划"
        ) {
            continue;
        }
        let full = name.chars().count();
        if starts_with(s, name) {
            best = best.max(Some(full));
            continue;
        }
        // The short form only before a county name ("南昌东湖区", not "朝阳洲街道").
        if let Some(short) = name.strip_suffix('市') {
            let n = short.chars().count();
            if n >= 2 && starts_with(s, short) && known_county_len(&s[n..]) > 0 {
                best = best.max(Some(n));
            }
        }
    }
    best
}

fn strip_city(s: &[char]) -> &[char] {
    match city_prefix(s) {
        // Keep a county-level city that shares the prefecture's name.
        Some(n)
            if divisions::county_codes_by_name(&to_string(&s[..n])).is_empty() || s.len() > n =>
        {
            &s[n..]
        }
        _ => s,
    }
}

fn district(s: &[char]) -> Option<(String, &[char])> {
    for (alias, name) in DISTRICT_ALIASES {
        if let Some(r) = strip_str(s, alias) {
            // "红谷滩" alone only when not followed by 区 (then it is the full name).
            if !matches!(r.first(), Some('区' | '新')) {
                return Some((name.to_string(), r));
            }
        }
    }
    // Known county names, longest first; a Nanchang street name at least as long wins.
    let best = known_county_len(s);
    if best > 0 && known_street_len(s) < best {
        return Some((to_string(&s[..best]), &s[best..]));
    }
    if known_street_len(s) > 0 {
        return None;
    }
    // Unknown: "XX区" / "XX县" within the first 8 characters.
    for i in 2..s.len().min(9) {
        if matches!(s[i], '区' | '县')
            && !matches!(
                s[i - 1],
                '社' | '小' | '园' | '景' | '校' | '片' | '街' | '镇' | '乡' | '村'
            )
            && s[..i].iter().all(|c| text::is_han(*c))
        {
            return Some((to_string(&s[..=i]), &s[i + 1..]));
        }
    }
    None
}

/// Length of the longest county name (nationwide) at the start of `s`, 0 if none.
fn known_county_len(s: &[char]) -> usize {
    (2..=s.len().min(12))
        .rev()
        .find(|&n| !divisions::county_codes_by_name(&to_string(&s[..n])).is_empty())
        .unwrap_or(0)
}

/// Length of the longest Nanchang township-level name at the start of `s`, 0 if none.
fn known_street_len(s: &[char]) -> usize {
    divisions::nanchang_streets()
        .iter()
        .filter(|(_, name, _)| starts_with(s, name))
        .map(|(_, name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
}

fn street(s: &[char]) -> Option<(String, &[char])> {
    // Known Nanchang township-level names, longest match.
    let n = known_street_len(s);
    if n > 0 {
        return Some((to_string(&s[..n]), &s[n..]));
    }
    // Unknown: "XX街道" within 12 characters, "XX镇" / "XX乡" within 8.
    if let Some(i) = find(s, "街道").filter(|i| (1..=10).contains(i)) {
        if s[..i].iter().all(|c| text::is_han(*c)) {
            return Some((to_string(&s[..i + 2]), &s[i + 2..]));
        }
    }
    for i in 1..s.len().min(8) {
        if matches!(s[i], '镇' | '乡')
            && s[..i].iter().all(|c| text::is_han(*c))
            && !matches!(s.get(i + 1), Some('村' | '街' | '路'))
        {
            return Some((to_string(&s[..=i]), &s[i + 1..]));
        }
    }
    None
}

fn community(s: &[char]) -> Option<(String, &[char])> {
    // The community name starts after the last road / house-number marker before it.
    let name_start = |head: &[char]| {
        head.iter()
            .rposition(|c| matches!(c, '号' | '路' | '街' | '巷' | '道') || c.is_ascii_digit())
            .map_or(0, |p| p + 1)
    };
    for (marker, canonical, tails) in [
        ("社区", "社区", &["居民委员会", "居委会"][..]),
        ("居民委员会", "社区", &[][..]),
        ("居委会", "社区", &[][..]),
        ("村民委员会", "村", &[][..]),
        ("村委会", "村", &[][..]),
    ] {
        if let Some(i) = find(s, marker) {
            let start = name_start(&s[..i]);
            if i > start {
                let rest = strip_any(&s[i + marker.chars().count()..], tails);
                return Some((format!("{}{canonical}", to_string(&s[start..i])), rest));
            }
        }
    }
    // "XX村" (not 新村 compounds after a house number: those have no start).
    let i = s.iter().position(|c| *c == '村')?;
    let start = name_start(&s[..i]);
    if i > start && i - start <= 8 && s[start..i].iter().all(|c| text::is_han(*c)) {
        return Some((format!("{}村", to_string(&s[start..i])), &s[i + 1..]));
    }
    None
}

fn is_number_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '零' | '〇'
                | '一'
                | '二'
                | '两'
                | '三'
                | '四'
                | '五'
                | '六'
                | '七'
                | '八'
                | '九'
                | '十'
                | '百'
        )
}

/// Canonical text of a number token: digits without leading zeros, Chinese numerals as
/// digits, letters upper-cased.
fn number(token: &[char]) -> Option<String> {
    let t = to_string(token);
    if t.chars().all(|c| c.is_ascii_digit()) {
        let trimmed = t.trim_start_matches('0');
        return Some(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        });
    }
    if let Some(n) = text::small_number(&t) {
        return Some(n.to_string());
    }
    if t.chars().all(|c| c.is_ascii_alphanumeric()) && t.len() <= 6 {
        return Some(t.to_ascii_uppercase());
    }
    None
}

fn building_unit_room(s: &[char], addr: &mut Address) {
    let mut i = 0;
    while i < s.len() {
        if !is_number_char(s[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_number_char(s[i]) {
            i += 1;
        }
        let token = &s[start..i];
        let rest = &s[i..];
        // "3-2-501" / "2-501" shorthand.
        if rest.first() == Some(&'-') {
            let mut parts = vec![token];
            let mut j = i;
            while s.get(j) == Some(&'-') {
                let k = j + 1;
                let mut e = k;
                while e < s.len() && s[e].is_ascii_alphanumeric() {
                    e += 1;
                }
                if e == k {
                    break;
                }
                parts.push(&s[k..e]);
                j = e;
            }
            let tail_ok = s[j..].iter().all(|c| matches!(c, '室' | '房' | '号'));
            if tail_ok {
                let nums: Option<Vec<String>> = parts.iter().map(|p| number(p)).collect();
                match (nums.as_deref(), &addr.building) {
                    (Some([b, u, r]), None) => {
                        addr.building = Some(format!("{b}栋"));
                        addr.unit = Some(format!("{u}单元"));
                        addr.room = Some(format!("{r}室"));
                    }
                    (Some([u, r]), Some(_)) if addr.unit.is_none() => {
                        addr.unit = Some(format!("{u}单元"));
                        addr.room = Some(format!("{r}室"));
                    }
                    _ => {}
                }
                return;
            }
        }
        let Some(n) = number(token) else { continue };
        let (kind, len) = if starts_with(rest, "号楼") {
            ('b', 2)
        } else if rest.first() == Some(&'#') {
            // "3#楼" / "3#": building 3.
            let marker = matches!(rest.get(1), Some('楼' | '栋' | '幢'));
            ('b', 1 + usize::from(marker))
        } else if matches!(rest.first(), Some('栋' | '幢' | '座')) {
            ('b', 1)
        } else if starts_with(rest, "单元") {
            ('u', 2)
        } else if matches!(rest.first(), Some('室' | '房'))
            || (rest.first() == Some(&'号') && (addr.building.is_some() || addr.unit.is_some()))
        {
            ('r', 1)
        } else if rest.is_empty()
            && (addr.building.is_some() || addr.unit.is_some())
            && (3..=4).contains(&token.len())
            && token.iter().all(char::is_ascii_digit)
        {
            // A bare room number ending the address: "3栋2单元501".
            ('r', 0)
        } else {
            ('-', 0)
        };
        match kind {
            'b' if addr.building.is_none() => addr.building = Some(format!("{n}栋")),
            'u' if addr.unit.is_none() => addr.unit = Some(format!("{n}单元")),
            'r' if addr.room.is_none() => addr.room = Some(format!("{n}室")),
            _ => {}
        }
        i += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        parse(raw).normalized_key()
    }

    #[test]
    fn full_addresses() {
        let a = parse("江西省南昌市东湖区滕王阁街道豫章社区3栋2单元501室");
        assert_eq!(a.district.as_deref(), Some("东湖区"));
        assert_eq!(a.street.as_deref(), Some("滕王阁街道"));
        assert_eq!(a.community.as_deref(), Some("豫章社区"));
        assert_eq!(a.building.as_deref(), Some("3栋"));
        assert_eq!(a.unit.as_deref(), Some("2单元"));
        assert_eq!(a.room.as_deref(), Some("501室"));
        assert_eq!(a.normalized_key(), "东湖区|滕王阁街道|豫章社区|3|2|501");
        assert_eq!(street_code(&a).as_deref(), Some("360102002"));
    }

    #[test]
    fn spelling_variants_share_a_key() {
        let want = "东湖区|滕王阁街道|豫章社区|3|2|501";
        for raw in [
            "东湖区滕王阁街道豫章社区3栋2单元501室",
            "南昌市东湖区滕王阁街道豫章社区3栋2单元501室",
            "中国江西省南昌市东湖区滕王阁街道豫章社区3栋2单元501室",
            "江西南昌东湖区滕王阁街道豫章社区3栋2单元501室",
            "东湖区 滕王阁街道 豫章社区 3栋 2单元 501室",
            "东湖区滕王阁街道豫章社区三栋二单元501室",
            "东湖区滕王阁街道豫章社区３栋２单元５０１室",
            "东湖区滕王阁街道豫章社区3幢2单元501号",
            "东湖区滕王阁街道豫章社区3号楼2单元501房",
            "东湖区滕王阁街道豫章社区居委会3栋2单元501室",
            "东湖区滕王阁街道豫章社区3-2-501",
            "东湖区滕王阁街道豫章社区3-2-501室",
            "东湖区滕王阁街道豫章社区3栋2-501",
            "东湖区滕王阁街道豫章社区第3栋2单元501室",
            "东湖区滕王阁街道豫章社区03栋02单元0501室",
            "东湖区滕王阁街道豫章社区阳光小区3栋2单元501室",
            "东湖区滕王阁街道豫章社区3#楼2单元501室",
            "东湖区滕王阁街道豫章社区3#2单元501室",
            "东湖区滕王阁街道豫章社区３＃楼２单元５０１室",
            "东湖区滕王阁街道豫章社区3栋2单元501",
            "东湖区滕王阁街道豫章社区3号楼2单元0501",
            "东湖区滕王阁街道豫章社区三号楼二单元501",
        ] {
            assert_eq!(key(raw), want, "{raw}");
        }
    }

    #[test]
    fn hash_buildings_and_bare_rooms() {
        // "3#" with or without 楼/栋/幢 is a building; a building already found is kept.
        assert_eq!(parse("豫章社区12#").building.as_deref(), Some("12栋"));
        assert_eq!(parse("豫章社区12#栋").building.as_deref(), Some("12栋"));
        assert_eq!(parse("豫章社区3栋5#").building.as_deref(), Some("3栋"));
        // A bare number is a room only at the end, after a building or unit, 3 or 4 digits.
        assert_eq!(parse("豫章社区3栋1201").room.as_deref(), Some("1201室"));
        assert_eq!(parse("豫章社区3栋2单元501").room.as_deref(), Some("501室"));
        assert_eq!(
            parse("豫章社区501").room,
            None,
            "no building or unit before it"
        );
        assert_eq!(
            parse("豫章社区3栋2单元5").room,
            None,
            "too short for a room"
        );
        assert_eq!(
            parse("豫章社区3栋2单元50101").room,
            None,
            "too long for a room"
        );
        assert_eq!(parse("豫章社区3栋501东").room, None, "not at the end");
        let a = parse("东湖区豫章路128号豫章社区");
        assert_eq!(
            (a.building, a.room),
            (None, None),
            "a house number is not a room"
        );
    }

    #[test]
    fn partial_and_rural() {
        let a = parse("豫章社区3栋");
        assert_eq!(a.district, None);
        assert_eq!(a.street, None);
        assert_eq!(a.community.as_deref(), Some("豫章社区"));
        assert_eq!(a.building.as_deref(), Some("3栋"));
        assert_eq!(a.unit, None);

        let r = parse("南昌县莲塘镇岗前村委会15号");
        assert_eq!(r.district.as_deref(), Some("南昌县"));
        assert_eq!(r.street.as_deref(), Some("莲塘镇"));
        assert_eq!(r.community.as_deref(), Some("岗前村"));
        assert_eq!(r.room, None, "a house number is not a room");
        assert_eq!(street_code(&r).as_deref(), Some("360121100"));

        let x = parse("进贤县三里乡");
        assert_eq!(x.district.as_deref(), Some("进贤县"));
        assert_eq!(x.street.as_deref(), Some("三里乡"));
        assert_eq!(street_code(&x).as_deref(), Some("360124200"));

        // Unknown district and street names by suffix.
        let u = parse("某某区某某街道某某社区A座1单元101室");
        assert_eq!(u.district.as_deref(), Some("某某区"));
        assert_eq!(u.street.as_deref(), Some("某某街道"));
        assert_eq!(u.community.as_deref(), Some("某某社区"));
        assert_eq!(u.building.as_deref(), Some("A栋"));
        assert_eq!(street_code(&u), None);

        // Former district names.
        assert_eq!(
            parse("红谷滩新区沙井街道").district.as_deref(),
            Some("红谷滩区")
        );
        assert_eq!(
            parse("红谷滩区沙井街道").district.as_deref(),
            Some("红谷滩区")
        );
        assert_eq!(
            street_code(&parse("红谷滩新区沙井街道")).as_deref(),
            Some("360113001")
        );
        // Street without district still resolves; a mismatched district does not.
        assert_eq!(
            street_code(&parse("滕王阁街道")).as_deref(),
            Some("360102002")
        );
        assert_eq!(street_code(&parse("西湖区滕王阁街道")), None);
        // Road and house number before the community.
        let road = parse("东湖区豫章路12号豫章社区5栋");
        assert_eq!(road.community.as_deref(), Some("豫章社区"));
        assert_eq!(road.building.as_deref(), Some("5栋"));
    }

    #[test]
    fn nothing_recognised() {
        assert!(parse("").is_empty());
        assert!(parse("   ").is_empty());
        assert_eq!(parse("").normalized_key(), "|||||");
        let _ = parse("-----");
        let _ = parse("3-");
        let _ = parse("社区");
        let _ = parse("区区区区区区区区区区");
    }

    #[test]
    fn simulator_streets_round_trip() {
        // Every Nanchang street, written the way the simulator writes addresses, parses back
        // to its own code.
        for (code, name, area) in divisions::nanchang_streets() {
            let county = divisions::county_name(area).unwrap();
            let raw = format!("江西省南昌市{county}{name}幸福社区12栋3单元402室");
            let a = parse(&raw);
            assert_eq!(a.district.as_deref(), Some(county), "{raw}");
            assert_eq!(a.street.as_deref(), Some(*name), "{raw}");
            assert_eq!(a.community.as_deref(), Some("幸福社区"), "{raw}");
            assert_eq!(street_code(&a).as_deref(), Some(*code), "{raw}");
            assert_eq!(a.room.as_deref(), Some("402室"), "{raw}");
            // Without the district, the street is still found (not mistaken for a county).
            let short = format!("{name}幸福社区12栋");
            let b = parse(&short);
            assert_eq!(b.district, None, "{short}");
            assert_eq!(street_code(&b).as_deref(), Some(*code), "{short}");
        }
    }
}
