//! Helpers for the daemon tests: a config for a running simulator with per-test schedules, the
//! real binary started as `run`, its control socket, signals and the store.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use community_sync::sim::{Sim, SimOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_community-sync");

/// A guard against hangs only (tests make no timing assertions): generous on a loaded machine.
const HANG_GUARD: Duration = Duration::from_secs(120);

pub async fn sim(residents: usize) -> Sim {
    Sim::start(SimOptions {
        seed: 11,
        residents,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

/// The config of a test: its text (to edit and rewrite), its path, the socket and the store.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub store: PathBuf,
    pub text: String,
}

impl Setup {
    /// A config for `sim` with every source on `source_schedule`, the push on `push_schedule`,
    /// settle 0, a control socket in the temp dir, and the given shutdown timeout.
    pub fn new(
        sim: &Sim,
        source_schedule: &str,
        push_schedule: &str,
        shutdown_timeout_secs: u64,
    ) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store.db");
        let config = community_sync::cli::demo::write_sim_config(sim, dir.path(), &store)
            .expect("config written");
        let socket = dir.path().join("run").join("control.sock");
        let original = std::fs::read_to_string(&config).expect("config readable");
        let mut text = String::new();
        let mut in_platform = false;
        for line in original.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                in_platform = t == "[platform]";
            }
            if t.starts_with("schedule = ") {
                let s = if in_platform {
                    push_schedule
                } else {
                    source_schedule
                };
                text.push_str(&format!("schedule = {s:?}\n"));
            } else if t.starts_with("settle_secs = ") {
                text.push_str("settle_secs = 0\n");
            } else if t.starts_with("shutdown_timeout_secs = ") {
                text.push_str(&format!(
                    "shutdown_timeout_secs = {shutdown_timeout_secs}\n"
                ));
            } else if t == "[daemon]" {
                text.push_str(&format!(
                    "[daemon]\ncontrol_socket = {:?}\n",
                    socket.display().to_string()
                ));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        let s = Setup {
            dir,
            config,
            socket,
            store,
            text,
        };
        s.write(&s.text);
        s
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.config, text).expect("config written");
    }

    /// The text with one source disabled.
    pub fn with_disabled(text: &str, source: &str) -> String {
        let line = format!("name = \"{source}\"\n");
        assert!(text.contains(&line), "source {source} in config");
        text.replacen(&line, &format!("{line}enabled = false\n"), 1)
    }

    /// The text with a `[daemon]` key added.
    pub fn with_daemon_key(text: &str, key_value: &str) -> String {
        text.replacen("[daemon]\n", &format!("[daemon]\n{key_value}\n"), 1)
    }

    pub fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("daemon{n}.log"))
    }

    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.store).expect("store opens");
        c.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    }

    /// Runs the binary with this config (a short-lived command such as `sync` or `status`).
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .output()
            .expect("binary runs")
    }
}

/// The daemon (`run`) as a child process.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(setup: &Setup, n: usize) -> Daemon {
        let log = setup.log_path(n);
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&setup.config)
            .args(["--log-format", "text", "run"])
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("daemon starts");
        let d = Daemon {
            child,
            log,
            socket: setup.socket.clone(),
        };
        wait_for("the daemon's control socket", || d.try_ping());
        d
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).expect("signal sent");
    }

    pub fn try_ping(&self) -> Option<serde_json::Value> {
        request(&self.socket, r#"{"cmd":"ping"}"#).and_then(|mut v| v.pop())
    }

    pub fn ping(&self) -> serde_json::Value {
        self.try_ping().expect("daemon answers ping")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit (hang guard only).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not exit; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends one request line; returns all response lines (None if nobody answers).
pub fn request(socket: &Path, line: &str) -> Option<Vec<serde_json::Value>> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    for l in BufReader::new(s).lines() {
        let l = l.ok()?;
        let v: serde_json::Value = serde_json::from_str(&l).ok()?;
        let last = matches!(v["type"].as_str(), Some("result" | "pong" | "error"));
        out.push(v);
        if last {
            break;
        }
    }
    Some(out)
}

/// Polls `f` until it yields (hang guard only).
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the runs due at the daemon's start (never run before: all eight streams) are
/// done and it is idle.
pub fn wait_idle(setup: &Setup, daemon: &Daemon) {
    wait_for("the start-up runs to finish", || {
        let idle = daemon.ping()["running"]
            .as_array()
            .is_some_and(|r| r.is_empty());
        let open = setup.count("SELECT count(*) FROM runs WHERE status = 'running'");
        let done =
            setup.count("SELECT count(*) FROM runs WHERE kind = 'sync' AND trigger = 'schedule'");
        (idle && open == 0 && done == 8).then_some(())
    });
}
