//! The one small predicate language: a test on a JSON document, written in TOML. Used on
//! records (`deleted_when`, `skip_when`) and on response bodies (`[sources.response]`), so an
//! operator learns it once.
//!
//! ```toml
//! deleted_when = { path = "zt", in = ["注销"] }                  # a status value
//! deleted_when = { path = "active", equals = false }             # HL7 FHIR Patient.active
//! skip_when = { any = [ { path = "xm", contains = "测试" },
//!                       { path = "kh", starts_with = "TEST" } ] }
//! success = { path = "/code", in = [0, "0", "200"] }             # a response envelope
//! ```
//!
//! A leaf is `path` (one path or fallbacks, see [`super::path`]) with exactly one test:
//! `equals`, `in`, `exists`, `truthy`, `contains`, `starts_with`. Combinators: `any`, `all`,
//! `not`. Scalars compare leniently the way vendors flip types: a string equals a number when
//! it is that number written plainly (`"0"` = `0`, but `"0000"` ≠ `0`), a boolean equals
//! `"true"`/`"false"` in any case, strings compare after trimming. A leaf whose path is absent
//! is false (so `not` of it is true), except `exists = false` and `truthy = false`.
//!
//! Predicates are compiled when the config loads ([`Predicate::compile`]); a malformed one is an
//! error naming the key (`deleted_when.any[1].path`) and the fix.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path::{FieldPaths, PathSpec};

/// A predicate as written in the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<PredicateSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<PredicateSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<PredicateSpec>>,
}

impl PredicateSpec {
    /// `deleted_flag = "x"`: the shorthand for `{ path = "x", truthy = true }`.
    pub fn truthy_at(path: &str) -> PredicateSpec {
        PredicateSpec {
            path: Some(PathSpec::One(path.to_string())),
            truthy: Some(true),
            ..PredicateSpec::default()
        }
    }
}

/// A compiled predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Leaf(FieldPaths, Test),
    Any(Vec<Predicate>),
    All(Vec<Predicate>),
    Not(Box<Predicate>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    In(Vec<Value>),
    Exists(bool),
    Truthy(bool),
    Contains(String),
    StartsWith(String),
}

/// A malformed predicate: the key below the predicate's own (`any[1].path`, empty for the
/// predicate itself) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredicateError {
    pub key: String,
    pub message: String,
}

const TESTS: &str = "equals, in, exists, truthy, contains or starts_with";

impl Predicate {
    pub fn compile(spec: &PredicateSpec) -> Result<Predicate, PredicateError> {
        let err = |key: &str, message: String| PredicateError {
            key: key.to_string(),
            message,
        };
        let combinators = [spec.any.is_some(), spec.all.is_some(), spec.not.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let tests = leaf_tests(spec);
        if combinators > 0 {
            if combinators > 1 || spec.path.is_some() || !tests.is_empty() {
                return Err(err(
                    "",
                    "a predicate is either a test on one path or one of any / all / not; nest them, e.g. all = [ { path = \"a\", equals = 1 }, { not = { path = \"b\", exists = true } } ]".into(),
                ));
            }
            let list =
                |items: &[PredicateSpec], name: &str| -> Result<Vec<Predicate>, PredicateError> {
                    if items.is_empty() {
                        return Err(err(
                            name,
                            format!("{name} = [] is empty; list at least one predicate"),
                        ));
                    }
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            Predicate::compile(s).map_err(|e| PredicateError {
                                key: join_key(&format!("{name}[{i}]"), &e.key),
                                message: e.message,
                            })
                        })
                        .collect()
                };
            if let Some(items) = &spec.any {
                return Ok(Predicate::Any(list(items, "any")?));
            }
            if let Some(items) = &spec.all {
                return Ok(Predicate::All(list(items, "all")?));
            }
            if let Some(inner) = &spec.not {
                return Predicate::compile(inner)
                    .map(|p| Predicate::Not(Box::new(p)))
                    .map_err(|e| PredicateError {
                        key: join_key("not", &e.key),
                        message: e.message,
                    });
            }
        }
        let Some(path) = &spec.path else {
            return Err(err(
                "path",
                format!("a predicate needs a path and one test ({TESTS}), or any / all / not"),
            ));
        };
        let paths = path
            .compile()
            .map_err(|(at, e)| err(&format!("path{at}"), e.to_string()))?;
        let test = match tests.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(err(
                    "",
                    format!("say what to test at path {}: one of {TESTS}", paths.text()),
                ))
            }
            _ => {
                return Err(err(
                    "",
                    "one test per predicate; combine several with all = [ ... ]".into(),
                ))
            }
        };
        match &test {
            Test::Equals(v) => check_scalar(v).map_err(|m| err("equals", m))?,
            Test::In(vs) => {
                if vs.is_empty() {
                    return Err(err(
                        "in",
                        "in = [] is empty; list the values that match".into(),
                    ));
                }
                for (i, v) in vs.iter().enumerate() {
                    check_scalar(v).map_err(|m| err(&format!("in[{i}]"), m))?;
                }
            }
            Test::Contains(s) | Test::StartsWith(s) if s.is_empty() => {
                return Err(err(
                    "",
                    "an empty text matches everything; give the text to look for".into(),
                ))
            }
            _ => {}
        }
        Ok(Predicate::Leaf(paths, test))
    }

    /// Whether `doc` satisfies the predicate.
    pub fn eval(&self, doc: &Value) -> bool {
        match self {
            Predicate::Any(ps) => ps.iter().any(|p| p.eval(doc)),
            Predicate::All(ps) => ps.iter().all(|p| p.eval(doc)),
            Predicate::Not(p) => !p.eval(doc),
            Predicate::Leaf(paths, test) => {
                let v = paths.get(doc).filter(|v| !v.is_null());
                match (test, v) {
                    (Test::Exists(want), v) => v.is_some() == *want,
                    (Test::Truthy(want), v) => v.is_some_and(is_truthy) == *want,
                    (_, None) => false,
                    (Test::Equals(want), Some(v)) => scalar_eq(v, want),
                    (Test::In(list), Some(v)) => list.iter().any(|w| scalar_eq(v, w)),
                    (Test::Contains(t), Some(Value::Array(items))) => items
                        .iter()
                        .any(|i| scalar_eq(i, &Value::String(t.clone()))),
                    (Test::Contains(t), Some(v)) => {
                        super::path::scalar_text(v).is_some_and(|s| s.contains(t.as_str()))
                    }
                    (Test::StartsWith(t), Some(v)) => super::path::scalar_text(v)
                        .is_some_and(|s| s.trim_start().starts_with(t.as_str())),
                }
            }
        }
    }

    /// The paths the leaves test, in order (for diagnostics: the values a deletion predicate
    /// saw when it never matched).
    pub fn leaf_paths(&self) -> Vec<&FieldPaths> {
        match self {
            Predicate::Leaf(p, _) => vec![p],
            Predicate::Any(ps) | Predicate::All(ps) => {
                ps.iter().flat_map(Predicate::leaf_paths).collect()
            }
            Predicate::Not(p) => p.leaf_paths(),
        }
    }
}

impl std::fmt::Display for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, name: &str, ps: &[Predicate]| {
            let parts: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            write!(f, "{name}({})", parts.join(", "))
        };
        match self {
            Predicate::Any(ps) => list(f, "any", ps),
            Predicate::All(ps) => list(f, "all", ps),
            Predicate::Not(p) => write!(f, "not({p})"),
            Predicate::Leaf(paths, test) => match test {
                Test::Equals(v) => write!(f, "{paths} == {v}"),
                Test::In(vs) => {
                    let parts: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                    write!(f, "{paths} in [{}]", parts.join(", "))
                }
                Test::Exists(true) => write!(f, "{paths} exists"),
                Test::Exists(false) => write!(f, "{paths} is absent"),
                Test::Truthy(true) => write!(f, "{paths} is truthy"),
                Test::Truthy(false) => write!(f, "{paths} is not truthy"),
                Test::Contains(t) => write!(f, "{paths} contains {t:?}"),
                Test::StartsWith(t) => write!(f, "{paths} starts with {t:?}"),
            },
        }
    }
}

fn leaf_tests(spec: &PredicateSpec) -> Vec<Test> {
    let mut out = Vec::new();
    if let Some(v) = &spec.equals {
        out.push(Test::Equals(v.clone()));
    }
    if let Some(v) = &spec.in_ {
        out.push(Test::In(v.clone()));
    }
    if let Some(v) = spec.exists {
        out.push(Test::Exists(v));
    }
    if let Some(v) = spec.truthy {
        out.push(Test::Truthy(v));
    }
    if let Some(v) = &spec.contains {
        out.push(Test::Contains(v.clone()));
    }
    if let Some(v) = &spec.starts_with {
        out.push(Test::StartsWith(v.clone()));
    }
    out
}

fn join_key(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn check_scalar(v: &Value) -> Result<(), String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(format!(
            "{other} is not a plain value; compare with a string, number or boolean"
        )),
    }
}

/// Lenient equality of JSON scalars (see the module docs).
pub fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.trim() == y.trim(),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64().zip(y.as_f64()).is_some_and(|(p, q)| p == q),
        },
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            n.to_string() == s.trim()
        }
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Bool(x), Value::String(s)) | (Value::String(s), Value::Bool(x)) => s
            .trim()
            .eq_ignore_ascii_case(if *x { "true" } else { "false" }),
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// The values a deletion flag means "deleted" by: `true`, a non-zero number, and the strings
/// `1`, `true`, `y`, `yes`, `deleted`, `是` (any case).
pub fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(
            s.trim().to_lowercase().as_str(),
            "1" | "true" | "y" | "yes" | "deleted" | "是"
        ),
        _ => false,
    }
}

/// The values that plainly mean "not deleted": `false`, `0`, and `0`, `false`, `n`, `no`, `否`,
/// `` (any case). A flag that shows only these and truthy values is a flag; anything else
/// (`正常`, `注销`) is a status, which `deleted_flag` cannot read.
pub fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !*b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f == 0.0),
        Value::String(s) => matches!(
            s.trim().to_lowercase().as_str(),
            "0" | "false" | "n" | "no" | "否" | "" | "undeleted" | "normal"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(toml_text: &str) -> Predicate {
        #[derive(Deserialize)]
        struct W {
            p: PredicateSpec,
        }
        let w: W = toml::from_str(&format!("p = {toml_text}")).unwrap();
        Predicate::compile(&w.p).unwrap()
    }

    fn compile_err(toml_text: &str) -> PredicateError {
        #[derive(Deserialize)]
        struct W {
            p: PredicateSpec,
        }
        let w: W = toml::from_str(&format!("p = {toml_text}")).unwrap();
        Predicate::compile(&w.p).unwrap_err()
    }

    #[test]
    fn status_values_booleans_and_envelopes() {
        let cancelled = p(r#"{ path = "zt", in = ["注销"] }"#);
        assert!(cancelled.eval(&json!({"zt": "注销"})));
        assert!(!cancelled.eval(&json!({"zt": "正常"})));
        assert!(!cancelled.eval(&json!({})));
        let inactive = p(r#"{ path = "active", equals = false }"#);
        assert!(inactive.eval(&json!({"active": false})));
        assert!(inactive.eval(&json!({"active": "false"})));
        assert!(!inactive.eval(&json!({"active": true})));
        assert!(!inactive.eval(&json!({})), "absent is not inactive");
        let ok = p(r#"{ path = "/code", in = [0, "0", "200"] }"#);
        assert!(ok.eval(&json!({"code": 0})));
        assert!(ok.eval(&json!({"code": "200"})));
        assert!(ok.eval(&json!({"code": 200})));
        assert!(!ok.eval(&json!({"code": 500})));
        assert!(!ok.eval(&json!({"code": "0000"})), "0000 is not 0");
        let success = p(r#"{ path = "success", equals = true }"#);
        assert!(success.eval(&json!({"success": true})));
        assert!(!success.eval(&json!({"success": false})));
    }

    #[test]
    fn combinators_and_absent_paths() {
        let test_account = p(
            r#"{ any = [ { path = "xm", contains = "测试" }, { all = [ { path = "kh", starts_with = "TEST" }, { not = { path = "sfzh", exists = true } } ] } ] }"#,
        );
        assert!(test_account.eval(&json!({"xm": "测试账户"})));
        assert!(test_account.eval(&json!({"xm": "张三", "kh": "TEST01"})));
        assert!(!test_account.eval(&json!({"xm": "张三", "kh": "TEST01", "sfzh": "1"})));
        assert!(!test_account.eval(&json!({"xm": "张三", "kh": "NC01"})));
        let flag = p(r#"{ path = ["deleted", "isDeleted"], truthy = true }"#);
        assert!(flag.eval(&json!({"isDeleted": "Y"})));
        assert!(!flag.eval(&json!({"deleted": 0})));
        assert!(p(r#"{ path = "x", truthy = false }"#).eval(&json!({})));
        assert!(p(r#"{ path = "tags", contains = "test" }"#).eval(&json!({"tags": ["a", "test"]})));
        assert_eq!(
            test_account.leaf_paths().len(),
            3,
            "every leaf path is reported"
        );
    }

    #[test]
    fn malformed_predicates_name_the_key_and_the_fix() {
        let e = compile_err(r#"{ path = "zt" }"#);
        assert!(e.message.contains("say what to test"), "{e:?}");
        let e = compile_err(r#"{ path = "zt", equals = 1, in = [1] }"#);
        assert!(e.message.contains("one test per predicate"), "{e:?}");
        let e =
            compile_err(r#"{ any = [ { path = "a", equals = 1 }, { path = "b[", equals = 1 } ] }"#);
        assert_eq!(e.key, "any[1].path");
        assert!(e.message.contains("unclosed"), "{e:?}");
        let e = compile_err(r#"{ path = "a", in = [] }"#);
        assert_eq!(e.key, "in");
        let e = compile_err(r#"{ path = "a", in = [[1]] }"#);
        assert_eq!(e.key, "in[0]");
        let e = compile_err(r#"{ any = [], path = "a" }"#);
        assert!(e.message.contains("either"), "{e:?}");
        let e = compile_err(r#"{ not = { equals = 1 } }"#);
        assert_eq!(e.key, "not.path");
        // Unknown keys are refused by serde (a typo such as `eqals`).
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct W {
            p: PredicateSpec,
        }
        assert!(toml::from_str::<W>(r#"p = { path = "a", eqals = 1 }"#).is_err());
    }

    #[test]
    fn display_reads_like_the_config() {
        assert_eq!(
            p(r#"{ path = "/code", in = [0, "0"] }"#).to_string(),
            r#"/code in [0, "0"]"#
        );
    }
}
