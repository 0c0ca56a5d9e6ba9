//! One district of a simulated city, for the city harness (`crate::city`): every resident is
//! registered in the district (their ID numbers begin with its county code, so two districts
//! never share an ID number by chance), lives at an address in it, and a set number of them
//! moved to the next district: those people appear in both districts' systems with the same
//! ID number, name, birth date and mobile, and a different address.
//!
//! Both districts of a move draw its movers from `city_seed` and the two county codes alone, so
//! two simulators started apart (one per district agent) agree on who they are.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::names;
use super::world::{World, AREAS_CSV, STREETS_CSV};
use crate::normalize::id_number::check_char;

/// The district a simulator serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistrictOptions {
    /// GB/T 2260 county code (`360102`): the first six digits of every resident's ID number.
    pub code: u32,
    /// The district this one's movers moved to (they appear there too).
    pub moves_to: Option<u32>,
    /// The district whose movers moved here.
    pub moved_in_from: Option<u32>,
    /// People per move (the same number on both sides of it).
    pub movers: usize,
    /// The city's seed: who moves between two districts depends on it and the two codes only.
    pub city_seed: u64,
}

/// A resident who moved between two districts, as one district's simulator holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mover {
    pub from: u32,
    pub to: u32,
    /// The mover's number within the move: the same person on both sides.
    pub ordinal: usize,
    /// Their resident index in this simulator.
    pub resident: usize,
}

/// The county codes of a city of `n` districts: Nanchang's nine first, then the rest of
/// Jiangxi's (a hundred in all).
pub fn city_districts(n: usize) -> Vec<u32> {
    let mut nanchang = Vec::new();
    let mut rest = Vec::new();
    for line in AREAS_CSV.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() < 3 || !c[0].starts_with("36") {
            continue;
        }
        if let Ok(code) = c[0].parse::<u32>() {
            if c[2] == "3601" {
                nanchang.push(code);
            } else {
                rest.push(code);
            }
        }
    }
    nanchang.extend(rest);
    nanchang.truncate(n);
    nanchang
}

/// The district's streets, as (district name, street name); the whole city's when the code
/// has none listed.
pub(super) fn streets(code: u32) -> Vec<(String, String)> {
    let code = code.to_string();
    let name = AREAS_CSV
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|c| c.len() >= 2 && c[0] == code)
        .map(|c| c[1].trim_matches('"').to_string())
        .unwrap_or_else(|| "东湖区".to_string());
    let out: Vec<(String, String)> = STREETS_CSV
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c.len() >= 3 && c[2] == code)
        .map(|c| (name.clone(), c[1].trim_matches('"').to_string()))
        .collect();
    if out.is_empty() {
        vec![(name, "滕王阁街道".to_string())]
    } else {
        out
    }
}

/// The people of one move, in order: (name, ID number, male, birth, mobile).
fn movers_of(
    city_seed: u64,
    from: u32,
    to: u32,
    n: usize,
) -> Vec<(String, [u8; 18], bool, chrono::NaiveDate, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        city_seed ^ (u64::from(from) << 32 | u64::from(to)).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut ids = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let male = rng.random_bool(0.5);
        let birth = super::world::random_birth(&mut rng);
        let seq = rng.random_range(0..100u32);
        let parity = rng.random_range(0..5u32) * 2 + u32::from(male);
        use chrono::Datelike as _;
        let first17 = format!(
            "{from}{:04}{:02}{:02}{seq:02}{parity}",
            birth.year(),
            birth.month(),
            birth.day()
        );
        if !ids.insert(first17.clone()) {
            continue;
        }
        let mut id = [0u8; 18];
        id[..17].copy_from_slice(&first17.as_bytes()[..17]);
        id[17] = check_char(&first17).unwrap_or('0') as u8;
        let name = names::person_name(&mut rng, male);
        let prefix = [138u64, 139, 150, 186, 187][rng.random_range(0..5)];
        let phone = prefix * 100_000_000 + rng.random_range(0..100_000_000u64);
        out.push((name, id, male, birth, phone));
    }
    out
}

/// Gives the movers of this district's two moves (out to `moves_to`, in from
/// `moved_in_from`) the identities both sides share: each replaces a resident of its own
/// (one with a mobile of their own, so no household's shared phone changes), keeping that
/// resident's address here. Movers out come from the first half of the residents, movers in
/// from the second, so no resident is replaced twice.
pub(super) fn place_movers(w: &mut World, d: &DistrictOptions) {
    let n = w.residents.len();
    let mut moves = Vec::new();
    if let Some(to) = d.moves_to {
        moves.push((d.code, to, 0..n / 2));
    }
    if let Some(from) = d.moved_in_from {
        moves.push((from, d.code, n / 2..n));
    }
    for (from, to, range) in moves {
        let people = movers_of(d.city_seed, from, to, d.movers);
        let candidates: Vec<usize> = range
            .filter(|&i| {
                w.phones
                    .get(&w.residents[i].phone)
                    .is_some_and(|o| o.len() == 1)
            })
            .collect();
        let mut candidates = candidates.into_iter();
        for (ordinal, (name, id, male, birth, phone)) in people.into_iter().enumerate() {
            let Some(i) = candidates.next() else { break };
            if w.phones.contains_key(&phone) {
                continue;
            }
            let r = &mut w.residents[i];
            let old_phone = r.phone;
            let mut old_key = [0u8; 17];
            old_key.copy_from_slice(&r.id[..17]);
            (r.name, r.id, r.male, r.birth, r.phone) = (name, id, male, birth, phone);
            w.phones.remove(&old_phone);
            w.phones.insert(phone, vec![i as u32]);
            w.ids.remove(&old_key);
            let mut key = [0u8; 17];
            key.copy_from_slice(&id[..17]);
            w.ids.insert(key);
            w.movers.push(Mover {
                from,
                to,
                ordinal,
                resident: i,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::GenOptions;

    fn district(code: u32, from: u32, to: u32) -> World {
        World::generate(GenOptions {
            seed: u64::from(code),
            residents: 300,
            anchor_ms: 1_767_196_800_000,
            hard_cases: false,
            hard_profile: Default::default(),
            district: Some(DistrictOptions {
                code,
                moves_to: Some(to),
                moved_in_from: Some(from),
                movers: 12,
                city_seed: 5,
            }),
        })
    }

    #[test]
    fn districts_share_their_movers_and_no_one_else() {
        let a = district(360102, 360111, 360103);
        let b = district(360103, 360102, 360104);
        let ids =
            |w: &World| -> HashSet<String> { w.residents.iter().map(|r| r.id_str()).collect() };
        let (ia, ib) = (ids(&a), ids(&b));
        let shared: HashSet<&String> = ia.intersection(&ib).collect();
        // a's movers out are b's movers in: the same people, and no one else is shared.
        assert_eq!(shared.len(), 12);
        for m in b.movers.iter().filter(|m| m.from == 360102) {
            let there = a
                .movers
                .iter()
                .find(|x| x.to == 360103 && x.ordinal == m.ordinal)
                .expect("the same mover on both sides");
            let (ra, rb) = (&a.residents[there.resident], &b.residents[m.resident]);
            assert_eq!((ra.id, &ra.name, ra.phone), (rb.id, &rb.name, rb.phone));
        }
        // Residents who did not move are registered in their own district.
        let own = a
            .residents
            .iter()
            .filter(|r| r.id_str().starts_with("360102"))
            .count();
        assert_eq!(own, 300 - 12, "all but the movers in from 360111");
        assert!(a.communities.iter().all(|c| c.district == "东湖区"));
    }
}
