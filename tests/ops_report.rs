//! `report --html` on a demo store: the page's figures equal `status --json`'s, and a real
//! headless browser renders them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_community-sync");

/// Runs the demo in-process into `dir`; returns the config path it wrote.
async fn demo_store(dir: &Path) -> PathBuf {
    demo_store_of(dir, 800).await
}

async fn demo_store_of(dir: &Path, residents: usize) -> PathBuf {
    let sim = common::sim(residents).await;
    let summary = community_sync::cli::demo::run_with(&sim, dir)
        .await
        .expect("demo runs");
    assert!(summary.matches_truth);
    sim.shutdown().await;
    PathBuf::from(summary.config)
}

fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `data-k="KEY">VALUE<` figure of the page, as numbers.
fn figures(page: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut rest = page;
    while let Some(i) = rest.find("data-k=\"") {
        rest = &rest[i + 8..];
        let Some(q) = rest.find('"') else { break };
        let key = rest[..q].to_string();
        let Some(gt) = rest.find('>') else { break };
        let Some(lt) = rest[gt..].find('<') else {
            break;
        };
        let text = rest[gt + 1..gt + lt].replace(',', "");
        if let Ok(n) = text.trim().parse::<i64>() {
            out.insert(key, n);
        }
    }
    out
}

fn thousands(n: i64) -> String {
    community_sync::report::thousands(n)
}

async fn html_and_status(dir: &Path) -> (String, Value) {
    let config = demo_store(dir).await;
    let html = dir.join("report.html");
    let (code, stdout, stderr) = run(&config, &["report", "--html", html.to_str().unwrap()]);
    assert_eq!(code, 0, "report failed: {stderr}");
    assert!(stdout.contains("数据质量报告"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "the table has no control characters"
    );
    let (code, status, stderr) = run(&config, &["status", "--json"]);
    assert_eq!(code, 0, "status failed: {stderr}");
    let status: Value = serde_json::from_str(&status).expect("status --json is JSON");
    (
        std::fs::read_to_string(&html).expect("html written"),
        status,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_figures_equal_status_json() {
    let dir = tempfile::tempdir().unwrap();
    let (page, status) = html_and_status(dir.path()).await;
    let f = figures(&page);
    let n = |v: &Value| v.as_i64().expect("number");

    assert_eq!(f["persons"], n(&status["persons"]));
    assert!(f["persons"] > 0);
    let by_systems = status["persons_by_systems"].as_object().unwrap();
    let mut multi = 0;
    for k in 1..=4 {
        let expected = by_systems.get(&k.to_string()).map(n).unwrap_or(0);
        assert_eq!(
            f[&format!("systems-{k}")],
            expected,
            "residents in {k} systems"
        );
        if k >= 2 {
            multi += expected;
        }
    }
    assert_eq!(f["multi-system"], multi);
    assert!(multi > 0, "the demo has residents in several systems");

    let mut all_records = 0;
    for s in status["streams"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            s["source"].as_str().unwrap(),
            s["stream"].as_str().unwrap()
        );
        assert_eq!(
            f[&format!("records:{key}")],
            n(&s["records"]),
            "records of {key}"
        );
        all_records += n(&s["records"]);
    }
    assert_eq!(f["records"], all_records);

    for (reason, count) in status["rejects_by_reason"].as_object().unwrap() {
        assert_eq!(
            f[&format!("reason:{reason}")],
            n(count),
            "quarantine {reason}"
        );
    }
    assert!(!status["rejects_by_reason"].as_object().unwrap().is_empty());
    assert_eq!(f["outbox-pending"], n(&status["outbox_pending"]));
    assert_eq!(f["outbox-sent"], n(&status["outbox_sent"]));
    assert_eq!(f["dead-letters"], n(&status["dead_letters"]));
    assert!(f["outbox-sent"] > 0);

    // Self-contained, and no full ID number (18 digits) anywhere in the page.
    for external in ["src=\"http", "href=\"http", "<script", "<link", "url("] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    let digits_run = page
        .as_bytes()
        .split(|b| !b.is_ascii_digit())
        .map(|run| run.len())
        .max()
        .unwrap_or(0);
    assert!(
        digits_run < 11,
        "a run of {digits_run} digits: unmasked personal data?"
    );
    assert!(page.contains("**"), "masked examples are shown");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed but CI is set: .ci/run installs it (apt-get install chromium)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the HTML report was not rendered");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (page, status) = html_and_status(dir.path()).await;
    let url = format!("file://{}", dir.path().join("report.html").display());
    let profile = dir.path().join("chromium-profile");
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    };
    let mut dump = Command::new(&browser);
    base(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("数据质量报告"),
        "chromium rendered no report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let persons = status["persons"].as_i64().unwrap();
    assert!(
        dom.contains(&format!("data-k=\"persons\">{}<", thousands(persons))),
        "persons in the rendered DOM"
    );
    for (k, v) in status["persons_by_systems"].as_object().unwrap() {
        assert!(
            dom.contains(&format!(
                "data-k=\"systems-{k}\">{}<",
                thousands(v.as_i64().unwrap())
            )),
            "residents in {k} systems in the rendered DOM"
        );
    }
    assert!(dom.contains("<svg"), "charts rendered");
    assert_eq!(
        page.matches("data-k=").count(),
        dom.matches("data-k=").count()
    );

    // A screenshot to look at.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ops-report.png");
    let mut snap = Command::new(&browser);
    base(&mut snap);
    let out = snap
        .arg("--hide-scrollbars")
        .arg("--window-size=1280,2600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("screenshot of the report: {}", shot.display());
}

/// Times are times, not values: never masked, and in Beijing time; record keys of the
/// quarantine examples are shown as the department system knows them, to follow them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_times_are_beijing_time_unmasked_and_keys_can_be_followed_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_store_of(dir.path(), 300).await;
    let html = dir.path().join("r.html");
    let (code, text, stderr) = run(&config, &["report", "--html", html.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let last_push_utc: String = conn
        .query_row(
            "SELECT at FROM push_log ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let beijing = chrono::DateTime::parse_from_rfc3339(&last_push_utc)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let line = text
        .lines()
        .find(|l| l.contains("last push:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("last push: {beijing} ok")), "{line}");
    assert!(!line.contains('*'), "{line}");
    assert!(
        page.contains(&format!("Last push: {beijing} ok")),
        "the page too"
    );
    assert!(text.contains("Asia/Shanghai, UTC+08:00"), "{text}");
    // A quarantined record's key, as in `rejects`, so that it can be looked up.
    let (source, key): (String, String) = conn
        .query_row(
            "SELECT source, source_key FROM rejects ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(text.contains(&format!("/{key} ")), "{key} in:\n{text}");
    let (_, rejects, _) = run(&config, &["rejects", "--source", &source, "--limit", "0"]);
    assert!(rejects.contains(&key), "{rejects}");
}
