//! Reviewer accounts, one-time sign-in links and sessions.
//!
//! Passwords are hashed with Argon2id (RustCrypto `argon2`, default parameters, a random salt
//! per hash, PHC strings). Link and session tokens are 32 random bytes shown once (in the
//! printed link, in the cookie) and stored only as their SHA-256. A name that fails to sign in
//! five times in a row is locked for fifteen minutes; an unknown name costs the same hash
//! work as a known one, so the answer does not tell which names exist.

use std::collections::BTreeSet;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use rand::RngCore as _;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::store::now_text;

use super::DeskError;

/// Failed sign-ins in a row before a name is locked, and for how long.
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// Shortest password a reviewer may set.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// One reviewer account.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reviewer {
    pub id: i64,
    pub name: String,
    /// Communities the reviewer may see; empty: every community.
    pub communities: Vec<String>,
    pub disabled: bool,
    pub has_password: bool,
    pub created_at: String,
    pub created_by: String,
}

impl Reviewer {
    /// The actor named in the audit trail and on decisions.
    pub fn actor(&self) -> String {
        format!("desk:{}", self.name)
    }

    /// Whether the reviewer may see something that concerns these communities: an
    /// unrestricted reviewer sees everything; a restricted one only what concerns their
    /// communities alone (and nothing whose community is unknown).
    pub fn may_see(&self, communities: &BTreeSet<String>) -> bool {
        self.communities.is_empty()
            || (!communities.is_empty() && communities.iter().all(|c| self.communities.contains(c)))
    }
}

/// A signed-in reviewer's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    pub reviewer: Reviewer,
    pub csrf: String,
}

/// A random token (32 bytes, URL-safe base64) and the SHA-256 hex under which it is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn at_after(d: Duration) -> String {
    let t = Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A reviewer name: 1-64 characters, letters (any script), digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<(), DeskError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DeskError::Invalid(format!(
            "reviewer name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reviewer> {
    let communities: String = r.get(2)?;
    Ok(Reviewer {
        id: r.get(0)?,
        name: r.get(1)?,
        communities: serde_json::from_str(&communities).unwrap_or_default(),
        disabled: r.get(3)?,
        has_password: r.get::<_, Option<String>>(4)?.is_some(),
        created_at: r.get(5)?,
        created_by: r.get(6)?,
    })
}

const COLS: &str = "id, name, communities, disabled, password_hash, created_at, created_by";

pub fn get(conn: &Connection, name: &str) -> Result<Option<Reviewer>, DeskError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM reviewers WHERE name = ?1"),
            [name],
            row,
        )
        .optional()?)
}

fn by_id(conn: &Connection, id: i64) -> Result<Option<Reviewer>, DeskError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM reviewers WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Reviewer>, DeskError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLS} FROM reviewers ORDER BY name"))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds an account (no password yet: set one with [`set_password`] or a link).
pub fn add(
    conn: &Connection,
    name: &str,
    communities: &[String],
    by: &str,
) -> Result<Reviewer, DeskError> {
    check_name(name)?;
    if get(conn, name)?.is_some() {
        return Err(DeskError::Invalid(format!(
            "reviewer {name:?} exists (`review users list`); `review users link {name}` issues a new sign-in link"
        )));
    }
    let communities = clean_communities(communities);
    conn.execute(
        "INSERT INTO reviewers (name, communities, created_at, created_by) VALUES (?1, ?2, ?3, ?4)",
        params![
            name,
            serde_json::to_string(&communities).unwrap_or_else(|_| "[]".into()),
            now_text(),
            by
        ],
    )?;
    get(conn, name)?.ok_or_else(|| DeskError::NoReviewer(name.into()))
}

fn clean_communities(communities: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = communities
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    set.into_iter().collect()
}

/// Replaces the communities a reviewer may see (empty: all).
pub fn set_communities(
    conn: &Connection,
    name: &str,
    communities: &[String],
) -> Result<(), DeskError> {
    let c = clean_communities(communities);
    let n = conn.execute(
        "UPDATE reviewers SET communities = ?2 WHERE name = ?1",
        params![
            name,
            serde_json::to_string(&c).unwrap_or_else(|_| "[]".into())
        ],
    )?;
    if n == 0 {
        return Err(DeskError::NoReviewer(name.into()));
    }
    Ok(())
}

/// Disables an account (kept for the record of its decisions), ending its sessions and links.
pub fn disable(conn: &Connection, name: &str) -> Result<(), DeskError> {
    let r = get(conn, name)?.ok_or_else(|| DeskError::NoReviewer(name.into()))?;
    conn.execute("UPDATE reviewers SET disabled = 1 WHERE id = ?1", [r.id])?;
    conn.execute("DELETE FROM desk_sessions WHERE reviewer_id = ?1", [r.id])?;
    conn.execute("DELETE FROM reviewer_links WHERE reviewer_id = ?1", [r.id])?;
    Ok(())
}

/// Argon2id hash of a password (CPU-heavy: call off the async threads).
pub fn hash_password(password: &str) -> Result<String, DeskError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(DeskError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DeskError::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches a stored hash (constant time inside argon2).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fixed hash that no password matches in practice, verified for unknown names so that
/// they cost the same time as known ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"decoy password nobody has", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Stores a password hash (made by [`hash_password`]) and clears the lock.
pub fn set_password_hash(conn: &Connection, name: &str, hash: &str) -> Result<(), DeskError> {
    let n = conn.execute(
        "UPDATE reviewers SET password_hash = ?2, failed_logins = 0, locked_until = NULL WHERE name = ?1",
        params![name, hash],
    )?;
    if n == 0 {
        return Err(DeskError::NoReviewer(name.into()));
    }
    // A new password ends the sessions made with the old one.
    conn.execute(
        "DELETE FROM desk_sessions WHERE reviewer_id = (SELECT id FROM reviewers WHERE name = ?1)",
        [name],
    )?;
    Ok(())
}

/// Issues a one-time sign-in link token for `name`, valid for `ttl`; earlier unused links of
/// the account stop working.
pub fn issue_link(conn: &Connection, name: &str, ttl: Duration) -> Result<String, DeskError> {
    let r = get(conn, name)?.ok_or_else(|| DeskError::NoReviewer(name.into()))?;
    if r.disabled {
        return Err(DeskError::Invalid(format!("reviewer {name:?} is disabled")));
    }
    conn.execute("DELETE FROM reviewer_links WHERE reviewer_id = ?1", [r.id])?;
    let (token, hash) = new_token();
    conn.execute(
        "INSERT INTO reviewer_links (token_hash, reviewer_id, expires_at) VALUES (?1, ?2, ?3)",
        params![hash, r.id, at_after(ttl)],
    )?;
    Ok(token)
}

/// The reviewer a one-time link belongs to, if it is unused, unexpired and the account
/// enabled.
pub fn link_reviewer(conn: &Connection, token: &str) -> Result<Option<Reviewer>, DeskError> {
    let id: Option<i64> = conn
        .query_row(
            "SELECT reviewer_id FROM reviewer_links WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![token_hash(token), now_text()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match id {
        Some(id) => by_id(conn, id)?.filter(|r| !r.disabled),
        None => None,
    })
}

/// Uses up a link: the account's password becomes `hash`.
pub fn redeem_link(conn: &Connection, token: &str, hash: &str) -> Result<Reviewer, DeskError> {
    let r = link_reviewer(conn, token)?.ok_or(DeskError::BadLink)?;
    conn.execute(
        "UPDATE reviewer_links SET used_at = ?2 WHERE token_hash = ?1",
        params![token_hash(token), now_text()],
    )?;
    set_password_hash(conn, &r.name, hash)?;
    Ok(r)
}

/// What a sign-in attempt needs from the store before the (slow) hash check.
pub struct LoginCheck {
    pub reviewer: Option<Reviewer>,
    pub hash: String,
    pub locked: bool,
}

pub fn login_check(conn: &Connection, name: &str) -> Result<LoginCheck, DeskError> {
    let found: Option<(i64, Option<String>, Option<String>, bool)> = conn
        .query_row(
            "SELECT id, password_hash, locked_until, disabled FROM reviewers WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let now = now_text();
    Ok(match found {
        Some((id, Some(hash), locked_until, false)) => LoginCheck {
            reviewer: by_id(conn, id)?,
            hash,
            locked: locked_until.is_some_and(|l| l > now),
        },
        _ => LoginCheck {
            reviewer: None,
            hash: decoy_hash().to_string(),
            locked: false,
        },
    })
}

/// Records the outcome of a sign-in attempt (a failure counts towards the lock).
pub fn login_outcome(conn: &Connection, id: i64, ok: bool) -> Result<(), DeskError> {
    if ok {
        conn.execute(
            "UPDATE reviewers SET failed_logins = 0, locked_until = NULL WHERE id = ?1",
            [id],
        )?;
    } else {
        conn.execute(
            "UPDATE reviewers SET failed_logins = failed_logins + 1,
                 locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 ELSE locked_until END
             WHERE id = ?1",
            params![id, MAX_FAILED_LOGINS, at_after(LOCK_FOR)],
        )?;
        conn.execute(
            "UPDATE reviewers SET failed_logins = 0 WHERE id = ?1 AND failed_logins >= ?2",
            params![id, MAX_FAILED_LOGINS],
        )?;
    }
    Ok(())
}

/// Session lifetimes: idle (slides with each request) and absolute.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: Duration,
    pub max: Duration,
}

/// Starts a session; returns the cookie token.
pub fn start_session(
    conn: &Connection,
    reviewer_id: i64,
    life: Lifetimes,
) -> Result<String, DeskError> {
    let (token, hash) = new_token();
    let (csrf, _) = new_token();
    let now = now_text();
    conn.execute(
        "INSERT INTO desk_sessions (token_hash, reviewer_id, csrf, created_at, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![hash, reviewer_id, csrf, now, at_after(life.idle.min(life.max))],
    )?;
    // Expired sessions of anyone go with each new one.
    conn.execute("DELETE FROM desk_sessions WHERE expires_at <= ?1", [now])?;
    Ok(token)
}

/// The live session of a cookie token (sliding its idle expiry, never past the absolute
/// one); `None` when unknown, expired or the account is disabled.
pub fn session(
    conn: &Connection,
    token: &str,
    life: Lifetimes,
) -> Result<Option<Session>, DeskError> {
    let hash = token_hash(token);
    let now = now_text();
    let found: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT reviewer_id, csrf, created_at FROM desk_sessions WHERE token_hash = ?1 AND expires_at > ?2",
            params![hash, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((rid, csrf, created)) = found else {
        return Ok(None);
    };
    let Some(reviewer) = by_id(conn, rid)?.filter(|r| !r.disabled) else {
        return Ok(None);
    };
    let hard_end = chrono::DateTime::parse_from_rfc3339(&created)
        .map(|c| c.with_timezone(&Utc) + chrono::Duration::from_std(life.max).unwrap_or_default())
        .unwrap_or_else(|_| Utc::now());
    let idle_end = Utc::now() + chrono::Duration::from_std(life.idle).unwrap_or_default();
    let end = idle_end
        .min(hard_end)
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    conn.execute(
        "UPDATE desk_sessions SET last_seen = ?2, expires_at = ?3 WHERE token_hash = ?1",
        params![hash, now, end],
    )?;
    Ok(Some(Session {
        token_hash: hash,
        reviewer,
        csrf,
    }))
}

pub fn end_session(conn: &Connection, token_hash: &str) -> Result<(), DeskError> {
    conn.execute(
        "DELETE FROM desk_sessions WHERE token_hash = ?1",
        [token_hash],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(matches!(
            hash_password("short"),
            Err(DeskError::WeakPassword)
        ));
    }

    #[test]
    fn a_link_works_once_and_not_after_expiry() {
        let (_d, s) = store();
        let c = s.conn();
        add(c, "wang", &["豫章社区".into()], "root").unwrap();
        let t = issue_link(c, "wang", Duration::from_secs(60)).unwrap();
        assert_eq!(link_reviewer(c, &t).unwrap().unwrap().name, "wang");
        let h = hash_password("a long enough password").unwrap();
        redeem_link(c, &t, &h).unwrap();
        assert!(link_reviewer(c, &t).unwrap().is_none(), "used once");
        let t2 = issue_link(c, "wang", Duration::from_secs(0)).unwrap();
        assert!(link_reviewer(c, &t2).unwrap().is_none(), "expired");
        assert!(get(c, "wang").unwrap().unwrap().has_password);
    }

    #[test]
    fn five_failures_lock_the_name() {
        let (_d, s) = store();
        let c = s.conn();
        let r = add(c, "li", &[], "root").unwrap();
        set_password_hash(c, "li", &hash_password("a long enough password").unwrap()).unwrap();
        for _ in 0..MAX_FAILED_LOGINS {
            assert!(!login_check(c, "li").unwrap().locked);
            login_outcome(c, r.id, false).unwrap();
        }
        assert!(login_check(c, "li").unwrap().locked);
        // An unknown name is answered like a known one: a hash to check, no reviewer.
        let unknown = login_check(c, "nobody").unwrap();
        assert!(unknown.reviewer.is_none() && unknown.hash.starts_with("$argon2id$"));
    }

    #[test]
    fn sessions_expire_and_end_with_the_account() {
        let (_d, s) = store();
        let c = s.conn();
        let r = add(c, "zhao", &[], "root").unwrap();
        let life = Lifetimes {
            idle: Duration::from_secs(600),
            max: Duration::from_secs(3600),
        };
        let t = start_session(c, r.id, life).unwrap();
        assert!(session(c, &t, life).unwrap().is_some());
        assert!(session(c, "forged", life).unwrap().is_none());
        let short = Lifetimes {
            idle: Duration::from_secs(0),
            max: Duration::from_secs(0),
        };
        let t0 = start_session(c, r.id, short).unwrap();
        assert!(session(c, &t0, short).unwrap().is_none(), "expired");
        disable(c, "zhao").unwrap();
        assert!(session(c, &t, life).unwrap().is_none(), "disabled account");
    }

    #[test]
    fn restriction_covers_every_community_an_item_concerns() {
        let mut r = Reviewer {
            id: 1,
            name: "x".into(),
            communities: vec!["A社区".into()],
            disabled: false,
            has_password: true,
            created_at: String::new(),
            created_by: String::new(),
        };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(r.may_see(&set(&["A社区"])));
        assert!(!r.may_see(&set(&["A社区", "B社区"])));
        assert!(!r.may_see(&set(&[])));
        r.communities.clear();
        assert!(r.may_see(&set(&["B社区"])) && r.may_see(&set(&[])));
    }
}
