//! The real binary against misbehaving department systems: a business error mid full refresh
//! deletes nothing and shows in `status`; a refresh that would delete half a stream holds its
//! deletions until `sync SOURCE --full --confirm-deletes`; `check` refuses a malformed path or
//! predicate; `demo --faults` still equals the ground truth.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod vendor_support;

use community_sync::sim::variants::{Variant, VariantConfig};
use community_sync::sim::{Fault, Sim, SimOptions};
use serde_json::{json, Value};
use vendor_support::{onecard_refresh_config, write_private, ONECARD_RESPONSE};

const BIN: &str = env!("CARGO_BIN_EXE_community-sync");

/// Runs the binary with `args` on `config` (off the async threads: the servers the binary
/// talks to run on them).
async fn run(config: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("COMMUNITY_SYNC_CONFIG")
        .env_remove("RUNTIME_DIRECTORY")
        .env("NO_COLOR", "1");
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn count(store: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(store)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// One-card cardholders as a full refresh with the one-card envelope declared, the platform
/// of `sim`, a control socket of its own (no daemon answers it), short backoffs.
fn onecard_config(sim: &Sim, dir: &Path) -> (PathBuf, PathBuf) {
    let store = dir.join("store.db");
    let socket = dir.join("control.sock");
    let text = onecard_refresh_config(sim, &store, Some(&socket), ONECARD_RESPONSE, "");
    let config = dir.join("c.toml");
    write_private(&config, &text);
    (config, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_error_mid_refresh_deletes_nothing_sends_no_delete_and_shows_in_status() {
    let sim = Sim::start(SimOptions {
        seed: 3,
        residents: 600,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, store) = onecard_config(&sim, dir.path());
    let out = run(&config, &["sync", "onecard"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let cards = count(&store, "SELECT count(*) FROM source_records");
    assert!(cards > 250, "three pages at least: {cards}");
    let applied_before = sim.platform().applied.len();
    assert!(applied_before > 0, "the first run was pushed");

    // Page 2 answers {"code":500,"msg":"系统繁忙，请稍后再试","data":null} with HTTP 200,
    // longer than the retries last.
    assert!(sim
        .source_chaos()
        .inject("onecard", "cardholders", 2, Fault::Busy, 10));
    let out = run(&config, &["sync", "onecard"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("系统繁忙"), "{}", text(&out));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        0
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM outbox WHERE op = 'delete'"),
        0
    );
    let view = sim.platform();
    assert!(
        view.applied.values().all(|a| !a.deleted),
        "the platform got no delete"
    );
    let status = run(&config, &["status"]).await;
    let shown = text(&status);
    let line = shown
        .lines()
        .find(|l| l.starts_with("onecard") && l.contains("cardholders"))
        .unwrap_or_default();
    assert!(line.contains("failed"), "{shown}");
    assert!(shown.contains("code 500: 系统繁忙"), "{shown}");
    let v: Value =
        serde_json::from_slice(&run(&config, &["status", "--json"]).await.stdout).unwrap();
    assert_eq!(v["streams"][0]["last_run_status"], "failed");

    // The system recovers: the next run completes, and status says so.
    sim.source_chaos().reset();
    let out = run(&config, &["sync", "onecard"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value =
        serde_json::from_slice(&run(&config, &["status", "--json"]).await.stdout).unwrap();
    assert_eq!(v["streams"][0]["last_run_status"], "ok");
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        0
    );
    sim.shutdown().await;
}

/// A person record with a valid ID number for resident `i`.
fn person(i: usize) -> Value {
    let first17 = format!("36010219800101{:03}", i % 1000);
    let check = community_sync::normalize::id_number::check_char(&first17).unwrap();
    json!({
        "id": format!("C{i:04}"),
        "name": format!("测试{}", ["甲", "乙", "丙", "丁", "戊"][i % 5]),
        "idno": format!("{first17}{check}"),
        "mobile": format!("139{:08}", i),
    })
}

fn registry_config(dir: &Path, base_url: &str) -> PathBuf {
    let text = format!(
        r#"
[store]
path = {store:?}
[daemon]
control_socket = {socket:?}
[platform]
url = "http://127.0.0.1:9/api/v1/events"
[[sources]]
name = "registry"
base_url = "{base_url}"
[[sources.streams]]
name = "cards"
entity = "card_account"
path = "/cards"
records = "/items"
key = "id"
mode = "full_refresh"
pagination = {{ type = "page_number", page_param = "page", size_param = "size", size = 7, has_more_path = "/hasMore" }}
[sources.streams.fields]
card_no = "id"
name = "name"
id_number = "idno"
phone = "mobile"
"#,
        store = dir.join("store.db"),
        socket = dir.join("control.sock"),
    );
    let config = dir.join("c.toml");
    write_private(&config, &text);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_would_delete_half_a_stream_is_held_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let serve = |n: usize| {
        Variant::start(VariantConfig {
            custom_records: Some((0..n).map(person).collect()),
            ..VariantConfig::default()
        })
    };
    let all = serve(30).await.unwrap();
    let config = registry_config(dir.path(), &all.base_url);
    let out = run(&config, &["sync", "registry", "--no-push"]).await;
    assert!(out.status.success(), "{}", text(&out));

    // Half of the records vanish from the system.
    let half = serve(15).await.unwrap();
    let config = registry_config(dir.path(), &half.base_url);
    let out = run(&config, &["sync", "registry", "--no-push"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("would delete 15 of 30"),
        "{}",
        text(&out)
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        0
    );
    let status = run(&config, &["status"]).await;
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let shown = text(&status);
    assert!(shown.contains("registry/cards"), "{shown}");
    assert!(
        shown.contains("community-sync sync registry --full --confirm-deletes"),
        "{shown}"
    );
    let v: Value =
        serde_json::from_slice(&run(&config, &["status", "--json"]).await.stdout).unwrap();
    assert_eq!(v["held_deletions"][0]["would_delete"], 15);

    // Confirming needs the source named.
    let out = run(
        &config,
        &["sync", "--full", "--confirm-deletes", "--no-push"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs the source names"),
        "{}",
        text(&out)
    );

    let out = run(
        &config,
        &[
            "sync",
            "registry",
            "--full",
            "--confirm-deletes",
            "--no-push",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        15
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM persons WHERE retired = 1"),
        15
    );
    let status = run(&config, &["status"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    drop((all, half));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_malformed_path_or_predicate_with_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let good = registry_config(dir.path(), "http://127.0.0.1:9");
    let base = std::fs::read_to_string(&good).unwrap();
    let cases = [
        (
            base.replace(
                "phone = \"mobile\"",
                "phone = { path = [\"mobile\", \"telecom[system=phone.value\"] }",
            ),
            "sources[registry].streams[cards].fields.phone.path[1]",
            "unclosed '['",
            "name[member=value]",
        ),
        (
            base.replace(
                "mode = \"full_refresh\"",
                "mode = \"full_refresh\"\ndeleted_when = { path = \"zt\" }",
            ),
            "sources[registry].streams[cards].deleted_when",
            "say what to test",
            "equals, in",
        ),
        (
            base.replace(
                "mode = \"full_refresh\"",
                "mode = \"full_refresh\"\nskip_when = { any = [ { path = \"a..b\", equals = 1 } ] }",
            ),
            "sources[registry].streams[cards].skip_when.any[0].path",
            "empty segment",
            "remove the doubled",
        ),
        (
            base.replace(
                "[[sources.streams]]",
                "[sources.response]\nsuccess = { path = \"/code\", in = [] }\n[[sources.streams]]",
            ),
            "sources[registry].response.success.in",
            "is empty",
            "list the values",
        ),
        (
            base.replace(
                "mode = \"full_refresh\"",
                "mode = \"full_refresh\"\nmax_delete = \"ten percent\"",
            ),
            "sources[registry].streams[cards].max_delete",
            "neither a count nor a share",
            "\"10%\"",
        ),
    ];
    for (i, (text_of_config, key, what, fix)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        write_private(&path, text_of_config);
        let out = run(&path, &["check"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(shown.contains(&path.display().to_string()), "file: {shown}");
        assert!(shown.contains(key), "key {key}: {shown}");
        assert!(shown.contains(what), "what: {shown}");
        assert!(shown.contains(fix), "fix: {shown}");
    }
    let out = run(&good, &["check"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn demo_with_faults_from_the_command_line_equals_the_ground_truth() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .env_remove("COMMUNITY_SYNC_CONFIG")
        .args([
            "demo",
            "--residents",
            "400",
            "--faults",
            "--fault-rate",
            "0.4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matches_truth"], true, "{v}");
    assert!(v["faults_injected"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["golden_with_id"], v["golden_as_id_encodes"]);
}

/// `deleted_flag` pointed at a status field (正常/挂失/注销): nothing ever reads as deleted, so
/// the first run warns, naming the values and the fix, `status` keeps the finding, and the
/// next run stays quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_flag_that_never_matches_is_reported_once_with_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Value> = (0..12)
        .map(|i| {
            let mut p = person(i);
            p["zt"] = json!(["正常", "挂失", "注销"][i % 3]);
            p
        })
        .collect();
    let v = Variant::start(VariantConfig {
        custom_records: Some(records),
        ..VariantConfig::default()
    })
    .await
    .unwrap();
    let config = registry_config(dir.path(), &v.base_url);
    let text_of_config = std::fs::read_to_string(&config).unwrap().replace(
        "mode = \"full_refresh\"",
        "mode = \"full_refresh\"\ndeleted_flag = \"zt\"",
    );
    write_private(&config, &text_of_config);
    let first = run(&config, &["sync", "registry", "--no-push"]).await;
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(said.contains("matched none of 12 records"), "{said}");
    assert!(
        said.contains("\"注销\"") && said.contains("\"正常\""),
        "{said}"
    );
    assert!(
        said.contains("deleted_when = { path = \"zt\", in = ["),
        "{said}"
    );
    let second = run(&config, &["sync", "registry", "--no-push"]).await;
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        !text(&second).contains("matched none"),
        "once: {}",
        text(&second)
    );
    let status = run(&config, &["status"]).await;
    assert!(
        text(&status).contains("deleted_when never_matches"),
        "{}",
        text(&status)
    );
    drop(v);
}
