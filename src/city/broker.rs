//! Restarting the machine's NATS server mid-run: find the process that runs it, kill it, start
//! it again with exactly the command line it had (so it keeps its JetStream store directory),
//! and wait until it answers. The server is shared with everything else on the machine, so a
//! [`Broker`] starts it again when dropped if it is not answering, whatever happened between.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The running NATS server: its process and how it was started.
#[derive(Debug, Clone)]
pub struct Broker {
    pub pid: i32,
    pub argv: Vec<String>,
    pub addr: SocketAddr,
}

impl Broker {
    /// The `nats-server` process on this machine that serves `addr` (the one whose command
    /// line names its port, or the only one).
    pub fn find(addr: SocketAddr) -> anyhow::Result<Broker> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
            let Ok(entry) = entry else { continue };
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_nats = argv
                .first()
                .is_some_and(|a| a.rsplit('/').next() == Some("nats-server"));
            if is_nats {
                found.push(Broker { pid, argv, addr });
            }
        }
        let port = addr.port().to_string();
        let names_port = |b: &&Broker| {
            b.argv
                .iter()
                .any(|a| *a == port || a.ends_with(&format!(":{port}")))
        };
        match found.iter().find(names_port).or(if found.len() == 1 {
            found.first()
        } else {
            None
        }) {
            Some(b) => Ok(b.clone()),
            None => anyhow::bail!(
                "no nats-server process serving {addr} found ({} nats-server processes)",
                found.len()
            ),
        }
    }

    pub fn answering(&self) -> bool {
        TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_ok()
    }

    /// Kills the server (SIGKILL: no chance to flush anything it had not written) and starts
    /// it again with the same command line; returns once it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        // SAFETY: kill(2) with a pid read from /proc; a process gone meanwhile gets ESRCH.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let gone = Instant::now();
        while PathBuf::from(format!("/proc/{}", self.pid)).exists()
            && gone.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.start()?;
        Ok(started.elapsed())
    }

    /// Starts the server with its command line, in a session of its own (it outlives us).
    fn start(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt as _;
        let (program, args) = self
            .argv
            .split_first()
            .context("empty nats-server command line")?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid in the child before exec only detaches it from our session.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.argv.join(" ")))?;
        self.pid = child.id() as i32;
        let waited = Instant::now();
        while !self.answering() {
            anyhow::ensure!(
                waited.elapsed() < Duration::from_secs(30),
                "nats-server did not answer at {} within 30 s after `{}`",
                self.addr,
                self.argv.join(" ")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Broker {
    /// The machine's server is everyone's: never leave it stopped.
    fn drop(&mut self) {
        if !self.answering() {
            if let Err(e) = self.start() {
                eprintln!("city: could not start the NATS server again: {e:#}");
            }
        }
    }
}
