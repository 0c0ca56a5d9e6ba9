//! The machine's real servers that some integration tests need (PostgreSQL, MariaDB, NATS
//! with JetStream), and the rule for when one is missing: outside CI the test says what it
//! skipped and why, and passes; under CI (`CI` set) a missing server fails the test, since
//! `.ci/run` starts every server before the suite.
//!
//! Use: `let Some(addr) = services::require(services::POSTGRES, "sql_pg_incremental") else { return };`
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One server a test may need: what it is, where it listens, and how it is started.
pub struct Service {
    pub name: &'static str,
    pub addr: &'static str,
    /// The command that starts it on the project's machines (see .ci/run).
    pub start: &'static str,
}

pub const POSTGRES: Service = Service {
    name: "PostgreSQL",
    addr: "127.0.0.1:5432",
    start: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
};

pub const MARIADB: Service = Service {
    name: "MariaDB",
    addr: "127.0.0.1:3306",
    start: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
};

pub const NATS: Service = Service {
    name: "NATS (JetStream)",
    addr: "127.0.0.1:4222",
    start: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
};

/// Whether something accepts TCP connections at the service's address.
pub fn reachable(service: &Service) -> bool {
    let Ok(addr) = service.addr.parse::<SocketAddr>() else {
        return false;
    };
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The service's address when it is reachable. Otherwise: under CI, panics naming the
/// service and how to start it; elsewhere prints a SKIPPED line for `test` and returns None.
pub fn require(service: &Service, test: &str) -> Option<&'static str> {
    if reachable(service) {
        return Some(service.addr);
    }
    let why = format!(
        "{} is not reachable at {} (start it with: {})",
        service.name, service.addr, service.start
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}; CI is set, so this test must run: .ci/run starts the server first");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}
