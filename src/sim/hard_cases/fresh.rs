//! The fresh profile's own kinds (see the parent module's docs): each function adds one
//! case (a resident or a pair) and marks every record of it with its kind. The kinds were
//! written from how Chinese department systems, their clerks and residents produce records,
//! without looking at the matcher; the profile is the honest measure of it and nobody tunes
//! on it. In the first six the ID-less record belongs to a resident who also has two
//! ID-bearing records (truth: that resident); the last two are precision traps (truth: two
//! residents, one of them only known by the ID-less record).

use chrono::{Datelike, Duration, NaiveDate};
use rand::Rng;

use super::holdout::{
    building_unit_room, given, id_records, id_streams, idless_record, plain_resident, surname,
    GIVEN,
};
use super::Ctx;
use crate::sim::world::{Overrides, StreamId};

/// The kinds this profile adds to the other four profiles' kinds.
#[cfg(test)]
pub(crate) const KINDS: [&str; 8] = [
    "lookalike_own_list",
    "lunar_birthday",
    "masked_name",
    "phone_transposed",
    "variant_character",
    "community_renamed",
    "cousins_same_name",
    "spouses_shared_phone",
];

/// Given-name characters and a character of similar shape that reads differently (形近字),
/// as a clerk misreads a handwritten form or picks the wrong candidate on a handwriting pad.
/// Written for this profile; none is one of Holdout's pairs (see the tests).
const LOOKALIKES: [(char, char); 24] = [
    ('永', '水'),
    ('金', '全'),
    ('明', '朋'),
    ('晴', '睛'),
    ('彬', '杉'),
    ('丹', '舟'),
    ('龙', '尤'),
    ('云', '去'),
    ('芬', '芥'),
    ('亭', '亨'),
    ('治', '冶'),
    ('爱', '受'),
    ('勤', '勒'),
    ('秀', '季'),
    ('贝', '见'),
    ('晓', '烧'),
    ('昌', '冒'),
    ('冰', '沐'),
    ('荣', '荥'),
    ('宏', '宠'),
    ('兵', '乒'),
    ('良', '艮'),
    ('元', '无'),
    ('江', '汪'),
];
/// Given-name characters and a genuine variant form of them (异体字) that residents, old
/// household registers and some systems' input methods still use: 峰/峯, 哲/喆, 坤/堃 …
const VARIANTS: [(char, char); 10] = [
    ('峰', '峯'),
    ('哲', '喆'),
    ('坤', '堃'),
    ('群', '羣'),
    ('皓', '晧'),
    ('熙', '煕'),
    ('妍', '姸'),
    ('睿', '叡'),
    ('岩', '嵒'),
    ('雁', '鴈'),
];
/// Common full names with their usual gender (true: male), as cousins named after one
/// fashion share them.
const COMMON: [(&str, bool); 8] = [
    ("王秀英", false),
    ("张伟", true),
    ("李军", true),
    ("刘芳", false),
    ("陈建华", true),
    ("杨桂英", false),
    ("黄勇", true),
    ("周丽", false),
];

/// Adds `n` cases of every fresh kind.
pub(super) fn add(c: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        one_character_form(c, &LOOKALIKES, "lookalike_own_list");
        lunar_birthday(c);
        masked_name(c);
        phone_transposed(c);
        one_character_form(c, &VARIANTS, "variant_character");
        community_renamed(c);
        cousins_same_name(c);
        spouses_shared_phone(c);
    }
}

/// Where the ID-less record is: a one-card account, a health record, or elder care for a
/// resident born before 1965 (a one-card account for younger ones).
fn idless_stream(c: &mut Ctx<'_>, r: u32) -> StreamId {
    let old =
        c.w.residents
            .get(r as usize)
            .is_some_and(|res| res.birth.year() < 1965);
    match c.rng.random_range(0..3u8) {
        0 => StreamId::Patients,
        1 if old => StreamId::Elders,
        _ => StreamId::Cardholders,
    }
}

/// A given name of one or two characters holding `ch`.
fn given_with(c: &mut Ctx<'_>, ch: char) -> String {
    let other = GIVEN[c.rng.random_range(0..GIVEN.len())];
    match c.rng.random_range(0..3u8) {
        0 => ch.to_string(),
        1 => format!("{ch}{other}"),
        _ => format!("{other}{ch}"),
    }
}

/// `lookalike_own_list` (pairs from [`LOOKALIKES`]) / `variant_character` (from
/// [`VARIANTS`]): the ID-less record writes one given-name character in the pair's second
/// form; same phone, birth date and full address.
fn one_character_form(c: &mut Ctx<'_>, pairs: &[(char, char)], kind: &'static str) {
    let Some(&(real, written)) = pairs.get(c.rng.random_range(0..pairs.len())) else {
        return;
    };
    let (s, g) = (surname(c), given_with(c, real));
    let (b, a, male) = (c.birth(), c.address(), c.rng.random_bool(0.5));
    let r = c.resident(format!("{s}{g}"), male, b, None, a);
    let stream = idless_stream(c, r);
    id_records(c, r, id_streams(stream), kind);
    let over = Overrides {
        name: Some(format!("{s}{}", g.replacen(real, &written.to_string(), 1))),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, kind);
}

/// The lunar birthday `days_behind` days before the Gregorian `birth`, as an elder states
/// it: month and day of the lunar calendar (never a 31st) in the lunar year, the Gregorian
/// year before for a birth early in the year.
fn lunar_birth(birth: NaiveDate, days_behind: i64) -> NaiveDate {
    let lunar = birth - Duration::days(days_behind);
    NaiveDate::from_ymd_opt(lunar.year(), lunar.month(), lunar.day().min(30)).unwrap_or(lunar)
}

/// `lunar_birthday`: an elder (born 1930–1955) who knows and celebrates the lunar birthday
/// tells it to the elder-care clerk, who types it as the birth date: 20–50 days before the
/// date on the ID card; same name, phone and full address.
fn lunar_birthday(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1930..1956);
    let Some(birth) = c.w.residents.get(r as usize).map(|res| res.birth) else {
        return;
    };
    let lunar = lunar_birth(birth, c.rng.random_range(20..=50));
    id_records(c, r, id_streams(StreamId::Elders), "lunar_birthday");
    let over = Overrides {
        birth: Some(lunar),
        ..Overrides::default()
    };
    idless_record(c, r, StreamId::Elders, over, "lunar_birthday");
}

/// `name` desensitised as a vendor's export writes it (`style` 0..2): the surname and the
/// last character kept with the middle masked `王*英`, or the surname alone `王**`; a
/// two-character name is always `王*`. One `*` per masked character.
fn masked(name: &str, style: u8) -> String {
    let chars: Vec<char> = name.chars().collect();
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            let keep = i == 0 || (style == 0 && n > 2 && i == n - 1);
            if keep {
                *ch
            } else {
                '*'
            }
        })
        .collect()
}

/// `masked_name`: one vendor exports names desensitised ([`masked`]) but the full phone,
/// birth date and address.
fn masked_name(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1940..2005);
    let style = c.rng.random_range(0..2u8);
    let name =
        c.w.residents
            .get(r as usize)
            .map(|res| masked(&res.name, style));
    let stream = idless_stream(c, r);
    id_records(c, r, id_streams(stream), "masked_name");
    let over = Overrides {
        name,
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "masked_name");
}

/// `phone` with its digits `i` and `i + 1` (counted from the left) swapped; None when they
/// are equal or `i` is out of range.
fn transposed(phone: u64, i: usize) -> Option<u64> {
    let mut digits: Vec<u8> = phone.to_string().into_bytes();
    if i + 1 >= digits.len() || digits[i] == digits[i + 1] {
        return None;
    }
    digits.swap(i, i + 1);
    String::from_utf8(digits).ok()?.parse().ok()
}

/// `phone_transposed`: the clerk (or the resident filling in a form) swapped two adjacent
/// digits of the mobile, never the leading 1; same name, birth date and full address.
fn phone_transposed(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1940..2005);
    let Some(phone) = c.w.residents.get(r as usize).map(|res| res.phone) else {
        return;
    };
    let start = c.rng.random_range(1..10usize);
    let swapped = (0..9)
        .map(|k| 1 + (start - 1 + k) % 9)
        .find_map(|i| transposed(phone, i).filter(|p| !c.w.phones.contains_key(p)));
    let stream = idless_stream(c, r);
    id_records(c, r, id_streams(stream), "phone_transposed");
    let over = Overrides {
        phone: swapped,
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "phone_transposed");
}

/// The community `name` (`阳明东社区`) as an older or terser record writes it (`style`
/// 0..4): the residents' committee before it became a 社区 `阳明东居委会`, the committee's
/// full name `阳明东社区居委会`, the old name after the road `阳明东路社区`, the bare name
/// `阳明东`.
fn community_written(name: &str, style: u8) -> String {
    let base = name.strip_suffix("社区").unwrap_or(name);
    match style {
        0 => format!("{base}居委会"),
        1 => format!("{base}社区居委会"),
        2 => format!("{base}路社区"),
        _ => base.to_string(),
    }
}

/// `community_renamed`: a record from an older system still names the community the old or
/// short way ([`community_written`]), in the community field and the address, which also
/// writes building, unit and room another way and drops the province and city half the
/// time; same name, phone and birth date.
fn community_renamed(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1940..2005);
    let style = c.rng.random_range(0..4u8);
    let notation = c.rng.random_range(0..7u8);
    let short = c.rng.random_bool(0.5);
    let Some(res) = c.w.residents.get(r as usize).cloned() else {
        return;
    };
    let com = c.w.community(&res);
    let old = community_written(&com.name, style);
    let bur = building_unit_room(res.building, res.unit, res.room, notation);
    let city = if short { "" } else { "江西省南昌市" };
    let address = format!("{city}{}{}{old}{bur}", com.district, com.street);
    let stream = idless_stream(c, r);
    id_records(c, r, id_streams(stream), "community_renamed");
    let over = Overrides {
        address: Some(address),
        community_name: Some(old),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "community_renamed");
}

/// `cousins_same_name`: two cousins named after one fashion, with the identical common name
/// and gender, born the same year (other dates), living in one community (other rooms) with
/// their own phones. One has two ID-bearing records, the other only an ID-less one-card
/// account or health record.
fn cousins_same_name(c: &mut Ctx<'_>) {
    let (name, male) = COMMON[c.rng.random_range(0..COMMON.len())];
    let a = c.address();
    let mut other = c.address();
    while (other.1, other.2, other.3) == (a.1, a.2, a.3) {
        other = c.address();
    }
    let other = (a.0, other.1, other.2, other.3);
    let ba = c.birth_in(1950..2000);
    let mut bb = c.birth_in(ba.year()..ba.year() + 1);
    while bb == ba {
        bb = c.birth_in(ba.year()..ba.year() + 1);
    }
    let ra = c.resident(name.to_string(), male, ba, None, a);
    let rb = c.resident(name.to_string(), male, bb, None, other);
    let stream = [StreamId::Cardholders, StreamId::Patients][c.rng.random_range(0..2usize)];
    id_records(c, ra, id_streams(stream), "cousins_same_name");
    idless_record(c, rb, stream, Overrides::default(), "cousins_same_name");
}

/// `spouses_shared_phone`: a husband and wife (each with their own surname, as Chinese
/// wives keep theirs) in one room, born 1–6 years apart, sharing the one phone the family
/// gives every system. One has two ID-bearing records, the other only an ID-less record
/// (elder care for those born before 1965, else a one-card account or health record) with
/// the shared phone, the room and their own name and birth date.
fn spouses_shared_phone(c: &mut Ctx<'_>) {
    let a = c.address();
    let phone = c.w.fresh_phone(c.rng);
    let hb = c.birth_in(1940..1986);
    let gap = c.rng.random_range(1..=6);
    let gap = if c.rng.random_bool(0.8) { gap } else { -gap };
    let wb = c.birth_in(hb.year() + gap..hb.year() + gap + 1);
    let husband = format!("{}{}", surname(c), given(c));
    let mut wife = format!("{}{}", surname(c), given(c));
    while wife == husband {
        wife = format!("{}{}", surname(c), given(c));
    }
    let h = c.resident(husband, true, hb, Some(phone), a);
    let w = c.resident(wife, false, wb, Some(phone), a);
    let (known, idless) = if c.rng.random_bool(0.5) {
        (h, w)
    } else {
        (w, h)
    };
    let stream = idless_stream(c, idless);
    id_records(c, known, id_streams(stream), "spouses_shared_phone");
    idless_record(
        c,
        idless,
        stream,
        Overrides::default(),
        "spouses_shared_phone",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::hard_cases::testing::{
        self, idless, own, partner, records_of, resident, same_room, stated, toneless,
    };
    use crate::sim::hard_cases::HardProfile;
    use crate::sim::world::World;

    fn fresh(seed: u64) -> World {
        testing::world(HardProfile::Fresh, seed)
    }

    /// The one position where `a` and `b` (of one length) differ, with both characters.
    fn one_char_apart(a: &str, b: &str) -> Option<(char, char)> {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let diff: Vec<usize> = (0..a.len()).filter(|i| a.get(*i) != b.get(*i)).collect();
        (a.len() == b.len() && diff.len() == 1).then(|| (a[diff[0]], b[diff[0]]))
    }

    #[test]
    fn fresh_has_every_kind_and_the_same_seed_the_same_records() {
        let w = fresh(707);
        let kinds = testing::by_kind(&w, false);
        for kind in KINDS {
            assert_eq!(idless(&w, kind).len(), 12, "{kind}");
        }
        for kind in super::super::holdout::KINDS
            .iter()
            .chain(&super::super::blind::KINDS)
            .chain(&["old_phone", "twins", "common_name", "swapped_name"])
        {
            assert!(kinds.contains_key(kind), "{kind}");
        }
        for profile in [
            HardProfile::Tuned,
            HardProfile::Unseen,
            HardProfile::Holdout,
            HardProfile::Blind,
        ] {
            let other = testing::world(profile, 707);
            let theirs = testing::by_kind(&other, false);
            assert!(KINDS.iter().all(|k| !theirs.contains_key(k)), "{profile:?}");
        }
        testing::assert_deterministic_and_gbk(&w, &fresh(707), &fresh(808));
    }

    #[test]
    fn character_lists_are_gbk_and_of_their_own() {
        let holdout = super::super::holdout::LOOKALIKES;
        for (a, b) in LOOKALIKES.iter().chain(&VARIANTS) {
            for ch in [a, b] {
                let (_, _, unmappable) = encoding_rs::GBK.encode(&ch.to_string());
                assert!(!unmappable, "{ch}");
            }
        }
        for (a, b) in LOOKALIKES {
            assert_ne!(toneless(a), toneless(b), "{a}{b} read alike");
            assert!(holdout.iter().all(|(x, y)| *x != a && *y != b), "{a}{b}");
        }
        assert!(LOOKALIKES.len() >= 20 && VARIANTS.len() >= 8);
    }

    #[test]
    fn one_character_kinds_change_one_given_name_character() {
        let w = fresh(9);
        for (kind, pairs) in [
            ("lookalike_own_list", &LOOKALIKES[..]),
            ("variant_character", &VARIANTS[..]),
        ] {
            for (_, rec) in idless(&w, kind) {
                let (mine, theirs) = (stated(&w, rec), own(&w, rec));
                let pair = one_char_apart(&theirs.0, &mine.0).expect("one character apart");
                assert!(pairs.contains(&pair), "{kind}: {} / {}", theirs.0, mine.0);
                assert_eq!(mine.0.chars().next(), theirs.0.chars().next());
                assert_eq!((&mine.1, mine.2, &mine.3), (&theirs.1, theirs.2, &theirs.3));
                assert_eq!(records_of(&w, rec.owner).len(), 3);
            }
        }
    }

    #[test]
    fn lunar_birthdays_are_weeks_before_the_id_date() {
        let w = fresh(9);
        for (s, rec) in idless(&w, "lunar_birthday") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            let (lunar, real) = (mine.2.expect("a birth date"), resident(&w, rec).birth);
            let behind = (real - lunar).num_days();
            assert!((20..=51).contains(&behind), "{real} / {lunar}");
            assert!(lunar.day() <= 30);
            assert!((1930..1956).contains(&real.year()));
            assert_eq!(s, StreamId::Elders);
            assert_eq!(
                (&mine.0, &mine.1, &mine.3),
                (&theirs.0, &theirs.1, &theirs.3)
            );
        }
        let jan = NaiveDate::from_ymd_opt(1950, 1, 15).unwrap_or_default();
        assert_eq!(
            lunar_birth(jan, 30),
            NaiveDate::from_ymd_opt(1949, 12, 16).unwrap()
        );
        let apr = NaiveDate::from_ymd_opt(1950, 5, 1).unwrap_or_default();
        assert_eq!(
            lunar_birth(apr, 31),
            NaiveDate::from_ymd_opt(1950, 3, 30).unwrap()
        );
    }

    #[test]
    fn masked_names_keep_the_surname_and_everything_else() {
        assert_eq!(masked("王秀英", 0), "王*英");
        assert_eq!(masked("王秀英", 1), "王**");
        assert_eq!(masked("王英", 0), "王*");
        assert_eq!(masked("王英", 1), "王*");
        let w = fresh(9);
        for (_, rec) in idless(&w, "masked_name") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            assert!(mine.0.contains('*'), "{}", mine.0);
            assert_eq!(mine.0.chars().count(), theirs.0.chars().count());
            assert_eq!(mine.0.chars().next(), theirs.0.chars().next());
            assert_eq!((&mine.1, mine.2, &mine.3), (&theirs.1, theirs.2, &theirs.3));
        }
    }

    #[test]
    fn transposed_phones_swap_two_adjacent_digits() {
        assert_eq!(transposed(13_800_138_000, 1), Some(18_300_138_000));
        assert_eq!(transposed(13_800_138_000, 3), None);
        assert_eq!(transposed(13_800_138_000, 10), None);
        let w = fresh(9);
        for (_, rec) in idless(&w, "phone_transposed") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            let (a, b) = (mine.1.unwrap_or_default(), theirs.1.unwrap_or_default());
            let (a, b) = (a.as_bytes(), b.as_bytes());
            assert!(a.len() == 11 && a[0] == b'1');
            let diff: Vec<usize> = (0..11).filter(|i| a[*i] != b[*i]).collect();
            assert_eq!(diff.len(), 2, "{a:?} / {b:?}");
            assert_eq!(diff[1], diff[0] + 1);
            assert_eq!((a[diff[0]], a[diff[1]]), (b[diff[1]], b[diff[0]]));
            assert_eq!((&mine.0, mine.2, &mine.3), (&theirs.0, theirs.2, &theirs.3));
        }
    }

    #[test]
    fn renamed_communities_keep_the_name_and_the_room() {
        let want = ["阳明东居委会", "阳明东社区居委会", "阳明东路社区", "阳明东"];
        for (style, text) in want.iter().enumerate() {
            assert_eq!(community_written("阳明东社区", style as u8), *text);
        }
        let w = fresh(9);
        for (_, rec) in idless(&w, "community_renamed") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            let r = resident(&w, rec);
            let now = w.community(&r).name.clone();
            let written = w.rec_community_name(rec, &r);
            assert_ne!(written, now);
            assert!(
                written.starts_with(now.trim_end_matches("社区")),
                "{written}"
            );
            assert_ne!(mine.3, theirs.3);
            assert!(mine.3.contains(&written), "{}", mine.3);
            assert_eq!((&mine.0, &mine.1, mine.2), (&theirs.0, &theirs.1, theirs.2));
        }
    }

    #[test]
    fn cousins_are_two_residents_with_one_name() {
        let w = fresh(9);
        for (_, rec) in idless(&w, "cousins_same_name") {
            let b = resident(&w, rec);
            let a = partner(&w, rec, "cousins_same_name", |a, b| {
                a.community == b.community && a.name == b.name && !same_room(a, b)
            });
            assert_eq!(records_of(&w, rec.owner).len(), 1);
            assert_eq!(w.rec_name(rec), b.name);
            assert!(a.phone != b.phone && a.male == b.male);
            assert!(a.birth.year() == b.birth.year() && a.birth != b.birth);
        }
    }

    #[test]
    fn spouses_share_a_room_and_a_phone() {
        let w = fresh(9);
        for (_, rec) in idless(&w, "spouses_shared_phone") {
            let b = resident(&w, rec);
            let a = partner(&w, rec, "spouses_shared_phone", same_room);
            assert_eq!(records_of(&w, rec.owner).len(), 1);
            assert_eq!(w.rec_phone(rec), a.phone);
            assert!(a.phone == b.phone && a.male != b.male && a.name != b.name);
            assert!((1..=6).contains(&(a.birth.year() - b.birth.year()).abs()));
        }
    }
}
