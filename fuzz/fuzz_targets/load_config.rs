//! Config loading: any text given as the config file is either a valid config or a clear
//! error; parsing and validation never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = community_sync::config::Config::from_toml(text, Path::new("fuzz.toml")) {
        let _ = toml::to_string(&config);
    }
});
