//! Chinese street addresses split into their parts.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub district: Option<String>,
    pub street: Option<String>,
    pub community: Option<String>,
    pub building: Option<String>,
    pub unit: Option<String>,
    pub room: Option<String>,
}

pub fn parse(raw: &str) -> Address {
    let s = crate::normalize::text::clean(raw);
    let community = s.find("社区").map(|i| {
        let head = &s[..i];
        let start = head.rfind(['道', '镇', '区']).map(|j| j + head[j..].chars().next().map_or(0, |c| c.len_utf8())).unwrap_or(0);
        format!("{}社区", &head[start..])
    });
    Address { community, ..Address::default() }
}
