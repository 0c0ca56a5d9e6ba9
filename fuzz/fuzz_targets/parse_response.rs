//! Response parsing: any bytes a department system could answer with go through body decoding
//! (charset, BOM, JSON nesting cap), record selection (per-page cap), the paging helpers and the
//! field mapping of every stream in the example config. None of it may panic.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use community_sync::config::Config;
use community_sync::normalize::mapping::Mapping;
use community_sync::source::config::EncodingConfig;
use community_sync::source::decode;
use libfuzzer_sys::fuzz_target;

fn mappings() -> &'static Vec<(String, Option<String>, Mapping)> {
    static M: OnceLock<Vec<(String, Option<String>, Mapping)>> = OnceLock::new();
    M.get_or_init(|| {
        let text = community_sync::cli::demo::EXAMPLE_CONFIG;
        let config =
            Config::from_toml(text, Path::new("example.toml")).expect("example config is valid");
        let mut out = Vec::new();
        for s in &config.sources {
            for t in &s.streams {
                out.push((
                    t.records.clone(),
                    t.record_pointer.clone(),
                    Mapping::compile(&config, t),
                ));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (head, body) = data.split_at(2);
    let encoding = match head[0] % 4 {
        0 => EncodingConfig::Auto,
        1 => EncodingConfig::Utf8,
        2 => EncodingConfig::Gbk,
        _ => EncodingConfig::Gb18030,
    };
    let content_type = match head[0] / 4 % 4 {
        0 => None,
        1 => Some("application/json; charset=GBK"),
        2 => Some("application/fhir+json;charset=utf-8"),
        _ => Some("text/html"),
    };
    let _ = decode::link_header_next(&String::from_utf8_lossy(body));
    let Ok(doc) = decode::parse_body(body, encoding, content_type, 64) else {
        return;
    };
    let _ = decode::fhir_next(&doc);
    let _ = decode::u64_at(&doc, "/total");
    let _ = decode::bool_at(&doc, "/data/hasMore");
    let _ = decode::token_at(&doc, "/next_cursor");
    let maps = mappings();
    let (records, pointer, mapping) = &maps[head[1] as usize % maps.len()];
    if let Ok(items) = decode::select_records(doc, records, pointer.as_deref(), 1000) {
        for item in items.iter().take(50) {
            let _ = mapping.apply(item);
        }
    }
});
