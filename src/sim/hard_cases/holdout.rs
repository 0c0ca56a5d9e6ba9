//! The holdout profile's own kinds (see the parent module's docs): each function adds one
//! case (a resident, a family or a pair) and marks every record of it with its kind.

use chrono::{Datelike, NaiveDate};
use pinyin::ToPinyin;
use rand::Rng;

use super::{Ctx, SURNAMES};
use crate::sim::world::{Overrides, StreamId};

/// The kinds this profile adds to Tuned's and Unseen's.
#[cfg(test)]
pub(crate) const KINDS: [&str; 8] = [
    "year_off_family_phone",
    "missing_birth_family_phone",
    "one_edit_name",
    "latin_name_variants",
    "building_notation",
    "sibling_one_edit",
    "twins_one_edit",
    "namesake_same_building",
];

/// More surnames beside the parent's eight (all read one way in `pinyin`).
const MORE_SURNAMES: [char; 10] = ['杨', '周', '徐', '孙', '胡', '朱', '郭', '何', '林', '罗'];
/// Given-name characters of the generated names.
pub(super) const GIVEN: [char; 36] = [
    '伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '娟', '涛', '明',
    '超', '秀', '霞', '平', '刚', '桂', '兰', '萍', '红', '梅', '鑫', '波', '浩', '凯', '健', '俊',
    '帆', '旭', '宁', '峰',
];
/// A given-name character and a look-alike that reads differently: how a misread form or a
/// wrong pick from a handwriting pad changes a name (never a homophone; see the tests).
pub(super) const LOOKALIKES: [(char, char); 14] = [
    ('玉', '王'),
    ('宇', '字'),
    ('佳', '住'),
    ('国', '围'),
    ('华', '毕'),
    ('雪', '雷'),
    ('波', '坡'),
    ('梅', '海'),
    ('英', '荚'),
    ('晶', '品'),
    ('子', '孑'),
    ('天', '夭'),
    ('大', '太'),
    ('士', '土'),
];
/// Siblings' shared generation character and their own second characters (no two of those
/// sound alike or look alike; see the tests).
const GENERATION: [char; 8] = ['子', '梓', '浩', '欣', '雨', '思', '家', '嘉'];
const SECOND: [char; 12] = [
    '涵', '轩', '豪', '怡', '博', '宇', '琪', '晨', '阳', '睿', '彤', '菲',
];
/// Common names with their usual gender (true: male).
const COMMON_NAMES: [(&str, bool); 8] = [
    ("王伟", true),
    ("李娜", false),
    ("张敏", false),
    ("刘洋", true),
    ("王芳", false),
    ("李强", true),
    ("张静", false),
    ("刘伟", true),
];

/// Adds `n` cases of every holdout kind.
pub(super) fn add(c: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        family_phone(c, false);
        family_phone(c, true);
        one_edit_name(c);
        latin_name(c);
        building_notation(c);
        siblings(c, false);
        siblings(c, true);
        namesake_same_building(c);
    }
}

pub(super) fn surname(c: &mut Ctx<'_>) -> char {
    let i = c.rng.random_range(0..SURNAMES.len() + MORE_SURNAMES.len());
    if i < SURNAMES.len() {
        SURNAMES[i]
    } else {
        MORE_SURNAMES[i - SURNAMES.len()]
    }
}

/// One or (more often) two given-name characters.
pub(super) fn given(c: &mut Ctx<'_>) -> String {
    let len = if c.rng.random_bool(0.6) { 2 } else { 1 };
    (0..len)
        .map(|_| GIVEN[c.rng.random_range(0..GIVEN.len())])
        .collect()
}

/// A resident with a one- or two-character given name and a random gender, born in `years`.
pub(super) fn plain_resident(c: &mut Ctx<'_>, years: std::ops::Range<i32>) -> u32 {
    let name = format!("{}{}", surname(c), given(c));
    let (b, a, male) = (c.birth_in(years), c.address(), c.rng.random_bool(0.5));
    c.resident(name, male, b, None, a)
}

/// The two person streams of a resident's ID-bearing records beside an ID-less record in
/// `idless` (never elder-care: who is in elder care is not what these cases test).
pub(super) fn id_streams(idless: StreamId) -> [StreamId; 2] {
    match idless {
        StreamId::Cardholders => [StreamId::Patients, StreamId::Volunteers],
        StreamId::Patients => [StreamId::Cardholders, StreamId::Volunteers],
        _ => [StreamId::Patients, StreamId::Cardholders],
    }
}

/// Clean ID-bearing records of resident `r`, one per stream.
pub(super) fn id_records(c: &mut Ctx<'_>, r: u32, streams: [StreamId; 2], kind: &'static str) {
    for s in streams {
        let t = c.ts(10, 700);
        c.record(s, r, false, t, None, kind);
    }
}

/// The ID-less record of resident `r` in `stream`, stating what `over` says.
pub(super) fn idless_record(
    c: &mut Ctx<'_>,
    r: u32,
    stream: StreamId,
    over: Overrides,
    kind: &'static str,
) {
    let t = c.ts(40, 800);
    let over = (over != Overrides::default()).then_some(over);
    c.record(stream, r, true, t, over, kind);
}

/// `year_off_family_phone` / `missing_birth_family_phone` (`no_birth`).
fn family_phone(c: &mut Ctx<'_>, no_birth: bool) {
    let kind = if no_birth {
        "missing_birth_family_phone"
    } else {
        "year_off_family_phone"
    };
    // An elder whose elder-care record carries a grown child's phone, or a teenager whose
    // health record carries a parent's.
    let (years, family_years, stream) = if c.rng.random_bool(0.5) {
        (1935..1960, 1960..1990, StreamId::Elders)
    } else {
        (2006..2012, 1968..1988, StreamId::Patients)
    };
    let a = c.address();
    let s = surname(c);
    let name = format!("{s}{}", given(c));
    let (b, male) = (c.birth_in(years), c.rng.random_bool(0.5));
    let r = c.resident(name.clone(), male, b, None, a);
    // The family member shares the surname half the time (a son, a father).
    let fs = if c.rng.random_bool(0.5) {
        s
    } else {
        surname(c)
    };
    let mut family_name = format!("{fs}{}", given(c));
    while family_name == name {
        family_name = format!("{fs}{}", given(c));
    }
    let (fb, fmale) = (c.birth_in(family_years), c.rng.random_bool(0.5));
    let phone = c.w.fresh_phone(c.rng);
    let f = c.resident(family_name, fmale, fb, Some(phone), a);
    c.w.phones.entry(phone).or_default().push(r);
    id_records(c, r, id_streams(stream), kind);
    id_records(c, f, [StreamId::Patients, StreamId::Cardholders], kind);
    let step = if c.rng.random_bool(0.5) { 1 } else { -1 };
    let over = Overrides {
        phone: Some(phone),
        birth: (!no_birth)
            .then(|| NaiveDate::from_ymd_opt(b.year() + step, b.month(), b.day()))
            .flatten(),
        no_birth,
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, kind);
}

/// `one_edit_name`: one given-name character read as its look-alike.
fn one_edit_name(c: &mut Ctx<'_>) {
    let (real, misread) = LOOKALIKES[c.rng.random_range(0..LOOKALIKES.len())];
    let other = GIVEN[c.rng.random_range(0..GIVEN.len())];
    let s = surname(c);
    let (name, typo) = match c.rng.random_range(0..3) {
        0 => (format!("{s}{real}"), format!("{s}{misread}")),
        1 => (format!("{s}{real}{other}"), format!("{s}{misread}{other}")),
        _ => (format!("{s}{other}{real}"), format!("{s}{other}{misread}")),
    };
    let (b, a, male) = (c.birth(), c.address(), c.rng.random_bool(0.5));
    let r = c.resident(name, male, b, None, a);
    let stream = if b.year() < 1965 {
        StreamId::Elders
    } else {
        StreamId::Cardholders
    };
    id_records(c, r, id_streams(stream), "one_edit_name");
    let over = Overrides {
        name: Some(typo),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "one_edit_name");
}

/// The toneless pinyin of `ch`, capitalised (`Zhang`); the character itself if it has none.
fn syllable(ch: char) -> String {
    let plain = ch.to_pinyin().map(|p| p.plain().to_string());
    capitalised(&plain.unwrap_or_else(|| ch.to_string()))
}

/// `xiaowei` → `Xiaowei`.
fn capitalised(s: &str) -> String {
    let mut cs = s.chars();
    cs.next()
        .map(|f| f.to_uppercase().chain(cs).collect())
        .unwrap_or_default()
}

/// `surname` + `given` in pinyin letters, in one of the styles real systems use (`style`
/// 0..=4; the hyphenated ones only for a two-character given name).
fn latin(surname: char, given: &str, style: u8) -> String {
    let s = syllable(surname);
    let parts: Vec<String> = given.chars().map(syllable).collect();
    let joined = capitalised(&parts.concat().to_lowercase());
    let hyphenated = parts.join("-");
    match (style, parts.len()) {
        (0, _) => format!("{} {joined}", s.to_uppercase()),
        (1, _) => format!("{joined} {s}"),
        (2, _) => format!("{s}{joined}").to_uppercase(),
        (3, 1) | (4, 1) => format!("{} {}", s.to_uppercase(), joined.to_uppercase()),
        (3, _) => format!("{s} {hyphenated}"),
        _ => format!("{hyphenated} {s}"),
    }
}

/// `latin_name_variants`: the ID-less record writes the name in pinyin letters.
fn latin_name(c: &mut Ctx<'_>) {
    let s = surname(c);
    let g = given(c);
    let style = c.rng.random_range(0..5u8);
    let (b, a, male) = (c.birth(), c.address(), c.rng.random_bool(0.5));
    let r = c.resident(format!("{s}{g}"), male, b, None, a);
    let stream = if c.rng.random_bool(0.5) {
        StreamId::Cardholders
    } else {
        StreamId::Patients
    };
    id_records(c, r, id_streams(stream), "latin_name_variants");
    let over = Overrides {
        name: Some(latin(s, &g, style)),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "latin_name_variants");
}

/// `n` (1..=99) in Chinese numerals: 3 → 三, 12 → 十二, 29 → 二十九.
fn chinese_number(n: u8) -> String {
    const DIGITS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
    let (tens, ones) = (usize::from(n / 10 % 10), usize::from(n % 10));
    let mut out = String::new();
    if tens > 1 {
        out.push(DIGITS[tens]);
    }
    if tens > 0 {
        out.push('十');
    }
    if ones > 0 || tens == 0 {
        out.push(DIGITS[ones]);
    }
    out
}

/// Building, unit and room in notation `style` (0..7): `3号楼2单元501室`, `3幢2单元501室`,
/// `三栋二单元501室`, `3-2-501`, `3#楼2单元501室`, `3栋2单元501`, `3号楼2-501`.
pub(super) fn building_unit_room(building: u8, unit: u8, room: u16, style: u8) -> String {
    let (b, u, r) = (building, unit, room);
    match style {
        0 => format!("{b}号楼{u}单元{r}室"),
        1 => format!("{b}幢{u}单元{r}室"),
        2 => format!("{}栋{}单元{r}室", chinese_number(b), chinese_number(u)),
        3 => format!("{b}-{u}-{r}"),
        4 => format!("{b}#楼{u}单元{r}室"),
        5 => format!("{b}栋{u}单元{r}"),
        _ => format!("{b}号楼{u}-{r}"),
    }
}

/// `building_notation`: the ID-less record writes building, unit and room another way.
fn building_notation(c: &mut Ctx<'_>) {
    let s = surname(c);
    let name = format!("{s}{}", given(c));
    let (b, a, male) = (c.birth(), c.address(), c.rng.random_bool(0.5));
    let r = c.resident(name, male, b, None, a);
    let style = c.rng.random_range(0..7u8);
    let stream = [StreamId::Cardholders, StreamId::Patients, StreamId::Elders]
        [c.rng.random_range(0..3usize)];
    let stream = if stream == StreamId::Elders && b.year() >= 1965 {
        StreamId::Cardholders
    } else {
        stream
    };
    let written = c.w.residents.get(r as usize).map(|res| {
        format!(
            "{}{}",
            c.w.address_prefix(res),
            building_unit_room(res.building, res.unit, res.room, style)
        )
    });
    id_records(c, r, id_streams(stream), "building_notation");
    let over = Overrides {
        address: written,
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "building_notation");
}

/// `sibling_one_edit` / `twins_one_edit` (`twins`): given names one character apart, one
/// room, one household phone; the second is only known by an ID-less record.
fn siblings(c: &mut Ctx<'_>, twins: bool) {
    let kind = if twins {
        "twins_one_edit"
    } else {
        "sibling_one_edit"
    };
    let s = surname(c);
    let g = GENERATION[c.rng.random_range(0..GENERATION.len())];
    let i = c.rng.random_range(0..SECOND.len());
    let j = (i + c.rng.random_range(1..SECOND.len())) % SECOND.len();
    let (na, nb) = (
        format!("{s}{g}{}", SECOND[i]),
        format!("{s}{g}{}", SECOND[j]),
    );
    let ba = c.birth_in(1975..2016);
    let bb = if twins {
        ba
    } else {
        let gap = c.rng.random_range(2..=8);
        let y = if c.rng.random_bool(0.5) {
            ba.year() + gap
        } else {
            ba.year() - gap
        };
        c.birth_in(y..y + 1)
    };
    let a = c.address();
    let phone = c.w.fresh_phone(c.rng);
    let (ma, mb) = (c.rng.random_bool(0.5), c.rng.random_bool(0.5));
    let ra = c.resident(na, ma, ba, Some(phone), a);
    let rb = c.resident(nb, mb, bb, Some(phone), a);
    let stream = if c.rng.random_bool(0.5) {
        StreamId::Patients
    } else {
        StreamId::Cardholders
    };
    id_records(c, ra, id_streams(stream), kind);
    idless_record(c, rb, stream, Overrides::default(), kind);
}

/// `namesake_same_building`: one common name in one building; the second resident is only
/// known by an ID-less record without a birth date.
fn namesake_same_building(c: &mut Ctx<'_>) {
    let (name, male) = COMMON_NAMES[c.rng.random_range(0..COMMON_NAMES.len())];
    let a = c.address();
    let mut other = c.address();
    while (other.2, other.3) == (a.2, a.3) {
        other = c.address();
    }
    let other = (a.0, a.1, other.2, other.3);
    let ba = c.birth();
    let mut bb = c.birth();
    while bb == ba {
        bb = c.birth();
    }
    let ra = c.resident(name.to_string(), male, ba, None, a);
    let rb = c.resident(name.to_string(), male, bb, None, other);
    let stream = [StreamId::Cardholders, StreamId::Patients][c.rng.random_range(0..2usize)];
    let stream = if bb.year() < 1965 && c.rng.random_bool(0.5) {
        StreamId::Elders
    } else {
        stream
    };
    id_records(c, ra, id_streams(stream), "namesake_same_building");
    let over = Overrides {
        no_birth: true,
        ..Overrides::default()
    };
    idless_record(c, rb, stream, over, "namesake_same_building");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::normalize::address;
    use crate::sim::hard_cases::testing::{self, records_of, resident, same_room, toneless};
    use crate::sim::hard_cases::HardProfile;
    use crate::sim::world::{IdDirt, Rec, World};

    fn holdout(seed: u64) -> World {
        testing::world(HardProfile::Holdout, seed)
    }

    /// The ID-less records of each hard-case kind.
    fn idless(w: &World) -> BTreeMap<&'static str, Vec<(StreamId, &Rec)>> {
        testing::by_kind(w, true)
    }

    #[test]
    fn lookalikes_read_differently_and_are_gbk() {
        for (real, misread) in LOOKALIKES {
            let (a, b) = (toneless(real), toneless(misread));
            assert!(!a.is_empty() && !b.is_empty(), "{real}/{misread}");
            assert_ne!(a, b, "{real}/{misread} sound alike");
            let (_, _, unmappable) = encoding_rs::GBK.encode(&format!("{real}{misread}"));
            assert!(!unmappable, "{real}/{misread}");
        }
    }

    #[test]
    fn siblings_second_characters_neither_sound_nor_look_alike() {
        for (i, a) in SECOND.iter().enumerate() {
            for b in &SECOND[i + 1..] {
                assert_ne!(toneless(*a), toneless(*b), "{a}/{b}");
                let look = |x: &char, y: &char| LOOKALIKES.contains(&(*x, *y));
                assert!(!look(a, b) && !look(b, a), "{a}/{b}");
            }
        }
    }

    #[test]
    fn latin_styles() {
        let cases = [
            (
                '张',
                "伟",
                [
                    "ZHANG Wei",
                    "Wei Zhang",
                    "ZHANGWEI",
                    "ZHANG WEI",
                    "ZHANG WEI",
                ],
            ),
            (
                '张',
                "晓伟",
                [
                    "ZHANG Xiaowei",
                    "Xiaowei Zhang",
                    "ZHANGXIAOWEI",
                    "Zhang Xiao-Wei",
                    "Xiao-Wei Zhang",
                ],
            ),
        ];
        for (s, g, want) in cases {
            for (style, w) in want.iter().enumerate() {
                assert_eq!(latin(s, g, style as u8), *w);
            }
        }
    }

    #[test]
    fn every_notation_reads_as_the_resident_address() {
        let base = "江西省南昌市东湖区滕王阁街道豫章社区";
        for building in 1..30 {
            for unit in 1..6 {
                for room in [101, 1204, 3204] {
                    let want = address::parse(&format!("{base}{building}栋{unit}单元{room}室"));
                    for style in 0..7 {
                        let tail = building_unit_room(building, unit, room, style);
                        let got = address::parse(&format!("{base}{tail}"));
                        assert_eq!(got.normalized_key(), want.normalized_key(), "{tail}");
                    }
                }
            }
        }
        let numerals: Vec<String> = [3, 10, 12, 20, 29].map(chinese_number).to_vec();
        assert_eq!(numerals, ["三", "十", "十二", "二十", "二十九"]);
    }

    #[test]
    fn holdout_has_every_kind_and_the_same_seed_the_same_records() {
        let w = holdout(101);
        let by_kind = idless(&w);
        for kind in KINDS {
            assert_eq!(by_kind.get(kind).map(Vec::len), Some(20), "{kind}");
        }
        for kind in [
            "old_phone",
            "twins",
            "common_name",
            "swapped_name",
            "dropped_digit",
        ] {
            assert!(by_kind.contains_key(kind), "{kind}");
        }
        testing::assert_deterministic_and_gbk(&w, &holdout(101), &holdout(202));
    }

    #[test]
    fn family_phone_records_carry_a_roommates_phone() {
        let w = holdout(7);
        let by_kind = idless(&w);
        for kind in ["year_off_family_phone", "missing_birth_family_phone"] {
            for (s, rec) in &by_kind[kind] {
                let r = resident(&w, rec);
                let phone = w.rec_phone(rec);
                assert_ne!(phone, r.phone);
                assert_eq!(w.rec_name(rec), r.name);
                assert_eq!(w.rec_address(rec, &r), w.address(&r));
                assert!(matches!(s, StreamId::Elders | StreamId::Patients));
                let family = w.residents.iter().position(|f| f.phone == phone);
                let f = family.expect("the phone is a family member's");
                assert!(same_room(&w.residents[f], &r));
                let theirs = records_of(&w, f as u32);
                assert!(theirs.iter().all(|(_, x)| x.id != IdDirt::Missing));
                assert!(theirs.iter().all(|(_, x)| w.rec_phone(x) == phone));
                let mine = records_of(&w, rec.owner);
                assert_eq!(mine.len(), 3, "two ID-bearing records and this one");
                let v = w.render(*s, rec, "");
                let stated = match s {
                    StreamId::Elders => v["birth_date"].as_str(),
                    _ => v["resource"]["birthDate"].as_str(),
                };
                match (kind, w.rec_birth(rec)) {
                    ("year_off_family_phone", Some(b)) => {
                        assert_eq!((b.year() - r.birth.year()).abs(), 1);
                        assert_eq!((b.month(), b.day()), (r.birth.month(), r.birth.day()));
                        assert!(stated.is_some_and(|t| t.contains(&b.year().to_string())));
                    }
                    ("missing_birth_family_phone", None) => {
                        assert!(stated.unwrap_or_default().is_empty(), "{v}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn name_and_address_errors_keep_everything_else() {
        let w = holdout(7);
        let by_kind = idless(&w);
        for (_, rec) in &by_kind["one_edit_name"] {
            let r = resident(&w, rec);
            let (a, b): (Vec<char>, Vec<char>) =
                (r.name.chars().collect(), w.rec_name(rec).chars().collect());
            assert_eq!(a.len(), b.len());
            let diff: Vec<usize> = (0..a.len()).filter(|i| a[*i] != b[*i]).collect();
            assert_eq!(diff.len(), 1, "{} / {}", r.name, w.rec_name(rec));
            assert!(diff[0] > 0, "a given-name character");
            assert!(LOOKALIKES.contains(&(a[diff[0]], b[diff[0]])));
            assert_eq!(
                (w.rec_phone(rec), w.rec_birth(rec)),
                (r.phone, Some(r.birth))
            );
        }
        for (_, rec) in &by_kind["latin_name_variants"] {
            let name = w.rec_name(rec);
            assert!(
                name.is_ascii() && name.chars().any(|c| c.is_ascii_uppercase()),
                "{name}"
            );
            assert_eq!(w.rec_phone(rec), resident(&w, rec).phone);
        }
        for (_, rec) in &by_kind["building_notation"] {
            let r = resident(&w, rec);
            let (written, canonical) = (w.rec_address(rec, &r), w.address(&r));
            assert_ne!(written, canonical);
            assert_eq!(
                address::parse(&written).normalized_key(),
                address::parse(&canonical).normalized_key(),
                "{written}"
            );
            assert_eq!(
                (w.rec_name(rec), w.rec_phone(rec)),
                (r.name.clone(), r.phone)
            );
        }
    }

    #[test]
    fn precision_cases_are_two_residents_one_known_only_by_an_idless_record() {
        let w = holdout(7);
        let by_kind = idless(&w);
        for kind in [
            "sibling_one_edit",
            "twins_one_edit",
            "namesake_same_building",
        ] {
            for (_, rec) in &by_kind[kind] {
                let b = resident(&w, rec);
                assert_eq!(
                    records_of(&w, rec.owner).len(),
                    1,
                    "{kind}: one record only"
                );
                // The other one: the resident with ID-bearing records of this case.
                let a = w
                    .residents
                    .iter()
                    .enumerate()
                    .find(|(i, x)| {
                        *i != rec.owner as usize
                            && x.community == b.community
                            && x.building == b.building
                            && records_of(&w, *i as u32)
                                .iter()
                                .any(|(s, r)| w.case_kind.get(&(s.idx(), r.no)) == Some(&kind))
                            && (x.phone == b.phone || x.name == b.name)
                    })
                    .map(|(_, x)| x.clone())
                    .expect("the other resident");
                let (na, nb): (Vec<char>, Vec<char>) =
                    (a.name.chars().collect(), b.name.chars().collect());
                let diff = (0..na.len().min(nb.len()))
                    .filter(|i| na[*i] != nb[*i])
                    .count();
                match kind {
                    "namesake_same_building" => {
                        assert_eq!((diff, a.male), (0, b.male));
                        assert!(!same_room(&a, &b));
                        assert_ne!(a.phone, b.phone);
                        assert_eq!(w.rec_birth(rec), None);
                    }
                    _ => {
                        assert_eq!((diff, na.len(), nb.len()), (1, 3, 3));
                        assert!(same_room(&a, &b) && a.phone == b.phone);
                        let gap = (a.birth.year() - b.birth.year()).abs();
                        if kind == "twins_one_edit" {
                            assert_eq!(a.birth, b.birth);
                        } else {
                            assert!((2..=8).contains(&gap), "{gap}");
                        }
                    }
                }
            }
        }
    }
}
