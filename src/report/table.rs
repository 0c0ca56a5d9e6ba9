//! The terminal form of the report: aligned plain text (no colour, no control characters), so
//! it reads the same on a terminal, in a pipe and in an email.

use std::fmt::Write as _;

use super::{display_time, human_age, thousands, zone_label, Report};

/// Display width of a character on a terminal (CJK and full-width forms take two columns).
fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD);
    if wide {
        2
    } else {
        1
    }
}

pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Left-aligns `s` in `w` terminal columns.
pub fn pad(s: &str, w: usize) -> String {
    let n = width(s);
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

/// Right-aligns `s` in `w` terminal columns.
pub fn rpad(s: &str, w: usize) -> String {
    let n = width(s);
    format!("{}{s}", " ".repeat(w.saturating_sub(n)))
}

fn bar(value: u64, max: u64, cols: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let n = ((value as f64 / max as f64) * cols as f64).round() as usize;
    "█".repeat(n.max(usize::from(value > 0)))
}

/// The sources section: each stream's records, quarantine, last run and freshness.
fn sources(o: &mut String, r: &Report) {
    let _ = writeln!(o, "数据来源 Sources");
    let _ = writeln!(
        o,
        "  {} {} {} {} {} {} {} {}  cursor",
        pad("stream", 22),
        rpad("records", 9),
        rpad("kept", 9),
        rpad("rejected", 9),
        rpad("field issues", 12),
        pad("last run", 9),
        pad("last success", 20),
        rpad("age", 7)
    );
    for s in &r.sources {
        let _ = writeln!(
            o,
            "{} ({})  {} records, {} quarantined",
            s.title,
            s.name,
            thousands(s.records),
            thousands(s.rejected_records)
        );
        for t in &s.streams {
            let _ = writeln!(
                o,
                "  {} {} {} {} {} {} {} {}  {}{}",
                pad(&t.stream, 22),
                rpad(&thousands(t.records), 9),
                rpad(&thousands(t.kept), 9),
                rpad(&thousands(t.rejected), 9),
                rpad(&thousands(t.with_field_rejects), 12),
                pad(t.last_run_status.as_deref().unwrap_or("never"), 9),
                pad(
                    &t.last_success
                        .as_deref()
                        .map(display_time)
                        .unwrap_or_else(|| "-".into()),
                    20
                ),
                rpad(&t.age_secs.map(human_age).unwrap_or_else(|| "-".into()), 7),
                t.cursor.as_deref().unwrap_or("-"),
                if t.stale { "  STALE 数据过期" } else { "" }
            );
        }
    }
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "数据质量报告 Data-quality report");
    let _ = writeln!(
        o,
        "generated {} ({}, {})   store {}",
        display_time(&r.generated_at),
        r.timezone,
        zone_label(&r.generated_at),
        r.store
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "居民 residents {}   记录 records {}   整条隔离 records quarantined {}   待推送 pending {}   死信 dead letters {}",
        thousands(r.persons),
        thousands(r.records),
        thousands(r.rejected_records),
        thousands(r.push.outbox_pending),
        thousands(r.push.dead_letters)
    );
    let _ = writeln!(o);
    sources(&mut o, r);
    let _ = writeln!(o);
    let _ = writeln!(o, "隔离原因 Quarantine by reason (values masked)");
    let mut any = false;
    for s in &r.sources {
        for g in &s.rejects {
            any = true;
            let _ = writeln!(
                o,
                "  {} {} {} {} whole records, {} fields",
                pad(&s.name, 10),
                pad(&g.reason, 22),
                pad(&g.label, 22),
                rpad(&thousands(g.whole_records), 7),
                thousands(g.fields)
            );
            for e in &g.examples {
                let _ = writeln!(
                    o,
                    "      e.g. {}/{} {}: {}  ({})",
                    e.stream, e.key, e.field, e.value, e.detail
                );
            }
        }
    }
    if !any {
        let _ = writeln!(o, "  (nothing quarantined)");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "跨系统居民 Residents by number of systems: {} residents",
        thousands(r.persons)
    );
    let max = r.persons_by_systems.values().copied().max().unwrap_or(0);
    for k in 1..=4usize {
        let v = r.persons_by_systems.get(&k).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "  {} {} {}",
            pad(
                &format!("{k} 个系统 system{}", if k == 1 { "" } else { "s" }),
                18
            ),
            rpad(&thousands(v as i64), 9),
            bar(v, max, 40)
        );
    }
    let _ = writeln!(o);
    match &r.review {
        Some(rv) => {
            let _ = writeln!(
                o,
                "待审核 Review backlog: {} open of {}{}",
                thousands(rv.open),
                thousands(rv.total),
                rv.per_1000_person_records
                    .map(|l| format!(" ({l:.1} per 1,000 person records)"))
                    .unwrap_or_default()
            );
            for (k, v) in &rv.by_kind {
                let _ = writeln!(o, "  {} {}", pad(k, 24), rpad(&thousands(*v), 9));
            }
        }
        None => {
            let _ = writeln!(
                o,
                "待审核 Review backlog: not available (this store has no review queue)"
            );
        }
    }
    let _ = writeln!(o);
    let p = &r.push;
    let _ = writeln!(
        o,
        "推送 Push: {} sent, {} pending, {} superseded, {} dead letters",
        thousands(p.outbox_sent),
        thousands(p.outbox_pending),
        thousands(p.outbox_superseded),
        thousands(p.dead_letters)
    );
    for (reason, n) in &p.dead_letter_reasons {
        let _ = writeln!(o, "  dead: {} × {}", thousands(*n), reason);
    }
    if let Some(l) = &p.last_push {
        let _ = writeln!(o, "  last push: {l}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_takes_two_columns() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("社区"), 4);
        assert_eq!(pad("社区", 6), "社区  ");
        assert_eq!(rpad("12", 4), "  12");
    }

    #[test]
    fn bar_is_proportional_and_never_hides_a_nonzero_value() {
        assert_eq!(bar(10, 10, 4).chars().count(), 4);
        assert_eq!(bar(1, 1000, 4).chars().count(), 1);
        assert_eq!(bar(0, 10, 4), "");
    }
}
