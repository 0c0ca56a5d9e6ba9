//! The review desk (`review serve`) against the real server over a store synced from the
//! simulator's hard cases: community restriction, CSRF refusal, the audited reveal, security
//! headers, undo through the desk, and (tests/review_desk_browser.rs) a real browser.

mod common;
mod desk_support;

use community_sync::audit;

use desk_support::{Desk, Http};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_reviewer_neither_sees_nor_decides_another_communitys_items() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path()).await;
    let (mine, theirs, community) = desk.items_of_two_communities();
    desk.add_reviewer("wang", &[community.as_str()], "wang-password-1");
    let wang = Http::login(&desk.base, "wang", "wang-password-1").await;

    let list = wang.get("/items").await.text().await.unwrap();
    assert!(
        list.contains(&format!("data-item=\"{mine}\"")),
        "own community's item listed"
    );
    assert!(
        !list.contains(&format!("data-item=\"{theirs}\"")),
        "another community's item is not listed"
    );
    let page = wang.get(&format!("/items/{theirs}")).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND, "nor shown");
    let csrf = wang.csrf(&format!("/items/{mine}")).await;
    for path in ["decide", "reveal", "split"] {
        let r = wang
            .post(
                &format!("/items/{theirs}/{path}"),
                &[
                    ("csrf", csrf.as_str()),
                    ("action", "accept"),
                    ("record", "1"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} refused");
    }
    assert_eq!(desk.item(theirs).state, "open", "not decided");
    assert_eq!(desk.count("SELECT count(*) FROM decisions"), 0);

    // Their own community's item they decide, as themselves, with their reason.
    let r = wang
        .post(
            &format!("/items/{mine}/decide"),
            &[
                ("csrf", csrf.as_str()),
                ("action", "reject"),
                ("reason", "不是同一人 13800138000"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let it = desk.item(mine);
    assert_eq!(
        (it.state.as_str(), it.decided_by.as_deref()),
        ("rejected", Some("desk:wang"))
    );
    let reason: String = desk.one("SELECT reason FROM decisions");
    assert!(
        reason.starts_with("不是同一人") && !reason.contains("13800138000"),
        "{reason}"
    );
    // An unrestricted colleague sees both.
    desk.add_reviewer("li", &[], "li-password-12");
    let li = Http::login(&desk.base, "li", "li-password-12").await;
    assert_eq!(
        li.get(&format!("/items/{theirs}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_a_valid_csrf_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path()).await;
    let item = desk.open_match_items()[0].id;
    desk.add_reviewer("zhao", &[], "zhao-password-1");
    let zhao = Http::login(&desk.base, "zhao", "zhao-password-1").await;
    let good = zhao.csrf(&format!("/items/{item}")).await;
    let path = format!("/items/{item}/decide");
    let missing = zhao.post(&path, &[("action", "accept")]).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(
        missing.text().await.unwrap().contains("安全令牌"),
        "the page says why"
    );
    let wrong = zhao
        .post(&path, &[("csrf", "not-the-token"), ("action", "accept")])
        .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    // The right token from another site (a browser says so) is refused too.
    let cross = zhao
        .post_with(
            &path,
            &[("csrf", good.as_str()), ("action", "accept")],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Another session's token is not this session's.
    let other = Http::login(&desk.base, "zhao", "zhao-password-1").await;
    let other_token = other.csrf(&format!("/items/{item}")).await;
    assert_ne!(other_token, good);
    let swapped = zhao
        .post(
            &path,
            &[("csrf", other_token.as_str()), ("action", "accept")],
        )
        .await;
    assert_eq!(swapped.status(), StatusCode::FORBIDDEN);
    for undo in ["/decisions/1/undo", "/logout"] {
        assert_eq!(
            zhao.post(undo, &[]).await.status(),
            StatusCode::FORBIDDEN,
            "{undo}"
        );
    }
    assert_eq!(desk.item(item).state, "open");
    assert_eq!(desk.count("SELECT count(*) FROM decisions"), 0);
    // Signing in needs the login form's own token (its cookie and field must agree).
    let forged = reqwest::Client::new()
        .post(format!("{}/login", desk.base))
        .form(&[("name", "zhao"), ("password", "zhao-password-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // And with the token the action is done.
    let ok = zhao
        .post(&path, &[("csrf", good.as_str()), ("action", "accept")])
        .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(desk.item(item).state, "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reveal_is_in_the_audit_chain_and_values_are_masked_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path()).await;
    let it = desk.open_match_items()[0].clone();
    let record = it.record_id.unwrap();
    let name = desk.record_name(record);
    desk.add_reviewer("sun", &[], "sun-password-12");
    let sun = Http::login(&desk.base, "sun", "sun-password-12").await;
    let page = sun.get(&format!("/items/{}", it.id)).await;
    let headers = page.headers().clone();
    let page = page.text().await.unwrap();
    assert!(!page.contains(&name), "the full name is masked by default");
    assert!(
        page.contains(&community_sync::mask::name(&name)),
        "masked name shown"
    );
    desk_support::assert_no_long_digit_runs(&page);
    // Pages with personal data are not cached, and frame, sniff and referrer are shut.
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        sun.session_cookie.contains("HttpOnly") && sun.session_cookie.contains("SameSite=Strict")
    );

    let before = desk.count("SELECT count(*) FROM audit");
    let csrf = desk_support::csrf_of(&page);
    let rec = record.to_string();
    let shown = sun
        .post(
            &format!("/items/{}/reveal", it.id),
            &[("csrf", csrf.as_str()), ("record", rec.as_str())],
        )
        .await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.headers()["cache-control"], "no-store");
    let shown = shown.text().await.unwrap();
    assert!(shown.contains(&name), "revealed in full");
    assert_eq!(desk.count("SELECT count(*) FROM audit"), before + 1);
    let (kind, actor, details, at): (String, String, String, String) =
        desk.row4("SELECT kind, actor, details, at FROM audit ORDER BY id DESC LIMIT 1");
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("review_reveal", "desk:sun")
    );
    let d: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(
        (d["record"].as_i64(), d["item"].as_i64()),
        (Some(record), Some(it.id))
    );
    assert!(
        !details.contains(&name),
        "the audit row holds no personal data"
    );
    assert!(at.starts_with("20"), "when: {at}");
    let chain = desk.with_store(|s| audit::verify(s.conn(), s.codec()).unwrap());
    assert!(chain.ok(), "{:?}", chain.problems);
    // A record that is not on the item's page is not revealed (nor logged).
    let stranger = desk.record_not_on(it.id).to_string();
    let r = sun
        .post(
            &format!("/items/{}/reveal", it.id),
            &[("csrf", csrf.as_str()), ("record", stranger.as_str())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(desk.count("SELECT count(*) FROM audit"), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_decision_is_the_clis_and_undo_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let desk = Desk::start(dir.path()).await;
    let it = desk.open_match_items()[0].clone();
    let (rec, cand) = (it.record_id.unwrap(), it.person_id.unwrap());
    let own = desk.person_of(rec);
    desk.add_reviewer("qian", &[], "qian-password-1");
    let qian = Http::login(&desk.base, "qian", "qian-password-1").await;
    let csrf = qian.csrf(&format!("/items/{}", it.id)).await;
    let r = qian
        .post(
            &format!("/items/{}/decide", it.id),
            &[("csrf", csrf.as_str()), ("action", "accept")],
        )
        .await;
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let did: i64 = at.rsplit('=').next().unwrap().parse().unwrap();
    assert_eq!(
        desk.person_of(rec),
        cand,
        "linked, as `review accept` links"
    );
    let pinned: i64 = desk.one(&format!(
        "SELECT person_id FROM pins WHERE record_id = {rec}"
    ));
    assert_eq!(pinned, cand);
    let audit_row: String =
        desk.one("SELECT actor FROM audit WHERE kind = 'review_decision' ORDER BY id DESC LIMIT 1");
    assert_eq!(audit_row, "desk:qian");
    let page = qian.get(&at).await.text().await.unwrap();
    assert!(
        page.contains("data-k=\"decided\""),
        "the page confirms, with an undo"
    );

    let r = qian
        .post(
            &format!("/decisions/{did}/undo"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(desk.person_of(rec), own, "back with its own resident");
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM pins WHERE record_id = {rec}"
        )),
        0
    );
    assert_eq!(desk.item(it.id).state, "open");
    let undone: Option<i64> =
        desk.one(&format!("SELECT undone_by FROM decisions WHERE id = {did}"));
    assert!(undone.is_some());
    // Undone twice: refused, nothing changes.
    let again = qian
        .post(
            &format!("/decisions/{did}/undo"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let chain = desk.with_store(|s| audit::verify(s.conn(), s.codec()).unwrap());
    assert!(chain.ok());
}
