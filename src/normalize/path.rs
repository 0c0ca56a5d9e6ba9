//! Field paths: where a value is inside a vendor's JSON. One syntax for the field mapping,
//! record predicates (`deleted_when`, `skip_when`) and response classification.
//!
//! A path is a JSON pointer (`/data/xm`, RFC 6901 escapes `~0` `~1`) or dotted
//! (`name.0.text`). A segment may carry brackets:
//! - `[N]`: element N of an array (`name[0].text` is `name.0.text`);
//! - `[member=value]`: the first array element whose `member` has that value, where `member` is
//!   itself a path, so filters nest: `identifier[system=urn:cn:resident-id].value`,
//!   `component[code.coding.0.code=8480-6].valueQuantity.value`. The value runs to the closing
//!   bracket and may hold dots and `=` (OIDs, URLs); it matches a string, or a number or boolean
//!   written the same way.
//!
//! Paths are parsed when the config loads ([`FieldPath::parse`]); a malformed one is an error
//! that says what is wrong and how to write it, never a path that silently maps nothing.
//! [`FieldPaths`] is a list of fallbacks: the first path with a value wins.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One compiled path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    /// An array index (or, on an object, the key spelled as that number).
    Index(usize),
    /// First element of an array whose value at the inner path equals the text.
    Filter(Box<FieldPath>, String),
}

/// A compiled field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
    text: String,
}

/// What is wrong with a path, and how to write it instead (shown after the config key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} {problem}; {fix}")]
pub struct PathError {
    pub path: String,
    pub problem: String,
    pub fix: String,
}

const FIX_FILTER: &str =
    "write a member filter as name[member=value], e.g. identifier[system=urn:cn:resident-id].value";
const FIX_DOTTED: &str =
    "write a path as a JSON pointer (\"/data/xm\") or dotted (\"name.0.text\")";

impl FieldPath {
    /// Parses and checks a path (see the module docs for the syntax).
    pub fn parse(path: &str) -> Result<FieldPath, PathError> {
        let err = |problem: String, fix: &str| PathError {
            path: path.to_string(),
            problem,
            fix: fix.to_string(),
        };
        if path.trim().is_empty() {
            return Err(err("is empty".into(), FIX_DOTTED));
        }
        let parts: Vec<String> = if let Some(p) = path.strip_prefix('/') {
            let mut out = Vec::new();
            for raw in split_outside_brackets(p, '/').map_err(|m| err(m, FIX_FILTER))? {
                out.push(
                    unescape_pointer(&raw)
                        .map_err(|m| err(m, "in a JSON pointer write ~0 for '~' and ~1 for '/'"))?,
                );
            }
            out
        } else {
            split_outside_brackets(path, '.').map_err(|m| err(m, FIX_FILTER))?
        };
        let mut segments = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() && !path.starts_with('/') {
                return Err(err(
                    format!("has an empty segment (segment {})", i + 1),
                    "remove the doubled, leading or trailing '.'",
                ));
            }
            parse_segment(part, &mut segments).map_err(|m| err(m, FIX_FILTER))?;
        }
        Ok(FieldPath {
            segments,
            text: path.to_string(),
        })
    }

    /// The value at this path, if any (JSON null included).
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut v = value;
        for seg in &self.segments {
            v = match seg {
                Segment::Key(k) => match v {
                    Value::Object(m) => m.get(k)?,
                    _ => return None,
                },
                Segment::Index(i) => match v {
                    Value::Array(a) => a.get(*i)?,
                    Value::Object(m) => m.get(&i.to_string())?,
                    _ => return None,
                },
                Segment::Filter(inner, want) => match v {
                    Value::Array(a) => a.iter().find(|e| {
                        inner
                            .get(e)
                            .and_then(scalar_text)
                            .is_some_and(|t| t == *want)
                    })?,
                    _ => return None,
                },
            };
        }
        Some(v)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A path that matches nothing: it stands in for one a validated config cannot hold.
    pub fn never() -> FieldPath {
        FieldPath {
            segments: vec![Segment::Key("\u{0}".into())],
            text: String::new(),
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One segment's text: a key with any number of `[...]` suffixes, or brackets alone.
fn parse_segment(part: &str, out: &mut Vec<Segment>) -> Result<(), String> {
    let (key, mut rest) = match part.find('[') {
        Some(i) => (&part[..i], &part[i..]),
        None => (part, ""),
    };
    if !key.is_empty() || rest.is_empty() {
        if key.contains(']') {
            return Err(format!("has a ']' without its '[' in {part:?}"));
        }
        match key.parse::<usize>() {
            // Only a number written canonically: "007" stays a key.
            Ok(i) if i.to_string() == key => out.push(Segment::Index(i)),
            _ => out.push(Segment::Key(key.to_string())),
        }
    }
    while !rest.is_empty() {
        let Some(body_and_more) = rest.strip_prefix('[') else {
            return Err(format!(
                "has {:?} after a ']' in {part:?}; a segment is key[...][...]",
                rest
            ));
        };
        let close = closing_bracket(body_and_more)
            .ok_or_else(|| format!("has an unclosed '[' in {part:?}"))?;
        let body = &body_and_more[..close];
        rest = &body_and_more[close + 1..];
        out.push(parse_bracket(body)?);
    }
    Ok(())
}

/// `[N]` or `[inner.path=value]`.
fn parse_bracket(body: &str) -> Result<Segment, String> {
    if let Ok(i) = body.trim().parse::<usize>() {
        if i.to_string() == body.trim() {
            return Ok(Segment::Index(i));
        }
    }
    let eq = equals_outside_brackets(body).ok_or_else(|| {
        format!("has [{body}], which is neither an index [0] nor a member filter [member=value]")
    })?;
    let (inner, want) = (&body[..eq], &body[eq + 1..]);
    if inner.trim().is_empty() {
        return Err(format!("has [{body}] with no member before '='"));
    }
    let inner =
        FieldPath::parse(inner).map_err(|e| format!("has a filter member that {}", e.problem))?;
    Ok(Segment::Filter(Box::new(inner), want.to_string()))
}

/// Index of the `]` that closes a bracket opened just before `s`.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Some(i),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The first `=` not inside nested brackets.
fn equals_outside_brackets(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '=' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits on `sep` outside `[...]` (filter values may hold dots and slashes, as OIDs and URLs
/// do). An unbalanced bracket is an error.
fn split_outside_brackets(path: &str, sep: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                if depth == 0 {
                    return Err("has a ']' without its '['".into());
                }
                depth -= 1;
                cur.push(c)
            }
            c if c == sep && depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth > 0 {
        return Err("has an unclosed '['".into());
    }
    out.push(cur);
    Ok(out)
}

fn unescape_pointer(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                other => {
                    return Err(format!(
                        "has '~{}', which is not a JSON pointer escape",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// A JSON scalar as text (numbers as JSON writes them, booleans as `true`/`false`); `None`
/// for null, objects and arrays.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How a path is written in the config: one path, or fallbacks tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathSpec {
    One(String),
    Fallbacks(Vec<String>),
}

impl Default for PathSpec {
    fn default() -> Self {
        PathSpec::One(String::new())
    }
}

impl PathSpec {
    /// The path texts, in order.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            PathSpec::One(p) => vec![p.as_str()],
            PathSpec::Fallbacks(ps) => ps.iter().map(String::as_str).collect(),
        }
    }

    /// Compiles every path; the error names the index of a bad one in a list (`[1]`) so the
    /// caller can append it to the config key.
    pub fn compile(&self) -> Result<FieldPaths, (String, PathError)> {
        let texts = self.texts();
        if texts.is_empty() {
            return Err((
                String::new(),
                PathError {
                    path: String::new(),
                    problem: "is an empty list".into(),
                    fix: "give at least one path, e.g. path = [\"mobile\", \"tel\"]".into(),
                },
            ));
        }
        let many = matches!(self, PathSpec::Fallbacks(_));
        let mut paths = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let p = FieldPath::parse(t).map_err(|e| {
                (
                    if many {
                        format!("[{i}]")
                    } else {
                        String::new()
                    },
                    e,
                )
            })?;
            paths.push(p);
        }
        Ok(FieldPaths(paths))
    }
}

impl From<&str> for PathSpec {
    fn from(s: &str) -> Self {
        PathSpec::One(s.to_string())
    }
}

/// Fallback paths: the first one with a value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPaths(Vec<FieldPath>);

impl FieldPaths {
    pub fn one(p: FieldPath) -> FieldPaths {
        FieldPaths(vec![p])
    }

    /// The first path's value that is present, not null and not a blank string (vendors
    /// write "" for "none"); else the last value found (a null or a blank), else `None`.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut fallback = None;
        for p in &self.0 {
            match p.get(doc) {
                Some(Value::Null) => fallback = fallback.or(Some(&Value::Null)),
                Some(Value::String(s)) if s.trim().is_empty() && self.0.len() > 1 => {
                    fallback = p.get(doc);
                }
                Some(v) => return Some(v),
                None => {}
            }
        }
        fallback
    }

    /// The paths as written, joined for messages (`mobile | telecom[system=phone].value`).
    pub fn text(&self) -> String {
        self.0
            .iter()
            .map(FieldPath::as_str)
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl std::fmt::Display for FieldPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, v: &Value) -> Option<Value> {
        FieldPath::parse(path).unwrap().get(v).cloned()
    }

    #[test]
    fn pointer_dotted_index_and_filter() {
        let v = json!({"identifier": [{"system": "a", "value": "1"}, {"system": "urn:oid:2.16.156", "value": "2"}], "name": [{"text": "张三"}], "a/b": {"~": 5}});
        assert_eq!(get("/name/0/text", &v), Some(json!("张三")));
        assert_eq!(get("name.0.text", &v), Some(json!("张三")));
        assert_eq!(get("name[0].text", &v), Some(json!("张三")));
        assert_eq!(
            get("identifier[system=urn:oid:2.16.156].value", &v),
            Some(json!("2"))
        );
        assert_eq!(
            get("/identifier[system=urn:oid:2.16.156]/value", &v),
            Some(json!("2"))
        );
        assert_eq!(get("identifier[system=zzz].value", &v), None);
        assert_eq!(get("/a~1b/~0", &v), Some(json!(5)));
    }

    #[test]
    fn filters_nest_and_match_numbers() {
        // An HL7 FHIR Observation with blood pressure components (LOINC codes).
        let obs = json!({"component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 82}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 131}}
        ], "rows": [{"type": 2, "v": "b"}, {"type": 1, "v": "a"}]});
        assert_eq!(
            get(
                "component[code.coding.0.code=8480-6].valueQuantity.value",
                &obs
            ),
            Some(json!(131))
        );
        assert_eq!(
            get(
                "component[code.coding[system=http://loinc.org].code=8462-4].valueQuantity.value",
                &obs
            ),
            Some(json!(82))
        );
        assert_eq!(get("rows[type=1].v", &obs), Some(json!("a")));
    }

    #[test]
    fn malformed_paths_say_what_and_how() {
        for (bad, what) in [
            ("", "empty"),
            ("a..b", "empty segment"),
            ("a.", "empty segment"),
            ("telecom[system=phone.value", "unclosed '['"),
            ("a]b", "without its '['"),
            ("a[b]", "neither an index"),
            ("a[=x]", "no member"),
            ("a[b=1]x", "after a ']'"),
            ("/a~2", "not a JSON pointer escape"),
        ] {
            let e = FieldPath::parse(bad).expect_err(bad);
            let text = e.to_string();
            assert!(text.contains(what), "{bad}: {text}");
            assert!(
                !e.fix.is_empty() && text.ends_with(&e.fix),
                "a fix is offered: {text}"
            );
        }
    }

    #[test]
    fn fallbacks_take_the_first_present_value() {
        let spec = PathSpec::Fallbacks(vec!["mobile".into(), "telecom[system=phone].value".into()]);
        let paths = spec.compile().unwrap();
        let with = json!({"mobile": "13800000000", "telecom": [{"system": "phone", "value": "1"}]});
        let blank = json!({"mobile": " ", "telecom": [{"system": "phone", "value": "139"}]});
        let none = json!({"telecom": []});
        assert_eq!(paths.get(&with), Some(&json!("13800000000")));
        assert_eq!(paths.get(&blank), Some(&json!("139")));
        assert_eq!(paths.get(&none), None);
        let bad = PathSpec::Fallbacks(vec!["ok".into(), "a[".into()]);
        let (at, e) = bad.compile().unwrap_err();
        assert_eq!(at, "[1]");
        assert!(e.problem.contains("unclosed"));
    }
}
