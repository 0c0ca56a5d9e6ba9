//! Reads every stream of the simulator the way config/community-sync.toml describes it, maps
//! the records with the project's mapping layer, and checks the ground truth exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use community_sync::config::{Config, StreamConfig};
use community_sync::normalize::mapping::{Mapped, Mapping};
use community_sync::sim::{self, Sim, SimOptions};
use community_sync::source::config::PaginationConfig;
use md5::{Digest, Md5};
use serde_json::Value;

fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/community-sync.toml");
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn signed(params: &mut Vec<(String, String)>) {
    params.push(("appkey".into(), sim::ONECARD_APP_KEY.into()));
    params.push((
        "timestamp".into(),
        chrono::Utc::now().timestamp().to_string(),
    ));
    params.push(("nonce".into(), format!("{:x}", rand::random::<u64>())));
    let mut sorted = params.clone();
    sorted.sort();
    let joined = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sign = format!("{joined}&key={}", sim::ONECARD_SECRET);
    params.push((
        "sign".into(),
        hex::encode_upper(Md5::digest(sign.as_bytes())),
    ));
}

async fn get_json(
    client: &reqwest::Client,
    source: &str,
    url: &str,
    params: &[(String, String)],
    token: &str,
) -> Value {
    let mut req = client.get(url).query(params);
    req = match source {
        "volunteer" => req.bearer_auth(token),
        "eldercare" => req.header("X-Api-Key", sim::ELDERCARE_KEY),
        "health" => req.basic_auth(sim::HEALTH_USER, Some(sim::HEALTH_PASSWORD)),
        _ => req,
    };
    let resp = req.send().await.expect("request");
    assert!(
        resp.status().is_success(),
        "{source} {url}: {}",
        resp.status()
    );
    let charset_gbk = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("charset=gbk"));
    let bytes = resp.bytes().await.expect("body");
    let text = if charset_gbk {
        encoding_rs::GBK.decode(&bytes).0.into_owned()
    } else {
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    };
    serde_json::from_str(text.trim_start_matches('\u{FEFF}')).expect("json")
}

/// All raw records of a stream, paging as the config says.
async fn fetch_all(
    client: &reqwest::Client,
    base: &str,
    source: &str,
    stream: &StreamConfig,
    token: &str,
) -> Vec<Value> {
    let url = format!("{base}{}", stream.path);
    let fixed: Vec<(String, String)> = stream
        .query
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::new();
    let take = |body: &Value, out: &mut Vec<Value>| -> usize {
        let recs = body
            .pointer(&stream.records)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let n = recs.len();
        for r in recs {
            let r = match &stream.record_pointer {
                Some(p) => r.pointer(p).cloned().unwrap_or(Value::Null),
                None => r,
            };
            out.push(r);
        }
        n
    };
    match stream.pagination() {
        PaginationConfig::PageNumber {
            page_param,
            size_param,
            size,
            start,
            total_path,
            ..
        } => {
            let mut page = *start;
            loop {
                let mut p = fixed.clone();
                p.push((page_param.clone(), page.to_string()));
                p.push((size_param.clone(), size.to_string()));
                if source == "onecard" {
                    signed(&mut p);
                }
                let body = get_json(client, source, &url, &p, token).await;
                let n = take(&body, &mut out);
                let total = total_path
                    .as_ref()
                    .and_then(|t| body.pointer(t))
                    .and_then(Value::as_u64);
                if n == 0 || total.is_some_and(|t| out.len() as u64 >= t) {
                    break;
                }
                page += 1;
            }
        }
        PaginationConfig::OffsetLimit {
            offset_param,
            limit_param,
            limit,
            total_path,
            ..
        } => loop {
            let mut p = fixed.clone();
            p.push((offset_param.clone(), out.len().to_string()));
            p.push((limit_param.clone(), limit.to_string()));
            let body = get_json(client, source, &url, &p, token).await;
            let n = take(&body, &mut out);
            let total = total_path
                .as_ref()
                .and_then(|t| body.pointer(t))
                .and_then(Value::as_u64);
            if n == 0 || total.is_some_and(|t| out.len() as u64 >= t) {
                break;
            }
        },
        PaginationConfig::Cursor {
            cursor_path,
            cursor_param,
            size_param,
            size,
            ..
        } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut p = fixed.clone();
                if let Some(sp) = size_param {
                    p.push((sp.clone(), size.to_string()));
                }
                if let Some(c) = &cursor {
                    p.push((cursor_param.clone(), c.clone()));
                }
                let body = get_json(client, source, &url, &p, token).await;
                take(&body, &mut out);
                cursor = body
                    .pointer(cursor_path)
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if cursor.is_none() {
                    break;
                }
            }
        }
        PaginationConfig::NextLink {
            size_param, size, ..
        } => {
            let mut p = fixed.clone();
            if let Some(sp) = size_param {
                p.push((sp.clone(), size.to_string()));
            }
            let mut body = get_json(client, source, &url, &p, token).await;
            loop {
                take(&body, &mut out);
                let next = body["link"]
                    .as_array()
                    .and_then(|l| l.iter().find(|x| x["relation"] == "next"))
                    .and_then(|x| x["url"].as_str())
                    .map(str::to_string);
                match next {
                    Some(n) => body = get_json(client, source, &n, &[], token).await,
                    None => break,
                }
            }
        }
        other => panic!("unexpected pagination {other:?}"),
    }
    out
}

#[tokio::test]
async fn every_stream_maps_to_the_ground_truth() {
    let cfg = config();
    let sim = Sim::start(SimOptions {
        seed: 7,
        residents: 3000,
        ..SimOptions::default()
    })
    .await
    .expect("start");
    let truth = sim.truth();
    let client = reqwest::Client::new();
    let token = {
        let b = client
            .post(format!("{}/oauth/token", sim.urls.volunteer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", sim::VOLUNTEER_CLIENT_ID),
                ("client_secret", sim::VOLUNTEER_SECRET),
            ])
            .send()
            .await
            .expect("token")
            .bytes()
            .await
            .expect("body");
        let v: Value = serde_json::from_slice(&b[3..]).expect("json");
        v["access_token"].as_str().unwrap_or("").to_string()
    };
    let mut people: Vec<PersonRow> = Vec::new();
    for src in &cfg.sources {
        let base = match src.name.as_str() {
            "onecard" => &sim.urls.onecard,
            "volunteer" => &sim.urls.volunteer,
            "eldercare" => &sim.urls.eldercare,
            "health" => &sim.urls.health,
            other => panic!("unknown source {other}"),
        };
        for stream in &src.streams {
            let k = (src.name.clone(), stream.name.clone());
            let raw = fetch_all(&client, base, &src.name, stream, &token).await;
            assert_eq!(raw.len(), truth.served[&k], "{k:?} served");
            let mapping = Mapping::compile(&cfg, stream);
            let mut accepted = BTreeSet::new();
            let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
            let mut fields: BTreeMap<String, usize> = BTreeMap::new();
            for r in &raw {
                match mapping.apply(r) {
                    Mapped::Ok(rec, deleted) => {
                        assert!(!deleted);
                        for f in &rec.field_rejects {
                            *fields.entry(f.reason.code().to_string()).or_default() += 1;
                        }
                        if stream.entity.carries_person() {
                            people.push(PersonRow {
                                record: (k.0.clone(), k.1.clone(), rec.source_key.clone()),
                                id: rec.person.id_number.clone(),
                                // Chinese names: whitespace between characters is dirt.
                                name: rec
                                    .person
                                    .name
                                    .as_ref()
                                    .map(|n| n.split_whitespace().collect()),
                                phone: rec.person.phone.clone(),
                            });
                        }
                        accepted.insert(rec.source_key.clone());
                    }
                    Mapped::Rejected(rej) => {
                        *rejected.entry(rej.reason.code().to_string()).or_default() += 1
                    }
                }
            }
            assert_eq!(accepted.len(), truth.accepted[&k], "{k:?} accepted");
            assert_eq!(
                rejected,
                truth
                    .rejected_records_by_stream
                    .get(&k)
                    .cloned()
                    .unwrap_or_default(),
                "{k:?} rejects"
            );
            assert_eq!(
                fields,
                truth
                    .rejected_fields_by_stream
                    .get(&k)
                    .cloned()
                    .unwrap_or_default(),
                "{k:?} field rejects"
            );
            if stream.entity.carries_person() {
                let truth_keys: BTreeSet<String> = truth
                    .resident_of_record
                    .keys()
                    .filter(|(s, st, _)| *s == k.0 && *st == k.1)
                    .map(|(_, _, key)| key.clone())
                    .collect();
                assert_eq!(accepted, truth_keys, "{k:?} attributed keys");
            }
        }
    }
    // Link as a reconciler would: equal ID numbers; an ID-less record by equal name + phone.
    let clusters = cluster(&people);
    let distinct: BTreeSet<usize> = clusters.iter().copied().collect();
    assert_eq!(distinct.len(), truth.persons, "golden persons");
    let mut resident_of_cluster: BTreeMap<usize, usize> = BTreeMap::new();
    let mut cluster_of_resident: BTreeMap<usize, usize> = BTreeMap::new();
    for (row, c) in people.iter().zip(&clusters) {
        let r = truth.resident_of_record[&row.record];
        assert_eq!(
            *resident_of_cluster.entry(*c).or_insert(r),
            r,
            "a cluster holds one resident"
        );
        assert_eq!(
            *cluster_of_resident.entry(r).or_insert(*c),
            *c,
            "a resident is one cluster"
        );
    }
    sim.shutdown().await;
}

struct PersonRow {
    record: (String, String, String),
    id: Option<String>,
    name: Option<String>,
    phone: Option<String>,
}

/// Cluster number per row.
fn cluster(rows: &[PersonRow]) -> Vec<usize> {
    fn find(p: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_name_phone: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(id) = &r.id {
            if let Some(&j) = by_id.get(id.as_str()) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            } else {
                by_id.insert(id, i);
            }
        }
    }
    // Name + phone pairs of ID-carrying records first, then ID-less records join them.
    for pass_idless in [false, true] {
        for (i, r) in rows.iter().enumerate() {
            if r.id.is_none() != pass_idless {
                continue;
            }
            let (Some(n), Some(p)) = (&r.name, &r.phone) else {
                continue;
            };
            match by_name_phone.get(&(n.as_str(), p.as_str())) {
                Some(&j) if pass_idless => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                Some(_) => {}
                None => {
                    by_name_phone.insert((n, p), i);
                }
            }
        }
    }
    (0..rows.len()).map(|i| find(&mut parent, i)).collect()
}
