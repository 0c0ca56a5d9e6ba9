//! The simulated vendors serve exactly what config/community-sync.toml expects.

use std::collections::BTreeSet;

use community_sync::sim::{self, Mutation, Sim, SimOptions};
use md5::{Digest, Md5};
use serde_json::Value;

fn opts(residents: usize) -> SimOptions {
    SimOptions {
        seed: 42,
        residents,
        ..SimOptions::default()
    }
}

fn key(source: &str, stream: &str) -> (String, String) {
    (source.to_string(), stream.to_string())
}

fn signed_query(extra: &[(&str, &str)], secret: &str) -> String {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut params: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.push(("appkey".into(), sim::ONECARD_APP_KEY.into()));
    params.push(("timestamp".into(), ts));
    params.push(("nonce".into(), format!("{:x}", rand::random::<u64>())));
    let mut sorted = params.clone();
    sorted.sort();
    let joined = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sign = hex::encode_upper(Md5::digest(format!("{joined}&key={secret}").as_bytes()));
    params.push(("sign".into(), sign));
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        ser.append_pair(k, v);
    }
    ser.finish()
}

async fn onecard_get(
    client: &reqwest::Client,
    sim: &Sim,
    path: &str,
    extra: &[(&str, &str)],
) -> (reqwest::StatusCode, String, Value) {
    let url = format!(
        "{}{path}?{}",
        sim.urls.onecard,
        signed_query(extra, sim::ONECARD_SECRET)
    );
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.expect("body");
    let (text, _, bad) = encoding_rs::GBK.decode(&bytes);
    assert!(!bad, "body must be valid GBK");
    (status, ct, serde_json::from_str(&text).expect("json"))
}

async fn onecard_all(
    client: &reqwest::Client,
    sim: &Sim,
    path: &str,
    extra: &[(&str, &str)],
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let p = page.to_string();
        let mut q = vec![("page", p.as_str()), ("rows", "500")];
        q.extend_from_slice(extra);
        let (status, _, body) = onecard_get(client, sim, path, &q).await;
        assert_eq!(status, 200, "{body}");
        let rows = body["data"]["rows"].as_array().cloned().unwrap_or_default();
        let total = body["data"]["total"].as_u64().unwrap_or(0) as usize;
        let n = rows.len();
        out.extend(rows);
        if n == 0 || out.len() >= total {
            break;
        }
        page += 1;
    }
    out
}

#[tokio::test]
async fn onecard_is_gbk_signed_and_pages_completely() {
    let sim = Sim::start(opts(1500)).await.expect("start");
    let client = reqwest::Client::new();
    // Unsigned: 401 with the vendor's error body, in GBK.
    let resp = client
        .get(format!(
            "{}/api/ykt/v1/cardholders?page=1&rows=10",
            sim.urls.onecard
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let bytes = resp.bytes().await.expect("body");
    let (text, _, _) = encoding_rs::GBK.decode(&bytes);
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["code"], "4001");
    assert_eq!(body["msg"], "签名错误");
    // Wrong secret: 401.
    let url = format!(
        "{}/api/ykt/v1/cardholders?{}",
        sim.urls.onecard,
        signed_query(&[("page", "1")], "wrong")
    );
    assert_eq!(client.get(url).send().await.expect("request").status(), 401);

    let (status, ct, first) = onecard_get(
        &client,
        &sim,
        "/api/ykt/v1/cardholders",
        &[("page", "1"), ("rows", "5")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json;charset=GBK");
    assert_eq!(first["code"], "0000");
    let row = &first["data"]["rows"][0];
    for f in [
        "kh", "xm", "sfzh", "xb", "csrq", "sjhm", "sqmc", "zz", "ye", "kzt", "kksj", "gxsj",
    ] {
        assert!(row.get(f).is_some(), "cardholder field {f} missing: {row}");
    }
    // The card status says a card is cancelled (注销); live cards are 正常, 挂失 or 冻结.
    assert!(["正常", "挂失", "冻结"].contains(&row["kzt"].as_str().unwrap_or("")));

    let truth = sim.truth();
    let holders = onecard_all(&client, &sim, "/api/ykt/v1/cardholders", &[]).await;
    assert_eq!(holders.len(), truth.served[&key("onecard", "cardholders")]);
    let keys: BTreeSet<String> = holders
        .iter()
        .map(|r| r["kh"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(keys.len(), holders.len(), "no duplicates across pages");
    // Sorted by (gxsj, kh).
    let order: Vec<(String, String)> = holders
        .iter()
        .map(|r| {
            (
                r["gxsj"].as_str().unwrap_or("").to_string(),
                r["kh"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    // ID-less holders exist (~35%).
    let idless = holders.iter().filter(|r| r["sfzh"] == "").count();
    assert!(idless * 4 > holders.len(), "{idless} of {}", holders.len());

    // Window: inclusive lower bound, exclusive upper bound.
    let mid = order[order.len() / 2].0.clone();
    let lower = onecard_all(
        &client,
        &sim,
        "/api/ykt/v1/cardholders",
        &[("gxsj_end", mid.as_str())],
    )
    .await;
    let upper = onecard_all(
        &client,
        &sim,
        "/api/ykt/v1/cardholders",
        &[("gxsj_start", mid.as_str())],
    )
    .await;
    assert_eq!(lower.len() + upper.len(), holders.len());
    assert!(upper
        .iter()
        .all(|r| r["gxsj"].as_str().unwrap_or("") >= mid.as_str()));

    let tx = onecard_all(&client, &sim, "/api/ykt/v1/transactions", &[]).await;
    assert_eq!(tx.len(), truth.served[&key("onecard", "transactions")]);
    assert!(
        tx.iter()
            .all(|t| keys.contains(t["kh"].as_str().unwrap_or("?"))),
        "transactions point at cards"
    );
    assert!(tx[0]["jyje"].is_i64());
    sim.shutdown().await;
}

#[tokio::test]
async fn volunteer_needs_oauth_serves_bom_and_cursor_pages() {
    let sim = Sim::start(opts(1500)).await.expect("start");
    let client = reqwest::Client::new();
    let url = format!("{}/api/v2/volunteers?limit=50", sim.urls.volunteer);
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        401
    );
    let bad = client
        .post(format!("{}/oauth/token", sim.urls.volunteer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "community-sync"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 401);
    let tok = client
        .post(format!("{}/oauth/token", sim.urls.volunteer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim::VOLUNTEER_CLIENT_ID),
            ("client_secret", sim::VOLUNTEER_SECRET),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(tok.status(), 200);
    let tok_bytes = tok.bytes().await.expect("body");
    let tok: Value = serde_json::from_slice(
        tok_bytes
            .strip_prefix("\u{FEFF}".as_bytes())
            .unwrap_or(&tok_bytes),
    )
    .expect("json");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    let token = tok["access_token"].as_str().expect("token").to_string();

    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = client
            .get(format!("{}/api/v2/volunteers", sim.urls.volunteer))
            .bearer_auth(&token)
            .query(&[("limit", "70")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let resp = req.send().await.expect("page");
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.expect("body");
        assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
        let body: Value = serde_json::from_slice(&bytes[3..]).expect("json");
        all.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let truth = sim.truth();
    assert_eq!(all.len(), truth.served[&key("volunteer", "volunteers")]);
    let first = &all[0];
    // The volunteer system carries the ID number but no birth date or gender.
    assert!(first.get("birthday").is_none() && first.get("gender").is_none());
    assert!(first.get("idCardNo").is_some());
    assert!(first["updatedAt"]
        .as_str()
        .is_some_and(|u| u.ends_with("+08:00")));
    assert!(first["deleted"].is_boolean());

    // updatedSince inclusive, updatedBefore exclusive.
    let mid = all[all.len() / 2]["updatedAt"]
        .as_str()
        .expect("ts")
        .to_string();
    let count = |q: Vec<(&'static str, String)>| {
        let client = client.clone();
        let token = token.clone();
        let base = sim.urls.volunteer.clone();
        async move {
            let resp = client
                .get(format!("{base}/api/v2/volunteers"))
                .bearer_auth(&token)
                .query(&[("limit", "1000")])
                .query(&q)
                .send()
                .await
                .expect("page");
            let bytes = resp.bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes[3..]).expect("json");
            body["items"].as_array().map(|a| a.len()).unwrap_or(0)
        }
    };
    let before = count(vec![("updatedBefore", mid.clone())]).await;
    let since = count(vec![("updatedSince", mid.clone())]).await;
    assert_eq!(before + since, all.len());
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_volunteer_token_is_refused() {
    let sim = Sim::start(SimOptions {
        token_lifetime_secs: 0,
        ..opts(200)
    })
    .await
    .expect("start");
    let client = reqwest::Client::new();
    let tok: Value = {
        let b = client
            .post(format!("{}/oauth/token", sim.urls.volunteer))
            .basic_auth(sim::VOLUNTEER_CLIENT_ID, Some(sim::VOLUNTEER_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token")
            .bytes()
            .await
            .expect("body");
        serde_json::from_slice(&b[3..]).expect("json")
    };
    let resp = client
        .get(format!("{}/api/v2/service-records", sim.urls.volunteer))
        .bearer_auth(tok["access_token"].as_str().unwrap_or(""))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn eldercare_needs_key_and_pages_by_offset() {
    let sim = Sim::start(opts(1500)).await.expect("start");
    let client = reqwest::Client::new();
    let url = format!("{}/api/elders", sim.urls.eldercare);
    assert_eq!(client.get(&url).send().await.expect("r").status(), 401);
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let body: Value = client
            .get(&url)
            .header("X-Api-Key", sim::ELDERCARE_KEY)
            .query(&[("offset", offset.to_string()), ("limit", "200".to_string())])
            .send()
            .await
            .expect("r")
            .json()
            .await
            .expect("json");
        let data = body["data"].as_array().cloned().unwrap_or_default();
        offset += data.len();
        all.extend(data);
        if offset >= body["total"].as_u64().unwrap_or(0) as usize {
            break;
        }
    }
    let truth = sim.truth();
    assert_eq!(all.len(), truth.served[&key("eldercare", "elders")]);
    assert!(all
        .iter()
        .all(|e| e["updated_at"].is_i64() && e["is_deleted"] == 0));
    assert!(
        all.iter()
            .any(|e| e["id_no"].as_str().is_some_and(|s| s.len() == 15)),
        "legacy IDs"
    );
    assert!(
        all.iter()
            .any(|e| e["phone"].as_str().is_some_and(|s| s.starts_with("0791-"))),
        "landlines"
    );
    sim.shutdown().await;
}

async fn fhir_all(client: &reqwest::Client, first: String) -> (Vec<Value>, usize) {
    let mut url = Some(first);
    let mut all = Vec::new();
    let mut pages = 0;
    while let Some(u) = url.take() {
        let body: Value = client
            .get(&u)
            .basic_auth(sim::HEALTH_USER, Some(sim::HEALTH_PASSWORD))
            .send()
            .await
            .expect("r")
            .json()
            .await
            .expect("json");
        assert_eq!(body["resourceType"], "Bundle");
        pages += 1;
        all.extend(body["entry"].as_array().cloned().unwrap_or_default());
        url = body["link"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["relation"] == "next"))
            .and_then(|x| x["url"].as_str())
            .map(str::to_string);
        assert!(pages < 10_000, "next links must end");
    }
    (all, pages)
}

#[tokio::test]
async fn health_fhir_next_links_end_and_cover_everything() {
    let sim = Sim::start(opts(1500)).await.expect("start");
    let client = reqwest::Client::new();
    let first = format!(
        "{}/fhir/Patient?_count=100&_sort=_lastUpdated",
        sim.urls.health
    );
    assert_eq!(client.get(&first).send().await.expect("r").status(), 401);
    let (all, pages) = fhir_all(&client, first).await;
    let truth = sim.truth();
    let served = truth.served[&key("health", "patients")];
    assert_eq!(all.len(), served);
    assert_eq!(pages, served.div_ceil(100));
    let p = &all[0]["resource"];
    assert!(p["id"].as_str().is_some_and(|i| i.starts_with("pat-")));
    assert!(p["meta"]["lastUpdated"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let (enc, _) = fhir_all(
        &client,
        format!(
            "{}/fhir/Encounter?_count=500&_sort=_lastUpdated",
            sim.urls.health
        ),
    )
    .await;
    assert_eq!(enc.len(), truth.served[&key("health", "followups")]);
    // _lastUpdated=ge is inclusive.
    let mid = all[all.len() / 2]["resource"]["meta"]["lastUpdated"]
        .as_str()
        .expect("ts")
        .to_string();
    let url = format!(
        "{}/fhir/Patient?_count=100&_sort=_lastUpdated&_lastUpdated=ge{}",
        sim.urls.health,
        url::form_urlencoded::byte_serialize(mid.as_bytes()).collect::<String>()
    );
    let (later, _) = fhir_all(&client, url).await;
    let expected = all
        .iter()
        .filter(|e| e["resource"]["meta"]["lastUpdated"].as_str().unwrap_or("") >= mid.as_str())
        .count();
    assert_eq!(later.len(), expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_bytes_and_mid_sync_mutation_moves_record() {
    let a = Sim::start(opts(800)).await.expect("start a");
    let b = Sim::start(opts(800)).await.expect("start b");
    assert_eq!(a.truth(), b.truth());
    let client = reqwest::Client::new();
    let page = |base: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/api/elders?offset=0&limit=50"))
                .header("X-Api-Key", sim::ELDERCARE_KEY)
                .send()
                .await
                .expect("r")
                .bytes()
                .await
                .expect("body")
        }
    };
    assert_eq!(
        page(a.urls.eldercare.clone()).await,
        page(b.urls.eldercare.clone()).await
    );

    // After the next page of elders, touch the first elder: it moves to the end.
    let first_body: Value =
        serde_json::from_slice(&page(a.urls.eldercare.clone()).await).expect("json");
    let first_key = first_body["data"][0]["elder_id"]
        .as_str()
        .expect("key")
        .to_string();
    a.after_pages(
        "eldercare",
        "elders",
        1,
        Mutation::Touch {
            source: "eldercare".into(),
            stream: "elders".into(),
            key: first_key.clone(),
        },
    )
    .expect("trigger");
    let served_page: Value =
        serde_json::from_slice(&page(a.urls.eldercare.clone()).await).expect("json");
    assert_eq!(
        served_page["data"][0]["elder_id"],
        first_key.as_str(),
        "served before the mutation"
    );
    let after: Value = serde_json::from_slice(&page(a.urls.eldercare.clone()).await).expect("json");
    assert_ne!(
        after["data"][0]["elder_id"],
        first_key.as_str(),
        "mutation applied after the page"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn source_chaos_fails_the_next_requests_with_retry_after() {
    let sim = Sim::start(opts(100)).await.expect("start");
    let client = reqwest::Client::new();
    sim.source_chaos().fail_next("eldercare", 2);
    let url = format!("{}/api/elders?limit=5", sim.urls.eldercare);
    for _ in 0..2 {
        let r = client
            .get(&url)
            .header("X-Api-Key", sim::ELDERCARE_KEY)
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    let r = client
        .get(&url)
        .header("X-Api-Key", sim::ELDERCARE_KEY)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(sim.pages_served("eldercare", "elders").expect("stream"), 1);
    // Other systems are unaffected.
    sim.source_chaos().fail_next("health", 1);
    let r = client
        .get(&url)
        .header("X-Api-Key", sim::ELDERCARE_KEY)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn truth_lists_sensitive_values_and_residents() {
    let sim = Sim::start(opts(300)).await.expect("start");
    let truth = sim.truth();
    let holders = sim.residents_in("onecard");
    assert!(!holders.is_empty());
    let r = holders[0];
    let (id, _name, phone) = sim.resident_identity(r).expect("resident");
    assert!(truth.sensitive_values.contains(&id));
    assert!(truth.sensitive_values.contains(&phone));
    assert!(truth.sensitive_values.iter().all(|v| v.len() >= 7));
    let key = sim.record_key("onecard", "cardholders", r).expect("key");
    let info = sim.record_info("onecard", r).expect("info");
    assert_eq!(info.key, key);
    if !info.rejected {
        assert_eq!(
            truth
                .resident_of_record
                .get(&("onecard".into(), "cardholders".into(), key)),
            Some(&r)
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn mutations_show_up_in_incremental_windows() {
    let sim = Sim::start(opts(600)).await.expect("start");
    let client = reqwest::Client::new();
    let elders = sim.residents_in("eldercare");
    let r = *elders
        .iter()
        .find(|r| {
            sim.record_info("eldercare", **r)
                .is_some_and(|i| i.has_valid_id)
        })
        .expect("an elder with an ID");
    let since = chrono::Utc::now().timestamp_millis() - 1;
    let out = sim
        .mutate(Mutation::ChangePhone {
            source: "eldercare".into(),
            resident: r,
        })
        .expect("mutate");
    assert_eq!(out.keys.len(), 1);
    let body: Value = client
        .get(format!("{}/api/elders", sim.urls.eldercare))
        .header("X-Api-Key", sim::ELDERCARE_KEY)
        .query(&[
            ("updated_after", since.to_string()),
            ("limit", "100".into()),
        ])
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(body["total"], 1);
    let rec = &body["data"][0];
    assert_eq!(rec["elder_id"], out.keys[0].2.as_str());
    let (_, _, old_phone) = sim.resident_identity(r).expect("resident");
    assert_ne!(
        rec["phone"].as_str().map(|p| p.replace(['-', ' '], "")),
        Some(old_phone)
    );

    // Delete flags the record and removes it from served.
    let before = sim.truth().served[&key("eldercare", "elders")];
    sim.mutate(Mutation::Delete {
        source: "eldercare".into(),
        stream: "elders".into(),
        key: out.keys[0].2.clone(),
    })
    .expect("delete");
    let body: Value = client
        .get(format!("{}/api/elders", sim.urls.eldercare))
        .header("X-Api-Key", sim::ELDERCARE_KEY)
        .query(&[("updated_after", since.to_string())])
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"][0]["is_deleted"], 1);
    let t = sim.truth();
    assert_eq!(t.served[&key("eldercare", "elders")], before - 1);
    assert_eq!(t.deleted[&key("eldercare", "elders")], 1);

    // A new resident appears in two systems.
    let added = sim
        .mutate(Mutation::AddResident {
            systems: vec!["volunteer".into(), "health".into()],
        })
        .expect("add");
    assert_eq!(added.keys.len(), 4, "person + activity record per system");
    assert_eq!(sim.truth().persons, t.persons + 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn onecard_refuses_stale_timestamps_even_when_signed() {
    let sim = Sim::start(opts(50)).await.expect("start");
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let mut params = vec![
        ("appkey".to_string(), sim::ONECARD_APP_KEY.to_string()),
        ("nonce".to_string(), "abc".to_string()),
        ("page".to_string(), "1".to_string()),
        ("timestamp".to_string(), stale),
    ];
    let joined = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sign = hex::encode_upper(Md5::digest(
        format!("{joined}&key={}", sim::ONECARD_SECRET).as_bytes(),
    ));
    params.push(("sign".to_string(), sign));
    let resp = reqwest::Client::new()
        .get(format!("{}/api/ykt/v1/cardholders", sim.urls.onecard))
        .query(&params)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        sim.pages_served("onecard", "cardholders").expect("stream"),
        0
    );
    sim.shutdown().await;
}
