//! The platform's side of the city harness: the stream the district agents publish into, a
//! consumer that reads all of it in order, and the check that every event arrived exactly
//! once in effect and in per-key order, as each agent's store says it sent them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;

/// Where the agents publish: one server, one stream, one subject prefix.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

/// One message read back from the stream.
#[derive(Debug, Clone)]
pub struct Published {
    pub sequence: u64,
    pub subject: String,
    pub msg_id: String,
    pub event_id: String,
    pub entity: String,
    pub key: String,
    pub version: i64,
    /// A person event's ID number (the platform's join key across districts).
    pub id_number: Option<String>,
}

/// What one agent's store says about its outbox.
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub district: String,
    pub sent: HashSet<String>,
    pub superseded: HashSet<String>,
    pub pending: usize,
    pub dead: usize,
    /// (entity, key) -> newest version sent.
    pub newest: HashMap<(String, String), i64>,
}

/// What the check found, when it found nothing wrong.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verified {
    pub messages: usize,
    pub per_district: BTreeMap<String, usize>,
    /// ID numbers whose person events came from two or more districts.
    pub joined_residents: usize,
    /// Keys with more than one version in the stream (their order was checked).
    pub keys_with_versions: usize,
}

pub async fn connect(url: &str) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::ConnectOptions::new()
        .name("community-sync city consumer")
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// Creates the city's stream: every district's subjects, file storage, the duplicate window
/// the agents rely on.
pub async fn create_stream(
    js: &jetstream::Context,
    t: &StreamTarget,
    window: Duration,
) -> anyhow::Result<()> {
    js.create_stream(jetstream::stream::Config {
        name: t.stream.clone(),
        subjects: vec![format!("{}.>", t.subject_prefix)],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: window,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create JetStream stream {}", t.stream))?;
    Ok(())
}

/// Reads the whole stream in order with an ordered consumer, as a platform would.
pub async fn read_all(js: &jetstream::Context, t: &StreamTarget) -> anyhow::Result<Vec<Published>> {
    let mut stream = js.get_stream(&t.stream).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .context("the stream stopped delivering before its last message")?
    {
        let m = m?;
        let sequence = m
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(parse(&m.message, sequence)?);
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

fn parse(m: &async_nats::Message, sequence: u64) -> anyhow::Result<Published> {
    let msg_id = m
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&m.payload)
        .with_context(|| format!("message {sequence} is not JSON"))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(Published {
        sequence,
        subject: m.subject.to_string(),
        msg_id,
        event_id: text("event_id"),
        entity: text("entity"),
        key: text("key"),
        version: v.get("version").and_then(|x| x.as_i64()).unwrap_or(-1),
        id_number: v
            .pointer("/record/id_number")
            .and_then(|x| x.as_str())
            .map(str::to_string),
    })
}

/// An agent's outbox, read from its store file.
pub fn books(store: &Path, district: &str) -> anyhow::Result<Books> {
    let conn =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", store.display()))?;
    let mut b = Books {
        district: district.to_string(),
        ..Books::default()
    };
    let mut stmt = conn.prepare("SELECT entity, entity_key, version, state FROM outbox")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (entity, key, version, state): (String, String, i64, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let id = format!("{entity}:{key}:{version}");
        match state.as_str() {
            "sent" => {
                let newest = b.newest.entry((entity, key)).or_insert(version);
                *newest = (*newest).max(version);
                b.sent.insert(id);
            }
            "superseded" => {
                b.superseded.insert(id);
            }
            "dead" => b.dead += 1,
            _ => b.pending += 1,
        }
    }
    Ok(b)
}

/// The platform's check: every message once (no message id twice), each on its district's
/// subject, each key's versions rising in stream order, and per district exactly the events
/// its store marked sent (nothing pending, nothing dead, nothing superseded published), the
/// newest version of each key last.
pub fn verify(
    prefix: &str,
    published: &[Published],
    books: &[Books],
) -> Result<Verified, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut last_version: HashMap<(String, String, String), i64> = HashMap::new();
    let mut versions: HashMap<(String, String, String), usize> = HashMap::new();
    let mut by_district: HashMap<String, HashSet<String>> = HashMap::new();
    let mut districts_of_id: HashMap<&str, HashSet<String>> = HashMap::new();
    for p in published {
        if !seen_ids.insert(p.msg_id.as_str()) {
            problems.push(format!(
                "message id {} stored twice (sequence {})",
                p.msg_id, p.sequence
            ));
        }
        let district = p.msg_id.split(':').next().unwrap_or_default().to_string();
        if p.msg_id != format!("{district}:{}", p.event_id)
            || p.subject != format!("{prefix}.{district}.{}", p.entity)
        {
            problems.push(format!(
                "message {} has subject {} and id {}",
                p.sequence, p.subject, p.msg_id
            ));
        }
        let k = (district.clone(), p.entity.clone(), p.key.clone());
        if let Some(prev) = last_version.insert(k.clone(), p.version) {
            if p.version <= prev {
                problems.push(format!(
                    "{} version {} after version {prev} (sequence {})",
                    p.msg_id, p.version, p.sequence
                ));
            }
        }
        *versions.entry(k).or_default() += 1;
        if let Some(id) = &p.id_number {
            districts_of_id
                .entry(id)
                .or_default()
                .insert(district.clone());
        }
        by_district
            .entry(district)
            .or_default()
            .insert(p.event_id.clone());
    }
    let mut per_district = BTreeMap::new();
    for b in books {
        let got = by_district.remove(&b.district).unwrap_or_default();
        per_district.insert(b.district.clone(), got.len());
        if b.pending > 0 || b.dead > 0 {
            problems.push(format!(
                "district {}: {} events pending, {} dead",
                b.district, b.pending, b.dead
            ));
        }
        let missing = b.sent.difference(&got).count();
        let extra = got.difference(&b.sent).count();
        if missing > 0 || extra > 0 {
            problems.push(format!(
                "district {}: {missing} events marked sent are not in the stream, {extra} in the stream are not marked sent",
                b.district
            ));
        }
        if got.iter().any(|e| b.superseded.contains(e)) {
            problems.push(format!(
                "district {}: a superseded event was published",
                b.district
            ));
        }
        for ((entity, key), v) in &b.newest {
            let k = (b.district.clone(), entity.clone(), key.clone());
            if last_version.get(&k) != Some(v) {
                problems.push(format!("district {}: {entity}:{key} ends at version {:?} in the stream, {v} in the store", b.district, last_version.get(&k)));
            }
        }
    }
    for (district, events) in by_district {
        problems.push(format!(
            "{} events from unknown district {district}",
            events.len()
        ));
    }
    if !problems.is_empty() {
        problems.truncate(20);
        return Err(problems);
    }
    Ok(Verified {
        messages: published.len(),
        per_district,
        joined_residents: districts_of_id.values().filter(|d| d.len() > 1).count(),
        keys_with_versions: versions.values().filter(|n| **n > 1).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, district: &str, key: &str, version: i64) -> Published {
        Published {
            sequence: seq,
            subject: format!("c.{district}.person"),
            msg_id: format!("{district}:person:{key}:{version}"),
            event_id: format!("person:{key}:{version}"),
            entity: "person".into(),
            key: key.into(),
            version,
            id_number: None,
        }
    }

    fn books_of(district: &str, sent: &[(&str, i64)]) -> Books {
        let mut b = Books {
            district: district.into(),
            ..Books::default()
        };
        for (k, v) in sent {
            b.sent.insert(format!("person:{k}:{v}"));
            let n = b
                .newest
                .entry(("person".into(), k.to_string()))
                .or_insert(*v);
            *n = (*n).max(*v);
        }
        b
    }

    #[test]
    fn the_check_finds_duplicates_reordering_and_losses() {
        let books = [
            books_of("a", &[("P1", 1), ("P1", 2)]),
            books_of("b", &[("P1", 1)]),
        ];
        let good = [
            msg(1, "a", "P1", 1),
            msg(2, "b", "P1", 1),
            msg(3, "a", "P1", 2),
        ];
        let v = verify("c", &good, &books).expect("a clean stream passes");
        assert_eq!((v.messages, v.keys_with_versions), (3, 1));
        let twice = [
            good[0].clone(),
            good[1].clone(),
            good[2].clone(),
            good[2].clone(),
        ];
        assert!(verify("c", &twice, &books).is_err(), "a message id twice");
        let reordered = [good[2].clone(), good[1].clone(), good[0].clone()];
        assert!(
            verify("c", &reordered, &books).is_err(),
            "version 1 after 2"
        );
        assert!(
            verify("c", &good[..2], &books).is_err(),
            "a sent event missing"
        );
    }
}
