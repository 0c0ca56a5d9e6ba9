//! The JetStream sink against the machine's real NATS server: a batch whose acknowledgements
//! were lost is published again and the stream keeps one copy of each event; an event the
//! stream refuses for good becomes a dead letter without holding the others back;
//! `check --connect` tells a missing stream from a working one and stores nothing.
//! Each test uses a stream and subjects of its own and deletes the stream at the end.

mod services;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use community_sync::city::{consumer, unique_name, StreamTarget};
use community_sync::config::Config;
use community_sync::model::{Event, Op};
use community_sync::push::JetStreamSink;
use community_sync::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NATS_URL: &str = "nats://127.0.0.1:4222";

fn target() -> StreamTarget {
    let u = unique_name();
    StreamTarget {
        url: NATS_URL.into(),
        stream: format!("PUSHTEST_{}", u.to_uppercase()),
        subject_prefix: format!("pushtest{u}"),
    }
}

/// A config with only a JetStream platform, written 0600 into `dir`.
fn config(dir: &Path, url: &str, t: &StreamTarget, extra: &str) -> Config {
    let window = if extra.contains("duplicate_window_secs") {
        ""
    } else {
        "duplicate_window_secs = 600\n"
    };
    let text = format!(
        "[store]\npath = {:?}\n[platform]\nkind = \"jetstream\"\nurl = \"{url}\"\nbatch_size = 500\n\
         [platform.jetstream]\nstream = \"{}\"\ndistrict = \"360102\"\nsubject_prefix = \"{}\"\n\
         ack_timeout_secs = 1.0\nretries = 1\nbackoff_initial_ms = 50\nbackoff_max_ms = 100\n\
         {window}{extra}",
        dir.join("store.db").display().to_string(),
        t.stream,
        t.subject_prefix
    );
    let path = dir.join("community-sync.toml");
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).expect("valid config")
}

fn enqueue(store: &mut Store, key: &str, version: i64, name_len: usize) {
    let codec = store.codec().clone();
    let tx = store.conn_mut().transaction().unwrap();
    let ev = Event::new(
        "person",
        key,
        version,
        Op::Upsert,
        vec!["name".into()],
        Some(serde_json::json!({"person": key, "name": "x".repeat(name_len)})),
    );
    community_sync::store::enqueue_event(&tx, &codec, &ev).unwrap();
    tx.commit().unwrap();
}

fn count(store: &Arc<Mutex<Store>>, sql: &str) -> i64 {
    store
        .lock()
        .unwrap()
        .conn()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// A TCP relay to the NATS server that, once muted, still carries everything the client sends
/// but drops everything the server answers: publishes are stored, their acknowledgements lost.
struct AckEater {
    port: u16,
    muted: Arc<AtomicBool>,
}

async fn ack_eater() -> AckEater {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let muted = Arc::new(AtomicBool::new(false));
    let m = muted.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:4222").await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let m = m.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !m.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    AckEater { port, muted }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_republished_after_lost_acknowledgements_is_stored_once() {
    if services::require(&services::NATS, "push_jetstream lost ack").is_none() {
        return;
    }
    let t = target();
    let (_c, js) = consumer::connect(NATS_URL).await.unwrap();
    consumer::create_stream(&js, &t, Duration::from_secs(600))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let relay = ack_eater().await;
    let via_relay = config(
        dir.path(),
        &format!("nats://127.0.0.1:{}", relay.port),
        &t,
        "",
    );
    let direct = config(dir.path(), NATS_URL, &t, "");
    let store = Arc::new(Mutex::new(Store::open_configured(&direct).unwrap()));
    {
        let mut s = store.lock().unwrap();
        for k in 0..40 {
            enqueue(&mut s, &format!("P{k:08}"), 1, 40);
        }
        enqueue(&mut s, "P00000003", 2, 40); // supersedes version 1 before anything is sent
    }

    // Connected through the relay, then every answer from the server is lost.
    let sink = JetStreamSink::connect(&via_relay)
        .await
        .expect("connects via the relay");
    relay.muted.store(true, Ordering::SeqCst);
    let lost = sink.drain(&via_relay.platform, &store, None).await;
    assert!(
        lost.is_err(),
        "no acknowledgement came back, so the push must fail"
    );
    let mut stream = js.get_stream(&t.stream).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert_eq!(
        stored, 40,
        "the server stored every event once, though each was published twice"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        0,
        "nothing is marked sent without its acknowledgement"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(DISTINCT batch_key) FROM outbox WHERE state = 'pending'"
        ),
        1,
        "the batch keeps its key"
    );

    // The next push (a new connection) publishes the same batch again: all duplicates.
    let stats = community_sync::push::drain(&direct, &store, None)
        .await
        .expect("push succeeds");
    assert_eq!((stats.sent, stats.dead, stats.batches), (40, 0, 1));
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        40,
        "no duplicate in the stream"
    );
    let published = consumer::read_all(&js, &t).await.unwrap();
    let mut ids: Vec<&str> = published.iter().map(|p| p.msg_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert!(
        ids.contains(&"360102:person:P00000003:2") && !ids.contains(&"360102:person:P00000003:1")
    );
    assert!(published
        .iter()
        .all(|p| p.subject == format!("{}.360102.person", t.subject_prefix)));
    // The books: sent, one failed attempt and one success logged, the batch in the audit chain.
    assert_eq!(
        count(&store, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        40
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM outbox WHERE state = 'superseded'"
        ),
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM push_log WHERE outcome = 'failed'"
        ),
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit WHERE kind = 'push_batch'"
        ),
        1
    );
    js.delete_stream(&t.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_stream_refuses_is_a_dead_letter_and_the_rest_are_stored_in_order() {
    if services::require(&services::NATS, "push_jetstream dead letter").is_none() {
        return;
    }
    let t = target();
    let (_c, js) = consumer::connect(NATS_URL).await.unwrap();
    js.create_stream(jetstream::stream::Config {
        name: t.stream.clone(),
        subjects: vec![format!("{}.>", t.subject_prefix)],
        duplicate_window: Duration::from_secs(600),
        max_message_size: 2048,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), NATS_URL, &t, "max_in_flight = 8\n");
    let store = Arc::new(Mutex::new(Store::open_configured(&config).unwrap()));
    for version in 1..=3 {
        {
            let mut s = store.lock().unwrap();
            for k in 0..30 {
                let len = if k == 7 && version == 3 { 4000 } else { 40 };
                enqueue(&mut s, &format!("P{k:08}"), version, len);
            }
        }
        // Each round goes out before the next is written: three versions per key in the stream.
        let stats = community_sync::push::drain(&config, &store, None)
            .await
            .expect("push");
        assert_eq!(stats.dead, u64::from(version == 3));
    }
    assert_eq!(
        count(&store, "SELECT count(*) FROM dead_letters WHERE code = 413"),
        1
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        89
    );
    let published = consumer::read_all(&js, &t).await.unwrap();
    assert_eq!(published.len(), 89);
    let mut last = std::collections::HashMap::new();
    for p in &published {
        let before = last.insert(p.key.clone(), p.version);
        assert!(
            before.is_none_or(|b| b < p.version),
            "{} after version {before:?}",
            p.event_id
        );
    }
    js.delete_stream(&t.stream).await.unwrap();
}

fn check_connect(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .arg("--config")
        .arg(config)
        .args(["--log-level", "error", "check", "--connect"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_finds_a_missing_stream_creates_it_when_asked_and_stores_nothing() {
    if services::require(&services::NATS, "push_jetstream check --connect").is_none() {
        return;
    }
    let t = target();
    let (_c, js) = consumer::connect(NATS_URL).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), NATS_URL, &t, "");
    let path = dir.path().join("community-sync.toml");
    let (ok, out) = check_connect(&path);
    assert!(!ok, "no stream yet: {out}");
    assert!(
        out.contains("FAILED") && out.contains("does not exist") && out.contains("create_stream"),
        "{out}"
    );

    config(
        dir.path(),
        NATS_URL,
        &t,
        "create_stream = true\nreplicas = 1\n",
    );
    let (ok, out) = check_connect(&path);
    assert!(ok, "{out}");
    assert!(out.contains("takes publishes on"), "{out}");
    let mut stream = js
        .get_stream(&t.stream)
        .await
        .expect("created by check --connect");
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 0, "the probe stores nothing");
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));

    // A stream with a shorter duplicate window than the config asks for is refused.
    config(dir.path(), NATS_URL, &t, "duplicate_window_secs = 7200\n");
    let (ok, out) = check_connect(&path);
    assert!(!ok && out.contains("duplicate"), "{out}");
    js.delete_stream(&t.stream).await.unwrap();
}
