//! Whitespace and width cleaning shared by the other normalizers.

/// Full-width ASCII (U+FF01..U+FF5E) to half-width, U+3000 to a space, trimmed.
pub fn to_half_width(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Half-width, trimmed, inner whitespace runs collapsed to one space.
pub fn clean(raw: &str) -> String {
    to_half_width(raw).split_whitespace().collect::<Vec<_>>().join(" ")
}
