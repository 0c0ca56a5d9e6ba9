//! When jobs are due: one job per enabled source (its `schedule`) and one for the push
//! (`platform.schedule`), in the configured time zone. Pure functions over the clock, so the
//! rules (overdue once at start, never once per missed tick) are unit-tested.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{parse_schedule, Config};

/// What a scheduled job does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Sync one source (all its streams), then reconcile.
    Source(String),
    /// Drain the outbox to the platform.
    Push,
}

impl JobKind {
    /// Stable name, used as the key of `schedule_state` and in logs.
    pub fn key(&self) -> String {
        match self {
            JobKind::Source(s) => format!("source:{s}"),
            JobKind::Push => "push".to_string(),
        }
    }
}

/// A job with its schedule and next due time.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub expr: String,
    pub schedule: croner::Cron,
    pub next: Option<DateTime<Utc>>,
}

/// Config keys and messages for schedules that do not parse (`check` reports them too; the
/// daemon refuses to start or reload with one).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ScheduleError {
    pub key: String,
    pub message: String,
}

/// The jobs a config asks for: every enabled source, and the push.
pub fn jobs(config: &Config) -> Result<Vec<Job>, ScheduleError> {
    let mut out = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        if !s.enabled {
            continue;
        }
        let schedule = parse_schedule(&s.schedule).map_err(|message| ScheduleError {
            key: format!("sources[{i}] ({}).schedule", s.name),
            message,
        })?;
        out.push(Job {
            kind: JobKind::Source(s.name.clone()),
            expr: s.schedule.clone(),
            schedule,
            next: None,
        });
    }
    let schedule = parse_schedule(&config.platform.schedule).map_err(|message| ScheduleError {
        key: "platform.schedule".into(),
        message,
    })?;
    out.push(Job {
        kind: JobKind::Push,
        expr: config.platform.schedule.clone(),
        schedule,
        next: None,
    });
    Ok(out)
}

/// The first tick strictly after `after`, in time zone `tz`.
pub fn next_after(schedule: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When a job should first run after a (re)start at `now`, given when it was last due.
/// A job never run, or with a tick missed since it was last due, is overdue: it runs once
/// now (however many ticks were missed). Otherwise it waits for its next tick.
pub fn first_due(
    schedule: &croner::Cron,
    tz: Tz,
    last_due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match last_due {
        None => Some(now),
        Some(last) => match next_after(schedule, tz, last) {
            Some(missed) if missed <= now => Some(now),
            _ => next_after(schedule, tz, now),
        },
    }
}

/// A random delay in `0..=jitter_secs` seconds (milliseconds resolution).
pub fn jitter(jitter_secs: u64) -> std::time::Duration {
    if jitter_secs == 0 {
        return std::time::Duration::ZERO;
    }
    use rand::Rng as _;
    let ms = rand::rng().random_range(0..=jitter_secs.saturating_mul(1000));
    std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const SH: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn crontab_lines_tick_in_the_configured_zone() {
        // 02:00 daily in Shanghai is 18:00 UTC the day before.
        let s = parse_schedule("0 2 * * *").unwrap();
        assert_eq!(
            next_after(&s, SH, t("2024-05-01T12:00:00Z")),
            Some(t("2024-05-01T18:00:00Z"))
        );
        assert_eq!(
            next_after(&s, chrono_tz::UTC, t("2024-05-01T12:00:00Z")),
            Some(t("2024-05-02T02:00:00Z"))
        );
        let every_second = parse_schedule("*/1 * * * * *").unwrap();
        assert_eq!(
            next_after(&every_second, SH, t("2024-05-01T12:00:00Z")),
            Some(t("2024-05-01T12:00:01Z"))
        );
    }

    /// The ticks of `expr` in Shanghai over the week from Sunday 2024-05-05 00:00 (local,
    /// included) to the next Sunday (excluded), as local weekdays.
    fn weekdays_in_shanghai(expr: &str) -> Vec<chrono::Weekday> {
        use chrono::Datelike as _;
        let s = parse_schedule(expr).unwrap();
        // A minute before Sunday 00:00 in Shanghai, and before the next.
        let mut at = t("2024-05-04T15:59:00Z");
        let end = t("2024-05-11T15:59:00Z");
        let mut days = Vec::new();
        while let Some(next) = next_after(&s, SH, at).filter(|n| *n < end) {
            days.push(next.with_timezone(&SH).weekday());
            at = next;
        }
        days
    }

    #[test]
    fn weekdays_follow_crontab() {
        use chrono::Weekday::*;
        // The former parser refused 0 and @weekly, and ran 1-5 from Sunday to Thursday.
        assert_eq!(weekdays_in_shanghai("0 9 * * 0"), [Sun]);
        assert_eq!(weekdays_in_shanghai("0 9 * * 7"), [Sun]);
        assert_eq!(weekdays_in_shanghai("0 9 * * SUN"), [Sun]);
        assert_eq!(weekdays_in_shanghai("@weekly"), [Sun]);
        assert_eq!(
            weekdays_in_shanghai("30 8 * * 1-5"),
            [Mon, Tue, Wed, Thu, Fri]
        );
        assert_eq!(weekdays_in_shanghai("30 8 * * 6"), [Sat]);
        // At the stated local time: 08:30 in Shanghai is 00:30 UTC.
        let s = parse_schedule("30 8 * * 1-5").unwrap();
        assert_eq!(
            next_after(&s, SH, t("2024-05-04T16:00:00Z")),
            Some(t("2024-05-06T00:30:00Z"))
        );
        // @weekly is Sunday midnight, local.
        let w = parse_schedule("@weekly").unwrap();
        assert_eq!(
            next_after(&w, SH, t("2024-05-01T00:00:00Z")),
            Some(t("2024-05-04T16:00:00Z"))
        );
    }

    #[test]
    fn after_downtime_an_overdue_job_runs_once_at_start() {
        let hourly = parse_schedule("@hourly").unwrap();
        let now = t("2024-05-01T12:30:00Z");
        // Last due at 07:00, five ticks missed: due now, once.
        assert_eq!(
            first_due(&hourly, SH, Some(t("2024-05-01T07:00:00Z")), now),
            Some(now)
        );
        // Last due at 12:00, the next tick (13:00) is still ahead: wait for it.
        assert_eq!(
            first_due(&hourly, SH, Some(t("2024-05-01T12:00:00Z")), now),
            Some(t("2024-05-01T13:00:00Z"))
        );
        // Never ran: run now.
        assert_eq!(first_due(&hourly, SH, None, now), Some(now));
    }

    #[test]
    fn jobs_follow_enabled_sources_and_include_the_push() {
        let text = crate::cli::demo::EXAMPLE_CONFIG;
        let mut config = Config::from_toml(text, std::path::Path::new("x.toml")).unwrap();
        let all = jobs(&config).unwrap();
        assert_eq!(all.len(), config.sources.len() + 1);
        assert_eq!(all.last().map(|j| j.kind.clone()), Some(JobKind::Push));
        config.sources[0].enabled = false;
        let some = jobs(&config).unwrap();
        assert!(!some
            .iter()
            .any(|j| j.kind == JobKind::Source(config.sources[0].name.clone())));
        config.sources[1].schedule = "61 * * * *".into();
        let err = jobs(&config).unwrap_err();
        assert!(err.key.contains(".schedule"), "{err}");
    }

    #[test]
    fn jitter_stays_within_bounds() {
        assert_eq!(jitter(0), std::time::Duration::ZERO);
        for _ in 0..50 {
            assert!(jitter(2) <= std::time::Duration::from_secs(2));
        }
    }
}
