//! A review desk served on an ephemeral port over a store synced from the simulator's hard
//! cases, and a small cookie-keeping HTTP client for it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use community_sync::desk::{self, accounts, Listen};
use community_sync::pipeline::{self, Context};
use community_sync::reconcile::review::{self, Item};
use community_sync::sim::{Sim, SimOptions};
use community_sync::store::Store;

use crate::common;

pub struct Desk {
    pub sim: Sim,
    pub ctx: Context,
    pub base: String,
}

impl Desk {
    /// Simulator (hard cases), a first sync, and the desk on 127.0.0.1:0.
    pub async fn start(dir: &Path) -> Desk {
        let sim = Sim::start(SimOptions {
            seed: 5,
            residents: 200,
            hard_cases: true,
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts");
        let base = common::context(&sim, dir);
        // The link threshold out of reach, as in tests/reconcile_review.rs: every scored
        // record becomes a review item, so each case kind is on the desk.
        let mut config = (*base.config).clone();
        config.reconcile.link_threshold = 5.0;
        let ctx = Context {
            config: Arc::new(config),
            store: base.store.clone(),
        };
        pipeline::sync(&ctx, &common::sync_options(false))
            .await
            .expect("first sync");
        let d = desk::Desk {
            store: ctx.store.clone(),
            config: ctx.config.clone(),
            opts: Arc::new(desk::Options::default()),
        };
        let bound = desk::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .expect("desk binds");
        let base = match bound.listen() {
            Listen::Tcp(a) => format!("http://{a}"),
            Listen::Unix(_) => unreachable!(),
        };
        tokio::spawn(desk::serve(d, bound, std::future::pending()));
        Desk { sim, ctx, base }
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut g = self.ctx.store.lock().unwrap();
        f(&mut g)
    }

    pub fn add_reviewer(&self, name: &str, communities: &[&str], password: &str) {
        let c: Vec<String> = communities.iter().map(|s| s.to_string()).collect();
        let hash = accounts::hash_password(password).unwrap();
        self.with_store(|s| {
            accounts::add(s.conn(), name, &c, "test").unwrap();
            accounts::set_password_hash(s.conn(), name, &hash).unwrap();
        });
    }

    pub fn link_for(&self, name: &str, communities: &[&str]) -> String {
        let c: Vec<String> = communities.iter().map(|s| s.to_string()).collect();
        let token = self.with_store(|s| {
            accounts::add(s.conn(), name, &c, "test").unwrap();
            accounts::issue_link(s.conn(), name, std::time::Duration::from_secs(600)).unwrap()
        });
        format!("{}/welcome/{token}", self.base)
    }

    pub fn open_match_items(&self) -> Vec<Item> {
        self.with_store(|s| {
            review::list(s.conn(), None, 100_000)
                .unwrap()
                .into_iter()
                .filter(|i| i.kind == "match")
                .collect()
        })
    }

    pub fn item(&self, id: i64) -> Item {
        self.with_store(|s| review::get(s.conn(), id).unwrap().unwrap())
    }

    pub fn count(&self, sql: &str) -> i64 {
        common::count(&self.ctx, sql)
    }

    pub fn one<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        self.with_store(|s| s.conn().query_row(sql, [], |r| r.get(0)).expect(sql))
    }

    pub fn row4(&self, sql: &str) -> (String, String, String, String) {
        self.with_store(|s| {
            s.conn()
                .query_row(sql, [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .expect(sql)
        })
    }

    pub fn person_of(&self, record: i64) -> i64 {
        self.one(&format!(
            "SELECT person_id FROM source_records WHERE id = {record}"
        ))
    }

    pub fn record_name(&self, record: i64) -> String {
        self.with_store(|s| {
            desk::queue::record(s.conn(), s.codec(), record)
                .unwrap()
                .unwrap()
                .fields
                .name
                .unwrap()
        })
    }

    /// A live person record that the item's page does not show.
    pub fn record_not_on(&self, item: i64) -> i64 {
        self.with_store(|s| {
            let it = review::get(s.conn(), item).unwrap().unwrap();
            let scope = desk::queue::scope(s.conn(), s.codec(), it).unwrap();
            let shown: Vec<i64> = scope.all_records().map(|r| r.id).collect();
            let id: i64 = s
                .conn()
                .query_row(
                    "SELECT id FROM source_records WHERE entity = 'card_account' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!shown.contains(&id));
            id
        })
    }

    /// An open match item that concerns exactly one community (`mine`, that community) and
    /// one that does not concern it (`theirs`).
    pub fn items_of_two_communities(&self) -> (i64, i64, String) {
        self.with_store(|s| {
            let scopes: Vec<desk::queue::Scope> = review::list(s.conn(), None, 100_000)
                .unwrap()
                .into_iter()
                .map(|it| desk::queue::scope(s.conn(), s.codec(), it).unwrap())
                .collect();
            let mine = scopes
                .iter()
                .find(|x| x.item.kind == "match" && x.communities.len() == 1)
                .expect("an item in one community");
            let c = mine.communities.iter().next().unwrap().clone();
            let theirs = scopes
                .iter()
                .find(|x| !x.communities.contains(&c) && !x.communities.is_empty())
                .expect("an item of another community");
            (mine.item.id, theirs.item.id, c)
        })
    }
}

/// A signed-in reviewer's HTTP client (redirects not followed, the session cookie kept).
pub struct Http {
    base: String,
    client: reqwest::Client,
    cookie: String,
    /// The Set-Cookie line of the session (flags and all).
    pub session_cookie: String,
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(line: &str) -> String {
    line.split(';').next().unwrap_or("").to_string()
}

/// The first `csrf` (or `login_csrf`) hidden field of a page.
pub fn field_of(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key).unwrap_or_else(|| panic!("no {name} field")) + key.len();
    page[at..].split('"').next().unwrap().to_string()
}

pub fn csrf_of(page: &str) -> String {
    field_of(page, "csrf")
}

/// No run of 11+ digits (a phone, an ID number) on a page.
pub fn assert_no_long_digit_runs(page: &str) {
    let longest = page
        .as_bytes()
        .split(|b| !b.is_ascii_digit())
        .map(|r| r.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest < 11,
        "a run of {longest} digits: unmasked personal data?"
    );
}

impl Http {
    pub async fn login(base: &str, name: &str, password: &str) -> Http {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client.get(format!("{base}/login")).send().await.unwrap();
        let login_cookie = cookie_value(&set_cookie(&page, "desk_login").expect("login cookie"));
        let token = field_of(&page.text().await.unwrap(), "login_csrf");
        let r = client
            .post(format!("{base}/login"))
            .header("cookie", login_cookie)
            .form(&[
                ("login_csrf", token.as_str()),
                ("name", name),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::SEE_OTHER,
            "{name} signs in"
        );
        let line = set_cookie(&r, "desk_session").expect("session cookie");
        Http {
            base: base.to_string(),
            client,
            cookie: cookie_value(&line),
            session_cookie: line,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token on a page.
    pub async fn csrf(&self, path: &str) -> String {
        csrf_of(&self.get(path).await.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_with(path, form, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}
