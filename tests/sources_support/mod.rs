//! Helpers for the SQL and file source tests: a config around a `[[sources]]` block, a
//! store in a temporary folder, counts.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use community_sync::config::Config;
use community_sync::pipeline::{Context, SyncOptions};
use community_sync::store::Store;

/// Writes `dir/config.toml` (0600) with the store in `dir` and `sources` appended; the
/// platform is a closed port (nothing here pushes).
pub fn write_config(dir: &Path, sources: &str) -> std::path::PathBuf {
    write_config_with_platform(dir, sources, "http://127.0.0.1:9/events")
}

/// [`write_config`] with the platform at `platform_url`.
pub fn write_config_with_platform(
    dir: &Path,
    sources: &str,
    platform_url: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"timezone = "Asia/Shanghai"
[store]
path = "{store}"
[platform]
url = "{platform_url}"
{sources}
{codes}
"#,
        store = dir.join("store.db").display(),
        codes = community_sync::sim::sqldb::SQL_CODE_TABLES,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// A platform endpoint that answers every request `200 {}` (what `check --connect`'s empty
/// batch needs), on an ephemeral port: its events URL. The thread lives as long as the test.
pub fn accepting_platform() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
        }
    });
    url
}

pub fn context(dir: &Path, sources: &str) -> Context {
    let config = Config::load(&write_config(dir, sources)).expect("config valid");
    let store = Store::open_configured(&config).expect("store opens");
    Context {
        config: Arc::new(config),
        store: Arc::new(Mutex::new(store)),
    }
}

pub fn opts() -> SyncOptions {
    SyncOptions {
        progress: None,
        sources: vec![],
        full: false,
        trigger: "test".into(),
        push: false,
        ..SyncOptions::default()
    }
}

pub fn count(ctx: &Context, sql: &str) -> i64 {
    let g = ctx.store.lock().expect("lock");
    g.conn().query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Records of a stream (kept and rejected whole).
pub fn records(ctx: &Context, stream: &str) -> i64 {
    count(
        ctx,
        &format!("SELECT count(*) FROM source_records WHERE stream = '{stream}'"),
    )
}

pub fn rejects(ctx: &Context, reason: &str) -> i64 {
    count(
        ctx,
        &format!("SELECT count(*) FROM rejects WHERE reason = '{reason}'"),
    )
}

pub fn has_key(ctx: &Context, stream: &str, key: &str) -> bool {
    count(
        ctx,
        &format!(
            "SELECT count(*) FROM source_records WHERE stream = '{stream}' AND source_key = '{key}'"
        ),
    ) == 1
}
