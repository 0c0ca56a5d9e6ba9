//! Response classification: what a body answered with HTTP 2xx really says. Many government
//! and vendor APIs answer every request with `200 OK` and report the outcome in an envelope
//! (`{"code": 500, "msg": "系统繁忙，请稍后再试", "data": null}`); a gateway in front of them may
//! answer its own HTML error page with status 200. Read as data, such a body is an empty last
//! page, and a full refresh would delete every record it did not see.
//!
//! [`Classifier`] is compiled from the stream's `response` config (the source's, with the
//! stream's parts over it). A body is:
//! - **not JSON** (an HTML page, a truncated body): retried like a 5xx, then it fails the
//!   stream (always, with or without an envelope declared);
//! - **empty** when it matches `empty` (the vendor's "no data"): a page without records;
//! - **a page** when it satisfies `success` (or when no `success` is declared);
//! - **busy** when it matches `retry`: retried like a 503, then it fails the stream;
//! - **fatal** when it fails `success` and is not busy: the stream fails at once.
//!
//! The vendor's code and message (`code`, `message` paths) go into the error, masked.

use serde_json::Value;

use super::config::ResponseConfig;
use crate::normalize::path::{scalar_text, FieldPaths};
use crate::normalize::predicate::Predicate;

/// What a decoded body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Records (or a legitimately empty page).
    Page,
    /// The vendor's "no data": a page without records, whatever the envelope holds.
    Empty,
    /// The vendor is busy: retry.
    Busy,
    /// The vendor refused: fail the stream.
    Fatal,
}

/// A stream's compiled response classification.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    success: Option<Predicate>,
    retry: Option<Predicate>,
    empty: Option<Predicate>,
    message: Option<FieldPaths>,
    code: Option<FieldPaths>,
}

/// Message paths tried when none is configured: the usual spellings of envelopes.
const USUAL_MESSAGES: [&str; 6] = [
    "msg",
    "message",
    "resultMsg",
    "errmsg",
    "error_description",
    "error",
];

impl Classifier {
    /// Compiles a validated config (a part that does not compile is left out; `check` refuses
    /// such a config before it gets here).
    pub fn new(cfg: &ResponseConfig) -> Classifier {
        let pred = |p: &Option<crate::normalize::predicate::PredicateSpec>| {
            p.as_ref().and_then(|s| Predicate::compile(s).ok())
        };
        Classifier {
            success: pred(&cfg.success),
            retry: pred(&cfg.retry),
            empty: pred(&cfg.empty),
            message: cfg.message.as_ref().and_then(|m| m.compile().ok()),
            code: cfg.code.as_ref().and_then(|c| c.compile().ok()),
        }
    }

    /// Whether an envelope is declared (`success`): then a success body whose record
    /// container is absent means "no records"; without one it means a body we do not know.
    pub fn declares_success(&self) -> bool {
        self.success.is_some()
    }

    pub fn classify(&self, doc: &Value) -> Class {
        if self.empty.as_ref().is_some_and(|p| p.eval(doc)) {
            return Class::Empty;
        }
        let ok = self.success.as_ref().is_none_or(|p| p.eval(doc));
        if self.retry.as_ref().is_some_and(|p| p.eval(doc)) && !(ok && self.success.is_some()) {
            return Class::Busy;
        }
        if ok {
            Class::Page
        } else {
            Class::Fatal
        }
    }

    /// The declared success test, for error messages.
    pub fn success_text(&self) -> Option<String> {
        self.success.as_ref().map(|p| p.to_string())
    }

    /// "code 9999: 系统繁忙" from the body, masked and shortened; `None` when it holds neither.
    pub fn vendor_says(&self, doc: &Value) -> Option<String> {
        let code = self
            .code
            .as_ref()
            .and_then(|c| c.get(doc))
            .and_then(scalar_text);
        let message = match &self.message {
            Some(m) => m.get(doc).and_then(text_of),
            None => USUAL_MESSAGES
                .iter()
                .find_map(|k| doc.get(*k).and_then(text_of)),
        };
        let said = match (code, message) {
            (Some(c), Some(m)) => format!("code {c}: {m}"),
            (Some(c), None) => format!("code {c}"),
            (None, Some(m)) => m,
            (None, None) => return None,
        };
        let short: String = said.chars().take(160).collect();
        Some(crate::mask::scrub_text(&short.replace(['\n', '\r'], " ")))
    }
}

/// A message value as text: strings and numbers; an object's own `message` (nested errors).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(m) => m.get("message").and_then(text_of),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classifier(toml_text: &str) -> Classifier {
        let cfg: ResponseConfig = toml::from_str(toml_text).unwrap();
        Classifier::new(&cfg)
    }

    #[test]
    fn code_msg_data_envelopes() {
        let c = classifier(
            r#"
success = { path = "/code", in = [0, "0", "200"] }
retry = { path = "/code", in = [500, "500", 503] }
empty = { path = "/code", in = ["1004"] }
message = "/msg"
code = "/code"
"#,
        );
        assert_eq!(
            c.classify(&json!({"code": 0, "data": {"rows": []}})),
            Class::Page
        );
        assert_eq!(c.classify(&json!({"code": "200", "data": []})), Class::Page);
        let busy = json!({"code": 500, "msg": "系统繁忙，请稍后再试", "data": null});
        assert_eq!(c.classify(&busy), Class::Busy);
        assert_eq!(
            c.vendor_says(&busy).as_deref(),
            Some("code 500: 系统繁忙，请稍后再试")
        );
        assert_eq!(
            c.classify(&json!({"code": "4003", "msg": "无权限"})),
            Class::Fatal
        );
        assert_eq!(
            c.classify(&json!({"code": "1004", "msg": "无数据"})),
            Class::Empty
        );
        assert!(c.declares_success());
    }

    #[test]
    fn success_flags_and_no_envelope() {
        let c = classifier(
            r#"
success = { all = [ { path = "success", equals = true }, { path = "resultCode", equals = "0000" } ] }
retry = { path = "resultCode", in = ["E503", "E429"] }
message = ["resultMsg", "message"]
"#,
        );
        assert_eq!(
            c.classify(&json!({"success": true, "resultCode": "0000"})),
            Class::Page
        );
        let busy =
            json!({"success": false, "resultCode": "E503", "message": "服务繁忙 13812345678"});
        assert_eq!(c.classify(&busy), Class::Busy);
        let said = c.vendor_says(&busy).unwrap();
        assert!(!said.contains("13812345678"), "masked: {said}");
        assert_eq!(
            c.classify(&json!({"success": false, "resultCode": "E401"})),
            Class::Fatal
        );
        // No envelope declared: every JSON body is a page (today's behaviour), but a declared
        // busy body is still retried.
        let plain = classifier("retry = { path = \"error\", equals = \"busy\" }");
        assert_eq!(plain.classify(&json!([{"id": 1}])), Class::Page);
        assert_eq!(plain.classify(&json!({"error": "busy"})), Class::Busy);
        assert!(!plain.declares_success());
        let none = Classifier::default();
        assert_eq!(none.classify(&json!({"code": 500})), Class::Page);
        assert_eq!(
            none.vendor_says(&json!({"code": 500, "msg": "系统繁忙"}))
                .as_deref(),
            Some("系统繁忙"),
            "the usual message keys are read without config"
        );
    }
}
