//! The data-quality report: what each department system delivered, what was quarantined and
//! why (with masked examples), how fresh each stream is, how many residents appear in several
//! systems, the review backlog and what reached the platform.
//!
//! [`collect`] reads everything from the store (personal values only through the store's
//! codec, and only ever shown masked); [`table::render`] and [`html::render`] format it.

pub mod html;
pub mod table;

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::config::Config;
use crate::store::{Store, StoreError};

/// Masked examples kept per (source, reason).
pub const EXAMPLES_PER_REASON: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Times in the report are RFC 3339 in this zone (the config's `timezone`, Asia/Shanghai
    /// by default), and shown as `2026-01-07 09:00:27` in the table and the page.
    pub timezone: String,
    pub generated_at: String,
    pub store: String,
    pub sources: Vec<SourceReport>,
    /// Records in the store (not deleted), all sources.
    pub records: i64,
    /// Records quarantined whole, all sources.
    pub rejected_records: i64,
    /// Quarantine rows (whole records and single fields) by reason code, all sources.
    pub rejects_by_reason: BTreeMap<String, i64>,
    /// Residents (golden records, not retired).
    pub persons: i64,
    /// Residents by the number of department systems they appear in.
    pub persons_by_systems: BTreeMap<usize, u64>,
    /// `None` when this store has no review queue (older schema).
    pub review: Option<ReviewSummary>,
    pub push: PushSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub name: String,
    /// The human title from the config (`社区一卡通`), or the name.
    pub title: String,
    pub streams: Vec<StreamQuality>,
    /// Sum over streams of records in the store.
    pub records: i64,
    pub rejected_records: i64,
    /// Quarantine rows of this source by reason, most frequent first.
    pub rejects: Vec<RejectGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamQuality {
    pub stream: String,
    pub entity: String,
    /// Records in the store, not deleted (kept + quarantined whole); as `status` counts them.
    pub records: i64,
    pub kept: i64,
    pub rejected: i64,
    /// Kept records with at least one field quarantined.
    pub with_field_rejects: i64,
    pub last_run_status: Option<String>,
    pub last_success: Option<String>,
    pub cursor: Option<String>,
    /// Seconds since the last success, when there was one.
    pub age_secs: Option<i64>,
    /// Older than the source's `max_lag_secs`.
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectGroup {
    pub reason: String,
    /// Chinese label of the reason.
    pub label: String,
    pub whole_records: i64,
    pub fields: i64,
    pub examples: Vec<RejectExample>,
}

impl RejectGroup {
    pub fn total(&self) -> i64 {
        self.whole_records + self.fields
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectExample {
    pub stream: String,
    /// The department system's record key, in full (it is the vendor's identifier, not
    /// personal data; see [`crate::mask::record_key`]), so the record can be looked up there
    /// and with `community-sync rejects` / `explain`.
    pub key: String,
    pub field: String,
    /// The quarantined value, masked.
    pub value: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReviewSummary {
    pub total: i64,
    /// Items by state (`open`, `resolved`, ...) when the table has a `status`/`state` column.
    pub by_status: BTreeMap<String, i64>,
    /// Items by kind when the table has a `kind` column (e.g. conflicts, near matches).
    pub by_kind: BTreeMap<String, i64>,
    /// Items still waiting for a person.
    pub open: i64,
    /// Review load: open items per 1,000 person records (None: none, or an older store).
    pub per_1000_person_records: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PushSummary {
    pub outbox_pending: i64,
    pub outbox_sent: i64,
    pub outbox_dead: i64,
    pub outbox_superseded: i64,
    pub dead_letters: i64,
    /// Dead letters by the platform's reason, most frequent first.
    pub dead_letter_reasons: Vec<(String, i64)>,
    /// Push attempts by outcome.
    pub push_outcomes: BTreeMap<String, i64>,
    pub last_push: Option<LastPush>,
}

/// The last push attempt: when (RFC 3339 in the report's zone), how it went, what it said
/// (masked: it may quote the platform).
#[derive(Debug, Clone, Serialize)]
pub struct LastPush {
    pub at: String,
    pub outcome: String,
    pub detail: String,
}

impl std::fmt::Display for LastPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", display_time(&self.at), self.outcome)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The Chinese label of a reject reason code.
pub fn reason_label(code: &str) -> &'static str {
    match code {
        "id_number.format" => "身份证号格式错误",
        "id_number.check_digit" => "身份证号校验位错误",
        "id_number.birth_date" => "身份证号出生日期无效",
        "id_number.region" => "身份证号行政区划无效",
        "phone.invalid" => "手机号码无效",
        "date.invalid" => "日期无效",
        "gender.invalid" => "性别代码无效",
        "money.invalid" => "金额无效",
        "number.invalid" => "数值无效",
        "code.unknown" => "未知代码",
        "identity.missing" => "缺少身份信息",
        "key.missing" => "缺少记录主键",
        "record.malformed" => "记录格式错误",
        _ => "其他",
    }
}

/// A stored RFC 3339 time (UTC in the store) in `tz`, still RFC 3339:
/// `2026-01-07T01:00:27.232Z` → `2026-01-07T09:00:27.232+08:00`. Anything else is kept.
pub fn in_zone(ts: &str, tz: chrono_tz::Tz) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        Err(_) => ts.to_string(),
    }
}

/// A time as an operator reads it: `2026-01-07 09:00:27` in `tz` (the offset is in the
/// column header or the report's header). Anything that is not RFC 3339 is kept.
pub fn local_time(ts: &str, tz: chrono_tz::Tz) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => ts.to_string(),
    }
}

/// An RFC 3339 time shown in its own offset: `2026-01-07T09:00:27.232+08:00` →
/// `2026-01-07 09:00:27`.
pub fn display_time(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => ts.to_string(),
    }
}

/// `UTC+08:00` for Asia/Shanghai (from an RFC 3339 time in the report's zone).
pub fn zone_label(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => format!("UTC{}", t.format("%:z")),
        Err(_) => String::new(),
    }
}

fn age_secs(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

fn table_exists(store: &Store, name: &str) -> Result<bool, StoreError> {
    Ok(store
        .conn()
        .query_row(
            "SELECT name FROM sqlite_master WHERE type='table' AND name=?1",
            [name],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .is_some())
}

fn columns(store: &Store, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare(&format!("PRAGMA table_info({table})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(1))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn group_counts(store: &Store, sql: &str) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut stmt = store.conn().prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get::<_, i64>(1)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn count(store: &Store, sql: &str) -> Result<i64, StoreError> {
    Ok(store.conn().query_row(sql, [], |r| r.get(0))?)
}

/// A source to report: name, title, (stream, entity) pairs, max lag.
type SourceEntry = (String, String, Vec<(String, String)>, Option<u64>);

/// Sources to report: those in the config (in config order), then any others found in the store.
fn source_list(config: &Config, store: &Store) -> Result<Vec<SourceEntry>, StoreError> {
    let mut out: Vec<SourceEntry> = config
        .sources
        .iter()
        .map(|s| {
            let title = if s.title.is_empty() {
                s.name.clone()
            } else {
                s.title.clone()
            };
            let streams = s
                .streams
                .iter()
                .map(|t| (t.name.clone(), t.entity.as_str().to_string()))
                .collect();
            (s.name.clone(), title, streams, s.max_lag_secs)
        })
        .collect();
    let mut stmt = store
        .conn()
        .prepare("SELECT source, stream, min(entity) FROM source_records GROUP BY source, stream ORDER BY source, stream")?;
    let found: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (source, stream, entity) in found {
        match out.iter_mut().find(|s| s.0 == source) {
            Some(s) => {
                if !s.2.iter().any(|t| t.0 == stream) {
                    s.2.push((stream, entity));
                }
            }
            None => out.push((source.clone(), source, vec![(stream, entity)], None)),
        }
    }
    Ok(out)
}

/// Computes the report from the store. `config` supplies titles, stream order and lag limits.
pub fn collect(config: &Config, store: &Store) -> Result<Report, StoreError> {
    let c = store.conn();
    let tz: chrono_tz::Tz = config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let codec = store.codec().clone();
    let mut sources = Vec::new();
    for (name, title, streams, max_lag) in source_list(config, store)? {
        let mut quality = Vec::new();
        for (stream, entity) in streams {
            let (records, kept, rejected): (i64, i64, i64) = c.query_row(
                "SELECT count(*), COALESCE(sum(status = 'ok'), 0), COALESCE(sum(status = 'rejected'), 0)
                 FROM source_records WHERE source = ?1 AND stream = ?2 AND deleted = 0",
                params![name, stream],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let with_field_rejects: i64 = c.query_row(
                "SELECT count(DISTINCT record_id) FROM rejects WHERE source = ?1 AND stream = ?2 AND whole_record = 0",
                params![name, stream],
                |r| r.get(0),
            )?;
            let last_run_status: Option<String> = c
                .query_row(
                    "SELECT status FROM runs WHERE source = ?1 AND stream = ?2 AND kind = 'sync' ORDER BY id DESC LIMIT 1",
                    params![name, stream],
                    |r| r.get(0),
                )
                .optional()?;
            let last_success: Option<String> = c
                .query_row(
                    "SELECT finished_at FROM runs WHERE source = ?1 AND stream = ?2 AND kind = 'sync' AND status = 'ok'
                     ORDER BY id DESC LIMIT 1",
                    params![name, stream],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let age = last_success.as_deref().and_then(age_secs);
            let stale = match (max_lag, age) {
                (Some(max), Some(a)) => a > max as i64,
                (Some(_), None) => last_run_status.is_some(),
                _ => false,
            };
            quality.push(StreamQuality {
                cursor: store.cursor(&name, &stream)?,
                stream,
                entity,
                records,
                kept,
                rejected,
                with_field_rejects,
                last_run_status,
                last_success: last_success.map(|t| in_zone(&t, tz)),
                age_secs: age,
                stale,
            });
        }
        let rejects = reject_groups(store, &codec, &name)?;
        sources.push(SourceReport {
            records: quality.iter().map(|q| q.records).sum(),
            rejected_records: quality.iter().map(|q| q.rejected).sum(),
            name,
            title,
            streams: quality,
            rejects,
        });
    }
    let review = if table_exists(store, "review_items")? {
        Some(review_summary(store)?)
    } else {
        None
    };
    let push = push_summary(store, tz)?;
    Ok(Report {
        timezone: tz.name().to_string(),
        generated_at: in_zone(&crate::store::now_text(), tz),
        store: store.path().display().to_string(),
        records: sources.iter().map(|s| s.records).sum(),
        rejected_records: sources.iter().map(|s| s.rejected_records).sum(),
        rejects_by_reason: group_counts(
            store,
            "SELECT reason, count(*) FROM rejects GROUP BY reason",
        )?,
        persons: count(store, "SELECT count(*) FROM persons WHERE retired = 0")?,
        persons_by_systems: crate::reconcile::persons_by_systems(store)?,
        review,
        push,
        sources,
    })
}

/// What reached the platform, what waits, what it refused, and the last attempt.
fn push_summary(store: &Store, tz: chrono_tz::Tz) -> Result<PushSummary, StoreError> {
    let c = store.conn();
    Ok(PushSummary {
        outbox_pending: count(store, "SELECT count(*) FROM outbox WHERE state = 'pending'")?,
        outbox_sent: count(store, "SELECT count(*) FROM outbox WHERE state = 'sent'")?,
        outbox_dead: count(store, "SELECT count(*) FROM outbox WHERE state = 'dead'")?,
        outbox_superseded: count(
            store,
            "SELECT count(*) FROM outbox WHERE state = 'superseded'",
        )?,
        dead_letters: count(store, "SELECT count(*) FROM dead_letters")?,
        dead_letter_reasons: {
            let mut stmt = c.prepare(
                "SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC, reason LIMIT 10",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((crate::mask::scrub_text(&r.get::<_, String>(0)?), r.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        },
        push_outcomes: group_counts(
            store,
            "SELECT outcome, count(*) FROM push_log GROUP BY outcome",
        )?,
        last_push: c
            .query_row(
                "SELECT at, outcome, COALESCE(detail, '') FROM push_log ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?
            .map(|(at, outcome, detail)| LastPush {
                at: in_zone(&at, tz),
                outcome,
                detail: crate::mask::scrub_text(&detail),
            }),
    })
}

fn reject_groups(
    store: &Store,
    codec: &crate::store::Codec,
    source: &str,
) -> Result<Vec<RejectGroup>, StoreError> {
    let c = store.conn();
    let mut stmt = c.prepare(
        "SELECT reason, COALESCE(sum(whole_record = 1), 0), COALESCE(sum(whole_record = 0), 0) AS f
         FROM rejects WHERE source = ?1 GROUP BY reason ORDER BY count(*) DESC, reason",
    )?;
    let groups: Vec<(String, i64, i64)> = stmt
        .query_map([source], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut ex = c.prepare(
        "SELECT stream, COALESCE(source_key, '-'), field, raw_value, detail FROM rejects
         WHERE source = ?1 AND reason = ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut out = Vec::new();
    for (reason, whole_records, fields) in groups {
        let rows = ex.query_map(params![source, reason, EXAMPLES_PER_REASON as i64], |r| {
            let field: String = r.get(2)?;
            let raw = codec.open(r.get_ref(3)?)?.unwrap_or_default();
            Ok(RejectExample {
                stream: r.get(0)?,
                key: crate::mask::record_key(&r.get::<_, String>(1)?),
                value: shorten(&crate::mask::field(&field, &raw), 48),
                field,
                detail: shorten(&crate::mask::scrub_text(&r.get::<_, String>(4)?), 80),
            })
        })?;
        out.push(RejectGroup {
            label: reason_label(&reason).to_string(),
            examples: rows.collect::<Result<_, _>>()?,
            reason,
            whole_records,
            fields,
        });
    }
    Ok(out)
}

fn review_summary(store: &Store) -> Result<ReviewSummary, StoreError> {
    let cols = columns(store, "review_items")?;
    let mut s = ReviewSummary {
        total: count(store, "SELECT count(*) FROM review_items")?,
        ..Default::default()
    };
    if let Some(col) = ["status", "state"]
        .into_iter()
        .find(|c| cols.iter().any(|x| x == c))
    {
        s.by_status = group_counts(
            store,
            &format!("SELECT {col}, count(*) FROM review_items GROUP BY {col}"),
        )?;
        s.open = s
            .by_status
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "open" | "pending" | "new"))
            .map(|(_, v)| *v)
            .sum();
    } else if cols.iter().any(|x| x == "resolved_at") {
        s.open = count(
            store,
            "SELECT count(*) FROM review_items WHERE resolved_at IS NULL",
        )?;
    } else {
        s.open = s.total;
    }
    if cols.iter().any(|x| x == "kind") {
        s.by_kind = group_counts(
            store,
            "SELECT kind, count(*) FROM review_items GROUP BY kind",
        )?;
    }
    if table_exists(store, "match_features")? {
        s.per_1000_person_records = crate::reconcile::review::load_per_1000(store.conn(), s.open)?;
    }
    Ok(s)
}

/// Cuts a display string to at most `max` characters, marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `12345` → `12,345`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A human age: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-4200), "-4,200");
    }

    #[test]
    fn shorten_marks_the_cut() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("社区一卡通系统", 4), "社区一…");
    }

    #[test]
    fn every_reason_code_has_a_chinese_label() {
        for r in crate::model::RejectReason::ALL {
            assert_ne!(reason_label(r.code()), "其他", "{}", r.code());
        }
    }

    #[test]
    fn review_summary_reads_whatever_table_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(table_exists(&store, "review_items").unwrap());
        store
            .conn()
            .execute_batch(
                "INSERT INTO review_items (kind, record_id, person_id, detail, state, created_at) VALUES
                   ('conflict', 1, 1, 'birth_date differs', 'open', '2026-01-01'),
                   ('match', 2, 1, 'score 0.7', 'open', '2026-01-01'),
                   ('conflict', 3, 2, 'gender differs', 'accepted', '2026-01-01');",
            )
            .unwrap();
        let s = review_summary(&store).unwrap();
        assert_eq!(s.total, 3);
        assert_eq!(s.open, 2);
        assert_eq!(s.by_kind.get("conflict"), Some(&2));
        assert_eq!(s.by_status.get("accepted"), Some(&1));
    }

    #[test]
    fn times_are_shown_in_the_zone_and_never_masked() {
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(
            in_zone("2026-01-07T01:00:27.232Z", tz),
            "2026-01-07T09:00:27.232+08:00"
        );
        assert_eq!(
            local_time("2026-01-07T01:00:27.232Z", tz),
            "2026-01-07 09:00:27"
        );
        assert_eq!(
            display_time("2026-01-07T09:00:27.232+08:00"),
            "2026-01-07 09:00:27"
        );
        assert_eq!(zone_label("2026-01-07T09:00:27.232+08:00"), "UTC+08:00");
        let p = LastPush {
            at: in_zone("2026-01-07T01:00:27.232Z", tz),
            outcome: "ok".into(),
            detail: crate::mask::scrub_text("12 events, 2026-01-07"),
        };
        assert_eq!(
            p.to_string(),
            "2026-01-07 09:00:27 ok: 12 events, 2026-01-07"
        );
    }

    #[test]
    fn report_masks_quarantined_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO rejects (source, stream, source_key, field, whole_record, reason, detail, raw_value, at)
                 VALUES ('onecard', 'cardholders', 'K1', 'id_number', 1, 'id_number.check_digit', 'bad check digit', ?1, 'now')",
                [store
                    .codec()
                    .seal(crate::store::codec::REJECT_RAW, "11010519491231002X")],
            )
            .unwrap();
        let groups = reject_groups(&store, store.codec(), "onecard").unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].whole_records, 1);
        assert_eq!(
            groups[0].examples[0].key, "K1",
            "the key is shown to follow it up"
        );
        let v = &groups[0].examples[0].value;
        assert!(!v.contains("19491231"), "{v}");
        assert!(v.starts_with("1101"), "{v}");
    }
}
