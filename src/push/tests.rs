use super::*;
use crate::model::{Event, Op};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    (dir, store)
}

fn enqueue(store: &mut Store, key: &str, version: i64) {
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction().unwrap();
    let ev = Event::new(
        "person",
        key,
        version,
        Op::Upsert,
        vec!["name".into()],
        Some(serde_json::json!({"person": key, "name": "x".repeat(50)})),
    );
    crate::store::enqueue_event(&tx, &codec, &ev).unwrap();
    tx.commit().unwrap();
}

fn states(store: &Store) -> Vec<(i64, String, Option<String>)> {
    let mut stmt = store
        .conn()
        .prepare("SELECT id, state, batch_key FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn events_in(body: &[u8]) -> Vec<String> {
    let mut raw = Vec::new();
    if is_gzip(body) {
        use std::io::Read;
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut raw)
            .unwrap();
    } else {
        raw = body.to_vec();
    }
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn superseded_versions_are_coalesced_and_batches_cut_by_count() {
    let (_d, mut s) = store();
    enqueue(&mut s, "P1", 1);
    enqueue(&mut s, "P2", 1);
    enqueue(&mut s, "P1", 2);
    enqueue(&mut s, "P3", 1);
    let (b, sup) = form_batch(&mut s, 0, 10, 1 << 20, Shape::Body { gzip: true }).unwrap();
    let b = b.unwrap();
    assert_eq!(sup, 1);
    assert!(b.gzip);
    assert_eq!(
        events_in(&b.body),
        ["person:P2:1", "person:P1:2", "person:P3:1"]
    );
    let st = states(&s);
    assert_eq!(st[0].1, "superseded");
    assert!(st[1..]
        .iter()
        .all(|r| r.1 == "pending" && r.2.as_deref() == Some(b.key.as_str())));

    // Count limit: two per batch, in outbox order.
    let (_d, mut s) = store();
    for k in 1..=5 {
        enqueue(&mut s, &format!("P{k}"), 1);
    }
    let (b1, _) = form_batch(&mut s, 0, 2, 1 << 20, Shape::Body { gzip: false }).unwrap();
    let b1 = b1.unwrap();
    assert_eq!(events_in(&b1.body), ["person:P1:1", "person:P2:1"]);
    let (b2, _) = form_batch(
        &mut s,
        b1.id_range().1,
        2,
        1 << 20,
        Shape::Body { gzip: false },
    )
    .unwrap();
    assert_eq!(events_in(&b2.unwrap().body), ["person:P3:1", "person:P4:1"]);
}

#[test]
fn batches_are_cut_by_bytes_but_never_empty() {
    let (_d, mut s) = store();
    for k in 1..=4 {
        enqueue(&mut s, &format!("P{k}"), 1);
    }
    let len: i64 = s
        .conn()
        .query_row(
            "SELECT max(length(payload)) FROM outbox_payloads",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // A limit of 2.5 payloads fits two; a 10-byte limit still sends one.
    let (b, _) = form_batch(
        &mut s,
        0,
        100,
        (len as usize) * 5 / 2,
        Shape::Body { gzip: false },
    )
    .unwrap();
    assert_eq!(b.unwrap().rows.len(), 2);
    let (_d, mut s) = store();
    enqueue(&mut s, "P1", 1);
    enqueue(&mut s, "P2", 1);
    let (b, _) = form_batch(&mut s, 0, 100, 10, Shape::Body { gzip: false }).unwrap();
    assert_eq!(b.unwrap().rows.len(), 1);
}

#[test]
fn a_keyed_batch_is_resent_unchanged_before_anything_newer() {
    let (_d, mut s) = store();
    enqueue(&mut s, "P1", 1);
    enqueue(&mut s, "P2", 1);
    let (b1, _) = form_batch(&mut s, 0, 10, 1 << 20, Shape::Body { gzip: false }).unwrap();
    let b1 = b1.unwrap();
    // Never acknowledged (crash, outage); a newer version of P1 arrives meanwhile.
    enqueue(&mut s, "P1", 2);
    let (again, sup) = form_batch(&mut s, 0, 10, 1 << 20, Shape::Body { gzip: false }).unwrap();
    let again = again.unwrap();
    assert_eq!(sup, 0);
    assert_eq!(again.key, b1.key);
    assert_eq!(again.rows, b1.rows);
    assert_eq!(events_in(&again.body), ["person:P1:1", "person:P2:1"]);
    let (next, _) = form_batch(
        &mut s,
        again.id_range().1,
        10,
        1 << 20,
        Shape::Body { gzip: false },
    )
    .unwrap();
    assert_eq!(events_in(&next.unwrap().body), ["person:P1:2"]);
}

#[test]
fn acknowledge_marks_sent_and_dead_letters_rejections() {
    let (_d, mut s) = store();
    for k in 1..=3 {
        enqueue(&mut s, &format!("P{k}"), 1);
    }
    let (b, _) = form_batch(&mut s, 0, 10, 1 << 20, Shape::Body { gzip: false }).unwrap();
    let b = b.unwrap();
    let resp: BatchResponse = serde_json::from_str(
        r#"{"results":[{"event_id":"person:P1:1","status":"accepted"},
            {"event_id":"person:P2:1","status":"rejected","code":422,"reason":"bad phone"}]}"#,
    )
    .unwrap();
    assert_eq!(
        acknowledge(&mut s, "/api/v1/events", &b, &resp).unwrap(),
        (2, 1)
    );
    let st: Vec<String> = states(&s).into_iter().map(|r| r.1).collect();
    assert_eq!(st, ["sent", "dead", "sent"]);
    let (code, reason): (i64, String) = s
        .conn()
        .query_row("SELECT code, reason FROM dead_letters", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((code, reason.as_str()), (422, "bad phone"));
    // A second acknowledgement (replay) changes nothing.
    assert_eq!(
        acknowledge(&mut s, "/api/v1/events", &b, &resp).unwrap(),
        (0, 0)
    );
    assert_eq!(
        form_batch(&mut s, 0, 10, 1 << 20, Shape::Body { gzip: false })
            .unwrap()
            .0
            .map(|b| b.key),
        None
    );
}

#[test]
fn idempotency_key_depends_only_on_the_events() {
    let (_d1, mut a) = store();
    let (_d2, mut b) = store();
    for s in [&mut a, &mut b] {
        enqueue(s, "P1", 1);
        enqueue(s, "P2", 3);
    }
    let ka = form_batch(&mut a, 0, 10, 1 << 20, Shape::Body { gzip: true })
        .unwrap()
        .0
        .unwrap()
        .key;
    let kb = form_batch(&mut b, 0, 10, 1 << 20, Shape::Body { gzip: false })
        .unwrap()
        .0
        .unwrap()
        .key;
    assert_eq!(ka, kb);
    assert!(ka.starts_with("cs-") && ka.len() == 35);
}

#[test]
fn plain_http_only_to_loopback() {
    let client_for = |url: &str, allow: bool| {
        let mut config = Config::from_toml(
            crate::cli::demo::EXAMPLE_CONFIG,
            std::path::Path::new("x.toml"),
        )
        .unwrap();
        config.platform.url = url.into();
        config.platform.http.allow_insecure_http = allow;
        build_client(&config).map(|_| ())
    };
    assert!(client_for("http://127.0.0.1:1/api", false).is_ok());
    let e = client_for("http://platform.example/api", false).unwrap_err();
    assert!(
        e.to_string().contains("platform.http.allow_insecure_http"),
        "{e}"
    );
    assert!(client_for("http://platform.example/api", true).is_ok());
    assert!(client_for("https://platform.example/api", false).is_ok());
}

#[test]
fn batch_updates_walk_the_id_range_not_the_pending_index() {
    let (_d, s) = store();
    for sql in [KEY_BATCH_SQL, ACK_BATCH_SQL, FAIL_BATCH_SQL] {
        let mut stmt = s
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let args: Vec<&dyn rusqlite::ToSql> = vec![&1, &2, &"k", &"t"];
        let plan: Vec<String> = stmt
            .query_map(&args[..stmt.parameter_count()], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH outbox USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"],
            "{sql}"
        );
    }
}
