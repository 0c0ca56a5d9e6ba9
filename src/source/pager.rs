//! Pagination: builds each request of a fetch and decides, from the previous response,
//! whether and how to ask for the next one. Detects repeating cursors and links.

use std::collections::HashSet;

use serde_json::{Map, Value};
use url::Url;

use super::config::{Method, PaginationConfig};
use super::{CursorBound, FetchPlan, SourceError};
use crate::config::StreamConfig;

/// One request before auth is applied.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Scheme, host and path; no query.
    pub url: Url,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    pub body: Option<Map<String, Value>>,
}

impl Req {
    fn set(&mut self, name: &str, value: Value, in_body: bool) {
        if in_body {
            self.body
                .get_or_insert_with(Map::new)
                .insert(name.to_string(), value);
        } else {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.query.retain(|(k, _)| k != name);
            self.query.push((name.to_string(), text));
        }
    }
}

/// What a response said about paging.
#[derive(Debug, Default)]
pub struct Signals {
    pub total: Option<u64>,
    pub has_more: Option<bool>,
    pub next_token: Option<String>,
    pub next_link: Option<String>,
}

pub struct Pager {
    source: String,
    stream: String,
    pagination: PaginationConfig,
    base: Req,
    in_body: bool,
    cross_host: bool,
    next: Option<Req>,
    page: u64,
    offset: u64,
    seen_records: u64,
    pages_done: u64,
    seen_tokens: HashSet<String>,
    /// Why paging stopped before the system said it would, if it did.
    ended_early: Option<String>,
}

impl Pager {
    pub fn new(
        http: &super::http::Http,
        stream: &StreamConfig,
        plan: &FetchPlan,
    ) -> Result<Pager, SourceError> {
        let source = http.cfg.name.clone();
        let config_err = |message: String| SourceError::Config {
            source_name: source.clone(),
            message: format!("stream {}: {message}", stream.name),
        };
        let url = http
            .base
            .join(stream.path.trim_start_matches('/'))
            .map_err(|e| {
                config_err(format!(
                    "path {:?} cannot be joined to base_url: {e}",
                    stream.path
                ))
            })?;
        let in_body = match stream.pagination() {
            PaginationConfig::PageNumber { in_body, .. }
            | PaginationConfig::OffsetLimit { in_body, .. }
            | PaginationConfig::Cursor { in_body, .. } => *in_body,
            _ => false,
        };
        let method = if in_body { Method::Post } else { stream.method };
        let mut base = Req {
            method,
            url,
            query: stream
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: if method == Method::Post {
                Some(
                    stream
                        .body
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            } else {
                None
            },
        };
        for (name, value) in incremental_params(stream, plan).map_err(config_err)? {
            base.set(&name, Value::String(value), in_body);
        }
        let mut first = base.clone();
        let mut page = 0;
        match stream.pagination() {
            PaginationConfig::PageNumber {
                page_param,
                size_param,
                size,
                start,
                ..
            } => {
                page = *start;
                first.set(page_param, Value::from(*start), in_body);
                first.set(size_param, Value::from(*size), in_body);
            }
            PaginationConfig::OffsetLimit {
                offset_param,
                limit_param,
                limit,
                ..
            } => {
                first.set(offset_param, Value::from(0u64), in_body);
                first.set(limit_param, Value::from(*limit), in_body);
            }
            PaginationConfig::Cursor {
                size_param, size, ..
            }
            | PaginationConfig::NextLink {
                size_param, size, ..
            }
            | PaginationConfig::LinkHeader { size_param, size } => {
                if let Some(p) = size_param {
                    first.set(p, Value::from(*size), in_body);
                }
            }
            PaginationConfig::None => {}
        }
        base = first.clone();
        Ok(Pager {
            source,
            stream: stream.name.clone(),
            pagination: stream.pagination().clone(),
            base,
            in_body,
            cross_host: http.cfg.http.follow_cross_host_redirects,
            next: Some(first),
            page,
            offset: 0,
            seen_records: 0,
            pages_done: 0,
            seen_tokens: HashSet::new(),
            ended_early: None,
        })
    }

    /// The next request to send, or None when the fetch is complete.
    pub fn next_request(&mut self) -> Option<Req> {
        self.next.take()
    }

    /// Why paging stopped before the system said it would: an empty page while its has-more
    /// flag or its total still announced more records. Such a fetch did not see everything.
    pub fn ended_early(&self) -> Option<String> {
        self.ended_early.clone()
    }

    /// JSON pointer of the total count, if the pagination declares one.
    pub fn total_path(&self) -> Option<&str> {
        match &self.pagination {
            PaginationConfig::PageNumber { total_path, .. }
            | PaginationConfig::OffsetLimit { total_path, .. } => total_path.as_deref(),
            PaginationConfig::NextLink { fhir: true, .. } => Some("/total"),
            _ => None,
        }
    }

    /// Reads the paging signals out of a response.
    pub fn signals(&self, doc: &Value, link_header: Option<&str>) -> Signals {
        let mut s = Signals {
            total: self
                .total_path()
                .and_then(|p| super::decode::u64_at(doc, p)),
            ..Signals::default()
        };
        match &self.pagination {
            PaginationConfig::PageNumber { has_more_path, .. } => {
                s.has_more = has_more_path
                    .as_deref()
                    .and_then(|p| super::decode::bool_at(doc, p));
            }
            PaginationConfig::Cursor { cursor_path, .. } => {
                s.next_token = super::decode::token_at(doc, cursor_path);
            }
            PaginationConfig::NextLink {
                next_path, fhir, ..
            } => {
                s.next_link = if *fhir {
                    super::decode::fhir_next(doc)
                } else {
                    next_path
                        .as_deref()
                        .and_then(|p| super::decode::token_at(doc, p))
                };
            }
            PaginationConfig::LinkHeader { .. } => {
                s.next_link = link_header.and_then(super::decode::link_header_next);
            }
            _ => {}
        }
        s
    }

    /// Decides the next request from the response to `req`, which held `records` records.
    pub fn advance(
        &mut self,
        req: &Req,
        signals: Signals,
        records: u64,
    ) -> Result<(), SourceError> {
        self.pages_done += 1;
        self.seen_records += records;
        let path = req.url.path().to_string();
        let in_body = self.in_body;
        match self.pagination.clone() {
            PaginationConfig::PageNumber {
                page_param,
                size,
                has_more_path,
                ..
            } => {
                let announced = match (has_more_path.is_some(), signals.has_more, signals.total) {
                    (true, Some(flag), _) => flag,
                    (_, _, Some(total)) => self.seen_records < total,
                    _ => records >= size,
                };
                if records == 0
                    && announced
                    && (signals.has_more.is_some() || signals.total.is_some())
                {
                    self.ended_early = Some(format!(
                        "page {} was empty although the system announced more records",
                        self.page
                    ));
                }
                let more = records > 0 && announced;
                if more {
                    self.page += 1;
                    let mut next = self.base.clone();
                    next.set(&page_param, Value::from(self.page), in_body);
                    self.next = Some(next);
                }
            }
            PaginationConfig::OffsetLimit {
                offset_param,
                limit,
                ..
            } => {
                if records == 0 && signals.total.is_some_and(|t| self.offset < t) {
                    self.ended_early = Some(format!(
                        "an empty page at offset {} although the system announced {} records",
                        self.offset,
                        signals.total.unwrap_or_default()
                    ));
                }
                self.offset += records;
                let more = records > 0
                    && match signals.total {
                        Some(total) => self.offset < total,
                        None => records >= limit,
                    };
                if more {
                    let mut next = self.base.clone();
                    next.set(&offset_param, Value::from(self.offset), in_body);
                    self.next = Some(next);
                }
            }
            PaginationConfig::Cursor { cursor_param, .. } => {
                if let Some(token) = signals.next_token {
                    if !self.seen_tokens.insert(token.clone()) {
                        return Err(self.repeated(path, "cursor"));
                    }
                    let mut next = self.base.clone();
                    next.set(&cursor_param, Value::String(token), in_body);
                    self.next = Some(next);
                }
            }
            PaginationConfig::NextLink { .. } | PaginationConfig::LinkHeader { .. } => {
                if let Some(link) = signals.next_link {
                    let mut full = req.url.clone();
                    full.set_query(None);
                    if !req.query.is_empty() {
                        full.query_pairs_mut().extend_pairs(req.query.iter());
                    }
                    let target = full.join(&link).map_err(|e| SourceError::Shape {
                        source_name: self.source.clone(),
                        stream: self.stream.clone(),
                        path: path.clone(),
                        message: format!("the next-page link is not a URL ({e})"),
                    })?;
                    let downgrade = req.url.scheme() == "https" && target.scheme() != "https";
                    if downgrade || (!self.cross_host && target.host_str() != req.url.host_str()) {
                        return Err(SourceError::CrossHostLink {
                            source_name: self.source.clone(),
                            stream: self.stream.clone(),
                            path,
                            target_host: format!(
                                "{}://{}",
                                target.scheme(),
                                target.host_str().unwrap_or("")
                            ),
                        });
                    }
                    if !self.seen_tokens.insert(target.as_str().to_string()) {
                        return Err(self.repeated(path, "next link"));
                    }
                    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
                    let mut url = target;
                    url.set_query(None);
                    url.set_fragment(None);
                    self.next = Some(Req {
                        method: self.base.method,
                        url,
                        query,
                        body: self.base.body.clone(),
                    });
                }
            }
            PaginationConfig::None => {}
        }
        Ok(())
    }

    fn repeated(&self, path: String, what: &'static str) -> SourceError {
        SourceError::Repeated {
            source_name: self.source.clone(),
            stream: self.stream.clone(),
            path,
            what,
            page: self.pages_done,
        }
    }
}

/// The incremental window's request parameters.
fn incremental_params(
    stream: &StreamConfig,
    plan: &FetchPlan,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let (Some(lower), inc) = (&plan.lower, &stream.incremental) else {
        return Ok(out);
    };
    let Some(inc) = inc else {
        return Err(
            "an incremental window was asked for but the stream has no [incremental] table".into(),
        );
    };
    let p = &inc.request;
    out.push((
        p.param.clone(),
        format!("{}{}", p.prefix, format_bound(lower, &p.format)?),
    ));
    if let (Some(upper), Some(upper_param)) = (&plan.upper, &p.upper_param) {
        out.push((
            upper_param.clone(),
            format!("{}{}", p.upper_prefix, format_bound(upper, &p.format)?),
        ));
    }
    Ok(out)
}

/// Writes a bound as the system expects: `rfc3339`, `epoch_ms`, `epoch_s`, `integer`, or a
/// chrono format string rendered in the bound's own offset.
pub fn format_bound(bound: &CursorBound, format: &str) -> Result<String, String> {
    use std::fmt::Write;
    match (bound, format) {
        (CursorBound::Integer(i), "integer" | "epoch_ms" | "epoch_s") => Ok(i.to_string()),
        (CursorBound::Integer(i), other) => Err(format!(
            "the cursor is an integer ({i}) but incremental.format is {other:?}; use format = \"integer\""
        )),
        (CursorBound::Time(t), "rfc3339") => Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        (CursorBound::Time(t), "epoch_ms") => Ok(t.timestamp_millis().to_string()),
        (CursorBound::Time(t), "epoch_s") => Ok(t.timestamp().to_string()),
        (CursorBound::Time(_), "integer") => {
            Err("the cursor is a time but incremental.format is \"integer\"; use rfc3339, epoch_ms, epoch_s or a %-format".into())
        }
        (CursorBound::Time(t), fmt) => {
            let mut s = String::new();
            write!(s, "{}", t.format(fmt))
                .map_err(|_| format!("incremental.format {fmt:?} is not a valid chrono format string"))?;
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn q(req: &Req, name: &str) -> Option<String> {
        req.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The shipped example config builds the first request of every stream as its vendor
    /// expects (page params, incremental bounds in the configured format).
    #[test]
    fn example_config_first_requests() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/community-sync.toml");
        let mut config = crate::config::Config::load(&path).unwrap();
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let plan = FetchPlan {
            lower: Some(CursorBound::Time(
                cst.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap(),
            )),
            upper: Some(CursorBound::Time(
                cst.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap(),
            )),
            max_pages: None,
        };
        let mut firsts = std::collections::BTreeMap::new();
        for source in &mut config.sources {
            source.auth = crate::source::config::AuthConfig::None;
            let http = super::super::http::Http::new(source, std::path::Path::new(".")).unwrap();
            for stream in &source.streams {
                let mut pager = Pager::new(&http, stream, &plan).unwrap();
                firsts.insert(
                    format!("{}/{}", source.name, stream.name),
                    pager.next_request().unwrap(),
                );
            }
        }
        let r = &firsts["onecard/cardholders"];
        assert_eq!(r.url.path(), "/api/ykt/v1/cardholders");
        assert_eq!(q(r, "page").as_deref(), Some("1"));
        assert_eq!(q(r, "rows").as_deref(), Some("500"));
        assert_eq!(q(r, "gxsj_start").as_deref(), Some("2024-03-01 08:00:00"));
        assert_eq!(q(r, "gxsj_end").as_deref(), Some("2024-03-01 09:00:00"));
        let r = &firsts["volunteer/volunteers"];
        assert_eq!(q(r, "limit").as_deref(), Some("200"));
        assert_eq!(q(r, "cursor"), None);
        assert_eq!(
            q(r, "updatedSince").as_deref(),
            Some("2024-03-01T08:00:00+08:00")
        );
        assert_eq!(
            q(r, "updatedBefore").as_deref(),
            Some("2024-03-01T09:00:00+08:00")
        );
        let r = &firsts["eldercare/service_orders"];
        assert_eq!(q(r, "offset").as_deref(), Some("0"));
        assert_eq!(q(r, "limit").as_deref(), Some("500"));
        assert_eq!(q(r, "updated_after").as_deref(), Some("1709251200000"));
        let r = &firsts["health/patients"];
        assert_eq!(r.url.path(), "/fhir/Patient");
        assert_eq!(q(r, "_count").as_deref(), Some("200"));
        assert_eq!(q(r, "_sort").as_deref(), Some("_lastUpdated"));
        assert_eq!(
            q(r, "_lastUpdated").as_deref(),
            Some("ge2024-03-01T08:00:00+08:00")
        );
    }

    #[test]
    fn bounds_format_in_their_own_offset() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let t = CursorBound::Time(cst.with_ymd_and_hms(2024, 3, 1, 8, 30, 0).unwrap());
        assert_eq!(
            format_bound(&t, "%Y-%m-%d %H:%M:%S").unwrap(),
            "2024-03-01 08:30:00"
        );
        assert_eq!(
            format_bound(&t, "rfc3339").unwrap(),
            "2024-03-01T08:30:00+08:00"
        );
        assert_eq!(format_bound(&t, "epoch_s").unwrap(), "1709253000");
        assert_eq!(format_bound(&t, "epoch_ms").unwrap(), "1709253000000");
        assert!(format_bound(&t, "integer").is_err());
        assert!(format_bound(&t, "%Q").is_err());
        assert_eq!(
            format_bound(&CursorBound::Integer(42), "integer").unwrap(),
            "42"
        );
        assert!(format_bound(&CursorBound::Integer(42), "%Y").is_err());
    }
}
