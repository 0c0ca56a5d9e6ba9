//! The .deb built by packaging/build-deb.sh: unpacked into a scratch root with `dpkg -x`, every
//! file is where the systemd unit and the default config expect it.
//!
//! Skips with a notice when no package was built (outside CI); in CI (`CI` set) a missing
//! package is a failure, since .ci/run builds it before the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn built_deb() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("community-sync_{}", env!("CARGO_PKG_VERSION")))
            })
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
}

/// `Key=value` lines of a unit file.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .collect()
}

fn inside(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

#[test]
fn deb_installs_every_file_where_the_unit_expects_it() {
    let Some(deb) = built_deb() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no target/debian/community-sync_*.deb but CI is set: .ci/run runs packaging/build-deb.sh first"
        );
        eprintln!("SKIPPED: no .deb built; run packaging/build-deb.sh (needs cargo-deb) to check the package");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .status()
        .expect("dpkg runs");
    assert!(status.success(), "dpkg -x {}", deb.display());
    let r = root.path();

    // The unit, in either systemd unit directory.
    let unit_path = [
        "lib/systemd/system/community-sync.service",
        "usr/lib/systemd/system/community-sync.service",
    ]
    .iter()
    .map(|p| r.join(p))
    .find(|p| p.is_file())
    .expect("the package ships community-sync.service under /lib or /usr/lib/systemd/system");
    let unit = std::fs::read_to_string(&unit_path).unwrap();

    // ExecStart's binary exists, is executable and runs; its --config file is shipped.
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let argv: Vec<&str> = exec[0]
        .trim_start_matches(['-', '@', '+', '!', ':'])
        .split_whitespace()
        .collect();
    assert_eq!(argv[0], "/usr/bin/community-sync");
    let bin = inside(r, argv[0]);
    let meta = std::fs::metadata(&bin).expect("binary shipped");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_ne!(meta.permissions().mode() & 0o111, 0, "binary is executable");
    }
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("packaged binary runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let config_arg = argv
        .windows(2)
        .find(|w| w[0] == "--config" || w[0] == "-c")
        .map(|w| w[1])
        .unwrap_or("/etc/community-sync/community-sync.toml");
    assert_eq!(config_arg, "/etc/community-sync/community-sync.toml");
    let config = std::fs::read_to_string(inside(r, config_arg)).expect("default config shipped");

    // The config's store lives in the unit's StateDirectory.
    let state = unit_values(&unit, "StateDirectory");
    assert!(!state.is_empty(), "the unit has a StateDirectory");
    let state_dir = format!(
        "/var/lib/{}/",
        state[0].split_whitespace().next().unwrap_or("")
    );
    let store_line = config
        .lines()
        .find(|l| l.trim_start().starts_with("path") && l.contains(".db"))
        .expect("the config names a store path");
    assert!(
        store_line.contains(&state_dir),
        "store {store_line} is under {state_dir}"
    );
    if let Some(cfg_dir) = unit_values(&unit, "ConfigurationDirectory").first() {
        assert!(
            config_arg.starts_with(&format!("/etc/{cfg_dir}/")),
            "config under ConfigurationDirectory"
        );
    }

    // The packaged config names the store key and every secret as credentials the unit loads
    // (LoadCredential=NAME:/etc/community-sync/credentials/NAME), and nothing else.
    let loaded: Vec<&str> = unit_values(&unit, "LoadCredential")
        .iter()
        .filter_map(|v| v.split_once(':').map(|(name, _)| name))
        .collect();
    for name in config
        .split("${CREDENTIALS_DIRECTORY}/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|n| !n.contains(' '))
    {
        let commented = config
            .lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains(&format!("/{name}\"")));
        assert!(
            loaded.contains(&name) || commented,
            "the config reads credential {name} but the unit does not load it"
        );
    }
    assert!(loaded.contains(&"store-key"), "{loaded:?}");

    // Before the install's keygen step, check says which key is missing and how to make it.
    let check = || {
        Command::new(&bin)
            .arg("--config")
            .arg(inside(r, config_arg))
            .arg("check")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("etc/community-sync/credentials/store-key") && stdout.contains("keygen"),
        "{stdout}"
    );
    // The README's steps: the key, then one root-only file per secret.
    let creds = inside(r, "/etc/community-sync/credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let out = Command::new(&bin)
        .arg("keygen")
        .arg("--out")
        .arg(creds.join("store-key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in loaded.iter().filter(|n| **n != "store-key") {
        let p = creds.join(name);
        std::fs::write(&p, "a-secret\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let out = check();
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Man pages (one per command, as the main page lists them) and completions.
    for f in [
        "usr/share/man/man1/community-sync.1.gz",
        "usr/share/man/man1/community-sync-sync.1.gz",
        "usr/share/man/man1/community-sync-review-list.1.gz",
        "usr/share/bash-completion/completions/community-sync",
        "usr/share/zsh/vendor-completions/_community-sync",
        "usr/share/fish/vendor_completions.d/community-sync.fish",
    ] {
        let len = std::fs::metadata(r.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} shipped");
    }

    // The config is a conffile (not overwritten on upgrade).
    let control = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path())
        .status()
        .unwrap();
    assert!(status.success());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/community-sync/community-sync.toml"),
        "{conffiles}"
    );
}
