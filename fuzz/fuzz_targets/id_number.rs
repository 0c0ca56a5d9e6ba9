#![no_main]
//! ID numbers: never panic; an accepted value is canonical and stable.

use community_sync::normalize::id_number;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match id_number::normalize(s) {
        Ok(id) => {
            assert_eq!(id.value.len(), 18);
            assert_eq!(
                id_number::check_char(&id.value[..17]),
                id.value.chars().last()
            );
            let again = id_number::normalize(&id.value).expect("canonical value must be accepted");
            assert_eq!(again.value, id.value);
            assert_eq!(again.birth_date, id.birth_date);
            assert_eq!(again.gender, id.gender);
        }
        Err(e) => {
            // The detail is logged: it must never quote a long input whole.
            // (Only for digit-heavy input: the fuzzer happily quotes the messages back.)
            let digits = s.chars().filter(char::is_ascii_digit).count();
            if s.trim().len() >= 15 && digits >= 10 {
                assert!(!e.detail.contains(s.trim()));
            }
        }
    }
    let _ = id_number::check_char(s);
});
