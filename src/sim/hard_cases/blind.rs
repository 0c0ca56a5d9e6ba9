//! The blind profile's own kinds (see the parent module's docs): each function adds one
//! case (a resident, a family or a pair) and marks every record of it with its kind. Each
//! kind models something Chinese department systems or their clerks really do; in the first
//! six the ID-less record belongs to a resident who also has ID-bearing records (truth: that
//! resident), the last two are precision traps (truth: two residents, one of them only known
//! by the ID-less record).

use chrono::{Datelike, Duration, NaiveDate};
use rand::Rng;

use super::holdout::{
    given, id_records, id_streams, idless_record, plain_resident, surname, GIVEN,
};
use super::Ctx;
use crate::sim::world::{Overrides, StreamId};

/// The kinds this profile adds to the other three profiles' kinds.
#[cfg(test)]
pub(crate) const KINDS: [&str; 8] = [
    "phone_formatting",
    "landline_only",
    "birth_year_only",
    "name_with_note",
    "compound_surname",
    "compound_surname_trap",
    "moved_community",
    "newborn_under_mother",
];

/// Compound surnames, each with the single-character surname (common on its own) that is
/// left when one of its characters is dropped: 司马 → 马, 东方 → 方.
const COMPOUND: [(&str, char); 8] = [
    ("欧阳", '欧'),
    ("司马", '马'),
    ("诸葛", '葛'),
    ("夏侯", '夏'),
    ("东方", '方'),
    ("公孙", '孙'),
    ("上官", '官'),
    ("司徒", '司'),
];
/// Remarks clerks type into the name field of an elder-care record: living alone, on
/// minimum living allowance, empty nest, no family, the "five guarantees", disabled, a
/// priority case, someone registering on the elder's behalf.
const NOTES: [&str; 8] = [
    "独居", "低保", "空巢", "孤寡", "五保", "残疾", "重点", "代办",
];
/// How a newborn's health record names the baby before it has a name of its own.
const NEWBORN: [&str; 4] = ["之子", "之女", "宝宝", "婴"];

/// Adds `n` cases of every blind kind.
pub(super) fn add(c: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        phone_formatting(c);
        landline_only(c);
        birth_year_only(c);
        name_with_note(c);
        compound_surname(c);
        compound_surname_trap(c);
        moved_community(c);
        newborn_under_mother(c);
    }
}

/// The elder-care stream for residents born before 1965, else a one-card account.
fn elder_or_card(c: &Ctx<'_>, r: u32) -> StreamId {
    match c.w.residents.get(r as usize) {
        Some(res) if res.birth.year() < 1965 => StreamId::Elders,
        _ => StreamId::Cardholders,
    }
}

/// `13800138000` in writing style `style` (0..8), every one of which the phone normalizer
/// reads: `+86 138 0013 8000`, `0086-13800138000`, `86-138-0013-8000`, `138-0013-8000`,
/// `１３８００１３８０００`, `(+86)13800138000`, `+86-138-0013-8000`, `１３８－００１３－８０００`.
fn formatted(phone: u64, style: u8) -> String {
    let p = phone.to_string();
    let (a, b, d) = (
        phone / 100_000_000,
        format!("{:04}", phone / 10_000 % 10_000),
        format!("{:04}", phone % 10_000),
    );
    let full_width = |s: &str| -> String {
        s.chars()
            .map(|ch| match ch {
                '0'..='9' => char::from_u32(ch as u32 + 0xFEE0).unwrap_or(ch),
                '-' => '－',
                other => other,
            })
            .collect()
    };
    match style {
        0 => format!("+86 {a} {b} {d}"),
        1 => format!("0086-{p}"),
        2 => format!("86-{a}-{b}-{d}"),
        3 => format!("{a}-{b}-{d}"),
        4 => full_width(&p),
        5 => format!("(+86){p}"),
        6 => format!("+86-{a}-{b}-{d}"),
        _ => full_width(&format!("{a}-{b}-{d}")),
    }
}

/// `phone_formatting`: the ID-less record writes the resident's own mobile with a country
/// prefix, separators or full-width digits, as a form's free-text phone field takes it
/// (truth: the resident; reading these is the normalizer's job).
fn phone_formatting(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1940..2005);
    let stream = [StreamId::Cardholders, StreamId::Patients, StreamId::Elders]
        [c.rng.random_range(0..3usize)];
    let stream = match stream {
        StreamId::Elders => elder_or_card(c, r),
        s => s,
    };
    let style = c.rng.random_range(0..8u8);
    let phone = c.w.residents.get(r as usize).map(|res| res.phone);
    id_records(c, r, id_streams(stream), "phone_formatting");
    let over = Overrides {
        phone_text: phone.map(|p| formatted(p, style)),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "phone_formatting");
}

/// `landline_only`: an elder (born 1935–1959) whose elder-care record, taken at the door,
/// gives the home landline `0791-8xxxxxxx` (Nanchang) as the only phone, while the elder's
/// ID-bearing health record and one-card account carry the elder's mobile; same name, birth
/// date and full address.
fn landline_only(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1935..1960);
    let landline = format!("0791-8{:07}", c.rng.random_range(0..10_000_000u32));
    id_records(c, r, id_streams(StreamId::Elders), "landline_only");
    let over = Overrides {
        phone_text: Some(landline),
        ..Overrides::default()
    };
    idless_record(c, r, StreamId::Elders, over, "landline_only");
}

/// The placeholder a clerk types when only the birth year is known: New Year's day, or the
/// middle of the year (`06-30`, `07-01`) as some systems fill in.
fn placeholder_birth(year: i32, pick: u8) -> Option<NaiveDate> {
    match pick {
        0 => NaiveDate::from_ymd_opt(year, 1, 1),
        1 => NaiveDate::from_ymd_opt(year, 6, 30),
        _ => NaiveDate::from_ymd_opt(year, 7, 1),
    }
}

/// `birth_year_only`: only the birth year was known (an elder without papers at hand, an
/// age told to a clerk), so the ID-less record's birth date is a placeholder in the right
/// year; same name, phone and full address.
fn birth_year_only(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1935..1995);
    let Some(real) = c.w.residents.get(r as usize).map(|res| res.birth) else {
        return;
    };
    let pick = c.rng.random_range(0..3u8);
    // The resident's own birth date is never the placeholder (days 1–28: never 06-30).
    let pick = if (real.month(), real.day()) == (1, 1) && pick == 0 {
        2
    } else if (real.month(), real.day()) == (7, 1) && pick == 2 {
        0
    } else {
        pick
    };
    let stream = elder_or_card(c, r);
    id_records(c, r, id_streams(stream), "birth_year_only");
    let over = Overrides {
        birth: placeholder_birth(real.year(), pick),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "birth_year_only");
}

/// `name` as a clerk typed it in style `style` (0..6): a remark after it in full-width
/// brackets `王秀英（独居）`, ASCII ones `王秀英(低保)`, 【】 `王秀英【空巢】`, or after a
/// space `王秀英 代办`; an ideographic space after the surname `王　秀英`; trailing ASCII
/// and ideographic spaces `王秀英 　`.
fn with_note(name: &str, note: &str, style: u8) -> String {
    let mut chars = name.chars();
    let first: String = chars.next().map(String::from).unwrap_or_default();
    match style {
        0 => format!("{name}（{note}）"),
        1 => format!("{name}({note})"),
        2 => format!("{name}【{note}】"),
        3 => format!("{name} {note}"),
        4 => format!("{first}\u{3000}{}", chars.as_str()),
        _ => format!("{name} \u{3000}"),
    }
}

/// `name_with_note`: an elder-care record (an elder born 1935–1964) whose name field also
/// holds the clerk's remark on the elder's situation, or stray spaces; own phone, birth date
/// and full address.
fn name_with_note(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1935..1965);
    let note = NOTES[c.rng.random_range(0..NOTES.len())];
    let style = c.rng.random_range(0..6u8);
    let name = c.w.residents.get(r as usize).map(|res| res.name.clone());
    id_records(c, r, id_streams(StreamId::Elders), "name_with_note");
    let over = Overrides {
        name: name.map(|n| with_note(&n, note, style)),
        ..Overrides::default()
    };
    idless_record(c, r, StreamId::Elders, over, "name_with_note");
}

/// A compound-surname name as a system with separate surname and given-name fields, or a
/// short legacy column, writes it (`style` 0..4; `given` has two characters for 2 and 3):
/// a space between the fields `欧阳 明月`; the surname field holding one character and the
/// rest spilling into the given name `欧 阳明月`; a six-byte (three-character) column
/// cutting the name `欧阳明`; a one-character surname field dropping the second surname
/// character `欧明月`.
fn compound_written(compound: &str, given: &str, style: u8) -> String {
    let mut sc = compound.chars();
    let (s0, s1) = (sc.next().unwrap_or_default(), sc.next().unwrap_or_default());
    match style {
        0 => format!("{compound} {given}"),
        1 => format!("{s0} {s1}{given}"),
        2 => format!("{compound}{given}").chars().take(3).collect(),
        _ => format!("{s0}{given}"),
    }
}

/// `compound_surname`: a resident with a compound surname (欧阳, 司马, 诸葛 …) whose ID-less
/// one-card account or health record writes the name as [`compound_written`] says; own
/// phone, birth date and full address.
fn compound_surname(c: &mut Ctx<'_>) {
    let (compound, _) = COMPOUND[c.rng.random_range(0..COMPOUND.len())];
    let style = c.rng.random_range(0..4u8);
    let g = if style >= 2 {
        (0..2)
            .map(|_| GIVEN[c.rng.random_range(0..GIVEN.len())])
            .collect()
    } else {
        given(c)
    };
    let (b, a, male) = (c.birth(), c.address(), c.rng.random_bool(0.5));
    let r = c.resident(format!("{compound}{g}"), male, b, None, a);
    let stream = [StreamId::Cardholders, StreamId::Patients][c.rng.random_range(0..2usize)];
    id_records(c, r, id_streams(stream), "compound_surname");
    let over = Overrides {
        name: Some(compound_written(compound, &g, style)),
        ..Overrides::default()
    };
    idless_record(c, r, stream, over, "compound_surname");
}

/// `compound_surname_trap`: two neighbours in one building (different rooms, own phones,
/// same gender, born at most three years apart): one with a compound surname and two
/// ID-bearing records (司马明), the other with the single surname that is one of its
/// characters and the same given name (马明), only known by an ID-less record. The names
/// are one deletion apart, as a truncated compound surname would be.
fn compound_surname_trap(c: &mut Ctx<'_>) {
    let (compound, single) = COMPOUND[c.rng.random_range(0..COMPOUND.len())];
    let g = given(c);
    let male = c.rng.random_bool(0.5);
    let a = c.address();
    let mut other = c.address();
    while (other.2, other.3) == (a.2, a.3) {
        other = c.address();
    }
    let other = (a.0, a.1, other.2, other.3);
    let ba = c.birth_in(1950..2000);
    let y = ba.year() + c.rng.random_range(-3..=3);
    let bb = c.birth_in(y..y + 1);
    let ra = c.resident(format!("{compound}{g}"), male, ba, None, a);
    let rb = c.resident(format!("{single}{g}"), male, bb, None, other);
    let stream = [StreamId::Cardholders, StreamId::Patients][c.rng.random_range(0..2usize)];
    id_records(c, ra, id_streams(stream), "compound_surname_trap");
    idless_record(c, rb, stream, Overrides::default(), "compound_surname_trap");
}

/// An address in another community than `community` (the same one only if the district
/// has one community).
fn address_elsewhere(c: &mut Ctx<'_>, community: u32) -> (u32, u8, u8, u16) {
    let mut a = c.address();
    for _ in 0..20 {
        if a.0 != community {
            break;
        }
        a = c.address();
    }
    a
}

/// The address text of `addr` as the resident's records write it.
fn address_text(c: &Ctx<'_>, r: u32, addr: (u32, u8, u8, u16)) -> Option<String> {
    let mut res = c.w.residents.get(r as usize)?.clone();
    (res.community, res.building, res.unit, res.room) = addr;
    Some(c.w.address(&res))
}

/// `moved_community`: a resident who moved to another community and changed phone. An
/// older ID-bearing volunteer record (2–3 years old) still has the old address, community
/// and phone, a newer health record the current ones; the ID-less record (a one-card
/// account, or elder care for those born before 1965) was never updated: the old address,
/// community and phone. Same name and birth date.
fn moved_community(c: &mut Ctx<'_>) {
    let r = plain_resident(c, 1940..2000);
    let Some(now) = c.w.residents.get(r as usize).map(|res| res.community) else {
        return;
    };
    let old_addr = address_elsewhere(c, now);
    let old_phone = c.w.fresh_phone(c.rng);
    c.w.phones.entry(old_phone).or_default().push(r);
    let old = Overrides {
        phone: Some(old_phone),
        address: address_text(c, r, old_addr),
        community: Some(old_addr.0),
        ..Overrides::default()
    };
    let t = c.ts(700, 1000);
    let kind = "moved_community";
    c.record(StreamId::Volunteers, r, false, t, Some(old.clone()), kind);
    let t = c.ts(10, 300);
    c.record(StreamId::Patients, r, false, t, None, kind);
    let stream = elder_or_card(c, r);
    let t = c.ts(400, 1000);
    c.record(stream, r, true, t, Some(old), kind);
}

/// `newborn_under_mother`: a baby (born in the last 18 months) whose ID-less health record
/// was opened before it had a name: the mother's name with `之子` (son), `之女` (daughter),
/// `宝宝` (baby) or `婴` (infant), the mother's phone and their room. The mother (born
/// 1983–1999) has two ID-bearing records under that phone; the baby has no other record.
fn newborn_under_mother(c: &mut Ctx<'_>) {
    let s = surname(c);
    let mother = format!("{s}{}", given(c));
    let (mb, a) = (c.birth_in(1983..2000), c.address());
    let m = c.resident(mother.clone(), false, mb, None, a);
    let Some(phone) = c.w.residents.get(m as usize).map(|res| res.phone) else {
        return;
    };
    let today = chrono::DateTime::from_timestamp_millis(c.anchor)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    let born = today - Duration::days(c.rng.random_range(20..540));
    let male = c.rng.random_bool(0.5);
    let label = match c.rng.random_range(0..NEWBORN.len()) {
        0 | 1 if male => NEWBORN[0],
        0 | 1 => NEWBORN[1],
        i => NEWBORN[i],
    };
    // The baby's own name (the father's surname half the time) is on no record.
    let bs = if c.rng.random_bool(0.5) {
        s
    } else {
        surname(c)
    };
    let baby_name = format!("{bs}{}", given(c));
    let baby = c.resident(baby_name, male, born, Some(phone), a);
    id_records(c, m, id_streams(StreamId::Patients), "newborn_under_mother");
    let over = Overrides {
        name: Some(format!("{mother}{label}")),
        ..Overrides::default()
    };
    idless_record(c, baby, StreamId::Patients, over, "newborn_under_mother");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::normalize::{name, phone};
    use crate::sim::hard_cases::testing::{
        self, idless, own, partner, records_of, resident, same_room, stated, ANCHOR,
    };
    use crate::sim::hard_cases::HardProfile;
    use crate::sim::world::{GenOptions, IdDirt, Rec, World};

    fn blind(seed: u64) -> World {
        testing::world(HardProfile::Blind, seed)
    }

    /// The records of each hard-case kind: (stream, record).
    fn by_kind(w: &World) -> BTreeMap<&'static str, Vec<(StreamId, &Rec)>> {
        testing::by_kind(w, false)
    }

    #[test]
    fn blind_has_every_kind_and_the_same_seed_the_same_records() {
        let w = blind(404);
        let kinds = by_kind(&w);
        for kind in KINDS {
            assert_eq!(idless(&w, kind).len(), 16, "{kind}");
        }
        for kind in super::super::holdout::KINDS.iter().chain(&[
            "old_phone",
            "twins",
            "common_name",
            "swapped_name",
        ]) {
            assert!(kinds.contains_key(kind), "{kind}");
        }
        for profile in [
            HardProfile::Tuned,
            HardProfile::Unseen,
            HardProfile::Holdout,
        ] {
            let other = World::generate(GenOptions {
                seed: 404,
                residents: 300,
                anchor_ms: ANCHOR,
                hard_cases: true,
                hard_profile: profile,
                district: None,
            });
            let theirs = by_kind(&other);
            assert!(KINDS.iter().all(|k| !theirs.contains_key(k)), "{profile:?}");
        }
        testing::assert_deterministic_and_gbk(&w, &blind(404), &blind(505));
    }

    #[test]
    fn every_phone_format_reads_as_the_mobile() {
        for style in 0..8 {
            let text = formatted(13_800_138_000, style);
            assert_ne!(text, "13800138000");
            assert_eq!(
                phone::normalize(&text).as_deref(),
                Ok("13800138000"),
                "{text}"
            );
        }
        let want = [
            "+86 138 0013 8000",
            "0086-13800138000",
            "86-138-0013-8000",
            "138-0013-8000",
            "１３８００１３８０００",
            "(+86)13800138000",
            "+86-138-0013-8000",
            "１３８－００１３－８０００",
        ];
        for (style, text) in want.iter().enumerate() {
            assert_eq!(formatted(13_800_138_000, style as u8), *text);
        }
        let w = blind(7);
        for (_, rec) in idless(&w, "phone_formatting") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            assert_ne!(mine.1, theirs.1);
            let read = mine.1.as_deref().map(phone::normalize);
            assert_eq!(read, Some(Ok(resident(&w, rec).phone.to_string())));
            assert_eq!((&mine.0, mine.2, &mine.3), (&theirs.0, theirs.2, &theirs.3));
            assert_eq!(records_of(&w, rec.owner).len(), 3);
        }
    }

    #[test]
    fn landline_records_are_elders_with_the_home_phone_only() {
        let w = blind(7);
        for (s, rec) in idless(&w, "landline_only") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            let text = mine.1.clone().unwrap_or_default();
            assert!(text.starts_with("0791-8") && text.len() == 13, "{text}");
            assert_eq!(phone::normalize(&text).as_deref(), Ok(text.as_str()));
            assert_eq!((&mine.0, mine.2, &mine.3), (&theirs.0, theirs.2, &theirs.3));
            assert_eq!(s, StreamId::Elders);
            assert!(resident(&w, rec).birth.year() < 1960);
            for (_, other) in records_of(&w, rec.owner) {
                if other.id != IdDirt::Missing {
                    assert_eq!(w.phone_text(other), theirs.1);
                }
            }
        }
    }

    #[test]
    fn birth_placeholders_keep_the_year_only() {
        let w = blind(7);
        for (_, rec) in idless(&w, "birth_year_only") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            let (b, real) = (mine.2.expect("a birth date"), resident(&w, rec).birth);
            assert_ne!(b, real);
            assert_eq!(b.year(), real.year());
            assert!(
                [(1, 1), (6, 30), (7, 1)].contains(&(b.month(), b.day())),
                "{b}"
            );
            assert_eq!(
                (&mine.0, &mine.1, &mine.3),
                (&theirs.0, &theirs.1, &theirs.3)
            );
        }
    }

    #[test]
    fn names_with_notes_or_spaces_keep_everything_else() {
        for style in 0..6 {
            let text = with_note("王秀英", "独居", style);
            let clean = name::normalize(&text).unwrap_or_default();
            // What the normalizer reads: a bracketed note and a remark after a space are
            // dropped.
            assert_eq!(clean, "王秀英", "{text:?}");
            if style < 4 {
                assert!(text.contains("独居"), "{text}");
            }
        }
        let w = blind(7);
        for (s, rec) in idless(&w, "name_with_note") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            assert_ne!(mine.0, theirs.0);
            let first = theirs.0.chars().next().unwrap_or_default();
            assert!(mine.0.starts_with(first), "{}", mine.0);
            assert_eq!((&mine.1, mine.2, &mine.3), (&theirs.1, theirs.2, &theirs.3));
            assert_eq!(s, StreamId::Elders);
        }
    }

    #[test]
    fn compound_surnames_as_systems_write_them() {
        let want = ["欧阳 明月", "欧 阳明月", "欧阳明", "欧明月"];
        for (style, text) in want.iter().enumerate() {
            assert_eq!(compound_written("欧阳", "明月", style as u8), *text);
        }
        let w = blind(7);
        for (_, rec) in idless(&w, "compound_surname") {
            let (mine, theirs) = (stated(&w, rec), own(&w, rec));
            assert!(COMPOUND.iter().any(|(c, _)| theirs.0.starts_with(c)));
            let clean = name::normalize(&mine.0).unwrap_or_default();
            let (a, b) = (theirs.0.chars().count(), clean.chars().count());
            assert!(clean == theirs.0 || b + 1 == a, "{} / {}", theirs.0, mine.0);
            assert_eq!((&mine.1, mine.2, &mine.3), (&theirs.1, theirs.2, &theirs.3));
        }
    }

    #[test]
    fn compound_trap_is_two_neighbours_one_deletion_apart() {
        let w = blind(7);
        for (_, rec) in idless(&w, "compound_surname_trap") {
            let b = resident(&w, rec);
            let a = partner(&w, rec, "compound_surname_trap", |a, b| {
                a.community == b.community && a.building == b.building
            });
            assert_eq!(records_of(&w, rec.owner).len(), 1);
            assert_eq!(w.rec_name(rec), b.name);
            let (na, nb) = (a.name.chars().count(), b.name.chars().count());
            assert_eq!(na, nb + 1);
            assert!(a
                .name
                .ends_with(&b.name[b.name.char_indices().nth(1).map_or(0, |x| x.0)..]));
            assert!(!same_room(&a, &b) && a.phone != b.phone && a.male == b.male);
            assert!((a.birth.year() - b.birth.year()).abs() <= 3);
        }
    }

    #[test]
    fn moved_residents_idless_record_has_the_old_address_and_phone() {
        let w = blind(7);
        for (_, rec) in idless(&w, "moved_community") {
            let r = resident(&w, rec);
            let mine = records_of(&w, rec.owner);
            assert_eq!(mine.len(), 3);
            let old = mine
                .iter()
                .find(|(s, _)| *s == StreamId::Volunteers)
                .map(|(_, x)| *x)
                .expect("the old volunteer record");
            assert_eq!(w.rec_address(rec, &r), w.rec_address(old, &r));
            assert_ne!(w.rec_address(rec, &r), w.address(&r));
            assert_eq!(w.rec_phone(rec), w.rec_phone(old));
            assert_ne!(w.rec_phone(rec), r.phone);
            let community = rec.over.as_ref().and_then(|o| o.community);
            assert!(community.is_some_and(|c| c != r.community));
            assert!(old.ts < mine.iter().map(|(_, x)| x.ts).max().unwrap_or_default());
            assert_eq!((w.rec_name(rec), w.rec_birth(rec)), (r.name, Some(r.birth)));
        }
    }

    #[test]
    fn newborn_records_name_the_mother_and_carry_her_phone() {
        let w = blind(7);
        let today = chrono::DateTime::from_timestamp_millis(ANCHOR)
            .map(|d| d.date_naive())
            .unwrap_or_default();
        for (s, rec) in idless(&w, "newborn_under_mother") {
            let baby = resident(&w, rec);
            let mother = partner(&w, rec, "newborn_under_mother", |a, b| {
                a.community == b.community && a.building == b.building
            });
            assert_eq!(s, StreamId::Patients);
            assert_eq!(records_of(&w, rec.owner).len(), 1);
            let written = w.rec_name(rec);
            assert!(written.starts_with(&mother.name) && written != mother.name);
            assert_ne!(written, baby.name);
            assert!(same_room(&mother, &baby) && mother.phone == baby.phone);
            assert!(!mother.male);
            assert_eq!(w.rec_birth(rec), Some(baby.birth));
            assert!((today - baby.birth).num_days() < 550);
        }
    }
}
