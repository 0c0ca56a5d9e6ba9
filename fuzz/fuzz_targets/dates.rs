#![no_main]
//! Dates and date-times: never panic, whatever the value and the format; a parsed date-time
//! written as RFC 3339 reads back as the same instant.

use chrono::Datelike;
use community_sync::normalize::datetime;
use libfuzzer_sys::fuzz_target;

const FORMATS: [Option<&str>; 9] = [
    None,
    Some("auto"),
    Some("rfc3339"),
    Some("epoch_s"),
    Some("epoch_ms"),
    Some("excel"),
    Some("%Y-%m-%d %H:%M:%S"),
    Some("%Y%m%d%H%M%S"),
    Some("%Y/%m/%d %H:%M"),
];

fuzz_target!(|data: &[u8]| {
    // First byte picks the format (or, when odd past the table, uses the rest as a format).
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let tz = if sel & 0x80 == 0 {
        chrono_tz::Asia::Shanghai
    } else {
        chrono_tz::America::New_York
    };
    let idx = (sel & 0x7f) as usize;
    if let Some(format) = FORMATS.get(idx) {
        let _ = datetime::parse_date(s, *format);
        if let Ok(t) = datetime::parse_datetime(s, *format, tz) {
            // RFC 3339 has 4-digit years and whole-minute offsets (not local mean time).
            let writable = (1..=9999).contains(&t.year()) && t.offset().local_minus_utc() % 60 == 0;
            if !writable {
                return;
            }
            let text = t.to_rfc3339();
            let back = datetime::parse_datetime(&text, Some("rfc3339"), tz)
                .expect("our own RFC 3339 output must read back");
            assert_eq!(back, t);
        }
    } else {
        // Arbitrary format string applied to a fixed value and to itself.
        let _ = datetime::parse_date("2024-05-01 10:00:00", Some(s));
        let _ = datetime::parse_datetime("2024-05-01 10:00:00", Some(s), tz);
        let _ = datetime::parse_datetime(s, Some(s), tz);
    }
});
