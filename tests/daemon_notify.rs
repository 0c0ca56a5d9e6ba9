//! sd_notify as systemd sees it: the test plays the service manager's notification socket and
//! checks READY=1, STATUS=, WATCHDOG=1 pings and STOPPING=1.

mod daemon_support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{Setup, BIN};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let sim = daemon_support::sim(50).await;
    let setup = Setup::new(&sim, "@hourly", "@hourly", 10);
    let notify_path = setup.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        // Half a second: the daemon pings at least every 250 ms.
        .env("WATCHDOG_USEC", "500000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stopped = false;
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
        let ready = messages.iter().any(|m| m.contains("READY=1"));
        if !stopped && ready && pings >= 3 {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
            stopped = true;
        }
        if stopped && messages.iter().any(|m| m.contains("STOPPING=1")) {
            break;
        }
    }
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no READY=1 or fewer than 3 WATCHDOG=1 pings: {messages:?}");
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let all = messages.join("\n");
    assert!(all.contains("READY=1"), "{all}");
    assert!(all.contains("STATUS="), "{all}");
    assert!(all.contains("STOPPING=1"), "{all}");
    let ready_at = messages.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping_at = messages
        .iter()
        .position(|m| m.contains("STOPPING=1"))
        .unwrap();
    assert!(ready_at < stopping_at);
    sim.shutdown().await;
}
