//! The operator's path, as the README shows it, end to end: every command of its "Install and
//! run as a service" section, in order, against the built-in simulator, in a temporary root.
//!
//! - The section is read from README.md (between `<!-- walkthrough` and `<!-- /walkthrough`),
//!   so what an operator reads is what runs. Its commands run in `sh`, from the source tree,
//!   with the root's paths mapped into a temporary directory (`/etc/community-sync`,
//!   `/usr/bin`, `/var/lib/community-sync`, `/run/community-sync`, `/var/backups`, `/tmp`).
//! - The shell is a root shell that exported nothing: no `CREDENTIALS_DIRECTORY`,
//!   `RUNTIME_DIRECTORY` or `STATE_DIRECTORY`, no secret. The one variable it has,
//!   `COMMUNITY_SYNC_CONFIG`, is the mapped form of the binary's built-in default
//!   (`/etc/community-sync/community-sync.toml`).
//! - `systemctl` and `journalctl` are played from the installed unit file as systemd would:
//!   `ExecStart=` with its `Environment=`, `UMask=`, `Type=notify` (start returns on
//!   READY=1), `WatchdogSec=`, the `StateDirectory=` of a `DynamicUser=` (a symlink into
//!   `/var/lib/private`), `RuntimeDirectory=` (0700, removed on stop), `LoadCredential=`
//!   (copied into a 0500 directory as 0400 files, a missing one refuses the start), stdout
//!   and stderr to the journal (`JOURNAL_STREAM`), and `systemctl stop` as SIGTERM within
//!   `TimeoutStopSec=`. Run as root, the daemon runs under a uid of its own, as the dynamic
//!   user would; the root shell's commands must then leave every file of the store to it.
//!   (`/var/lib/private` is 0711 here, where systemd opens it to the service in its own
//!   mount namespace.)
//! - The one step that is not a command, "edit the config", is done here: the sources and the
//!   platform point at the simulator, and the config's absolute paths into the root.
//! - Every command returns 0. The operator commands (`community-sync ...`) run while the
//!   daemon runs and again while it is stopped. Example values an operator reads off
//!   `review list` (`review show 1`, `explain onecard NC00000001`) are taken from the store.
//! - The Chinese section (`<!-- walkthrough-zh`) shows no command the walk did not run.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use community_sync::sim::{Sim, SimOptions};

const BIN: &str = env!("CARGO_BIN_EXE_community-sync");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Hang guard only (no timing is asserted).
const HANG_GUARD: Duration = Duration::from_secs(240);

/// The absolute paths of the real root that the walk maps into its temporary root.
const MAPPED: [&str; 8] = [
    "/usr/bin/",
    "/etc/systemd/system",
    "/etc/community-sync",
    "/var/lib/community-sync",
    "/var/backups",
    "/run/community-sync",
    "/tmp/",
    "/var/lib/private",
];

/// The commands of a README section: its `sh` code blocks, in order, comments removed.
fn section_commands(readme: &str, start: &str, end: &str) -> Vec<String> {
    let begin = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has {start}"));
    let rest = &readme[begin..];
    let stop = rest.find(end).unwrap_or_else(|| panic!("README has {end}"));
    let section = &rest[..stop];
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_block = t == "```sh" && !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        let code = if pending.is_empty() {
            code.trim_end()
        } else {
            code.trim()
        };
        if let Some(cont) = code.strip_suffix('\\') {
            pending.push_str(cont.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let cmd = pending.trim().to_string();
        pending.clear();
        if !cmd.is_empty() {
            out.push(cmd);
        }
    }
    out
}

/// The line without a trailing `# comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> String {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    line.to_string()
}

/// The temporary root and how the walk's paths map into it.
struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        // Like a real root: traversable by the service's user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in [
            "usr/bin",
            "etc/systemd/system",
            "var/lib",
            "var/backups",
            "run",
            "root",
        ] {
            std::fs::create_dir_all(path.join(d)).unwrap();
            let mut p = path.join(d);
            while p != path {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                p.pop();
            }
        }
        std::fs::create_dir_all(path.join("tmp")).unwrap();
        std::fs::set_permissions(path.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        Root { _dir: dir, path }
    }

    /// `/etc/community-sync/x` → `<root>/etc/community-sync/x`.
    fn at(&self, abs: &str) -> PathBuf {
        self.path.join(abs.trim_start_matches('/'))
    }

    /// A command line with the real root's paths mapped into this one (one pass, so a mapped
    /// path is never mapped again), and the release binary by the one under test.
    fn map(&self, line: &str) -> String {
        let root = self.path.display().to_string();
        let mut out = String::new();
        let mut i = 0;
        let bytes = line.as_bytes();
        while i < line.len() {
            let boundary = i == 0 || matches!(bytes[i - 1], b' ' | b'"' | b'\'' | b'=' | b':');
            if boundary && line[i..].starts_with("target/release/community-sync") {
                out.push_str(BIN);
                i += "target/release/community-sync".len();
                continue;
            }
            if boundary {
                if let Some(m) = MAPPED.iter().find(|m| line[i..].starts_with(**m)) {
                    out.push_str(&root);
                    out.push_str(m);
                    i += m.len();
                    continue;
                }
            }
            let c = line[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

/// The uid and gid the daemon runs as: a dynamic user's when this test runs as root (as in
/// CI), else this user's (a test cannot switch users without root).
fn service_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("NOTE: not root: the daemon runs as this user, not as a dynamic user");
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let taken: BTreeSet<u32> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    // systemd's dynamic range is 61184-65519.
    let mut uid = 61184 + std::process::id() % 4000;
    while taken.contains(&uid) {
        uid += 1;
    }
    Some((uid, uid))
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g)).unwrap();
    }
}

fn mode(path: &Path, m: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
}

/// `Key=value` lines of a unit file.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .collect()
}

fn seconds(v: &str) -> u64 {
    let v = v.trim();
    v.strip_suffix("min")
        .map(|m| m.parse::<u64>().unwrap_or(1) * 60)
        .or_else(|| v.strip_suffix('s').and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| v.parse().unwrap_or(90))
}

/// systemd, as far as this walk needs it, for the installed unit.
struct Systemd<'a> {
    root: &'a Root,
    user: Option<(u32, u32)>,
    unit: Option<String>,
    daemon: Option<Child>,
    notify: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
    starts: usize,
}

impl<'a> Systemd<'a> {
    fn new(root: &'a Root, user: Option<(u32, u32)>) -> Self {
        Systemd {
            root,
            user,
            unit: None,
            daemon: None,
            notify: Arc::default(),
            log: root.at("/var/log/journal-community-sync.log"),
            starts: 0,
        }
    }

    fn unit(&self) -> &str {
        self.unit
            .as_deref()
            .expect("systemctl daemon-reload ran after the unit was installed")
    }

    fn run(&mut self, args: &[&str]) -> String {
        match args {
            ["daemon-reload"] => {
                let path = self.root.at("/etc/systemd/system/community-sync.service");
                self.unit = Some(std::fs::read_to_string(&path).expect("the unit is installed"));
                String::new()
            }
            ["enable", "--now", "community-sync"] | ["start", "community-sync"] => {
                self.start();
                String::new()
            }
            ["status", "community-sync"] => {
                let child = self.daemon.as_mut().expect("the service was started");
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the service is not running; journal:\n{}",
                    self.journal()
                );
                let status = self
                    .notify
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .find_map(|m| m.lines().find_map(|l| l.strip_prefix("STATUS=")))
                    .map(String::from)
                    .unwrap_or_default();
                format!("community-sync.service: active (running)\n  Status: \"{status}\"\n")
            }
            ["stop", "community-sync"] => {
                self.stop();
                String::new()
            }
            ["reload", "community-sync"] => {
                let child = self.daemon.as_ref().expect("running");
                unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
                String::new()
            }
            other => panic!("the walk does not know `systemctl {}`", other.join(" ")),
        }
    }

    /// `systemctl start`: the unit's environment, user, directories and credentials; returns
    /// once the daemon said READY=1.
    fn start(&mut self) {
        let unit = self.unit().to_string();
        let root = self.root;
        let user = self.user;
        let exec = unit_values(&unit, "ExecStart");
        assert_eq!(exec.len(), 1);
        let argv: Vec<String> = exec[0]
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .map(|a| root.map(a))
            .collect();
        assert!(unit_values(&unit, "DynamicUser").contains(&"yes".to_string()));
        // StateDirectory= of a dynamic user: /var/lib/private/NAME, and /var/lib/NAME a link.
        let state_name = unit_values(&unit, "StateDirectory").remove(0);
        let private = root.at("/var/lib/private");
        std::fs::create_dir_all(&private).unwrap();
        mode(&private, 0o711);
        let state = private.join(&state_name);
        if !state.exists() {
            std::fs::create_dir(&state).unwrap();
        }
        chown(&state, user);
        mode(&state, 0o700);
        let link = root.at(&format!("/var/lib/{state_name}"));
        if !link.exists() {
            std::os::unix::fs::symlink(format!("private/{state_name}"), &link).unwrap();
        }
        // RuntimeDirectory=, owner only.
        let runtime = root.at(&format!(
            "/run/{}",
            unit_values(&unit, "RuntimeDirectory").remove(0)
        ));
        std::fs::create_dir_all(&runtime).unwrap();
        chown(&runtime, user);
        mode(&runtime, 0o700);
        // LoadCredential=NAME:PATH → $CREDENTIALS_DIRECTORY/NAME, 0400 in a 0500 directory.
        let creds = root.at("/run/credentials/community-sync.service");
        std::fs::create_dir_all(&creds).unwrap();
        for v in unit_values(&unit, "LoadCredential") {
            let (name, from) = v.split_once(':').expect("LoadCredential=NAME:PATH");
            let from = root.map(from);
            let to = creds.join(name);
            let _ = std::fs::remove_file(&to);
            std::fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!("systemd refuses to start: credential {name} ({from}): {e}")
            });
            chown(&to, user);
            mode(&to, 0o400);
        }
        chown(&creds, user);
        mode(&creds, 0o500);
        // Type=notify: the start waits for READY=1 on NOTIFY_SOCKET.
        let sock_path = root.at("/run/notify-community-sync.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        mode(&sock_path, 0o777);
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let meta = log.metadata().unwrap();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("RUNTIME_DIRECTORY", &runtime)
            .env("STATE_DIRECTORY", &link)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for e in unit_values(&unit, "Environment") {
            let (k, v) = e.split_once('=').unwrap();
            cmd.env(k, root.map(v));
        }
        if let Some(w) = unit_values(&unit, "WatchdogSec").first() {
            cmd.env("WATCHDOG_USEC", (seconds(w) * 1_000_000).to_string());
        }
        let umask = unit_values(&unit, "UMask")
            .first()
            .map(|m| u32::from_str_radix(m, 8).unwrap())
            .unwrap_or(0o022);
        if let Some((u, g)) = user {
            // As root, std also drops the supplementary groups.
            cmd.uid(u).gid(g);
        }
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("ExecStart runs");
        self.starts += 1;
        let deadline = Instant::now() + HANG_GUARD;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let ready = msg.lines().any(|l| l == "READY=1");
                self.notify.lock().unwrap().push(msg);
                if ready {
                    break;
                }
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "the service exited ({st}) before READY=1; journal:\n{}",
                    self.journal()
                );
            }
            assert!(Instant::now() < deadline, "no READY=1");
        }
        // Later STATUS= messages, for `systemctl status`.
        let notify = self.notify.clone();
        std::thread::spawn(move || loop {
            match sock.recv(&mut buf) {
                Ok(n) => notify
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        });
        self.daemon = Some(child);
    }

    /// `systemctl stop`: SIGTERM, then wait TimeoutStopSec= for a clean exit; the runtime
    /// and credentials directories go.
    fn stop(&mut self) {
        let timeout = seconds(&unit_values(self.unit(), "TimeoutStopSec").remove(0));
        let mut child = self.daemon.take().expect("the service runs");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "not stopped within TimeoutStopSec={timeout}; journal:\n{}",
                    self.journal()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "the service exited {status}; journal:\n{}",
            self.journal()
        );
        let _ = std::fs::remove_dir_all(self.root.at("/run/community-sync"));
        let _ = std::fs::remove_dir_all(self.root.at("/run/credentials/community-sync.service"));
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `journalctl -u community-sync -f`: what the service logged, once its first syncs (due
    /// at start) are done: one finished run per stream and a reconcile.
    fn journalctl(&self) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let text = self.journal();
            let finished = text.matches("stream sync finished").count()
                + text.matches("stream sync failed").count();
            if finished >= 8 && text.contains("reconcile finished") {
                assert!(
                    !text.contains("stream sync failed"),
                    "a stream failed:\n{text}"
                );
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the first syncs did not finish; journal:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Systemd<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The shell an operator has: root (or this user), nothing exported.
fn shell(root: &Root, line: &str, shims: &Path) -> std::process::Output {
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        root.at("/usr/bin").display(),
        shims.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(REPO)
        .env_clear()
        .env("PATH", path)
        .env("HOME", root.at("/root"))
        .env(
            "USER",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        )
        .env("LANG", "C.UTF-8")
        .env(
            "COMMUNITY_SYNC_CONFIG",
            root.at("/etc/community-sync/community-sync.toml"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// `systemd-ask-password PROMPT` answering with the simulator's secret named in the prompt.
fn write_shims(dir: &Path) {
    let mut script = String::from("#!/bin/sh\ncase \"$*\" in\n");
    for (name, value) in community_sync::cli::demo::SIM_SECRETS {
        script.push_str(&format!("  *\"of {name}:\"*) echo '{value}' ;;\n"));
    }
    script.push_str("  *) echo \"unexpected prompt: $*\" >&2; exit 1 ;;\nesac\n");
    let p = dir.join("systemd-ask-password");
    std::fs::write(&p, script).unwrap();
    mode(&p, 0o755);
}

/// The edit step: sources and platform at the simulator, absolute paths into the root.
fn edit_config(root: &Root, sim: &Sim) {
    let path = root.at("/etc/community-sync/community-sync.toml");
    let text = std::fs::read_to_string(&path).expect("the config is installed");
    let text = community_sync::cli::demo::point_at(&text, &sim.urls).replace(
        "# control_socket = \"/run/community-sync/control.sock\"",
        "control_socket = \"/run/community-sync/control.sock\"",
    );
    let text = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("path = ") || t.starts_with("control_socket = ") {
                root.map(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text + "\n").unwrap();
}

/// Example values an operator reads off `review list`: the first open item, and the source
/// and key of its record.
fn first_open_review(root: &Root) -> (i64, String, String) {
    let db = root.at("/var/lib/community-sync/store.db");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row(
        "SELECT r.id, s.source, s.source_key FROM review_items r
         JOIN source_records s ON s.id = r.record_id
         WHERE r.state = 'open' ORDER BY r.id LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .expect("the hard cases raised review items")
}

/// `review show 1` → the first open item; `explain SRC KEY` → its record.
fn with_review_values(root: &Root, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["community-sync", "review", verb @ ("show" | "accept" | "reject"), _] => {
            let (id, _, _) = first_open_review(root);
            format!("community-sync review {verb} {id}")
        }
        ["community-sync", "explain", _, _] => {
            let (_, source, key) = first_open_review(root);
            format!("community-sync explain {source} {key}")
        }
        _ => line.to_string(),
    }
}

/// Whether a line is an operator's command on the store or the daemon (not set-up).
fn is_operator_command(line: &str) -> bool {
    line.starts_with("community-sync ")
        && !["community-sync keygen", "community-sync check"]
            .iter()
            .any(|p| line.starts_with(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_install_and_operator_path_works_as_written() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let commands = section_commands(&readme, "<!-- walkthrough:", "<!-- /walkthrough -->");
    assert!(commands.len() > 15, "{commands:#?}");
    // The Chinese section shows the same path: nothing the walk does not run.
    let english: BTreeSet<&String> = commands.iter().collect();
    for zh in section_commands(&readme, "<!-- walkthrough-zh", "<!-- /walkthrough-zh -->") {
        assert!(
            english.contains(&zh),
            "the Chinese section shows `{zh}`, which the English walk-through does not run"
        );
    }
    for step in [
        "keygen",
        "enable --now",
        "journalctl",
        "status",
        "sync",
        "review",
    ] {
        assert!(
            commands.iter().any(|c| c.contains(step)),
            "the README's path shows {step}"
        );
    }

    let sim = Sim::start(SimOptions {
        seed: 20240501,
        residents: 400,
        hard_cases: true,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let root = Root::new();
    let shims = tempfile::tempdir().unwrap();
    write_shims(shims.path());
    let user = service_user();
    let mut systemd = Systemd::new(&root, user);
    std::fs::create_dir_all(root.at("/var/log")).unwrap();

    let mut edited = false;
    let mut operator: Vec<String> = Vec::new();
    let mut transcript = String::new();
    let run_line = |line: &str, transcript: &mut String| {
        let mapped = root.map(&with_review_values(&root, line));
        let out = shell(&root, &mapped, shims.path());
        let text = format!(
            "$ {line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        transcript.push_str(&text);
        assert!(
            out.status.success(),
            "`{line}` (as `{mapped}`) exited {:?}:\n{text}\njournal:\n{}",
            out.status.code(),
            std::fs::read_to_string(root.at("/var/log/journal-community-sync.log"))
                .unwrap_or_default()
        );
        text
    };
    for line in &commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("community-sync check") && !edited {
            edit_config(&root, &sim);
            edited = true;
        }
        match words.first().copied() {
            Some("systemctl") => {
                let out = systemd.run(&words[1..]);
                transcript.push_str(&format!("$ {line}\n{out}"));
                if words[1] == "stop" {
                    // Every operator command again, with no daemon to hand anything to.
                    for c in operator.clone() {
                        if c.contains("$(date") {
                            // A name from the clock (the backup's): not the same second as
                            // its first run, or the file would already exist.
                            std::thread::sleep(std::time::Duration::from_millis(1100));
                        }
                        run_line(&c, &mut transcript);
                    }
                }
            }
            Some("journalctl") => {
                assert_eq!(words[1..3], ["-u", "community-sync"], "{line}");
                let text = systemd.journalctl();
                transcript.push_str(&format!("$ {line}\n{text}"));
                // journald's priority prefixes, and the run's id on its lines.
                assert!(text.contains("<6>") && text.contains("run_id="), "{text}");
            }
            _ => {
                let out = run_line(line, &mut transcript);
                if is_operator_command(line) && !operator.contains(line) {
                    operator.push(line.clone());
                }
                if systemd.daemon.is_some() && words.get(1) == Some(&"sync") {
                    assert!(
                        out.contains("handing the sync to the running daemon"),
                        "{out}"
                    );
                }
            }
        }
    }
    println!("{transcript}");
    assert!(edited, "the walk edited the config before `check`");
    assert_eq!(systemd.starts, 2, "started, stopped, started again");
    assert!(operator.len() >= 8, "{operator:#?}");

    // The key stays root's (or this user's) alone; the store is the service user's only.
    let key = root.at("/etc/community-sync/credentials/store-key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert_eq!(
        std::fs::metadata(root.at("/etc/community-sync/credentials"))
            .unwrap()
            .mode()
            & 0o777,
        0o700
    );
    if let Some((uid, _)) = user {
        for entry in std::fs::read_dir(root.at("/var/lib/private/community-sync")).unwrap() {
            let entry = entry.unwrap();
            assert_eq!(
                entry.metadata().unwrap().uid(),
                uid,
                "{} belongs to the service's user after the root shell's commands",
                entry.path().display()
            );
        }
    }
    // The service came back after the root shell used the store, and still syncs.
    let out = shell(&root, "community-sync sync eldercare", shims.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    systemd.stop();
    let mut journal = String::new();
    std::fs::File::open(&systemd.log)
        .unwrap()
        .read_to_string(&mut journal)
        .unwrap();
    assert!(journal.contains("daemon stopped"), "{journal}");
    sim.shutdown().await;
}

#[test]
fn the_walk_reads_commands_as_sh_would() {
    assert_eq!(strip_comment("a b   # c"), "a b   ");
    assert_eq!(strip_comment("echo \"x # y\" # z"), "echo \"x # y\" ");
    assert_eq!(strip_comment("date +%F-%H#x"), "date +%F-%H#x");
    let readme = "<!-- walkthrough: x -->\n```sh\nfoo \\\n  bar   # c\n\n# only\nbaz\n```\ntext\n```sh\nqux\n```\n<!-- /walkthrough -->";
    assert_eq!(
        section_commands(readme, "<!-- walkthrough:", "<!-- /walkthrough -->"),
        ["foo bar", "baz", "qux"]
    );
    let root = Root::new();
    let r = root.path.display().to_string();
    assert_eq!(
        root.map("install -m 0755 target/release/community-sync /usr/bin/community-sync"),
        format!("install -m 0755 {BIN} {r}/usr/bin/community-sync")
    );
    assert_eq!(
        root.map("x /etc/community-sync/credentials/$s /tmp/r.html"),
        format!("x {r}/etc/community-sync/credentials/$s {r}/tmp/r.html")
    );
}
