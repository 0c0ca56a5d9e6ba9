//! Leases: a row per named resource (`source:<name>`) saying who holds it until when. Two
//! syncs of one source never overlap, whoever started them: the daemon's scheduler, a manual
//! sync handed to it, or a `community-sync sync` run in its own process against the same store.
//!
//! A holder renews its lease while it works; a holder that dies stops renewing and its lease
//! expires, so a crash never blocks a source for longer than the time to live. A holder seen
//! to be dead sooner (its process is gone, in our PID namespace) is taken over at once: an
//! operator who `kill -9`s a stuck sync and starts another does not wait out the lease.
//! Acquisition and take-over are each one conditional statement, atomic across processes
//! (SQLite serialises writers).
//!
//! The daemon also keeps, per scheduled job, when it was last due and last finished
//! (`schedule_state`), so after downtime an overdue job runs once at start.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension};

use super::{Result, Store};

/// The lease name for a source.
pub fn source_lease(source: &str) -> String {
    format!("source:{source}")
}

/// A unique holder token for this process and purpose: `pid@space:purpose:random`, where the
/// space names the PID namespace and the boot of the kernel that gave out the pid (see
/// [`process_space`]): only a process in the same space can judge whether the pid still runs.
pub fn holder_token(purpose: &str) -> String {
    use rand::Rng as _;
    let n: u64 = rand::rng().random();
    format!("{}:{purpose}:{n:016x}", this_process())
}

/// `pid@space` of this process: the start of every holder token it hands out.
fn this_process() -> String {
    format!("{}@{}", std::process::id(), process_space().unwrap_or("?"))
}

/// Where a pid means one process: the PID namespace (the inode of `/proc/self/ns/pid`) and
/// the kernel's boot id. Namespace inodes are unique only within one running kernel (the
/// initial namespace has the same number on every machine), so the boot id tells two machines,
/// or one machine before and after a reboot, apart. `None` if either is unreadable.
fn process_space() -> Option<&'static str> {
    static SPACE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SPACE
        .get_or_init(|| {
            let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let inode = link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?;
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let boot: String = boot.trim().chars().filter(|c| *c != '-').collect();
            let plain = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric());
            (plain(inode) && plain(&boot)).then(|| format!("{inode}-{boot}"))
        })
        .as_deref()
}

/// Whether the process behind `pid` is gone: only when asking the kernel is meaningful (same
/// PID namespace) and it says "no such process". A process we may not signal is alive.
fn process_is_gone(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now and now + `ttl`, stamped.
fn window(ttl: std::time::Duration) -> (String, String) {
    let now = Utc::now();
    let expires = now + ChronoDuration::from_std(ttl).unwrap_or(ChronoDuration::seconds(60));
    (stamp(now), stamp(expires))
}

/// What asking for a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// It was free, expired, or already ours.
    Free,
    /// Taken over from this holder, whose process is gone.
    FromDead(LeaseHolder),
    /// Someone else holds it (`None`: it was released in the meantime; ask again).
    Held(Option<LeaseHolder>),
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseHolder {
    pub holder: String,
    pub pid: i64,
    pub acquired_at: String,
    pub expires_at: String,
}

impl LeaseHolder {
    /// The holder's process has died (it was killed, or the machine lost it) though its lease
    /// has not expired yet: judged only for a holder in our PID namespace on this boot of this
    /// machine (see `holder_token`), never for one we cannot see.
    pub fn is_dead(&self) -> bool {
        let Some(ours) = process_space() else {
            return false;
        };
        let Some((pid_part, _)) = self.holder.split_once(':') else {
            return false;
        };
        let Some((pid, space)) = pid_part.split_once('@') else {
            return false;
        };
        space == ours
            && pid.parse::<i64>().ok() == Some(self.pid)
            && self.pid != i64::from(std::process::id())
            && process_is_gone(self.pid)
    }
}

/// When a scheduled job was last due, started and finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleState {
    pub last_due: Option<String>,
    pub last_started: Option<String>,
    pub last_finished: Option<String>,
    pub last_ok: Option<bool>,
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl` if it is free, expired, or already held
    /// by `holder` (then it is renewed). Returns whether `holder` now holds it.
    pub fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let (now, expires) = window(ttl);
        let n = self.conn().execute(
            "INSERT INTO leases (name, holder, pid, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid,
                 acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END,
                 expires_at = excluded.expires_at
             WHERE leases.expires_at < ?4 OR leases.holder = ?2",
            params![name, holder, std::process::id() as i64, now, expires],
        )?;
        Ok(n == 1)
    }

    /// Takes the lease `name` for `holder` as [`Store::try_acquire_lease`] does, and also from
    /// a holder whose process is gone ([`LeaseHolder::is_dead`]): a sync killed mid-run
    /// (`kill -9`, OOM) keeps its lease until it expires, and waiting that out helps nobody.
    pub fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Acquired> {
        if self.try_acquire_lease(name, holder, ttl)? {
            return Ok(Acquired::Free);
        }
        match self.lease_holder(name)? {
            Some(dead) if dead.is_dead() => {
                if self.take_over_lease(name, &dead.holder, holder, ttl)? {
                    Ok(Acquired::FromDead(dead))
                } else {
                    // Someone else took it first.
                    Ok(Acquired::Held(self.lease_holder(name)?))
                }
            }
            other => Ok(Acquired::Held(other)),
        }
    }

    /// Takes the lease `name` from `dead` for `holder`. Returns false if `dead` no longer
    /// holds it (someone else took it first, or it was released).
    fn take_over_lease(
        &self,
        name: &str,
        dead: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let (now, expires) = window(ttl);
        let n = self.conn().execute(
            "UPDATE leases SET holder = ?3, pid = ?4, acquired_at = ?5, expires_at = ?6
             WHERE name = ?1 AND holder = ?2",
            params![name, dead, holder, std::process::id() as i64, now, expires],
        )?;
        Ok(n == 1)
    }

    /// Extends a lease `holder` holds. Returns false when it was lost (expired and taken).
    pub fn renew_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let (_, expires) = window(ttl);
        let n = self.conn().execute(
            "UPDATE leases SET expires_at = ?3 WHERE name = ?1 AND holder = ?2",
            params![name, holder, expires],
        )?;
        Ok(n == 1)
    }

    /// Gives a lease back (a no-op when `holder` does not hold it).
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            params![name, holder],
        )?;
        Ok(())
    }

    /// The current, unexpired holder of a lease.
    pub fn lease_holder(&self, name: &str) -> Result<Option<LeaseHolder>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT holder, pid, acquired_at, expires_at FROM leases WHERE name = ?1 AND expires_at >= ?2",
                params![name, stamp(Utc::now())],
                |r| {
                    Ok(LeaseHolder {
                        holder: r.get(0)?,
                        pid: r.get(1)?,
                        acquired_at: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Releases every lease this process holds (at shutdown): those whose holder token it
    /// handed out, not merely those with its pid (a process in another PID namespace may
    /// have the same one).
    pub fn release_leases_of_this_process(&self) -> Result<usize> {
        let prefix = format!("{}:", this_process());
        Ok(self.conn().execute(
            "DELETE FROM leases WHERE substr(holder, 1, length(?1)) = ?1",
            params![prefix],
        )?)
    }

    /// Runs left `running` of sources nobody holds a live lease on are marked `interrupted`
    /// (their process died). Runs of leased sources belong to a live sync elsewhere.
    pub fn mark_interrupted_unleased_runs(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1
             WHERE status = 'running'
               AND ('source:' || source) NOT IN (SELECT name FROM leases WHERE expires_at >= ?1)",
            params![stamp(Utc::now())],
        )?)
    }

    /// With the lease of `source` held, any run of it still `running` is a dead one.
    pub fn mark_interrupted_runs_of(&self, source: &str) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?2 WHERE status = 'running' AND source = ?1",
            params![source, stamp(Utc::now())],
        )?)
    }

    pub fn schedule_state(&self, job: &str) -> Result<ScheduleState> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_due, last_started, last_finished, last_ok FROM schedule_state WHERE job = ?1",
                params![job],
                |r| {
                    Ok(ScheduleState {
                        last_due: r.get(0)?,
                        last_started: r.get(1)?,
                        last_finished: r.get(2)?,
                        last_ok: r.get(3)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Records that a scheduled job due at `due` started now.
    pub fn schedule_started(&self, job: &str, due: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "INSERT INTO schedule_state (job, last_due, last_started) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET last_due = ?2, last_started = ?3",
            params![job, stamp(due), stamp(Utc::now())],
        )?;
        Ok(())
    }

    /// Records that a scheduled job finished now.
    pub fn schedule_finished(&self, job: &str, ok: bool) -> Result<()> {
        self.conn().execute(
            "INSERT INTO schedule_state (job, last_finished, last_ok) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET last_finished = ?2, last_ok = ?3",
            params![job, stamp(Utc::now()), ok],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_held_lease_is_refused_to_others_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a = Store::open(&path).unwrap();
        // A second connection stands for another process.
        let b = Store::open(&path).unwrap();
        let name = source_lease("onecard");
        assert!(a
            .try_acquire_lease(&name, "a", Duration::from_secs(60))
            .unwrap());
        assert!(!b
            .try_acquire_lease(&name, "b", Duration::from_secs(60))
            .unwrap());
        assert_eq!(
            b.lease_holder(&name).unwrap().map(|h| h.holder).as_deref(),
            Some("a")
        );
        // Re-acquiring by the holder renews.
        assert!(a
            .try_acquire_lease(&name, "a", Duration::from_secs(60))
            .unwrap());
        assert!(a.renew_lease(&name, "a", Duration::from_secs(60)).unwrap());
        assert!(!b.renew_lease(&name, "b", Duration::from_secs(60)).unwrap());
        a.release_lease(&name, "b").unwrap();
        assert!(
            !b.try_acquire_lease(&name, "b", Duration::from_secs(60))
                .unwrap(),
            "only the holder releases"
        );
        a.release_lease(&name, "a").unwrap();
        assert!(b
            .try_acquire_lease(&name, "b", Duration::from_secs(60))
            .unwrap());
        // Another source is independent.
        assert!(a
            .try_acquire_lease(&source_lease("health"), "a", Duration::from_secs(60))
            .unwrap());
    }

    #[test]
    fn an_expired_lease_can_be_taken() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(s.try_acquire_lease("x", "dead", Duration::ZERO).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.lease_holder("x").unwrap(), None);
        let me = holder_token("test");
        assert!(s
            .try_acquire_lease("x", &me, Duration::from_secs(60))
            .unwrap());
        assert!(!s.renew_lease("x", "dead", Duration::from_secs(60)).unwrap());
        // Same pid, another PID namespace: not ours to release.
        let twin = format!("{}@1-0:job1:01", std::process::id());
        assert!(s
            .try_acquire_lease("y", &twin, Duration::from_secs(60))
            .unwrap());
        assert_eq!(s.release_leases_of_this_process().unwrap(), 1);
        assert_eq!(s.lease_holder("x").unwrap(), None);
        assert_eq!(s.lease_holder("y").unwrap().unwrap().holder, twin);
    }

    /// A pid that was just in use and is gone (its process exited and was reaped).
    fn gone_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_lease_of_a_dead_process_is_taken_over_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let ns = process_space().expect("tests run on Linux with /proc");
        let insert = |name: &str, holder: &str, pid: i64| {
            s.conn()
                .execute(
                    "INSERT INTO leases (name, holder, pid, acquired_at, expires_at)
                     VALUES (?1, ?2, ?3, '2026-01-01T00:00:00.000Z', '2999-01-01T00:00:00.000Z')",
                    params![name, holder, pid],
                )
                .unwrap();
        };
        let dead = gone_pid();
        insert("source:a", &format!("{dead}@{ns}:cli:01"), dead.into());
        // Same dead pid, but from another PID namespace, or another machine (or boot) with
        // the same namespace number: not ours to judge.
        insert("source:b", &format!("{dead}@1-0:cli:02"), dead.into());
        let (inode, _) = ns.split_once('-').unwrap();
        insert(
            "source:e",
            &format!("{dead}@{inode}-00000000000000000000000000000000:cli:05"),
            dead.into(),
        );
        // A live process: pid 1 (init) always exists.
        insert("source:c", &format!("1@{ns}:job1:03"), 1);
        // A token from before namespaces were recorded.
        insert("source:d", &format!("{dead}:cli:04"), dead.into());
        let holder = |name: &str| s.lease_holder(name).unwrap().unwrap();
        assert!(holder("source:a").is_dead());
        assert!(!holder("source:b").is_dead(), "another namespace");
        assert!(!holder("source:e").is_dead(), "another machine or boot");
        assert!(!holder("source:c").is_dead(), "a live process");
        assert!(!holder("source:d").is_dead(), "no namespace in the token");
        // Not free by the ordinary rule: it has not expired.
        assert!(!s
            .try_acquire_lease("source:a", "me", Duration::from_secs(60))
            .unwrap());
        // Judged by the lease itself: a live or foreign holder keeps it.
        assert_eq!(
            s.acquire_lease("source:b", "me", Duration::from_secs(60))
                .unwrap(),
            Acquired::Held(Some(holder("source:b")))
        );
        let old = holder("source:a").holder;
        assert!(s
            .take_over_lease("source:a", &old, "me", Duration::from_secs(60))
            .unwrap());
        assert_eq!(holder("source:a").holder, "me");
        assert_eq!(holder("source:a").pid, i64::from(std::process::id()));
        // A second taker racing on the same stale view finds it gone.
        assert!(!s
            .take_over_lease("source:a", &old, "you", Duration::from_secs(60))
            .unwrap());
        assert_eq!(holder("source:a").holder, "me");
    }

    #[test]
    fn our_own_holder_tokens_name_our_pid_and_namespace() {
        let token = holder_token("cli");
        let (pid_ns, rest) = token.split_once(':').unwrap();
        assert_eq!(
            pid_ns,
            format!("{}@{}", std::process::id(), process_space().unwrap())
        );
        assert!(rest.starts_with("cli:"), "{token}");
        let me = LeaseHolder {
            holder: token,
            pid: i64::from(std::process::id()),
            acquired_at: String::new(),
            expires_at: String::new(),
        };
        assert!(!me.is_dead(), "this process is alive");
    }

    #[test]
    fn only_runs_of_unleased_sources_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let live = s
            .begin_run("onecard", "cardholders", "sync", "schedule")
            .unwrap();
        let dead = s
            .begin_run("health", "patients", "sync", "schedule")
            .unwrap();
        assert!(s
            .try_acquire_lease(&source_lease("onecard"), "other", Duration::from_secs(60))
            .unwrap());
        assert_eq!(s.mark_interrupted_unleased_runs().unwrap(), 1);
        let status = |id: i64| -> String {
            s.conn()
                .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(status(dead), "interrupted");
        assert_eq!(status(live), "running");
        assert_eq!(s.mark_interrupted_runs_of("onecard").unwrap(), 1);
        assert_eq!(status(live), "interrupted");
    }

    #[test]
    fn schedule_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(
            s.schedule_state("source:onecard").unwrap(),
            ScheduleState::default()
        );
        let due = DateTime::parse_from_rfc3339("2024-05-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        s.schedule_started("source:onecard", due).unwrap();
        s.schedule_finished("source:onecard", true).unwrap();
        let st = s.schedule_state("source:onecard").unwrap();
        assert_eq!(st.last_due.as_deref(), Some("2024-05-01T02:00:00.000Z"));
        assert!(st.last_started.is_some() && st.last_finished.is_some());
        assert_eq!(st.last_ok, Some(true));
    }
}
