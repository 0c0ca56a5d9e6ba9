//! What the hard-case profiles' tests share: a world of a profile, its records by kind, a
//! resident's records, and the determinism and GBK checks every profile makes.

use std::collections::BTreeMap;

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
