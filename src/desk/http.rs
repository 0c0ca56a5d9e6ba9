//! Routes, sign-in, CSRF and security headers.
//!
//! Every POST but sign-in carries the session's CSRF token (a hidden field, compared in
//! constant time) and must not come from another site (`Sec-Fetch-Site`); sign-in carries a
//! token that is also in a short-lived cookie (double submit), and setting a password needs
//! the one-time link's token. Cookies are HttpOnly and SameSite=Strict. Every response
//! carries a CSP that allows only this server's stylesheet and script, and pages are
//! `no-store`: they hold personal data.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq as _;

use crate::reconcile::review::{self, By, Decision};
use crate::store::Store;

use super::accounts::{self, Session};
use super::pages::{self, Frame, ItemView};
use super::queue::{self, Filter};
use super::text::{t, Lang};
use super::{Desk, DeskError};

const SESSION_COOKIE: &str = "desk_session";
const LOGIN_COOKIE: &str = "desk_login";
const LANG_COOKIE: &str = "desk_lang";

const CSS: &str = include_str!("static/desk.css");
const JS: &str = include_str!("static/desk.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The desk's routes, with the security headers on every response.
pub fn router(desk: Desk) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/items") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/welcome/{token}", get(welcome_page))
        .route("/welcome", post(welcome))
        .route("/lang/{code}", get(set_lang))
        .route("/items", get(items))
        .route("/items/{id}", get(item))
        .route("/items/{id}/decide", post(decide))
        .route("/items/{id}/split", post(split))
        .route("/items/{id}/reveal", post(reveal))
        .route("/decisions", get(decisions))
        .route("/decisions/{id}/undo", post(undo))
        .route("/static/desk.css", get(|| async { asset("text/css", CSS) }))
        .route(
            "/static/desk.js",
            get(|| async { asset("text/javascript", JS) }),
        )
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(desk)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn with_cookie(mut r: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn cookie(desk: &Desk, name: &str, value: &str, path: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if desk.opts.secure_cookies {
        c.push_str("; Secure");
    }
    c
}

fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn lang(headers: &HeaderMap) -> Lang {
    read_cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or(Lang::Zh)
}

/// A url-encoded form body.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Bytes) -> Form {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Not sent by another site (browsers that send `Sec-Fetch-Site`).
fn same_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == "same-origin" || v == "none")
}

impl Desk {
    /// Runs store work on a blocking thread.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store, &crate::config::Config) -> Result<T, DeskError> + Send + 'static,
    ) -> Result<T, DeskError> {
        let store = self.store.clone();
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = store.lock().map_err(|_| DeskError::Poisoned)?;
            f(&mut g, &config)
        })
        .await
        .map_err(|_| DeskError::Poisoned)?
    }

    fn tz(&self) -> chrono_tz::Tz {
        self.config
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }

    fn frame<'a>(
        &self,
        headers: &HeaderMap,
        session: Option<&'a Session>,
        here: &'a str,
    ) -> Frame<'a> {
        Frame {
            lang: lang(headers),
            tz: self.tz(),
            session,
            here,
        }
    }

    /// The request's session, if its cookie names a live one.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, DeskError> {
        let Some(token) = read_cookie(headers, SESSION_COOKIE).map(str::to_string) else {
            return Ok(None);
        };
        let life = self.opts.life;
        self.with_store(move |s, _| accounts::session(s.conn(), &token, life))
            .await
    }

    fn error_page(
        &self,
        headers: &HeaderMap,
        session: Option<&Session>,
        e: &DeskError,
    ) -> Response {
        let f = self.frame(headers, session, "/items");
        let (status, title) = match e {
            DeskError::Review(_) | DeskError::Invalid(_) => {
                (StatusCode::CONFLICT, t(f.lang, "refused"))
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, t(f.lang, "error")),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %crate::mask::scrub_text(&e.to_string()), "review desk request failed");
        }
        let text = crate::mask::scrub_text(&e.to_string());
        html(status, pages::message(&f, title, &text))
    }

    fn not_found(&self, headers: &HeaderMap, session: &Session) -> Response {
        let f = self.frame(headers, Some(session), "/items");
        html(
            StatusCode::NOT_FOUND,
            pages::message(&f, t(f.lang, "not_found"), t(f.lang, "not_found")),
        )
    }

    fn csrf_refused(&self, headers: &HeaderMap, session: &Session) -> Response {
        tracing::warn!(reviewer = %session.reviewer.name, "review desk refused an action without a valid CSRF token");
        let f = self.frame(headers, Some(session), "/items");
        html(
            StatusCode::FORBIDDEN,
            pages::message(&f, t(f.lang, "refused"), t(f.lang, "csrf_refused")),
        )
    }
}

/// The session of a page request, else a redirect to sign in.
macro_rules! signed_in {
    ($desk:expr, $headers:expr) => {
        match $desk.session(&$headers).await {
            Ok(Some(s)) => s,
            Ok(None) => return redirect("/login"),
            Err(e) => return $desk.error_page(&$headers, None, &e),
        }
    };
}

/// The session and form of an action, else a redirect to sign in or a refusal.
macro_rules! action {
    ($desk:expr, $headers:expr, $body:expr) => {{
        let s = signed_in!($desk, $headers);
        let form = Form::parse(&$body);
        let token_ok = form.get("csrf").is_some_and(|c| equal(c, &s.csrf));
        if !token_ok || !same_site(&$headers) {
            return $desk.csrf_refused(&$headers, &s);
        }
        (s, form)
    }};
}

async fn login_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    if let Ok(Some(_)) = desk.session(&headers).await {
        return redirect("/items");
    }
    login_form(&desk, &headers, StatusCode::OK, false)
}

fn login_form(desk: &Desk, headers: &HeaderMap, status: StatusCode, failed: bool) -> Response {
    let (token, _) = accounts::new_token();
    let f = desk.frame(headers, None, "/login");
    let page = html(status, pages::login(&f, &token, failed));
    with_cookie(
        page,
        cookie(desk, LOGIN_COOKIE, &token, "/login", Some(1800)),
    )
}

async fn login(State(desk): State<Desk>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let double_submit = match (form.get("login_csrf"), read_cookie(&headers, LOGIN_COOKIE)) {
        (Some(a), Some(b)) => equal(a, b),
        _ => false,
    };
    if !double_submit || !same_site(&headers) {
        return login_form(&desk, &headers, StatusCode::FORBIDDEN, true);
    }
    let name = form.get("name").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let n = name.clone();
    let check = match desk
        .with_store(move |s, _| accounts::login_check(s.conn(), &n))
        .await
    {
        Ok(c) => c,
        Err(e) => return desk.error_page(&headers, None, &e),
    };
    let hash = check.hash.clone();
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(reviewer) = check.reviewer else {
        tracing::info!("review desk: sign-in with an unknown or disabled name refused");
        return login_form(&desk, &headers, StatusCode::UNAUTHORIZED, true);
    };
    let ok = ok && !check.locked;
    let life = desk.opts.life;
    let id = reviewer.id;
    let started = desk
        .with_store(move |s, _| {
            if !check.locked {
                accounts::login_outcome(s.conn(), id, ok)?;
            }
            ok.then(|| accounts::start_session(s.conn(), id, life))
                .transpose()
        })
        .await;
    match started {
        Ok(Some(token)) => {
            tracing::info!(reviewer = %reviewer.name, "review desk: signed in");
            let r = with_cookie(
                redirect("/items"),
                cookie(&desk, SESSION_COOKIE, &token, "/", None),
            );
            with_cookie(r, cookie(&desk, LOGIN_COOKIE, "", "/login", Some(0)))
        }
        Ok(None) => {
            tracing::info!(reviewer = %reviewer.name, locked = check.locked, "review desk: sign-in refused");
            login_form(&desk, &headers, StatusCode::UNAUTHORIZED, true)
        }
        Err(e) => desk.error_page(&headers, None, &e),
    }
}

async fn logout(State(desk): State<Desk>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, _) = action!(desk, headers, body);
    let hash = s.token_hash.clone();
    if let Err(e) = desk
        .with_store(move |st, _| accounts::end_session(st.conn(), &hash))
        .await
    {
        return desk.error_page(&headers, None, &e);
    }
    with_cookie(
        redirect("/login"),
        cookie(&desk, SESSION_COOKIE, "", "/", Some(0)),
    )
}

async fn welcome_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let tk = token.clone();
    let found = desk
        .with_store(move |s, _| accounts::link_reviewer(s.conn(), &tk))
        .await;
    let f = desk.frame(&headers, None, "/login");
    match found {
        Ok(Some(r)) => html(StatusCode::OK, pages::welcome(&f, &token, &r.name, None)),
        Ok(None) => html(
            StatusCode::GONE,
            pages::message(&f, t(f.lang, "refused"), t(f.lang, "bad_link")),
        ),
        Err(e) => desk.error_page(&headers, None, &e),
    }
}

async fn welcome(State(desk): State<Desk>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let token = form.get("token").unwrap_or("").to_string();
    let (pw, pw2) = (
        form.get("password").unwrap_or(""),
        form.get("password2").unwrap_or(""),
    );
    let f = desk.frame(&headers, None, "/login");
    let tk = token.clone();
    let reviewer = match desk
        .with_store(move |s, _| accounts::link_reviewer(s.conn(), &tk))
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html(
                StatusCode::GONE,
                pages::message(&f, t(f.lang, "refused"), t(f.lang, "bad_link")),
            )
        }
        Err(e) => return desk.error_page(&headers, None, &e),
    };
    let problem = if pw != pw2 {
        Some("password_mismatch")
    } else if pw.chars().count() < accounts::MIN_PASSWORD_CHARS {
        Some("password_short")
    } else {
        None
    };
    if let Some(p) = problem {
        let page = pages::welcome(&f, &token, &reviewer.name, Some(t(f.lang, p)));
        return html(StatusCode::BAD_REQUEST, page);
    }
    let pw = pw.to_string();
    let hash = match tokio::task::spawn_blocking(move || accounts::hash_password(&pw)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return desk.error_page(&headers, None, &e),
        Err(_) => return desk.error_page(&headers, None, &DeskError::Poisoned),
    };
    let life = desk.opts.life;
    let done = desk
        .with_store(move |s, _| {
            let codec = s.codec().clone();
            let tx = s.conn_mut().transaction()?;
            let r = accounts::redeem_link(&tx, &token, &hash)?;
            super::audit(
                &tx,
                &codec,
                &crate::audit::Actor::named(r.actor()),
                "reviewer_account",
                &serde_json::json!({ "reviewer": r.name, "change": "password set through a one-time link" }),
            )?;
            let session = accounts::start_session(&tx, r.id, life)?;
            tx.commit()?;
            Ok(session)
        })
        .await;
    match done {
        Ok(session) => with_cookie(
            redirect("/items"),
            cookie(&desk, SESSION_COOKIE, &session, "/", None),
        ),
        Err(e) => desk.error_page(&headers, None, &e),
    }
}

#[derive(serde::Deserialize)]
struct Back {
    back: Option<String>,
}

async fn set_lang(
    State(desk): State<Desk>,
    Path(code): Path<String>,
    Query(q): Query<Back>,
) -> Response {
    let Some(l) = Lang::parse(&code) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    // Only a path on this server (never `//host` or a scheme).
    let back = q
        .back
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/items".into());
    with_cookie(
        redirect(&back),
        cookie(&desk, LANG_COOKIE, l.code(), "/", Some(365 * 86400)),
    )
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    community: Option<String>,
    kind: Option<String>,
    page: Option<usize>,
}

async fn items(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let s = signed_in!(desk, headers);
    let filter = Filter {
        community: q.community.filter(|c| !c.is_empty()),
        kind: q.kind.filter(|k| !k.is_empty()),
    };
    let who = s.reviewer.clone();
    let fl = filter.clone();
    let listed = desk
        .with_store(move |st, _| queue::open_items(st, &who, &fl))
        .await;
    let (entries, communities) = match listed {
        Ok(x) => x,
        Err(e) => return desk.error_page(&headers, Some(&s), &e),
    };
    let here = format!("/items?{}", url_query(&filter));
    let f = desk.frame(&headers, Some(&s), &here);
    let page = q.page.unwrap_or(0);
    html(
        StatusCode::OK,
        pages::queue(
            &f,
            &entries,
            &communities,
            &filter,
            page,
            desk.opts.per_page,
        ),
    )
}

fn url_query(filter: &Filter) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(c) = &filter.community {
        q.append_pair("community", c);
    }
    if let Some(k) = &filter.kind {
        q.append_pair("kind", k);
    }
    q.finish()
}

#[derive(serde::Deserialize, Default)]
struct ItemQuery {
    decided: Option<i64>,
}

async fn item(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<ItemQuery>,
) -> Response {
    let s = signed_in!(desk, headers);
    render_item(&desk, &headers, &s, id, None, q.decided, StatusCode::OK).await
}

/// The item page (`revealed`: the record shown in full in this response).
async fn render_item(
    desk: &Desk,
    headers: &HeaderMap,
    s: &Session,
    id: i64,
    revealed: Option<i64>,
    decided: Option<i64>,
    status: StatusCode,
) -> Response {
    let who = s.reviewer.clone();
    let loaded = desk
        .with_store(move |st, config| item_data(st, config, &who, id, decided))
        .await;
    match loaded {
        Ok(Some((scope, explanation, golden, decisions, decided, next))) => {
            let here = format!("/items/{id}");
            let f = desk.frame(headers, Some(s), &here);
            let v = ItemView {
                scope: &scope,
                explanation,
                golden,
                decisions,
                revealed,
                decided,
                next,
            };
            html(status, pages::item(&f, &v))
        }
        Ok(None) => desk.not_found(headers, s),
        Err(e) => desk.error_page(headers, Some(s), &e),
    }
}

type ItemData = (
    queue::Scope,
    Option<queue::Explanation>,
    Option<crate::model::PersonFields>,
    Vec<queue::DecisionRow>,
    Option<i64>,
    Option<i64>,
);

fn item_data(
    st: &mut Store,
    config: &crate::config::Config,
    who: &accounts::Reviewer,
    id: i64,
    decided: Option<i64>,
) -> Result<Option<ItemData>, DeskError> {
    let Some(scope) = queue::visible_item(st, who, id)? else {
        return Ok(None);
    };
    let explanation = match (scope.item.kind.as_str(), scope.item.record_id, scope.person) {
        ("match", Some(r), Some(p)) => queue::explain(st, config, r, p)?,
        _ => None,
    };
    let golden = match (scope.item.kind.as_str(), scope.person) {
        ("match", _) | (_, None) => None,
        (_, Some(p)) => Some(golden_of(st, p)?),
    };
    let decisions = queue::decisions_on(st.conn(), id)?;
    let decided = decided.filter(|d| {
        decisions
            .iter()
            .any(|x| x.id == *d && x.undone_by.is_none())
    });
    let next = if decided.is_some() {
        let (entries, _) = queue::open_items(st, who, &Filter::default())?;
        entries.iter().map(|e| e.scope.item.id).find(|i| *i != id)
    } else {
        None
    };
    Ok(Some((scope, explanation, golden, decisions, decided, next)))
}

/// A resident's golden record (for conflicts: the value that stands).
fn golden_of(st: &Store, pid: i64) -> Result<crate::model::PersonFields, DeskError> {
    let codec = st.codec();
    let p = st.conn().query_row(
        "SELECT name, id_number, gender, birth_date, phone, address, community FROM persons WHERE id = ?1",
        [pid],
        |r| {
            Ok(crate::model::PersonFields {
                name: codec.open(r.get_ref(0)?)?,
                id_number: codec.open(r.get_ref(1)?)?,
                gender: codec.open(r.get_ref(2)?)?.and_then(|g| g.parse().ok()),
                birth_date: codec.open(r.get_ref(3)?)?,
                phone: codec.open(r.get_ref(4)?)?,
                address: codec.open(r.get_ref(5)?)?,
                community: codec.open(r.get_ref(6)?)?,
            })
        },
    );
    match p {
        Ok(p) => Ok(p),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(Default::default()),
        Err(e) => Err(e.into()),
    }
}

/// Records one decision by the signed-in reviewer through the CLI's path.
async fn decide_as(
    desk: &Desk,
    s: &Session,
    d: Decision,
    reason: Option<String>,
) -> Result<i64, DeskError> {
    let actor = s.reviewer.actor();
    let name = s.reviewer.name.clone();
    let desc = format!("{d:?}");
    let did = desk
        .with_store(move |st, config| {
            let by = By {
                actor: &actor,
                reason: reason.as_deref(),
            };
            Ok(review::decide(st, config, &d, &by)?.decision)
        })
        .await?;
    tracing::info!(reviewer = %name, decision = did, what = %desc, "review desk decision");
    Ok(did)
}

/// The item's scope if the reviewer may see it.
async fn scope_for(desk: &Desk, s: &Session, id: i64) -> Result<Option<queue::Scope>, DeskError> {
    let who = s.reviewer.clone();
    desk.with_store(move |st, _| queue::visible_item(st, &who, id))
        .await
}

async fn decide(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let (s, form) = action!(desk, headers, body);
    let scope = match scope_for(&desk, &s, id).await {
        Ok(Some(x)) => x,
        Ok(None) => return desk.not_found(&headers, &s),
        Err(e) => return desk.error_page(&headers, Some(&s), &e),
    };
    let d = match form.get("action") {
        Some("accept") => Decision::Accept { item: id },
        Some("reject") => Decision::Reject { item: id },
        Some("skip") => Decision::Skip { item: id },
        Some("merge") => match (scope.person, scope.own_person) {
            (Some(survivor), Some(other)) if survivor != other && scope.item.state == "open" => {
                Decision::Merge { survivor, other }
            }
            _ => {
                return desk.error_page(
                    &headers,
                    Some(&s),
                    &DeskError::Invalid("this item has no two residents to merge".into()),
                )
            }
        },
        _ => {
            return desk.error_page(
                &headers,
                Some(&s),
                &DeskError::Invalid("unknown action".into()),
            )
        }
    };
    let reason = form.get("reason").map(str::to_string);
    match decide_as(&desk, &s, d, reason).await {
        Ok(did) => redirect(&format!("/items/{id}?decided={did}")),
        Err(e) => desk.error_page(&headers, Some(&s), &e),
    }
}

async fn split(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let (s, form) = action!(desk, headers, body);
    let scope = match scope_for(&desk, &s, id).await {
        Ok(Some(x)) => x,
        Ok(None) => return desk.not_found(&headers, &s),
        Err(e) => return desk.error_page(&headers, Some(&s), &e),
    };
    let person = form.get("person").and_then(|p| p.parse::<i64>().ok());
    let records: BTreeSet<i64> = form.all("record").filter_map(|r| r.parse().ok()).collect();
    // Only a resident on this page, and only records shown on it as that resident's.
    let shown: BTreeSet<i64> = scope
        .all_records()
        .filter(|r| r.person_id.is_some() && r.person_id == person)
        .map(|r| r.id)
        .collect();
    let ok = person.is_some_and(|p| Some(p) == scope.person || Some(p) == scope.own_person)
        && !records.is_empty()
        && records.is_subset(&shown);
    let Some(person) = person.filter(|_| ok) else {
        return desk.error_page(
            &headers,
            Some(&s),
            &DeskError::Invalid("select records of one resident shown on this page".into()),
        );
    };
    let d = Decision::Split {
        person,
        records: records.into_iter().collect(),
    };
    match decide_as(&desk, &s, d, form.get("reason").map(str::to_string)).await {
        Ok(_) => redirect(&format!("/items/{id}")),
        Err(e) => desk.error_page(&headers, Some(&s), &e),
    }
}

async fn reveal(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let (s, form) = action!(desk, headers, body);
    let Some(record) = form.get("record").and_then(|r| r.parse::<i64>().ok()) else {
        return desk.not_found(&headers, &s);
    };
    let who = s.reviewer.clone();
    let logged = desk
        .with_store(move |st, _| {
            let Some(scope) = queue::visible_item(st, &who, id)? else {
                return Ok(false);
            };
            if !scope.all_records().any(|r| r.id == record) {
                return Ok(false);
            }
            let codec = st.codec().clone();
            let tx = st.conn_mut().transaction()?;
            super::audit(
                &tx,
                &codec,
                &crate::audit::Actor::named(who.actor()),
                "review_reveal",
                &serde_json::json!({ "record": record, "item": id }),
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await;
    match logged {
        Ok(true) => {
            tracing::info!(reviewer = %s.reviewer.name, record, item = id, "review desk: full values revealed");
            render_item(&desk, &headers, &s, id, Some(record), None, StatusCode::OK).await
        }
        Ok(false) => desk.not_found(&headers, &s),
        Err(e) => desk.error_page(&headers, Some(&s), &e),
    }
}

async fn decisions(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let s = signed_in!(desk, headers);
    let who = s.reviewer.clone();
    match desk
        .with_store(move |st, _| queue::recent_decisions(st, &who, 200))
        .await
    {
        Ok(rows) => {
            let f = desk.frame(&headers, Some(&s), "/decisions");
            html(StatusCode::OK, pages::decisions(&f, &rows))
        }
        Err(e) => desk.error_page(&headers, Some(&s), &e),
    }
}

async fn undo(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let (s, form) = action!(desk, headers, body);
    let who = s.reviewer.clone();
    let found = desk
        .with_store(move |st, _| {
            let Some(d) = queue::decision(st.conn(), id)? else {
                return Ok(None);
            };
            let visible =
                who.communities.is_empty() || who.may_see(&queue::decision_communities(st, &d)?);
            Ok(visible.then_some(d))
        })
        .await;
    let d = match found {
        Ok(Some(d)) => d,
        Ok(None) => return desk.not_found(&headers, &s),
        Err(e) => return desk.error_page(&headers, Some(&s), &e),
    };
    let reason = form.get("reason").map(str::to_string);
    match decide_as(&desk, &s, Decision::Undo { decision: id }, reason).await {
        Ok(_) => match d.item {
            Some(item) => redirect(&format!("/items/{item}")),
            None => redirect("/decisions"),
        },
        Err(e) => desk.error_page(&headers, Some(&s), &e),
    }
}
