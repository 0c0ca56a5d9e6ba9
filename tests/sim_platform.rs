//! The simulated platform: auth, idempotency, versions, gzip and chaos knobs.

use std::io::Write;

use community_sync::sim::{self, Sim, SimOptions};
use serde_json::{json, Value};

fn event(id: &str, key: &str, version: i64) -> Value {
    json!({
        "event_id": id, "entity": "person", "key": key, "version": version, "op": "upsert",
        "changed": ["phone"], "record": {"name": "张三"}, "emitted_at": "2026-01-01T08:00:00+08:00"
    })
}

async fn post(
    client: &reqwest::Client,
    sim: &Sim,
    idem: &str,
    events: Vec<Value>,
) -> reqwest::Response {
    client
        .post(&sim.urls.platform)
        .bearer_auth(sim::PLATFORM_TOKEN)
        .header("Idempotency-Key", idem)
        .json(&json!({"batch_id": idem, "events": events}))
        .send()
        .await
        .expect("request")
}

async fn small_sim() -> Sim {
    Sim::start(SimOptions {
        residents: 50,
        ..SimOptions::default()
    })
    .await
    .expect("start")
}

#[tokio::test]
async fn same_idempotency_key_applies_once() {
    let sim = small_sim().await;
    let client = reqwest::Client::new();
    let first: Value = post(
        &client,
        &sim,
        "b1",
        vec![event("e1", "k1", 1), event("e2", "k2", 1)],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(first["results"][0]["status"], "accepted");
    let again: Value = post(
        &client,
        &sim,
        "b1",
        vec![event("e1", "k1", 1), event("e2", "k2", 1)],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(first, again, "stored response is replayed");
    let view = sim.platform();
    assert_eq!(view.replays, 1);
    assert_eq!(view.accepted, 2);
    assert!(view.applications.values().all(|n| *n == 1), "exactly once");
    assert_eq!(view.requests, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn versions_duplicates_and_out_of_order() {
    let sim = small_sim().await;
    let client = reqwest::Client::new();
    post(&client, &sim, "a", vec![event("e5", "k", 5)]).await;
    let r: Value = post(
        &client,
        &sim,
        "b",
        vec![
            event("e3", "k", 3),
            event("e5b", "k", 5),
            event("e6", "k", 6),
        ],
    )
    .await
    .json()
    .await
    .expect("json");
    let statuses: Vec<&str> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["duplicate", "duplicate", "accepted"]);
    let view = sim.platform();
    assert_eq!((view.duplicates, view.out_of_order), (2, 1));
    let applied = &view.applied[&("person".to_string(), "k".to_string())];
    assert_eq!((applied.version, applied.event_id.as_str()), (6, "e6"));
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_key_gzip_and_chaos() {
    let sim = small_sim().await;
    let client = reqwest::Client::new();
    let unauth = client
        .post(&sim.urls.platform)
        .header("Idempotency-Key", "x")
        .json(&json!({"events": []}))
        .send()
        .await
        .expect("r");
    assert_eq!(unauth.status(), 401);
    let no_key = client
        .post(&sim.urls.platform)
        .bearer_auth(sim::PLATFORM_TOKEN)
        .json(&json!({"events": []}))
        .send()
        .await
        .expect("r");
    assert_eq!(no_key.status(), 400);

    // gzip body.
    let body = json!({"batch_id": "g", "events": [event("g1", "gk", 1)]}).to_string();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).expect("gzip");
    let gz = enc.finish().expect("gzip");
    let resp = client
        .post(&sim.urls.platform)
        .bearer_auth(sim::PLATFORM_TOKEN)
        .header("Idempotency-Key", "g")
        .header("Content-Encoding", "gzip")
        .header("Content-Type", "application/json")
        .body(gz)
        .send()
        .await
        .expect("r");
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.platform().applications.get("g1"), Some(&1));

    // fail_next: 503 with Retry-After, nothing applied, then success with the same key.
    sim.chaos().fail_next(1);
    sim.chaos().set_retry_after(2);
    let failed = post(&client, &sim, "c", vec![event("c1", "ck", 1)]).await;
    assert_eq!(failed.status(), 503);
    assert_eq!(
        failed
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert!(!sim.platform().applications.contains_key("c1"));
    let ok = post(&client, &sim, "c", vec![event("c1", "ck", 1)]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(sim.platform().applications.get("c1"), Some(&1));

    // Rejected keys.
    sim.chaos().reject_keys(["bad".to_string()]);
    let r: Value = post(&client, &sim, "d", vec![event("d1", "bad", 1)])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["results"][0]["status"], "rejected");
    assert_eq!(r["results"][0]["code"], 422);

    // Random failures with p = 1: every request fails with 503 or 429.
    sim.chaos().set_random_failures(1.0, 1);
    let s = post(&client, &sim, "e", vec![event("e1", "ek", 1)])
        .await
        .status();
    assert!(s == 503 || s == 429, "{s}");
    sim.chaos().reset();
    assert_eq!(
        post(&client, &sim, "e", vec![event("e1", "ek", 1)])
            .await
            .status(),
        200
    );
    assert_eq!(sim.platform().injected_failures, 2);
    sim.shutdown().await;
}
