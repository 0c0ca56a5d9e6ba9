//! The review desk in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`) against the real server over a store synced from the
//! simulator's hard cases. A reviewer signs in through a one-time link, opens an item, reads
//! the comparison, accepts; after the next reconcile the record is with the candidate
//! resident. Screenshots at 1280×800 and on a 390-wide phone go to the test output directory
//! (`$CARGO_TARGET_TMPDIR/review-desk/`); with `UPDATE_DOCS_SCREENSHOT=1` the item page's also
//! replaces `docs/review-desk-item.png`.
//!
//! Without chromium and chromedriver the test says what it skipped, unless `CI` is set: then
//! it fails (`.ci/run` installs both).

mod common;
mod desk_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use community_sync::pipeline;
use community_sync::reconcile;
use desk_support::Desk;
use fantoccini::{Client, ClientBuilder, Locator};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&paths)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Browser and driver, or the reason they are missing (a failure under CI).
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let browser = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    match (browser, driver) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            let why = "chromium and chromedriver are needed (apt-get install chromium chromium-driver fonts-wqy-microhei)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {why}; CI is set, so this test must run: .ci/run installs them"
            );
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

async fn browser(browser: &Path, driver: &Path, profile: &Path) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": browser.display().to_string(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=zh-CN",
                "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = caps.as_object().cloned().unwrap_or_default();
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no WebDriver session from chromedriver at {url}: {last:?}");
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("review-desk");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = out_dir().join(name);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

/// Clicks what `locator` finds and waits until the browser has left the page (its old root
/// element goes stale), so that what is read next is the new page's.
async fn click_to(c: &Client, locator: Locator<'_>) -> Result<(), fantoccini::error::CmdError> {
    let old = c.find(Locator::Css("html")).await?;
    c.find(locator).await?.click().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while old.tag_name().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the click did not lead to a new page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.wait().for_element(Locator::Css("body")).await?;
    Ok(())
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The page's widest element fits the viewport (nothing forces a sideways scroll of the page
/// itself; wide tables scroll inside their own box).
async fn assert_fits(c: &Client, width: i64) {
    let w = c
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    let w = w.as_i64().unwrap_or(i64::MAX);
    assert!(w <= width, "the page is {w} px wide in a {width} px window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_accepts_an_item_and_the_resident_is_linked() {
    let test = "a_reviewer_signs_in_accepts_an_item_and_the_resident_is_linked";
    let Some((chromium, chromedriver)) = tools(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path()).await;
    let (_driver, c) = browser(&chromium, &chromedriver, &dir.path().join("profile")).await;
    let result = walk(&desk, &c).await;
    let _ = c.close().await;
    result.unwrap();
}

async fn walk(desk: &Desk, c: &Client) -> Result<(), fantoccini::error::CmdError> {
    c.set_window_size(1280, 800).await?;
    // A one-time link, as `review users add` prints it: set a password, signed in.
    let link = desk.link_for("wang", &[]);
    c.goto(&link).await?;
    c.find(Locator::Id("password"))
        .await?
        .send_keys("wang-password-1")
        .await?;
    c.find(Locator::Id("password2"))
        .await?
        .send_keys("wang-password-1")
        .await?;
    click_to(c, Locator::Id("set-password")).await?;
    assert_eq!(text_of(c, "[data-k=who]").await, "wang");
    // The link worked once only.
    // The queue, Chinese first, oldest first.
    let heading = text_of(c, "h1").await;
    assert!(heading.contains("待复核"), "{heading}");
    shot(c, "queue-1280x800.png").await;
    assert_fits(c, 1280).await;

    // The item: a match whose record is alone with its own resident.
    let it = desk
        .open_match_items()
        .into_iter()
        .find(|i| desk.person_of(i.record_id.unwrap()) != i.person_id.unwrap())
        .expect("an open match item");
    let (rec, cand) = (it.record_id.unwrap(), it.person_id.unwrap());
    click_to(c, Locator::Css(&format!("a[href='/items/{}']", it.id))).await?;
    let explain = text_of(c, "#explain").await;
    assert!(
        explain.contains("比对结果") && explain.contains("姓名"),
        "{explain}"
    );
    let total = text_of(c, "[data-k=total]").await;
    // The facts `explain` gives now (the item's stored score is from when it was raised).
    let explained = desk.with_store(|s| {
        community_sync::desk::queue::explain(s, &desk.ctx.config, rec, cand)
            .unwrap()
            .unwrap()
    });
    assert_eq!(
        total,
        format!("{:.2}", explained.total),
        "the score explain gives"
    );
    let records = text_of(c, "#records").await;
    assert!(
        records.contains("本条记录") && records.contains("候选居民"),
        "{records}"
    );
    let page = c.source().await?;
    desk_support::assert_no_long_digit_runs(&page);
    let item_shot = shot(c, "item-1280x800.png").await;
    assert_fits(c, 1280).await;
    // The whole item page (for the docs).
    c.set_window_size(1280, 1900).await?;
    let full = shot(c, "item-1280-full.png").await;
    c.set_window_size(1280, 800).await?;
    if std::env::var_os("UPDATE_DOCS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/review-desk-item.png");
        std::fs::copy(&full, docs).unwrap();
    }
    drop(item_shot);

    // English, then back.
    click_to(c, Locator::Css("a.lang")).await?;
    assert!(text_of(c, "#explain")
        .await
        .contains("How the records compare"));
    click_to(c, Locator::Css("a.lang")).await?;

    // On a phone.
    c.set_window_size(390, 844).await?;
    c.refresh().await?;
    shot(c, "item-390-phone.png").await;
    assert_fits(c, 390).await;
    c.goto(&format!("{}/items", desk.base)).await?;
    shot(c, "queue-390-phone.png").await;
    assert_fits(c, 390).await;
    c.goto(&format!("{}/items/{}", desk.base, it.id)).await?;
    c.set_window_size(1280, 800).await?;

    // Accept, with a reason.
    c.find(Locator::Id("reason"))
        .await?
        .send_keys("同一人，电话核实")
        .await?;
    click_to(c, Locator::Id("accept")).await?;
    let notice = text_of(c, "[data-k=decided]").await;
    assert!(notice.contains("已记录决定"), "{notice}");
    assert_eq!(text_of(c, "[data-k=state]").await, "已接受");
    shot(c, "item-decided-1280x800.png").await;

    // The next reconcile (a sync) keeps the record with the candidate resident.
    pipeline::sync(&desk.ctx, &common::sync_options(false))
        .await
        .expect("sync");
    {
        let mut g = desk.ctx.store.lock().unwrap();
        g.conn()
            .execute("UPDATE source_records SET dirty = 1", [])
            .unwrap();
        reconcile::reconcile(&mut g, &desk.ctx.config).unwrap();
    }
    assert_eq!(desk.person_of(rec), cand, "linked after the next reconcile");
    let (by, reason): (String, String) = desk.with_store(|s| {
        s.conn()
            .query_row(
                "SELECT by_user, reason FROM decisions ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    });
    assert_eq!(
        (by.as_str(), reason.as_str()),
        ("desk:wang", "同一人，电话核实")
    );

    // The decisions page lists it, with an undo.
    click_to(c, Locator::Css("header a[href='/decisions']")).await?;
    let list = text_of(c, "table.decisions").await;
    assert!(
        list.contains("desk:wang") && list.contains("撤销"),
        "{list}"
    );
    shot(c, "decisions-1280x800.png").await;

    // Sign out: the session is gone.
    click_to(c, Locator::Css("header form button")).await?;
    c.goto(&format!("{}/items", desk.base)).await?;
    assert!(c.current_url().await?.path().ends_with("/login"));
    Ok(())
}
