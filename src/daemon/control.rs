//! The control socket: a Unix domain socket (owner-only) speaking JSON lines. A client sends
//! one request line and reads response lines until the final one.
//!
//! ```text
//! → {"cmd":"ping"}
//! ← {"type":"pong","pid":1234,"version":"0.1.0","generation":0,...}
//! → {"cmd":"sync","sources":["eldercare"],"full":false,"push":true}
//! ← {"type":"waiting","source":"eldercare","holder_pid":1234}       (only if another sync holds it)
//! ← {"type":"progress","progress":{"event":"stream_started",...}}   (progress::ProgressEvent)
//! ← {"type":"result","ok":true,"interrupted":false,"report":{...}} (pipeline::SyncReport)
//! ← {"type":"error","message":"..."}                               (instead of a result)
//! ← {"type":"interrupted","message":"...","completed":[{"source":..,"stream":..,"ok":..,
//!    "records":..}],"not_completed":["source/stream",...]}           (the daemon stopped and
//!                                                                    abandoned the sync)
//! ```
//!
//! `page` progress is sent at most once a second per stream; `stream_started`,
//! `stream_finished`, `reconciled` and `pushed` always. A `result` with `"interrupted":true`
//! means a stop (SIGTERM) let the streams under way finish but started no others and left
//! reconcile and push to the next sync (`report.not_started` lists the streams).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::Config;

/// Where the socket lives: `[daemon] control_socket`, else `$RUNTIME_DIRECTORY/control.sock`
/// (systemd's RuntimeDirectory=), else `/run/community-sync/control.sock`.
pub fn socket_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.daemon.control_socket {
        return p.clone();
    }
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        let dir = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if !dir.is_empty() {
            return PathBuf::from(dir).join("control.sock");
        }
    }
    PathBuf::from("/run/community-sync/control.sock")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Sync {
        #[serde(default)]
        sources: Vec<String>,
        #[serde(default)]
        full: bool,
        #[serde(default = "yes")]
        push: bool,
        /// Apply deletions of full refreshes beyond their `max_delete`.
        #[serde(default)]
        confirm_deletes: bool,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("control socket {0}: another daemon is running and answers on it; stop it first")]
    InUse(PathBuf),
    #[error("control socket {path}: the daemon sent an unreadable line: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error(
        "control socket {0}: the daemon closed the connection before the result (did it stop?)"
    )]
    Closed(PathBuf),
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Binds the socket with owner-only permissions, replacing a stale socket file left by a
/// daemon that died (but refusing to steal one a live daemon answers on).
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(path, "cannot create its directory"))?;
            set_mode(dir, 0o700).map_err(io_err(path, "cannot restrict its directory"))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io_err(path, "cannot remove the stale socket"))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err(path, "cannot listen"))?;
    set_mode(path, 0o600).map_err(io_err(path, "cannot restrict permissions"))?;
    Ok(listener)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A connection to a running daemon.
pub struct Client {
    path: PathBuf,
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    /// Connects if a daemon answers on `path`; `None` when none runs (no socket, or a stale one).
    pub async fn connect(path: &Path) -> Result<Option<Client>, ControlError> {
        match UnixStream::connect(path).await {
            Ok(s) => {
                let (r, w) = s.into_split();
                Ok(Some(Client {
                    path: path.to_path_buf(),
                    reader: BufReader::new(r),
                    writer: w,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(ControlError::Io {
                path: path.to_path_buf(),
                what: "cannot connect",
                source: e,
            }),
        }
    }

    pub async fn send(&mut self, req: &Request) -> Result<(), ControlError> {
        let mut line = serde_json::to_string(req).map_err(|e| ControlError::Protocol {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(io_err(&self.path, "cannot send the request"))
    }

    /// The next response line, or `None` at end of stream.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ControlError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .map_err(io_err(&self.path, "cannot read the response"))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ControlError::Protocol {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Sends a request and reads until the final line (`result`, `pong`, `error` or
    /// `interrupted`), calling
    /// `on_line` for each line before it.
    pub async fn request(
        &mut self,
        req: &Request,
        mut on_line: impl FnMut(&serde_json::Value),
    ) -> Result<serde_json::Value, ControlError> {
        self.send(req).await?;
        loop {
            match self.next().await? {
                None => return Err(ControlError::Closed(self.path.clone())),
                Some(v) => match v.get("type").and_then(|t| t.as_str()) {
                    Some("result" | "pong" | "error" | "interrupted") => return Ok(v),
                    _ => on_line(&v),
                },
            }
        }
    }
}

/// Writes one response line.
pub async fn write_line<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    value: &serde_json::Value,
) -> io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults() {
        let r: Request = serde_json::from_str(r#"{"cmd":"sync","sources":["eldercare"]}"#).unwrap();
        assert_eq!(
            r,
            Request::Sync {
                sources: vec!["eldercare".into()],
                full: false,
                push: true,
                confirm_deletes: false
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"ping"}"#).unwrap();
        assert_eq!(r, Request::Ping);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }

    #[tokio::test]
    async fn socket_is_owner_only_and_a_live_one_is_not_stolen() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("control.sock");
        assert!(
            Client::connect(&path).await.unwrap().is_none(),
            "no daemon yet"
        );
        let listener = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path).await, Err(ControlError::InUse(_))));
        drop(listener);
        // A stale socket file (nobody listening) is replaced.
        let again = bind(&path).await;
        assert!(again.is_ok());
    }
}
