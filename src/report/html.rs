//! The HTML form of the report: one self-contained file (inline CSS and SVG, no scripts, no
//! external fonts or images), labelled in Chinese with English beside it.
//!
//! Every key figure is wrapped in an element with a `data-k` attribute naming it
//! (`persons`, `systems-2`, `records:onecard/cardholders`, ...) so tests and scripts can read
//! the page back.

// The page is written as HTML source lines, each ending in "\n" for a readable file.
#![allow(clippy::write_with_newline)]

use std::fmt::Write as _;

use super::{human_age, thousands, Report};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn fig(key: &str, value: i64) -> String {
    format!("<span data-k=\"{}\">{}</span>", esc(key), thousands(value))
}

const KEPT: &str = "#2f9e77";
const FIELD: &str = "#e6a23c";
const REJECTED: &str = "#d9534f";
const ACCENT: &str = "#3867d6";

const STYLE: &str = r#"
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f5f7fb; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif;
  font-size:14px; line-height:1.5; }
header { background:linear-gradient(120deg,#1e3a8a,#3867d6); color:#fff; padding:28px 40px 24px; }
header h1 { margin:0; font-size:26px; font-weight:600; }
header h1 small { font-size:16px; font-weight:400; opacity:.85; margin-left:10px; }
header p { margin:6px 0 0; opacity:.85; font-size:13px; }
main { max-width:1180px; margin:0 auto; padding:24px 32px 48px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit,minmax(160px,1fr)); gap:14px; margin-top:-44px; }
.kpi { background:var(--card); border-radius:10px; padding:14px 16px; box-shadow:0 2px 8px rgba(15,23,42,.08); }
.kpi .v { font-size:28px; font-weight:650; letter-spacing:-.5px; }
.kpi .l { color:var(--muted); font-size:12.5px; }
.kpi.warn .v { color:#b45309; } .kpi.bad .v { color:#c0392b; } .kpi.good .v { color:#1f7a5a; }
section { background:var(--card); border-radius:10px; padding:18px 22px 20px; margin-top:18px; box-shadow:0 1px 4px rgba(15,23,42,.06); }
h2 { font-size:18px; margin:0 0 4px; font-weight:600; }
h2 small { color:var(--muted); font-weight:400; font-size:14px; margin-left:6px; }
.note { color:var(--muted); font-size:12.5px; margin:0 0 12px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th { text-align:left; color:var(--muted); font-weight:500; border-bottom:1px solid var(--line); padding:6px 8px; white-space:nowrap; }
td { border-bottom:1px solid var(--line); padding:6px 8px; vertical-align:top; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
tr.src td { background:#f8fafc; font-weight:600; }
.pill { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; }
.ok { background:#e6f6ef; color:#1f7a5a; } .failed { background:#fdecea; color:#c0392b; }
.stale { background:#fff4e0; color:#b45309; } .never { background:#eef0f4; color:#6b7280; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size:12px; background:#f1f5f9; padding:1px 5px; border-radius:4px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:1fr; } }
.legend span { display:inline-block; margin-right:14px; font-size:12.5px; color:var(--muted); }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.ex { color:var(--muted); font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
svg text { font-family: inherit; }
"#;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>数据质量报告 Data-quality report — community-sync</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = write!(
        o,
        "<header><h1>社区数据同步 · 数据质量报告<small>community-sync data-quality report</small></h1>\
         <p>生成时间 Generated {} ({}) · 数据库 Store <code style=\"background:rgba(255,255,255,.15);color:#fff\">{}</code></p></header>\n<main>\n",
        esc(&super::display_time(&r.generated_at)),
        esc(&format!("{}, {}", r.timezone, super::zone_label(&r.generated_at))),
        esc(&r.store)
    );
    key_figures(&mut o, r);
    records_by_system(&mut o, r);
    overlap_and_reasons(&mut o, r);
    freshness(&mut o, r);
    reject_details(&mut o, r);
    o.push_str("<div class=\"grid2\">\n");
    review_backlog(&mut o, r);
    push_summary(&mut o, r);
    o.push_str("</div>\n");
    let _ = write!(
        o,
        "<footer>community-sync {} · 报告中的个人信息均已脱敏 Personal data in this report is masked.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    o
}

/// The headline figures, one tile each.
fn key_figures(o: &mut String, r: &Report) {
    let multi: u64 = r
        .persons_by_systems
        .iter()
        .filter(|(k, _)| **k >= 2)
        .map(|(_, v)| *v)
        .sum();
    let pend_class = if r.push.outbox_pending > 0 {
        "warn"
    } else {
        "good"
    };
    let dead_class = if r.push.dead_letters > 0 {
        "bad"
    } else {
        "good"
    };
    let rej_class = if r.rejected_records > 0 {
        "warn"
    } else {
        "good"
    };
    let _ = write!(
        o,
        "<div class=\"kpis\">\
         <div class=\"kpi\"><div class=\"v\">{}</div><div class=\"l\">居民（统一档案）<br>Residents (golden records)</div></div>\
         <div class=\"kpi good\"><div class=\"v\">{}</div><div class=\"l\">出现在多个系统<br>In 2 or more systems</div></div>\
         <div class=\"kpi\"><div class=\"v\">{}</div><div class=\"l\">源记录<br>Source records</div></div>\
         <div class=\"kpi {rej_class}\"><div class=\"v\">{}</div><div class=\"l\">整条隔离<br>Records quarantined</div></div>\
         <div class=\"kpi {pend_class}\"><div class=\"v\">{}</div><div class=\"l\">待推送<br>Events pending</div></div>\
         <div class=\"kpi {dead_class}\"><div class=\"v\">{}</div><div class=\"l\">死信<br>Dead letters</div></div>\
         </div>\n",
        fig("persons", r.persons),
        fig("multi-system", multi as i64),
        fig("records", r.records),
        fig("rejected-records", r.rejected_records),
        fig("outbox-pending", r.push.outbox_pending),
        fig("dead-letters", r.push.dead_letters),
    );
}

/// Kept, field-issue and quarantined records per stream, as bars.
fn records_by_system(o: &mut String, r: &Report) {
    let field_issues: i64 = r
        .sources
        .iter()
        .flat_map(|s| &s.streams)
        .map(|t| t.with_field_rejects)
        .sum();
    let _ = write!(
        o,
        "<section><h2>各系统数据<small>Records by department system</small></h2>\
         <p class=\"note\">每个数据流中保留、字段有问题和整条隔离的记录。Kept records, kept records with a field quarantined ({} in all), and records quarantined whole.</p>\
         <div class=\"legend\"><span><i style=\"background:{KEPT}\"></i>保留 kept</span><span><i style=\"background:{FIELD}\"></i>字段有问题 field issues</span><span><i style=\"background:{REJECTED}\"></i>整条隔离 quarantined</span></div>\n",
        thousands(field_issues)
    );
    o.push_str(&stream_bars(r));
    o.push_str("</section>\n");
}

/// Residents by number of systems beside quarantine reasons.
fn overlap_and_reasons(o: &mut String, r: &Report) {
    o.push_str("<div class=\"grid2\">\n");
    let _ = write!(
        o,
        "<section><h2>居民跨系统分布<small>Residents by number of systems</small></h2>\
         <p class=\"note\">同一位居民出现在几个部门系统中。How many department systems each resident appears in.</p>\n{}</section>\n",
        overlap_chart(r)
    );
    let _ = write!(
        o,
        "<section><h2>隔离原因<small>Quarantine by reason</small></h2>\
         <p class=\"note\">整条记录和单个字段的隔离次数。Whole records and single fields quarantined, all systems.</p>\n{}</section>\n",
        reason_chart(r)
    );
    o.push_str("</div>\n");
}

/// Last run, last success and cursor of each stream.
fn freshness(o: &mut String, r: &Report) {
    o.push_str(
        "<section><h2>数据新鲜度<small>Freshness</small></h2>\
         <p class=\"note\">每个数据流最近一次运行、最近一次成功和增量游标。Last run, last success and incremental cursor of each stream.</p>\
         <table><tr><th>系统 / 数据流<br>System / stream</th><th class=\"n\">记录<br>Records</th><th class=\"n\">保留<br>Kept</th>\
         <th class=\"n\">隔离<br>Quarantined</th><th>最近运行<br>Last run</th><th>最近成功<br>Last success</th><th>游标<br>Cursor</th></tr>\n",
    );
    for s in &r.sources {
        let _ = write!(
            o,
            "<tr class=\"src\"><td>{} <span class=\"ex\">{}</span></td><td class=\"n\">{}</td><td class=\"n\"></td><td class=\"n\">{}</td><td></td><td></td><td></td></tr>\n",
            esc(&s.title),
            esc(&s.name),
            fig(&format!("source-records:{}", s.name), s.records),
            fig(&format!("source-rejected:{}", s.name), s.rejected_records),
        );
        for t in &s.streams {
            let key = format!("{}/{}", s.name, t.stream);
            let (class, label) = match (t.stale, t.last_run_status.as_deref()) {
                (true, _) => ("stale", "过期 stale".to_string()),
                (false, Some("ok")) => ("ok", "成功 ok".to_string()),
                (false, Some("failed")) => ("failed", "失败 failed".to_string()),
                (false, Some(other)) => ("never", esc(other)),
                (false, None) => ("never", "从未 never".to_string()),
            };
            let since = match (&t.last_success, t.age_secs) {
                (Some(ts), Some(a)) => format!(
                    "{} <span class=\"ex\">({} ago)</span>",
                    esc(&super::display_time(ts)),
                    human_age(a)
                ),
                (Some(ts), None) => esc(&super::display_time(ts)),
                _ => "—".into(),
            };
            let _ = write!(
                o,
                "<tr><td>&nbsp;&nbsp;{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td><span class=\"pill {class}\">{label}</span></td><td>{since}</td><td><code>{}</code></td></tr>\n",
                esc(&t.stream),
                fig(&format!("records:{key}"), t.records),
                fig(&format!("kept:{key}"), t.kept),
                fig(&format!("rejected:{key}"), t.rejected),
                esc(t.cursor.as_deref().unwrap_or("—")),
            );
        }
    }
    o.push_str("</table></section>\n");
}

/// Quarantine reasons per system with masked examples.
fn reject_details(o: &mut String, r: &Report) {
    o.push_str(
        "<section><h2>隔离明细<small>Quarantined values, with masked examples</small></h2>\
         <p class=\"note\">示例已脱敏；完整列表请用 <code>community-sync rejects</code>。Examples are masked; <code>community-sync rejects</code> lists them all.</p>\
         <table><tr><th>系统<br>System</th><th>原因<br>Reason</th><th class=\"n\">整条<br>Records</th><th class=\"n\">字段<br>Fields</th><th>示例（脱敏）<br>Examples (masked)</th></tr>\n",
    );
    let mut any = false;
    for s in &r.sources {
        for g in &s.rejects {
            any = true;
            let examples: Vec<String> = g
                .examples
                .iter()
                .map(|e| {
                    format!(
                        "<div><code>{}</code> <span class=\"ex\">{}/{} · {} · {}</span></div>",
                        esc(&e.value),
                        esc(&e.stream),
                        esc(&e.key),
                        esc(&e.field),
                        esc(&e.detail)
                    )
                })
                .collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}<br><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
                esc(&s.title),
                esc(&g.label),
                esc(&g.reason),
                thousands(g.whole_records),
                thousands(g.fields),
                examples.join("")
            );
        }
    }
    if !any {
        o.push_str("<tr><td colspan=\"5\">没有隔离的数据 Nothing quarantined.</td></tr>\n");
    }
    o.push_str("</table></section>\n");
}

/// The review queue by kind and status.
fn review_backlog(o: &mut String, r: &Report) {
    o.push_str("<section><h2>待审核<small>Review backlog</small></h2>\n");
    match &r.review {
        Some(rv) => {
            let _ = write!(
                o,
                "<p class=\"note\">需要人工判断的疑似同一人和字段冲突。Possible matches and conflicts waiting for a person: <code>community-sync review</code>.</p>\
                 <div class=\"kpi\" style=\"box-shadow:none;padding:0 0 10px\"><div class=\"v\">{}</div><div class=\"l\">待处理 open · 共 {} in all</div></div>",
                fig("review-open", rv.open),
                fig("review-total", rv.total)
            );
            if !rv.by_kind.is_empty() {
                o.push_str("<table><tr><th>类型 Kind</th><th class=\"n\">数量 Items</th></tr>");
                for (k, v) in &rv.by_kind {
                    let _ = write!(
                        o,
                        "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                        esc(k),
                        thousands(*v)
                    );
                }
                o.push_str("</table>");
            }
            if !rv.by_status.is_empty() {
                o.push_str("<table style=\"margin-top:8px\"><tr><th>状态 Status</th><th class=\"n\">数量 Items</th></tr>");
                for (k, v) in &rv.by_status {
                    let _ = write!(
                        o,
                        "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                        esc(k),
                        thousands(*v)
                    );
                }
                o.push_str("</table>");
            }
        }
        None => o.push_str(
            "<p class=\"note\">此数据库没有审核队列。This store has no review queue.</p>",
        ),
    }
    o.push_str("</section>\n");
}

/// The outbox by state, dead-letter reasons and the last push.
fn push_summary(o: &mut String, r: &Report) {
    let p = &r.push;
    let _ = write!(
        o,
        "<section><h2>推送到平台<small>Pushed to the platform</small></h2>\
         <p class=\"note\">发件箱中的事件。Events in the outbox by state.</p>\
         <table><tr><td>已发送 sent</td><td class=\"n\">{}</td></tr>\
         <tr><td>待推送 pending</td><td class=\"n\">{}</td></tr>\
         <tr><td>已被新版本取代 superseded</td><td class=\"n\">{}</td></tr>\
         <tr><td>死信 dead letters</td><td class=\"n\">{}</td></tr></table>\n",
        fig("outbox-sent", p.outbox_sent),
        fig("outbox-pending-2", p.outbox_pending),
        fig("outbox-superseded", p.outbox_superseded),
        fig("dead-letters-2", p.dead_letters),
    );
    if !p.dead_letter_reasons.is_empty() {
        o.push_str("<table style=\"margin-top:8px\"><tr><th>死信原因 Dead-letter reason</th><th class=\"n\">数量</th></tr>");
        for (reason, n) in &p.dead_letter_reasons {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(reason),
                thousands(*n)
            );
        }
        o.push_str("</table>");
    }
    if let Some(l) = &p.last_push {
        let _ = write!(
            o,
            "<p class=\"ex\">最近推送 Last push: {}</p>",
            esc(&l.to_string())
        );
    }
    o.push_str("</section>\n");
}

/// Horizontal stacked bars, one per stream: kept without issues, kept with field issues,
/// quarantined whole.
fn stream_bars(r: &Report) -> String {
    let rows: Vec<(String, String, i64, i64, i64)> = r
        .sources
        .iter()
        .flat_map(|s| {
            s.streams.iter().map(move |t| {
                (
                    s.title.clone(),
                    t.stream.clone(),
                    (t.kept - t.with_field_rejects).max(0),
                    t.with_field_rejects.min(t.kept),
                    t.rejected,
                )
            })
        })
        .collect();
    let max = rows
        .iter()
        .map(|r| r.2 + r.3 + r.4)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (label_w, bar_w, row_h) = (250.0, 680.0, 30.0);
    let h = row_h * rows.len() as f64 + 8.0;
    let mut o = format!(
        "<svg role=\"img\" aria-label=\"records by stream\" viewBox=\"0 0 1100 {h}\" width=\"100%\" style=\"max-width:1100px\">"
    );
    for (i, (title, stream, clean, field, rejected)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"13\" fill=\"#1f2937\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#6b7280\" text-anchor=\"end\">{}</text>",
            y + 18.0,
            esc(title),
            label_w - 10.0,
            y + 18.0,
            esc(stream)
        );
        let mut x = label_w;
        for (v, color) in [(*clean, KEPT), (*field, FIELD), (*rejected, REJECTED)] {
            if v <= 0 {
                continue;
            }
            let w = (v as f64 / max * bar_w).max(2.0);
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"20\" rx=\"3\" fill=\"{color}\"><title>{}</title></rect>",
                y + 4.0,
                thousands(v)
            );
            x += w;
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#374151\">{} · {} 隔离</text>",
            x + 8.0,
            y + 18.0,
            thousands(clean + field + rejected),
            thousands(*rejected)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Vertical bars: residents found in 1, 2, 3 and 4 systems.
fn overlap_chart(r: &Report) -> String {
    let values: Vec<(usize, u64)> = (1..=4)
        .map(|k| (k, r.persons_by_systems.get(&k).copied().unwrap_or(0)))
        .collect();
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1) as f64;
    let (w, h, base) = (480.0, 255.0, 205.0);
    let colors = ["#9bb5f0", "#6b8fe6", ACCENT, "#1e3a8a"];
    let mut o = format!("<svg role=\"img\" aria-label=\"residents by number of systems\" viewBox=\"0 0 {w} {h}\" width=\"100%\">");
    let _ = write!(
        o,
        "<line x1=\"20\" y1=\"{base}\" x2=\"{:.0}\" y2=\"{base}\" stroke=\"#d1d5db\"/>",
        w - 20.0
    );
    for (i, (k, v)) in values.iter().enumerate() {
        let bw = 70.0;
        let x = 40.0 + i as f64 * 110.0;
        let bh = (*v as f64 / max * 170.0).max(if *v > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw}\" height=\"{bh:.1}\" rx=\"4\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"15\" font-weight=\"600\" text-anchor=\"middle\" fill=\"#1f2937\" data-k=\"systems-{k}\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#374151\">{k} 个系统</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11.5\" text-anchor=\"middle\" fill=\"#6b7280\">{k} system{}</text>",
            base - bh,
            colors[i],
            x + bw / 2.0,
            base - bh - 8.0,
            thousands(*v as i64),
            x + bw / 2.0,
            base + 20.0,
            x + bw / 2.0,
            base + 35.0,
            if *k == 1 { "" } else { "s" }
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Horizontal bars of quarantine rows by reason, all systems.
fn reason_chart(r: &Report) -> String {
    let mut rows: Vec<(&String, i64)> = r.rejects_by_reason.iter().map(|(k, v)| (k, *v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if rows.is_empty() {
        return "<p>没有隔离的数据 Nothing quarantined.</p>\n".into();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let (label_w, bar_w, row_h) = (250.0, 170.0, 28.0);
    let h = row_h * rows.len() as f64 + 6.0;
    let mut o = format!("<svg role=\"img\" aria-label=\"quarantine by reason\" viewBox=\"0 0 480 {h}\" width=\"100%\">");
    for (i, (reason, n)) in rows.iter().enumerate() {
        let y = 3.0 + i as f64 * row_h;
        let w = (*n as f64 / max * bar_w).max(2.0);
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12.5\" fill=\"#1f2937\">{}</text>\
             <text x=\"0\" y=\"{:.1}\" font-size=\"10\" fill=\"#9ca3af\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"16\" rx=\"3\" fill=\"{REJECTED}\" opacity=\".85\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#374151\" data-k=\"reason:{}\">{}</text>",
            y + 12.0,
            esc(super::reason_label(reason)),
            y + 24.0,
            esc(reason),
            y + 4.0,
            label_w + w + 6.0,
            y + 16.0,
            esc(reason),
            thousands(*n)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn page_is_self_contained() {
        let r = Report {
            timezone: "Asia/Shanghai".into(),
            generated_at: "2026-01-01T08:00:00+08:00".into(),
            store: "/tmp/<s>.db".into(),
            sources: vec![],
            records: 0,
            rejected_records: 0,
            rejects_by_reason: Default::default(),
            persons: 1234,
            persons_by_systems: [(1, 1000u64), (2, 234)].into_iter().collect(),
            review: None,
            push: Default::default(),
        };
        let page = render(&r);
        assert!(page.contains("<span data-k=\"persons\">1,234</span>"));
        assert!(page.contains("data-k=\"systems-2\">234<"));
        assert!(page.contains("/tmp/&lt;s&gt;.db"));
        for external in ["src=\"http", "href=\"http", "<script", "@import", "url("] {
            assert!(
                !page.contains(external),
                "page refers to an external asset: {external}"
            );
        }
    }
}
