//! What an operator meets at the command line:
//!
//! - output into a pipe whose reader is gone ends quietly (no panic, exit code as usual);
//! - `demo --serve` keeps the simulator serving after its summary and prints commands that
//!   work, with a review queue that has items (as many as its ground truth says);
//! - `sim --port P` serves on P..P+4 and writes a config that reaches them; a taken port is
//!   named with the option to choose another.

mod daemon_support;

use std::io::{BufRead as _, BufReader};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{Setup, BIN};

const HANG_GUARD: Duration = Duration::from_secs(300);

/// A pipe whose read end is already closed: every write to the other end fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly_with_the_usual_exit_code() {
    let sim = daemon_support::sim(200).await;
    let setup = Setup::new(&sim, "@yearly", "@yearly", 10);
    // A store with data (this sync runs here: no daemon answers).
    let out = setup.command(&["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["rejects", "--limit", "3"],
        &["report"],
        &["review", "list"],
        &["sync", "eldercare"],
        &["--help"],
    ] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&setup.config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    // `rejects` says where it stopped, and refuses what it does not know.
    let out = setup.command(&["rejects", "--limit", "1"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listing}");
    let total = setup.count("SELECT count(*) FROM rejects");
    assert!(total > 1, "the population has quarantined records");
    assert!(
        listing.contains(&format!("(1 of {total} shown")),
        "{listing}"
    );
    for (args, expect) in [
        (
            ["rejects", "--source", "nosuch"],
            "the configured sources are: onecard",
        ),
        (["rejects", "--reason", "nosuch"], "id_number.check_digit"),
    ] {
        let out = setup.command(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("nosuch") && stderr.contains(expect),
            "{stderr}"
        );
    }
    // The exit code still says what happened: an unhealthy status stays 1.
    {
        let mut store = community_sync::store::Store::open(&setup.store).unwrap();
        for _ in 0..3 {
            let run = store
                .begin_run("health", "patients", "sync", "test")
                .unwrap();
            store
                .fail_run(run, "HTTP 503", 0, 0, &Default::default())
                .unwrap();
        }
    }
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .arg("status")
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
    sim.shutdown().await;
}

/// A child's stdout, line by line, with a hang guard.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `marker`; every line read so far.
    fn until(&mut self, marker: &str) -> &[String] {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    self.seen.push(line);
                    if done {
                        return &self.seen;
                    }
                }
                Err(_) => panic!("no line with {marker:?}; got:\n{}", self.seen.join("\n")),
            }
        }
    }
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one of the commands a demo printed (`/path/to/community-sync --config … ARGS`).
fn run_printed(line: &str) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    let end = words.iter().position(|w| *w == "#").unwrap_or(words.len());
    assert_eq!(
        words[0], BIN,
        "the demo prints this binary's real path: {line}"
    );
    Command::new(words[0])
        .args(&words[1..end])
        .env_remove("COMMUNITY_SYNC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn demo_serve_keeps_the_simulator_up_with_a_review_queue_to_work_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(BIN)
        .args(["demo", "--residents", "300", "--serve", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = Lines::of(&mut demo);
    out.until("keeps serving");
    // The commands come after the marker; the last is `run`.
    let lines = out.until(" run ").to_vec();
    let text = lines.join("\n");
    assert!(
        text.contains("Every figure matches the simulator's ground truth."),
        "{text}"
    );
    let review = lines
        .iter()
        .find(|l| l.trim_start().starts_with("conflict:birth_date"))
        .unwrap_or_else(|| panic!("the summary has a review section: {text}"));
    assert!(
        review.ends_with('✓'),
        "found as many as the truth says: {review}"
    );
    let command = |sub: &str| {
        lines
            .iter()
            .map(|l| l.trim())
            .find(|l| l.contains(&format!(" {sub}")) && l.starts_with('/'))
            .unwrap_or_else(|| panic!("a `{sub}` command in:\n{text}"))
            .to_string()
    };
    // The review queue has items, and the printed show / explain commands work on them.
    let out = run_printed(&command("review list"));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listing}");
    let open: u64 = listing
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(open > 0, "{listing}");
    for sub in ["review show", "explain", "status", "report --html"] {
        let out = run_printed(&command(sub));
        assert!(
            out.status.success(),
            "{sub}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The match model: the demo's first load trained version 1 (train_after_first_load is
    // on by default); train another, show it, train a third, list; status shows the review
    // load.
    let listing = command("review list");
    let base = listing.split(" review list").next().unwrap().to_string();
    for (sub, want) in [
        ("matching show", "match model version 1"),
        (
            "matching train --records 500 --random-pairs 2000",
            "match model version 2 trained",
        ),
        ("matching show", "match model version 2"),
        ("matching show", "name term frequency"),
        (
            "matching train --records 500 --random-pairs 2000",
            "match model version 3 trained",
        ),
        ("matching show --list", "version 3"),
        ("status", "per 1,000 person records"),
    ] {
        let out = run_printed(&format!("{base} {sub}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(want),
            "{sub}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The simulator still serves: a sync against it works.
    let out = run_printed(&command("sync --full health"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sigterm(&mut demo).success());
}

/// A base port with the four after it free (bound together, then released).
fn free_base_port() -> u16 {
    for _ in 0..200 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > u16::MAX - 4 {
            continue;
        }
        let held: Vec<_> = (base..base + 5)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == 5 {
            return base;
        }
    }
    panic!("no five free ports in a row");
}

#[test]
fn sim_serves_on_a_chosen_port_and_writes_a_config_that_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let mut sim = Command::new(BIN)
        .args(["sim", "--residents", "100", "--port", &base.to_string()])
        .arg("--write-config")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut sim).until("serving").to_vec();
    let text = lines.join("\n");
    for (i, name) in ["onecard", "volunteer", "eldercare", "health", "platform"]
        .iter()
        .enumerate()
    {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(name) && l.contains(&format!("127.0.0.1:{}", base + i as u16))),
            "{name} on {}: {text}",
            base + i as u16
        );
    }
    let config = dir.path().join("community-sync.toml");
    let header = std::fs::read_to_string(&config).unwrap();
    assert!(
        header.contains(&format!("community-sync sim --port {base}")),
        "the config says how to serve it again: {}",
        &header[..600.min(header.len())]
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["check", "--connect"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A second simulator on the same ports names the port and the option.
    let out = Command::new(BIN)
        .args(["sim", "--residents", "10", "--port", &base.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{base}")) && stderr.contains("--port"),
        "{stderr}"
    );
    assert!(sigterm(&mut sim).success());
}
