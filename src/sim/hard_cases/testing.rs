//! What the hard-case profiles' tests share: a world of a profile, its records by kind, a
//! resident's records, and the determinism and GBK checks every profile makes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use pinyin::ToPinyin;

use super::HardProfile;
use crate::sim::world::{GenOptions, IdDirt, Rec, Resident, StreamId, World};

pub(super) const ANCHOR: i64 = 1_767_196_800_000;

/// A 300-resident world with the hard cases of `profile`.
pub(super) fn world(profile: HardProfile, seed: u64) -> World {
    World::generate(GenOptions {
        seed,
        residents: 300,
        anchor_ms: ANCHOR,
        hard_cases: true,
        hard_profile: profile,
        district: None,
    })
}

/// The person records of each hard-case kind: (stream, record); `idless_only`: only those
/// without an ID number.
pub(super) fn by_kind(
    w: &World,
    idless_only: bool,
) -> BTreeMap<&'static str, Vec<(StreamId, &Rec)>> {
    let mut out: BTreeMap<&'static str, Vec<(StreamId, &Rec)>> = BTreeMap::new();
    for s in StreamId::PERSON {
        for rec in &w.stream(s).recs {
            if let Some(kind) = w.case_kind.get(&(s.idx(), rec.no)) {
                if !idless_only || rec.id == IdDirt::Missing {
                    out.entry(*kind).or_default().push((s, rec));
                }
            }
        }
    }
    out
}

pub(super) fn resident(w: &World, rec: &Rec) -> Resident {
    w.residents[rec.owner as usize].clone()
}

/// The ID-less records of `kind`.
pub(super) fn idless<'w>(w: &'w World, kind: &str) -> Vec<(StreamId, &'w Rec)> {
    by_kind(w, true).remove(kind).unwrap_or_default()
}

pub(super) fn same_room(a: &Resident, b: &Resident) -> bool {
    (a.community, a.building, a.unit, a.room) == (b.community, b.building, b.unit, b.room)
}

/// What a record states besides its ID: (name, phone text, birth, address).
pub(super) fn stated(w: &World, rec: &Rec) -> (String, Option<String>, Option<NaiveDate>, String) {
    let r = resident(w, rec);
    (
        w.name_text(rec),
        w.phone_text(rec),
        w.rec_birth(rec),
        w.rec_address(rec, &r),
    )
}

/// The resident's own (name, phone, birth, address).
pub(super) fn own(w: &World, rec: &Rec) -> (String, Option<String>, Option<NaiveDate>, String) {
    let r = resident(w, rec);
    (
        r.name.clone(),
        Some(r.phone.to_string()),
        Some(r.birth),
        w.address(&r),
    )
}

/// The other resident of a two-resident case: the one with ID-bearing records of `kind`
/// that `near` picks for the ID-less record's resident.
pub(super) fn partner(
    w: &World,
    rec: &Rec,
    kind: &str,
    near: impl Fn(&Resident, &Resident) -> bool,
) -> Resident {
    let b = resident(w, rec);
    by_kind(w, false)
        .remove(kind)
        .unwrap_or_default()
        .iter()
        .filter(|(_, r)| r.id != IdDirt::Missing)
        .map(|(_, r)| resident(w, r))
        .find(|a| near(a, &b))
        .expect("the other resident")
}

/// The toneless pinyin of `ch` (empty when it has none).
pub(super) fn toneless(ch: char) -> String {
    ch.to_pinyin()
        .map(|p| p.plain().to_string())
        .unwrap_or_default()
}

/// The resident's records in every person stream (ID-bearing or not).
pub(super) fn records_of(w: &World, r: u32) -> Vec<(StreamId, &Rec)> {
    StreamId::PERSON
        .iter()
        .flat_map(|s| w.stream(*s).recs.iter().map(move |rec| (*s, rec)))
        .filter(|(_, rec)| rec.owner == r)
        .collect()
}

/// `w` renders exactly as `same` (the same seed) and not as `other`, and every one-card
/// record is GBK (the one-card system's encoding).
pub(super) fn assert_deterministic_and_gbk(w: &World, same: &World, other: &World) {
    let render = |w: &World| -> Vec<String> {
        StreamId::ALL
            .iter()
            .flat_map(|s| {
                w.stream(*s)
                    .recs
                    .iter()
                    .map(|r| w.render(*s, r, "").to_string())
            })
            .collect()
    };
    assert_eq!(render(w), render(same));
    assert_ne!(render(w), render(other));
    for rec in &w.stream(StreamId::Cardholders).recs {
        let text = w.render(StreamId::Cardholders, rec, "").to_string();
        let (_, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable, "not GBK: {}", crate::mask::scrub_text(&text));
    }
}
