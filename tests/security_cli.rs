//! Security commands and refusals through the real binary and the public API: `audit verify`,
//! `keygen` + `rotate-key`, permission checks on config and key files, plain http to a
//! non-loopback platform.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use community_sync::config::Config;
use community_sync::store::Store;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_community-sync"))
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[cfg(unix)]
fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A minimal config (no sources) with the given extra text, mode 0600.
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("c.toml");
    let store = dir.join("store.db");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = {:?}\n{extra}\n[platform]\nurl = \"http://127.0.0.1:9/api/v1/events\"\n",
            store.display().to_string()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    chmod(&path, 0o600);
    path
}

fn append_rows(store: &mut Store, n: usize) {
    for i in 0..n {
        let tx = store.conn_mut().transaction().unwrap();
        community_sync::audit::append(
            &tx,
            &community_sync::store::Codec::Plain,
            "push_batch",
            &community_sync::audit::Actor::process(),
            &serde_json::json!({"idempotency_key": format!("k{i}"), "events": [format!("e{i}")]}),
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

#[test]
fn audit_verify_catches_an_edited_and_a_deleted_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut store = Store::open(&dir.path().join("store.db")).unwrap();
    append_rows(&mut store, 6);
    let ok = bin()
        .args(["--config", config.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("intact: 6 rows"), "{}", text(&ok));

    // An attacker with sqlite3 removes the guards and edits a row.
    store
        .conn()
        .execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    store
        .conn()
        .execute("UPDATE audit SET actor = 'someone-else' WHERE id = 2", [])
        .unwrap();
    let edited = bin()
        .args(["--config", config.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(edited.status.code(), Some(1), "{}", text(&edited));
    assert!(
        text(&edited).contains("row 2") && text(&edited).contains("edited"),
        "{}",
        text(&edited)
    );

    // A fresh chain with a deleted row.
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = write_config(dir2.path(), "");
    let mut store2 = Store::open(&dir2.path().join("store.db")).unwrap();
    append_rows(&mut store2, 6);
    store2
        .conn()
        .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 4;")
        .unwrap();
    let deleted = bin()
        .args([
            "--config",
            config2.to_str().unwrap(),
            "audit",
            "verify",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(deleted.status.code(), Some(1), "{}", text(&deleted));
    let report: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == 4),
        "{report}"
    );
}

#[cfg(unix)]
#[test]
fn keygen_and_rotate_key_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = dir.path().join("k1");
    let k2 = dir.path().join("k2");
    for k in [&k1, &k2] {
        let o = bin()
            .args(["keygen", "--out", k.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(k).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = bin()
        .args(["keygen", "--out", k1.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "keygen never overwrites a key");

    let c1 = write_config(
        dir.path(),
        &format!("[security]\nkey_file = {:?}\n", k1.display().to_string()),
    );
    let config = Config::load(&c1).unwrap();
    {
        let store = Store::open_configured(&config).unwrap();
        let codec = store.codec().clone();
        store
            .conn()
            .execute(
                "INSERT INTO persons (version, name, phone, created_at, updated_at) VALUES (1, ?1, ?2, 'x', 'x')",
                rusqlite::params![
                    codec.seal(community_sync::store::codec::PERSON_NAME, "李四"),
                    codec.seal(community_sync::store::codec::PERSON_PHONE, "13912345678")
                ],
            )
            .unwrap();
    }
    let rotate = || {
        bin()
            .env("RUNTIME_DIRECTORY", dir.path())
            .args([
                "--config",
                c1.to_str().unwrap(),
                "rotate-key",
                "--new-key",
                k2.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    // Not while a daemon answers on its control socket: it would write under the old key.
    {
        let _daemon =
            std::os::unix::net::UnixListener::bind(dir.path().join("control.sock")).unwrap();
        let o = rotate();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("stop it first"), "{}", text(&o));
        std::fs::remove_file(dir.path().join("control.sock")).unwrap();
    }
    let o = rotate();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("rotated to key id"), "{}", text(&o));
    assert!(!text(&o).contains("13912345678"));

    // The old key is refused now, with a message naming both key ids; the new one reads.
    let e = Store::open_configured(&config).err().unwrap().to_string();
    assert!(e.contains("key_file holds key id"), "{e}");
    let c2 = write_config(
        dir.path(),
        &format!("[security]\nkey_file = {:?}\n", k2.display().to_string()),
    );
    let store = Store::open_configured(&Config::load(&c2).unwrap()).unwrap();
    let phone = store
        .conn()
        .query_row("SELECT phone FROM persons", [], |r| {
            Ok(store.codec().open(r.get_ref(0)?)?)
        })
        .unwrap();
    assert_eq!(phone.as_deref(), Some("13912345678"));
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused_with_chmod_advice() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    community_sync::crypto::write_new_key_file(&k).unwrap();
    chmod(&k, 0o644);
    let c = write_config(
        dir.path(),
        &format!("[security]\nkey_file = {:?}\n", k.display().to_string()),
    );
    let o = bin()
        .args(["--config", c.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("chmod 600 {}", k.display())),
        "{}",
        text(&o)
    );
}

#[cfg(unix)]
#[test]
fn config_file_permissions_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = write_config(dir.path(), "");
    // One rule with key and secret files (crypto::check_file_mode): writable by the group
    // (accepted before it) or by others is refused.
    for mode in [0o666, 0o664] {
        chmod(&c, mode);
        let e = Config::load(&c).unwrap_err().to_string();
        assert!(
            e.contains("writable by group or others") && e.contains("chmod 600"),
            "{e}"
        );
    }
    chmod(&c, 0o644);
    assert!(Config::load(&c).is_ok(), "world-readable without a secret");
    // Readable by others with an inline secret: refused.
    let path = dir.path().join("inline.toml");
    std::fs::write(
        &path,
        "[platform]\nurl = \"http://127.0.0.1:9/x\"\n[platform.auth]\ntype = \"bearer\"\ntoken = { value = \"platform-demo-token\" }\n",
    )
    .unwrap();
    chmod(&path, 0o644);
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("inline secret") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains("platform-demo-token"));
    chmod(&path, 0o600);
    assert!(Config::load(&path).is_ok());
}

#[test]
fn plain_http_to_a_non_loopback_platform_is_refused() {
    let text = "[platform]\nurl = \"http://10.1.2.3/api/v1/events\"\n";
    let config = Config::from_toml(text, Path::new("p.toml")).unwrap();
    let e = community_sync::push::Pusher::new(&config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("plain http") && e.contains("allow_insecure_http"),
        "{e}"
    );
    let allowed = Config::from_toml(
        &format!("{text}[platform.http]\nallow_insecure_http = true\n"),
        Path::new("p.toml"),
    )
    .unwrap();
    assert!(community_sync::push::Pusher::new(&allowed).is_ok());
    let loopback = Config::from_toml(
        "[platform]\nurl = \"http://127.0.0.1:9/x\"\n",
        Path::new("p.toml"),
    )
    .unwrap();
    assert!(community_sync::push::Pusher::new(&loopback).is_ok());
    let https = Config::from_toml(
        "[platform]\nurl = \"https://platform.example/x\"\n",
        Path::new("p.toml"),
    )
    .unwrap();
    assert!(community_sync::push::Pusher::new(&https).is_ok());
}

#[test]
fn platform_tls_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad_ca = dir.path().join("ca.pem");
    std::fs::write(&bad_ca, "not a certificate").unwrap();
    let base = "[platform]\nurl = \"https://platform.example/x\"\n";
    let cfg = |extra: &str| {
        let mut c =
            Config::from_toml(&format!("{base}{extra}"), &dir.path().join("c.toml")).unwrap();
        c.path = dir.path().join("c.toml");
        c
    };
    let e = community_sync::push::Pusher::new(&cfg("[platform.http]\nca_file = \"ca.pem\"\n"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("ca_file") && e.contains("ca.pem"), "{e}");
    let e = community_sync::push::Pusher::new(&cfg("client_cert = \"c.pem\"\n"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("together"), "{e}");
    let e = community_sync::push::Pusher::new(&cfg(
        "client_cert = \"c.pem\"\nclient_key = \"nokey.pem\"\n",
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("client_cert"), "{e}");
}

#[test]
fn encrypt_without_a_key_file_is_a_config_error() {
    let e = Config::from_toml(
        "[security]\nencrypt = true\n[platform]\nurl = \"http://127.0.0.1:9/x\"\n",
        Path::new("c.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("security.key_file") && e.contains("keygen"),
        "{e}"
    );
    let bad_alg = Config::from_toml(
        "[security]\nalgorithm = \"des\"\n[platform]\nurl = \"http://127.0.0.1:9/x\"\n",
        Path::new("c.toml"),
    );
    assert!(bad_alg.is_err());
}
