//! The review desk: the review queue as a small web page for the community workers who
//! know the residents (`community-sync review serve`).
//!
//! Server-rendered HTML (axum), one stylesheet and one small script embedded in the binary,
//! no third-party assets: it works on an intranet with no internet. It listens on 127.0.0.1
//! (or a Unix socket, for a reverse proxy) and serves reviewers with accounts made from the
//! CLI (`review users …`).
//!
//! - `accounts`: reviewers (Argon2id passwords, one-time sign-in links, community
//!   restrictions), sessions (idle and absolute expiry).
//! - `queue`: what a reviewer may see: open items, each with its records side by side, the
//!   matcher's explanation (through one adapter, `queue::explain`), the decisions on it.
//! - `pages` / `text`: the HTML, Chinese first with English beside.
//! - `http`: routes, sign-in, CSRF tokens on every action, security headers.
//!
//! Invariants: decisions go through `reconcile::review::decide`, the CLI's path (one home
//! for decisions), with the reviewer as actor (`desk:NAME`) and their reason; a reviewer
//! restricted to communities sees and decides only items whose every shown record is in
//! them; personal values are masked unless one record is revealed, and each reveal is an
//! audit row (`review_reveal`, who and when); pages with personal data are never cached.

pub mod accounts;
mod http;
mod pages;
pub mod queue;
mod text;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Transaction;

use crate::config::Config;
use crate::reconcile::review::ReviewError;
use crate::store::{Store, StoreError};

pub use accounts::Lifetimes;
pub use http::router;

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("reviewer {0:?} does not exist (see `community-sync review users list`)")]
    NoReviewer(String),
    #[error(
        "the password is too short: use at least {} characters",
        accounts::MIN_PASSWORD_CHARS
    )]
    WeakPassword,
    #[error("this sign-in link is unknown, used or expired; issue a new one with `community-sync review users link NAME`")]
    BadLink,
    #[error("{0}")]
    Invalid(String),
    #[error("the review desk cannot listen on {addr}: {source}. Choose another address with --listen (or --socket), or stop what holds it.")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the review desk stopped: {0}")]
    Serve(std::io::Error),
    #[error("store: a thread panicked while holding it; restart the review desk")]
    Poisoned,
}

impl From<rusqlite::Error> for DeskError {
    fn from(e: rusqlite::Error) -> Self {
        DeskError::Store(StoreError::from(e))
    }
}

/// The desk's one call into the audit trail (reveals, account changes): the reviewer
/// (`Actor::named`) or the process's user as actor, details without personal data.
pub fn audit(
    tx: &Transaction<'_>,
    codec: &crate::store::Codec,
    actor: &crate::audit::Actor,
    kind: &str,
    details: &serde_json::Value,
) -> Result<(), DeskError> {
    crate::audit::append(tx, codec, kind, actor, details)?;
    Ok(())
}

/// How the desk runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub life: Lifetimes,
    /// Cookies marked `Secure` (set when served over HTTPS through a proxy).
    pub secure_cookies: bool,
    /// Items per page of the queue.
    pub per_page: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            life: Lifetimes {
                idle: std::time::Duration::from_secs(30 * 60),
                max: std::time::Duration::from_secs(12 * 3600),
            },
            secure_cookies: false,
            per_page: 50,
        }
    }
}

/// What the handlers share: the store (the daemon's, when the desk runs inside it), the
/// config, the options.
#[derive(Clone)]
pub struct Desk {
    pub store: Arc<Mutex<Store>>,
    pub config: Arc<Config>,
    pub opts: Arc<Options>,
}

/// Where the desk listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "http://{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listener.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Bound {
    /// Where it listens (the port chosen for `127.0.0.1:0`).
    pub fn listen(&self) -> Listen {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map(Listen::Tcp)
                .unwrap_or(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))),
            Bound::Unix(_, p) => Listen::Unix(p.clone()),
        }
    }
}

/// Binds the listener. A Unix socket left by an earlier run is replaced; the new one is
/// readable and writable by owner and group (the proxy's).
pub async fn bind(listen: &Listen) -> Result<Bound, DeskError> {
    let err = |source| DeskError::Bind {
        addr: listen.to_string(),
        source,
    };
    match listen {
        Listen::Tcp(a) => Ok(Bound::Tcp(
            tokio::net::TcpListener::bind(a).await.map_err(err)?,
        )),
        Listen::Unix(p) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(p).map_err(err)?;
            }
            let l = tokio::net::UnixListener::bind(p).map_err(err)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
            Ok(Bound::Unix(l, p.clone()))
        }
    }
}

/// Serves the desk until `shutdown` resolves.
pub async fn serve(
    desk: Desk,
    bound: Bound,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DeskError> {
    let app = router(desk);
    match bound {
        Bound::Tcp(l) => axum::serve(l, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(DeskError::Serve),
        Bound::Unix(l, path) => {
            let r = axum::serve(l, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(DeskError::Serve);
            let _ = std::fs::remove_file(path);
            r
        }
    }
}
