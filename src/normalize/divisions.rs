//! Official division codes (GB/T 2260, NBS statistical codes as of 2023-06-30), embedded in
//! the binary with `include_str!`; nothing is read from disk at run time.
//!
//! Tables are parsed once, on first use, into slices that borrow from the embedded text.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

static PROVINCES_CSV: &str = include_str!("../../data/divisions/provinces.csv");
static CITIES_CSV: &str = include_str!("../../data/divisions/cities.csv");
static AREAS_CSV: &str = include_str!("../../data/divisions/areas.csv");
static STREETS_JX_CSV: &str = include_str!("../../data/divisions/streets-jiangxi.csv");

/// Prefecture code of Nanchang (南昌市).
pub const NANCHANG_CITY: &str = "3601";

/// Rows of an embedded CSV (header skipped), each split into unquoted columns.
fn rows(csv: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|c| c.trim().trim_matches('"')).collect())
}

struct Tables {
    /// Ordered by code: address parsing walks these for every record.
    provinces: BTreeMap<&'static str, &'static str>,
    cities: BTreeMap<&'static str, &'static str>,
    /// county code -> (name, city code)
    areas: HashMap<&'static str, (&'static str, &'static str)>,
    area_names: HashMap<&'static str, Vec<&'static str>>,
    nanchang_counties: Vec<(&'static str, &'static str)>,
    nanchang_streets: Vec<(&'static str, &'static str, &'static str)>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let provinces = rows(PROVINCES_CSV)
            .filter_map(|r| Some((*r.first()?, *r.get(1)?)))
            .collect();
        let cities = rows(CITIES_CSV)
            .filter_map(|r| Some((*r.first()?, *r.get(1)?)))
            .collect();
        let mut areas = HashMap::new();
        let mut area_names: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        let mut nanchang_counties = Vec::new();
        for r in rows(AREAS_CSV) {
            let (Some(code), Some(name), Some(city)) = (r.first(), r.get(1), r.get(2)) else {
                continue;
            };
            areas.insert(*code, (*name, *city));
            area_names.entry(*name).or_default().push(*code);
            if *city == NANCHANG_CITY {
                nanchang_counties.push((*code, *name));
            }
        }
        let nanchang_streets = rows(STREETS_JX_CSV)
            .filter_map(|r| {
                let (code, name, area) = (*r.first()?, *r.get(1)?, *r.get(2)?);
                (r.get(4).copied() == Some(NANCHANG_CITY)).then_some((code, name, area))
            })
            .collect();
        Tables {
            provinces,
            cities,
            areas,
            area_names,
            nanchang_counties,
            nanchang_streets,
        }
    })
}

/// Name of a 2-digit province code (`36` → `江西省`).
pub fn province_name(code: &str) -> Option<&'static str> {
    tables().provinces.get(code).copied()
}

/// Name of a 4-digit prefecture code (`3601` → `南昌市`; municipalities have `市辖区`).
pub fn city_name(code: &str) -> Option<&'static str> {
    tables().cities.get(code).copied()
}

/// Name of a 6-digit county code (`360102` → `东湖区`).
pub fn county_name(code: &str) -> Option<&'static str> {
    tables().areas.get(code).map(|(name, _)| *name)
}

/// County codes that carry this name, nationwide (names repeat across provinces).
pub fn county_codes_by_name(name: &str) -> &'static [&'static str] {
    tables()
        .area_names
        .get(name)
        .map(|v| v.as_slice())
        .unwrap_or(&[])
}

/// All provinces as (code, name), in code order.
pub fn provinces() -> impl Iterator<Item = (&'static str, &'static str)> {
    tables().provinces.iter().map(|(c, n)| (*c, *n))
}

/// All prefectures as (code, name), in code order.
pub fn cities() -> impl Iterator<Item = (&'static str, &'static str)> {
    tables().cities.iter().map(|(c, n)| (*c, *n))
}

/// All county codes, in code order (for generating realistic ID numbers).
pub fn county_codes() -> Vec<&'static str> {
    let mut v: Vec<_> = tables().areas.keys().copied().collect();
    v.sort();
    v
}

/// The counties (districts 区 and counties 县) of Nanchang as (6-digit code, name), in code
/// order: `("360102", "东湖区")` ...
pub fn nanchang_counties() -> &'static [(&'static str, &'static str)] {
    &tables().nanchang_counties
}

/// The township-level divisions of Nanchang (街道, 镇, 乡 and a few 管理处/开发区) as
/// (9-digit code, name, 6-digit county code), in file (= code) order:
/// `("360102002", "滕王阁街道", "360102")` ...
pub fn nanchang_streets() -> &'static [(&'static str, &'static str, &'static str)] {
    &tables().nanchang_streets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provinces_and_counties() {
        assert_eq!(province_name("36"), Some("江西省"));
        assert_eq!(province_name("11"), Some("北京市"));
        assert_eq!(province_name("99"), None);
        assert_eq!(
            province_name("71"),
            None,
            "Taiwan is not in the statistical table"
        );
        assert_eq!(provinces().count(), 31);
        assert_eq!(county_name("360102"), Some("东湖区"));
        assert_eq!(county_name("110105"), Some("朝阳区"));
        assert_eq!(county_name("360122"), None, "新建县 became 新建区 360112");
        assert_eq!(city_name("3601"), Some("南昌市"));
        assert!(county_codes_by_name("朝阳区").contains(&"110105"));
        assert!(county_codes().len() > 2900);
    }

    #[test]
    fn nanchang_tables() {
        let counties = nanchang_counties();
        assert_eq!(counties.len(), 9);
        assert_eq!(counties[0], ("360102", "东湖区"));
        assert!(counties.contains(&("360113", "红谷滩区")));
        let streets = nanchang_streets();
        assert_eq!(streets.len(), 139);
        assert_eq!(streets[0], ("360102002", "滕王阁街道", "360102"));
        for (code, name, area) in streets {
            assert_eq!(code.len(), 9, "{code}");
            assert!(code.starts_with(area) && area.starts_with("3601"), "{code}");
            assert!(!name.is_empty() && !name.contains('"'));
            assert!(counties.iter().any(|(c, _)| c == area), "{area}");
        }
    }
}
