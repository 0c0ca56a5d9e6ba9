//! Official division codes (GB/T 2260, NBS 2023), embedded in the binary.

use std::collections::HashMap;
use std::sync::OnceLock;

static PROVINCES_CSV: &str = include_str!("../../data/divisions/provinces.csv");
static AREAS_CSV: &str = include_str!("../../data/divisions/areas.csv");

fn parse(csv: &str) -> HashMap<String, String> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.splitn(3, ',');
            let code = it.next()?.to_string();
            let name = it.next()?.trim_matches('"').to_string();
            Some((code, name))
        })
        .collect()
}

pub fn province_name(code: &str) -> Option<&'static str> {
    static P: OnceLock<HashMap<String, String>> = OnceLock::new();
    P.get_or_init(|| parse(PROVINCES_CSV)).get(code).map(|s| s.as_str())
}

pub fn county_name(code: &str) -> Option<&'static str> {
    static A: OnceLock<HashMap<String, String>> = OnceLock::new();
    A.get_or_init(|| parse(AREAS_CSV)).get(code).map(|s| s.as_str())
}
