//! `community-sync check` on good and broken configs.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_community-sync"))
}

const EXAMPLE: &str = include_str!("../config/community-sync.toml");

/// The shipped config, installed as the README says: beside it a credentials/ directory with
/// the store key and one file per secret (what the unit's LoadCredential= lines read).
fn installed_example(with_credentials: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("community-sync.toml");
    std::fs::write(&config, EXAMPLE).unwrap();
    if with_credentials {
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).unwrap();
        let out = bin()
            .arg("keygen")
            .arg("--out")
            .arg(creds.join("store-key"))
            .output()
            .unwrap();
        assert!(out.status.success());
        for (name, value) in community_sync::cli::demo::SIM_SECRETS {
            let p = creds.join(name);
            std::fs::write(&p, value).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    (dir, config)
}

#[test]
fn check_accepts_the_example_config_once_its_key_and_secrets_are_there() {
    let (_dir, config) = installed_example(true);
    let out = bin()
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 sources"), "{stdout}");
    assert!(
        stdout.contains("store key") && stdout.contains("key id"),
        "{stdout}"
    );
}

/// The service would fail to start without its key: check says so first, with the command
/// that makes one (it used to say `ok`).
#[test]
fn check_names_a_missing_store_key_and_how_to_make_it() {
    let (dir, config) = installed_example(false);
    let out = bin()
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let key = dir.path().join("credentials/store-key");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("store key"))
        .unwrap_or_default();
    assert!(
        line.contains("FAILED")
            && line.contains(&*key.to_string_lossy())
            && line.contains("community-sync keygen --out"),
        "{stdout}"
    );
    assert!(
        stdout.contains("onecard") && stdout.contains("credentials/onecard"),
        "a missing secret is named too: {stdout}"
    );
}

/// A mistyped table is named as such, not reported as what is then missing.
#[test]
fn check_names_an_unknown_top_level_table() {
    let err = check_broken(&EXAMPLE.replacen("\n[platform]\n", "\n[platfrom]\n", 1));
    assert!(
        err.contains("unknown table [platfrom]") && err.contains("did you mean `platform`"),
        "{err}"
    );
    assert!(!err.contains("missing field"), "{err}");
}

fn check_broken(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();
    let out = bin()
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken config must fail check");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("broken.toml"), "error names the file: {err}");
    err
}

#[test]
fn check_names_the_key_of_a_bad_schedule() {
    let err = check_broken(&EXAMPLE.replacen(
        "schedule = \"*/5 * * * *\"",
        "schedule = \"every five minutes\"",
        1,
    ));
    assert!(err.contains("sources[onecard].schedule"), "{err}");
}

#[test]
fn check_names_an_unknown_canonical_field() {
    let err = check_broken(&EXAMPLE.replacen("card_no = \"kh\"", "card_number = \"kh\"", 1));
    assert!(
        err.contains("sources[onecard].streams[cardholders].fields.card_number"),
        "{err}"
    );
}

#[test]
fn check_names_a_link_to_a_missing_stream() {
    let err = check_broken(&EXAMPLE.replacen(
        "link = { stream = \"cardholders\", field = \"card_no\" }",
        "link = { stream = \"holders\", field = \"card_no\" }",
        1,
    ));
    assert!(err.contains("streams[transactions].link.stream"), "{err}");
}

#[test]
fn check_reports_toml_type_errors_with_the_key() {
    let err = check_broken(&EXAMPLE.replacen("batch_size = 500", "batch_size = \"lots\"", 1));
    assert!(err.contains("batch_size"), "{err}");
}

/// A simulator, and a config for it in a temporary directory.
async fn sim_and_config(
    residents: usize,
) -> (
    community_sync::sim::Sim,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let sim = community_sync::sim::Sim::start(community_sync::sim::SimOptions {
        seed: 3,
        residents,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        community_sync::cli::demo::write_sim_config(&sim, dir.path(), &dir.path().join("s.db"))
            .unwrap();
    (sim, dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_every_stream_and_names_a_bad_secret() {
    let (sim, dir, config) = sim_and_config(200).await;
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let platform = stdout
        .lines()
        .find(|l| l.starts_with("platform"))
        .unwrap_or_default();
    let port = sim
        .urls
        .platform
        .split(':')
        .nth(2)
        .unwrap_or("?")
        .split('/')
        .next()
        .unwrap_or("?")
        .to_string();
    assert!(
        platform.contains(" ok ") && platform.contains(&format!("127.0.0.1:{port}")),
        "the platform is probed: {stdout}"
    );
    assert!(
        sim.platform().applications.is_empty(),
        "the probe changed nothing"
    );
    for stream in [
        "cardholders",
        "transactions",
        "volunteers",
        "service_records",
        "elders",
        "service_orders",
        "patients",
        "followups",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(stream) && l.contains(" ok ")),
            "{stream} not ok in:\n{stdout}"
        );
    }
    // A wrong secret for one source: that source fails with the reason, the others still pass.
    std::fs::write(dir.path().join("credentials/eldercare"), "wrong-key").unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let elders = stdout.lines().find(|l| l.contains("elders")).unwrap();
    assert!(
        elders.contains("FAILED") && elders.contains("credentials"),
        "{elders}"
    );
    assert!(stdout
        .lines()
        .any(|l| l.contains("patients") && l.contains(" ok ")));
    assert!(
        !stdout.contains("wrong-key"),
        "the secret must not be printed"
    );
    sim.shutdown().await;
}

/// Three distinct ports nobody listens on (bound together, then released).
fn closed_ports() -> (u16, u16, u16) {
    let l: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let p: Vec<u16> = l.iter().map(|l| l.local_addr().unwrap().port()).collect();
    (p[0], p[1], p[2])
}

/// A refused connection is reported as one, with host:port: during OAuth it must not send
/// the operator to the credentials; a source and the platform name where they were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_names_host_port_and_the_real_cause() {
    let (sim, _dir, config) = sim_and_config(100).await;
    let (token_port, source_port, platform_port) = closed_ports();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "token_url = \"/oauth/token\"",
            &format!("token_url = \"http://127.0.0.1:{token_port}/oauth/token\""),
        )
        .replace(
            &sim.urls.eldercare,
            &format!("http://127.0.0.1:{source_port}"),
        )
        .replace(
            &sim.urls.platform,
            &format!("http://127.0.0.1:{platform_port}/api/v1/events"),
        )
        .replace("retries = 4", "retries = 0");
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what) && l.contains("FAILED"))
            .unwrap_or_else(|| panic!("{what} FAILED in:\n{stdout}"))
            .to_string()
    };
    let volunteers = line("volunteers");
    assert!(
        volunteers.contains(&format!("127.0.0.1:{token_port}"))
            && volunteers.to_lowercase().contains("refused")
            && !volunteers.contains("check the credentials"),
        "{volunteers}"
    );
    let elders = line("elders");
    assert!(
        elders.contains(&format!("127.0.0.1:{source_port}"))
            && elders.to_lowercase().contains("refused"),
        "{elders}"
    );
    let platform = line("platform");
    assert!(
        platform.contains(&format!("127.0.0.1:{platform_port}"))
            && platform.to_lowercase().contains("refused"),
        "{platform}"
    );
    // The others still pass.
    assert!(stdout
        .lines()
        .any(|l| l.contains("patients") && l.contains(" ok ")));
    sim.shutdown().await;
}
