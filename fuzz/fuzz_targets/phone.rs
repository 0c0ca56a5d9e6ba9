#![no_main]
//! Phones: never panic; an accepted value is canonical and stable.

use community_sync::normalize::phone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = phone::normalize(s) {
        assert!(p.len() == 11 || p.contains('-'));
        assert_eq!(phone::normalize(&p).as_deref(), Ok(p.as_str()));
    }
});
