//! Turning a response body into records: charset detection and strict decoding, a cheap
//! JSON nesting-depth scan, and the JSON-pointer record selection.

use serde_json::Value;

use super::config::EncodingConfig;

/// A decoding problem, turned into a `SourceError` by the caller (who knows the context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeProblem {
    UnknownCharset(String),
    Malformed(&'static str),
    TooDeep(usize),
    NotJson { snippet: String, detail: String },
}

/// The encoding to use: forced by config, else the `Content-Type` charset, else UTF-8.
pub fn pick_encoding(
    configured: EncodingConfig,
    content_type: Option<&str>,
) -> Result<&'static encoding_rs::Encoding, DecodeProblem> {
    match configured {
        EncodingConfig::Utf8 => return Ok(encoding_rs::UTF_8),
        EncodingConfig::Gbk => return Ok(encoding_rs::GBK),
        EncodingConfig::Gb18030 => return Ok(encoding_rs::GB18030),
        EncodingConfig::Auto => {}
    }
    let Some(charset) = content_type.and_then(charset_of) else {
        return Ok(encoding_rs::UTF_8);
    };
    match charset.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Ok(encoding_rs::UTF_8),
        "gbk" | "gb2312" | "x-gbk" | "cp936" | "gb_2312-80" => Ok(encoding_rs::GBK),
        "gb18030" => Ok(encoding_rs::GB18030),
        _ => Err(DecodeProblem::UnknownCharset(charset)),
    }
}

/// The `charset` parameter of a `Content-Type` value, unquoted.
pub fn charset_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|part| {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("charset") {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

/// Decodes strictly: malformed bytes are an error, never replaced. A UTF-8 BOM is stripped.
pub fn decode(
    bytes: &[u8],
    encoding: &'static encoding_rs::Encoding,
) -> Result<String, DecodeProblem> {
    if encoding == encoding_rs::UTF_8 {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        return std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| DecodeProblem::Malformed("UTF-8"));
    }
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or(DecodeProblem::Malformed(encoding.name()))
}

/// Deepest `[`/`{` nesting in JSON text, ignoring brackets inside strings. Stops early once
/// `max` is exceeded.
pub fn check_depth(text: &str, max: usize) -> Result<(), DecodeProblem> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(DecodeProblem::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// First ~80 characters of a body, for an error message, with digit runs masked.
pub fn snippet(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    let cut = cut.replace(['\n', '\r'], " ");
    crate::mask::scrub_text(&cut)
}

/// Decodes, checks depth and parses a body.
pub fn parse_body(
    bytes: &[u8],
    configured: EncodingConfig,
    content_type: Option<&str>,
    max_depth: usize,
) -> Result<Value, DecodeProblem> {
    let encoding = pick_encoding(configured, content_type)?;
    let text = decode(bytes, encoding)?;
    check_depth(&text, max_depth)?;
    serde_json::from_str(&text).map_err(|e| DecodeProblem::NotJson {
        snippet: snippet(&text),
        detail: e.to_string(),
    })
}

/// Resolves a JSON pointer; "" is the whole document.
pub fn pointer<'a>(doc: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.is_empty() {
        Some(doc)
    } else {
        doc.pointer(ptr)
    }
}

/// Cuts the records out of the envelope: the array at `records` (absent or null = no
/// records, as in an empty FHIR Bundle), each element narrowed by `record_pointer`.
pub fn select_records(
    doc: Value,
    records: &str,
    record_pointer: Option<&str>,
    max_records: usize,
) -> Result<Vec<Value>, String> {
    let mut doc = doc;
    let arr = if records.is_empty() {
        doc.take()
    } else {
        match doc.pointer_mut(records) {
            Some(v) => v.take(),
            None => Value::Null,
        }
    };
    let items = match arr {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "the value at records = {records:?} is {} not an array; check `records` in the stream config",
                kind(&other)
            ))
        }
    };
    if items.len() > max_records {
        return Err(format!(
            "the page has {} records, more than http.max_records_per_page = {max_records}; lower the page size or raise the limit",
            items.len()
        ));
    }
    match record_pointer.filter(|p| !p.is_empty()) {
        None => Ok(items),
        Some(rp) => items
            .into_iter()
            .enumerate()
            .map(|(i, mut item)| match item.pointer_mut(rp) {
                Some(v) => Ok(v.take()),
                None => Err(format!(
                    "element {i} of the record array has nothing at record_pointer = {rp:?}"
                )),
            })
            .collect(),
    }
}

/// The record container a body lacks: for `records = "/data/rows"`, `Some("/data")` when
/// `/data` is absent, null or not an object or array (`{"code": 500, "data": null}` is an error,
/// not an empty page). The records array itself may be absent or null (an empty FHIR Bundle
/// has no `entry`), and `records` at the top level needs no container.
pub fn missing_container(doc: &Value, records: &str) -> Option<String> {
    let parent = match records.rfind('/') {
        Some(0) | None => return None,
        Some(i) => &records[..i],
    };
    match doc.pointer(parent) {
        Some(Value::Object(_)) | Some(Value::Array(_)) => None,
        _ => Some(parent.to_string()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number at a pointer, accepting numeric strings (`"total": "120"`).
pub fn u64_at(doc: &Value, ptr: &str) -> Option<u64> {
    match pointer(doc, ptr)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A has-more flag at a pointer: booleans, 0/1, "true"/"false".
pub fn bool_at(doc: &Value, ptr: &str) -> Option<bool> {
    match pointer(doc, ptr)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "y" | "yes" => Some(true),
            "false" | "0" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A cursor token at a pointer: strings and numbers; null/absent/empty mean "no more".
pub fn token_at(doc: &Value, ptr: &str) -> Option<String> {
    match pointer(doc, ptr)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `next` link of an HL7 FHIR R4 Bundle (`link[].relation == "next"`).
pub fn fhir_next(doc: &Value) -> Option<String> {
    doc.get("link")?.as_array()?.iter().find_map(|l| {
        if l.get("relation")?.as_str()? == "next" {
            l.get("url")?
                .as_str()
                .filter(|u| !u.is_empty())
                .map(String::from)
        } else {
            None
        }
    })
}

/// The `rel="next"` target of an RFC 8288 `Link` header value.
pub fn link_header_next(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // Parameters run until the next '<' that starts a new link (after a comma).
        let params_end = next_link_start(rest);
        let params = &rest[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &rest[params_end..];
    }
}

fn next_link_start(s: &str) -> usize {
    let mut in_quote = false;
    let mut after_comma = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                in_quote = !in_quote;
                after_comma = false;
            }
            ',' if !in_quote => after_comma = true,
            '<' if !in_quote && after_comma => return i,
            c if !in_quote && !c.is_whitespace() => after_comma = false,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charset_detection_is_case_insensitive() {
        assert_eq!(
            pick_encoding(EncodingConfig::Auto, Some("application/json; charset=GBK")).unwrap(),
            encoding_rs::GBK
        );
        assert_eq!(
            pick_encoding(
                EncodingConfig::Auto,
                Some("application/json;charset=\"gb2312\"")
            )
            .unwrap(),
            encoding_rs::GBK
        );
        assert_eq!(
            pick_encoding(
                EncodingConfig::Auto,
                Some("application/json; Charset=GB18030")
            )
            .unwrap(),
            encoding_rs::GB18030
        );
        assert_eq!(
            pick_encoding(EncodingConfig::Auto, None).unwrap(),
            encoding_rs::UTF_8
        );
        assert_eq!(
            pick_encoding(EncodingConfig::Gbk, Some("application/json; charset=utf-8")).unwrap(),
            encoding_rs::GBK
        );
        assert!(matches!(
            pick_encoding(EncodingConfig::Auto, Some("text/json; charset=big5")),
            Err(DecodeProblem::UnknownCharset(_))
        ));
    }

    #[test]
    fn utf8_bom_stripped_and_malformed_rejected() {
        assert_eq!(
            decode(b"\xEF\xBB\xBF[1]", encoding_rs::UTF_8).unwrap(),
            "[1]"
        );
        assert!(decode(b"[\"\xFF\"]", encoding_rs::UTF_8).is_err());
        let (gbk, _, _) = encoding_rs::GBK.encode("张三");
        assert_eq!(decode(&gbk, encoding_rs::GBK).unwrap(), "张三");
        assert_eq!(
            decode(b"\x81", encoding_rs::GBK),
            Err(DecodeProblem::Malformed("GBK"))
        );
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(check_depth(r#"{"a":[[1]]}"#, 3).is_ok());
        assert!(check_depth(r#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(check_depth(r#"{"a":"[[[[[[\"[["}"#, 1).is_ok());
    }

    #[test]
    fn non_json_snippet_is_short_and_scrubbed() {
        let body = format!(
            "<html>error for 110101199003071234 {}</html>",
            "x".repeat(200)
        );
        let Err(DecodeProblem::NotJson { snippet, .. }) =
            parse_body(body.as_bytes(), EncodingConfig::Auto, None, 64)
        else {
            panic!("expected NotJson")
        };
        assert!(snippet.starts_with("<html>"));
        assert!(!snippet.contains("110101199003071234"));
        assert!(snippet.chars().count() <= 80);
    }

    #[test]
    fn records_selection_with_record_pointer() {
        let doc = json!({"entry": [{"resource": {"id": "a"}}, {"resource": {"id": "b"}}]});
        let r = select_records(doc, "/entry", Some("/resource"), 10).unwrap();
        assert_eq!(r, vec![json!({"id": "a"}), json!({"id": "b"})]);
        assert!(select_records(json!({"total": 0}), "/entry", None, 10)
            .unwrap()
            .is_empty());
        assert!(select_records(json!([1, 2, 3]), "", None, 2).is_err());
        assert!(select_records(json!({"data": {"x": 1}}), "/data", None, 2).is_err());
        assert!(select_records(json!({"e": [{"x": 1}]}), "/e", Some("/resource"), 2).is_err());
    }

    #[test]
    fn link_header_and_fhir_next() {
        let h = r#"<https://a/x?page=1>; rel="prev first", <https://a/x?page=3&q=a,b>; rel="next""#;
        assert_eq!(
            link_header_next(h).as_deref(),
            Some("https://a/x?page=3&q=a,b")
        );
        assert_eq!(
            link_header_next(r#"<https://a/x?page=1>; rel="prev""#),
            None
        );
        let b =
            json!({"link": [{"relation": "self", "url": "s"}, {"relation": "next", "url": "n"}]});
        assert_eq!(fhir_next(&b).as_deref(), Some("n"));
        assert_eq!(fhir_next(&json!({"link": []})), None);
    }

    #[test]
    fn helpers_accept_string_numbers_and_flags() {
        let d = json!({"t": "12", "m": 1, "c": "", "n": 7});
        assert_eq!(u64_at(&d, "/t"), Some(12));
        assert_eq!(bool_at(&d, "/m"), Some(true));
        assert_eq!(token_at(&d, "/c"), None);
        assert_eq!(token_at(&d, "/n").as_deref(), Some("7"));
    }
}
