//! The built-in simulator: four department systems and the platform on 127.0.0.1.
//!
//! One seeded population of residents is spread over the four systems (社区一卡通, 志愿者服务,
//! 居家养老, 社区健康服务), each served exactly as `config/community-sync.toml` expects, with
//! realistic dirt. [`GroundTruth`] says what a correct pipeline must end up with, so tests can
//! assert exact numbers. The platform (一平台) endpoint records every event it applies.
//!
//! Population (all from `SimOptions::seed`, ChaCha8): Han names by surname frequency (~1%
//! minority names with a middle dot), valid 18-digit IDs (97% Nanchang counties 3601xx, the
//! rest elsewhere; birth 1930–2010; 17th digit parity = gender), unique mobiles except
//! families (~25% of residents join the previous resident's household; half of those share
//! its phone, never with the same name: (name, phone) is unique), addresses
//! 江西省南昌市 + district + real street (streets-jiangxi.csv) + generated 社区 + 栋/单元/室.
//! Coverage: one-card 60%, volunteer 15%, eldercare 20% (age ≥ 60 only), health 50%;
//! activity records uniform 0..=2·mean (3 transactions, 4 services, 5 orders, 2 follow-ups)
//! per person record. Timestamps spread over two years before the anchor, with runs of 3–40
//! records sharing one timestamp; eldercare has millisecond timestamps, the others seconds.
//!
//! Dirt on person records (activity records are clean and always point at an existing
//! parent): ID with spaces / full-width digits / lower-case x (normalisable), 15-digit legacy
//! IDs in eldercare (~15%, always upgrade exactly); bad check digit (~1% of ID-carrying
//! records, whole record rejected, `id_number.check_digit`); phone with +86 / dashes / spaces /
//! full-width digits (normalisable), landline `0791-86xxxxxx` in eldercare (~10%, valid,
//! record always has a valid ID), invalid phone `1381234567`/`12345` (~0.5%, field reject
//! `phone.invalid`, record always has a valid ID), missing phone (~2%, valid ID); no ID and no
//! phone (~0.5%, `identity.missing`); names with an inner ASCII space or U+3000 between
//! surname and given name (the name normalizer must drop whitespace between Han characters)
//! or padded with spaces. ID-less records: 35% of one-card holders (`sfzh` = ""), 3% of
//! patients (no resident-id identifier); they carry name + valid phone, and every other
//! ID-carrying record of that resident carries the same valid mobile, so name + phone links.
//!
//! Deleting is possible in every person stream, each the vendor's own way: a cardholder's card
//! status `kzt` becomes `注销` (cancelled; live cards are `正常`, `挂失` or `冻结`), volunteers
//! carry a `deleted` boolean, elders an `is_deleted` 0/1, and an HL7 FHIR Patient turns
//! `"active": false` (a quarter of live patients leave `active` out).
//!
//! Vendor habits beyond the happy path: the one-card system answers every request with HTTP
//! 200 and a `{code, msg, data}` envelope (`"0000"` is success; a busy system says
//! `{"code": 500, "msg": "系统繁忙，请稍后再试", "data": null}`), the elder-care system a
//! `{success, resultCode, resultMsg}` one; the volunteer system sends neither birth date nor
//! gender (only the ID number), and a fifth of the patients with an ID number have no
//! `birthDate`. [`SourceChaos`] injects faults (503s, a gateway's HTML page with status 200,
//! business errors inside 200, busy or fatal) on chosen requests or at random; the ground
//! truth never changes with them.

pub mod district;
mod hard_cases;
pub use hard_cases::HardProfile;
mod names;
mod platform;
pub mod sqldb;
pub mod variants;
pub(crate) mod vendors;
pub(crate) mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, FixedOffset};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use platform::{AppliedEntity, PlatformChaos, PlatformView};
pub use vendors::{onecard_sign, Fault, SourceChaos};
use world::{GenOptions, StreamId, World};

/// Demo credentials of the simulated systems (public; used by `community-sync demo`).
pub const ONECARD_APP_KEY: &str = "ykt-demo";
pub const ONECARD_SECRET: &str = "ykt-demo-secret";
pub const VOLUNTEER_CLIENT_ID: &str = "community-sync";
pub const VOLUNTEER_SECRET: &str = "vol-demo-secret";
pub const ELDERCARE_KEY: &str = "eld-demo-key";
pub const HEALTH_USER: &str = "sync";
pub const HEALTH_PASSWORD: &str = "health-demo-pass";
pub const PLATFORM_TOKEN: &str = "platform-demo-token";
/// The default base port of `community-sync sim`: onecard, volunteer, eldercare, health and
/// the platform listen on it and the four ports after it (18081-18085), the ports
/// `config/community-sync.toml` names.
pub const DEFAULT_BASE_PORT: u16 = 18081;
/// Random faults ([`SimOptions::fault_rate`], `demo --faults`) never come more than this many
/// in a row on one stream: fewer than the example config's `http.retries` (4), so a client
/// that retries as configured always gets through and reaches the ground truth.
pub const FAULTS_IN_A_ROW: u64 = 2;
/// The four source names, in port order.
pub const SOURCES: [&str; 4] = ["onecard", "volunteer", "eldercare", "health"];

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub residents: usize,
    /// Bind 127.0.0.1:base..base+4 (onecard, volunteer, eldercare, health, platform) instead
    /// of ephemeral ports.
    pub base_port: Option<u16>,
    /// Lifetime of the volunteer system's OAuth tokens.
    pub token_lifetime_secs: u64,
    /// Add the matching hard cases (see `sim::hard_cases`): old phones, homophone and
    /// traditional-character names, swapped birth dates, shared family phones, common names,
    /// twins, minority names. Off in the default demo population.
    pub hard_cases: bool,
    /// Which hard-case population (`HardProfile::Unseen`: issue 36's second profile;
    /// `HardProfile::Holdout`: a third, adversarial one the matcher is never tuned on;
    /// `HardProfile::Blind`: a fourth, with eight more error processes of Chinese department
    /// systems and clerks, that nobody tunes the matcher on either; `HardProfile::Fresh`: a
    /// fifth, with eight more kinds, that nobody tunes on or looks at while tuning).
    pub hard_profile: HardProfile,
    /// Serve one district of a city: residents registered there, some moved to or from the
    /// neighbouring districts (`sim::district`). None: the whole of Nanchang, no movers.
    pub district: Option<district::DistrictOptions>,
    /// Random transient faults on this share of data requests (see
    /// [`SourceChaos::set_random_faults`]); 0 = none.
    pub fault_rate: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 20240501,
            residents: 20_000,
            base_port: None,
            token_lifetime_secs: 3600,
            hard_cases: false,
            hard_profile: HardProfile::Tuned,
            district: None,
            fault_rate: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: cannot listen on 127.0.0.1:{port} for {what}: {source}. Is another simulator or program using it? Choose other ports with --port BASE, or --port 0 for free ones")]
    Bind {
        what: &'static str,
        port: u16,
        source: std::io::Error,
    },
    #[error("simulator: unknown source {0:?} (expected onecard, volunteer, eldercare or health)")]
    UnknownSource(String),
    #[error("simulator: unknown stream {stream:?} of source {source_name:?}")]
    UnknownStream { source_name: String, stream: String },
    #[error("simulator: no record {key:?} in {source_name}/{stream}")]
    UnknownKey {
        source_name: String,
        stream: String,
        key: String,
    },
    #[error("simulator: resident #{resident} has no record in {source_name}")]
    NotInSource {
        source_name: String,
        resident: usize,
    },
    #[error("simulator: {0}")]
    Unsupported(String),
    #[error("simulator: population generation failed: {0}")]
    Generate(String),
}

/// Base URLs of the simulated systems; `platform` is the full events URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUrls {
    pub onecard: String,
    pub volunteer: String,
    pub eldercare: String,
    pub health: String,
    pub platform: String,
}

/// What a correct pipeline must end up with, computed from the simulator's current state.
/// Deleted records (flagged by the vendor) are excluded from every count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroundTruth {
    /// (source, stream) -> records served now (excluding deleted).
    pub served: BTreeMap<(String, String), usize>,
    /// (source, stream) -> records a correct pipeline keeps.
    pub accepted: BTreeMap<(String, String), usize>,
    /// Reject reason code -> records rejected whole.
    pub rejected_records: BTreeMap<String, usize>,
    /// Reject reason code -> field-level rejects (the record is kept).
    pub rejected_fields: BTreeMap<String, usize>,
    /// (source, stream) -> reason code -> records rejected whole, per stream.
    pub rejected_records_by_stream: BTreeMap<(String, String), BTreeMap<String, usize>>,
    /// (source, stream) -> reason code -> field-level rejects, per stream.
    pub rejected_fields_by_stream: BTreeMap<(String, String), BTreeMap<String, usize>>,
    /// Golden persons expected: identity clusters of accepted person records (records of one
    /// resident that share an ID number, or whose ID-less record has the same name and phone
    /// as another record of theirs). In the generated population this equals the number of
    /// residents with at least one accepted person record.
    pub persons: usize,
    /// Residents with at least one accepted person record.
    pub residents_present: usize,
    /// Index k = residents present (accepted) in exactly k of the 4 systems.
    pub persons_by_systems: [usize; 5],
    /// Entity kind (EntityKind::as_str) -> accepted records.
    pub domain_rows: BTreeMap<String, usize>,
    /// (source, stream, key) -> resident index, for accepted person records.
    pub resident_of_record: BTreeMap<(String, String, String), usize>,
    /// (source, stream) -> activity records whose parent person record is rejected whole.
    pub orphan_activities: BTreeMap<(String, String), usize>,
    /// (source, stream) -> records flagged deleted.
    pub deleted: BTreeMap<(String, String), usize>,
    /// Every ID number (as served, 15- and 18-digit) and phone (as served and normalized).
    pub sensitive_values: Vec<String>,
    /// (source, stream, key) -> hard-case kind, for accepted person records that are part of
    /// a hard case (empty unless `SimOptions::hard_cases`).
    pub case_of_record: BTreeMap<(String, String, String), String>,
    /// Open review items a correct reconcile raises, by `kind:field`: one `conflict` item per
    /// accepted person record whose birth date contradicts its resident's (the hard case
    /// `swapped_birth`): a machine must not pick a birth date, and the golden record keeps the
    /// one of the ID-bearing record. (A stated gender always agrees with the ID number here,
    /// and no two residents are close enough to score between the thresholds.)
    pub review_items: BTreeMap<String, usize>,
}

impl GroundTruth {
    /// Open review items a correct reconcile raises, all kinds.
    pub fn review_total(&self) -> usize {
        self.review_items.values().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// New phone in that system's person record of the resident; updated_at = now.
    ChangePhone { source: String, resident: usize },
    /// New name in that system's person record of the resident; updated_at = now.
    ChangeName { source: String, resident: usize },
    /// updated_at = now, content unchanged.
    Touch {
        source: String,
        stream: String,
        key: String,
    },
    /// Mark deleted and updated_at = now, as the vendor says it (card status 注销, a deleted
    /// flag, FHIR `active: false`); person streams only: the activity streams' APIs cannot.
    Delete {
        source: String,
        stream: String,
        key: String,
    },
    /// A new clean resident with one person record and one activity record in each system.
    AddResident { systems: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationOutcome {
    /// The resident concerned (the new one for AddResident).
    pub resident: Option<usize>,
    /// (source, stream, key) of every record changed or created.
    pub keys: Vec<(String, String, String)>,
    /// The new updated_at, RFC 3339 in Asia/Shanghai.
    pub updated_at: String,
}

/// Facts about one person record, for tests choosing what to mutate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub key: String,
    /// The record carries a valid ID number (so it links by ID, not by name + phone).
    pub has_valid_id: bool,
    /// The record is rejected whole (bad check digit, no identity).
    pub rejected: bool,
    pub deleted: bool,
}

struct Trigger {
    stream: StreamId,
    at_page: u64,
    mutation: Mutation,
}

pub(crate) struct Shared {
    world: RwLock<World>,
    triggers: Mutex<Vec<Trigger>>,
    pages: Mutex<[u64; 8]>,
    tokens: Mutex<HashMap<String, i64>>,
    token_lifetime_secs: u64,
    bases: RwLock<[String; 4]>,
    platform: platform::PlatformState,
    source_chaos: vendors::SourceChaos,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|e| e.into_inner())
    }
    fn base(&self, i: usize) -> String {
        self.bases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .cloned()
            .unwrap_or_default()
    }

    /// Called by the vendors after a page of `stream` was rendered: counts it and applies
    /// due mid-sync mutations.
    fn page_served(&self, stream: StreamId) {
        let count = {
            let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
            pages[stream.idx()] += 1;
            pages[stream.idx()]
        };
        let due: Vec<Mutation> = {
            let mut triggers = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
            let (due, keep): (Vec<Trigger>, Vec<Trigger>) = triggers
                .drain(..)
                .partition(|t| t.stream == stream && count >= t.at_page);
            *triggers = keep;
            due.into_iter().map(|t| t.mutation).collect()
        };
        for m in due {
            if let Err(e) = apply_mutation(self, m, world::now_ms()) {
                tracing::warn!("simulator: mid-sync mutation failed: {e}");
            }
        }
    }
}

pub struct Sim {
    pub urls: SimUrls,
    /// What it was started with (seed, residents, ports, hard cases).
    pub options: SimOptions,
    shared: Arc<Shared>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

fn stream_id(source: &str, stream: &str) -> Result<StreamId, SimError> {
    if !SOURCES.contains(&source) {
        return Err(SimError::UnknownSource(source.to_string()));
    }
    StreamId::parse(source, stream).ok_or_else(|| SimError::UnknownStream {
        source_name: source.to_string(),
        stream: stream.to_string(),
    })
}

fn person_stream(source: &str) -> Result<StreamId, SimError> {
    StreamId::person_of_source(source).ok_or_else(|| SimError::UnknownSource(source.to_string()))
}

fn apply_mutation(shared: &Shared, m: Mutation, ts_ms: i64) -> Result<MutationOutcome, SimError> {
    let mut w = shared.write();
    let round = |s: StreamId| {
        if s.whole_seconds() {
            ts_ms - ts_ms.rem_euclid(1000)
        } else {
            ts_ms
        }
    };
    let updated_at = world::rfc3339_local(ts_ms);
    let triple = |s: StreamId, key: String| (s.source().to_string(), s.name().to_string(), key);
    match m {
        Mutation::ChangePhone { source, resident } => {
            let s = person_stream(&source)?;
            let key =
                w.change_phone(s, resident as u32, round(s))
                    .ok_or(SimError::NotInSource {
                        source_name: source,
                        resident,
                    })?;
            Ok(MutationOutcome {
                resident: Some(resident),
                keys: vec![triple(s, key)],
                updated_at,
            })
        }
        Mutation::ChangeName { source, resident } => {
            let s = person_stream(&source)?;
            let key = w
                .change_name(s, resident as u32, round(s))
                .ok_or(SimError::NotInSource {
                    source_name: source,
                    resident,
                })?;
            Ok(MutationOutcome {
                resident: Some(resident),
                keys: vec![triple(s, key)],
                updated_at,
            })
        }
        Mutation::Touch {
            source,
            stream,
            key,
        } => touch(&mut w, &source, &stream, key, round, false, updated_at),
        Mutation::Delete {
            source,
            stream,
            key,
        } => touch(&mut w, &source, &stream, key, round, true, updated_at),
        Mutation::AddResident { systems } => {
            let mut streams = Vec::new();
            for s in &systems {
                streams.push(person_stream(s)?);
            }
            let ts = ts_ms;
            let (resident, keys) = w.add_resident(&streams, ts);
            Ok(MutationOutcome {
                resident: Some(resident as usize),
                keys: keys.into_iter().map(|(s, k)| triple(s, k)).collect(),
                updated_at,
            })
        }
    }
}

fn touch(
    w: &mut World,
    source: &str,
    stream: &str,
    key: String,
    round: impl Fn(StreamId) -> i64,
    delete: bool,
    updated_at: String,
) -> Result<MutationOutcome, SimError> {
    let s = stream_id(source, stream)?;
    if delete && !s.has_deleted_flag() {
        return Err(SimError::Unsupported(format!(
            "{source}/{stream} cannot say a record is deleted in its API; only person streams (cardholders, volunteers, elders, patients) can"
        )));
    }
    let unknown = || SimError::UnknownKey {
        source_name: source.to_string(),
        stream: stream.to_string(),
        key: key.clone(),
    };
    let no = s.parse_key(&key).ok_or_else(unknown)?;
    if !w.touch(s, no, round(s), delete) {
        return Err(unknown());
    }
    let resident = w
        .stream(s)
        .index_of(no)
        .and_then(|i| w.stream(s).recs.get(i as usize))
        .and_then(|r| w.resident_of(s, r))
        .map(|r| r as usize);
    Ok(MutationOutcome {
        resident,
        keys: vec![(source.to_string(), stream.to_string(), key)],
        updated_at,
    })
}

fn compute_truth(w: &World) -> GroundTruth {
    let mut t = GroundTruth::default();
    let n = w.residents.len();
    let mut present = vec![0u8; n];
    // Identity clusters per resident: (has an ID cluster, set of ID-less (name, phone)).
    let mut id_cluster = vec![false; n];
    let mut idless: HashMap<u32, Vec<(String, u64)>> = HashMap::new();
    let mut with_id_pairs: HashMap<u32, Vec<(String, u64)>> = HashMap::new();
    for s in StreamId::ALL {
        let sk = (s.source().to_string(), s.name().to_string());
        let stream = w.stream(s);
        let mut served = 0;
        let mut accepted = 0;
        let mut deleted = 0;
        let mut orphans = 0;
        for rec in &stream.recs {
            if rec.deleted {
                deleted += 1;
                continue;
            }
            served += 1;
            if s.is_person() {
                if let Some(reason) = w.record_reject(rec) {
                    *t.rejected_records.entry(reason.to_string()).or_default() += 1;
                    *t.rejected_records_by_stream
                        .entry(sk.clone())
                        .or_default()
                        .entry(reason.to_string())
                        .or_default() += 1;
                    continue;
                }
                if let Some(reason) = w.field_reject(rec) {
                    *t.rejected_fields.entry(reason.to_string()).or_default() += 1;
                    *t.rejected_fields_by_stream
                        .entry(sk.clone())
                        .or_default()
                        .entry(reason.to_string())
                        .or_default() += 1;
                }
                accepted += 1;
                let r = rec.owner;
                if let Some(p) = present.get_mut(r as usize) {
                    *p |= 1 << (s.idx() / 2);
                }
                let name = w.rec_name(rec);
                let phone_ok = matches!(
                    rec.phone,
                    world::PhoneDirt::Clean
                        | world::PhoneDirt::Plus86
                        | world::PhoneDirt::Dashes
                        | world::PhoneDirt::Spaces
                        | world::PhoneDirt::FullWidth
                );
                if rec.id == world::IdDirt::Missing {
                    idless.entry(r).or_default().push((name, w.rec_phone(rec)));
                } else {
                    if let Some(c) = id_cluster.get_mut(r as usize) {
                        *c = true;
                    }
                    if phone_ok {
                        with_id_pairs
                            .entry(r)
                            .or_default()
                            .push((name, w.rec_phone(rec)));
                    }
                }
                t.resident_of_record
                    .insert((sk.0.clone(), sk.1.clone(), s.key(rec.no)), r as usize);
                if let Some(kind) = w.case_kind.get(&(s.idx(), rec.no)) {
                    t.case_of_record.insert(
                        (sk.0.clone(), sk.1.clone(), s.key(rec.no)),
                        kind.to_string(),
                    );
                }
            } else {
                accepted += 1;
                let parent = w.stream(s.person_stream()).recs.get(rec.owner as usize);
                if parent.is_some_and(|p| w.record_reject(p).is_some()) {
                    orphans += 1;
                }
            }
        }
        t.served.insert(sk.clone(), served);
        t.accepted.insert(sk.clone(), accepted);
        t.deleted.insert(sk.clone(), deleted);
        if !s.is_person() {
            t.orphan_activities.insert(sk.clone(), orphans);
        }
        *t.domain_rows.entry(s.entity().to_string()).or_default() += accepted;
    }
    for (i, p) in present.iter().enumerate() {
        let k = p.count_ones() as usize;
        t.persons_by_systems[k.min(4)] += 1;
        if k == 0 {
            continue;
        }
        t.residents_present += 1;
        let mut clusters = usize::from(id_cluster[i]);
        let mut seen: Vec<&(String, u64)> = Vec::new();
        let linked_pairs = with_id_pairs.get(&(i as u32));
        for pair in idless.get(&(i as u32)).into_iter().flatten() {
            let links_to_id = id_cluster[i] && linked_pairs.is_some_and(|v| v.contains(pair));
            if links_to_id || seen.contains(&pair) {
                continue;
            }
            seen.push(pair);
            clusters += 1;
        }
        t.persons += clusters;
    }
    if !w.case_kind.is_empty() {
        // With hard cases a correct reconcile makes exactly one resident per resident present.
        t.persons = t.residents_present;
    }
    t.sensitive_values = w.sensitive_values();
    t.review_items = review_items(w);
    t
}

/// The review items a correct reconcile raises (see [`GroundTruth::review_items`]): one per
/// accepted person record whose birth date is not its resident's (a record without one
/// contradicts nothing).
fn review_items(w: &World) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in StreamId::PERSON {
        for rec in &w.stream(s).recs {
            let accepted = !rec.deleted && w.record_reject(rec).is_none();
            let wrong_birth = w
                .residents
                .get(rec.owner as usize)
                .is_some_and(|res| w.rec_birth(rec).is_some_and(|b| b != res.birth));
            if accepted && wrong_birth {
                *out.entry("conflict:birth_date".to_string()).or_default() += 1;
            }
        }
    }
    out
}

async fn bind(what: &'static str, port: u16) -> Result<tokio::net::TcpListener, SimError> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| SimError::Bind { what, port, source })
}

impl Sim {
    /// Generates the population and starts the five servers. Generated timestamps lie in
    /// the two years before 2026-01-01T00:00+08:00 (or before the current hour if the clock
    /// is earlier), so a seed always gives the same records.
    pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
        Sim::start_inner(opts, world::default_anchor()).await
    }

    /// Like [`Sim::start`], but generated timestamps lie in the two years before `anchor`
    /// (e.g. now, for a demo whose newest records are recent).
    pub async fn start_at(
        opts: SimOptions,
        anchor: DateTime<FixedOffset>,
    ) -> Result<Sim, SimError> {
        Sim::start_inner(opts, anchor.timestamp_millis()).await
    }

    async fn start_inner(opts: SimOptions, anchor_ms: i64) -> Result<Sim, SimError> {
        let gen = GenOptions {
            seed: opts.seed,
            residents: opts.residents,
            anchor_ms,
            hard_cases: opts.hard_cases,
            hard_profile: opts.hard_profile,
            district: opts.district,
        };
        let world = tokio::task::spawn_blocking(move || World::generate(gen))
            .await
            .map_err(|e| SimError::Generate(e.to_string()))?;
        let shared = Arc::new(Shared {
            world: RwLock::new(world),
            triggers: Mutex::new(Vec::new()),
            pages: Mutex::new([0; 8]),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime_secs: opts.token_lifetime_secs,
            bases: RwLock::new(Default::default()),
            platform: platform::PlatformState::new(opts.seed),
            source_chaos: vendors::SourceChaos::new(),
        });
        if opts.fault_rate > 0.0 {
            shared
                .source_chaos
                .set_random_faults(opts.fault_rate, FAULTS_IN_A_ROW, opts.seed);
        }
        let names = ["onecard", "volunteer", "eldercare", "health", "platform"];
        let mut listeners = Vec::new();
        if let Some(base) = opts.base_port.filter(|b| *b > u16::MAX - 4) {
            return Err(SimError::Bind {
                what: "onecard",
                port: base,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a base port leaves room for five ports only up to 65531",
                ),
            });
        }
        for (i, what) in names.into_iter().enumerate() {
            let port = match opts.base_port {
                Some(0) | None => 0,
                Some(base) => base.saturating_add(i as u16),
            };
            listeners.push(bind(what, port).await?);
        }
        let mut urls = Vec::new();
        for (l, what) in listeners.iter().zip(names) {
            let port = l
                .local_addr()
                .map_err(|source| SimError::Bind {
                    what,
                    port: 0,
                    source,
                })?
                .port();
            urls.push(format!("http://127.0.0.1:{port}"));
        }
        {
            let mut bases = shared.bases.write().unwrap_or_else(|e| e.into_inner());
            for (b, u) in bases.iter_mut().zip(&urls) {
                *b = u.clone();
            }
        }
        let routers = [
            vendors::onecard(shared.clone()),
            vendors::volunteer(shared.clone()),
            vendors::eldercare(shared.clone()),
            vendors::health(shared.clone()),
            platform::router(shared.clone()),
        ];
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for (listener, router) in listeners.into_iter().zip(routers) {
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
                if let Err(e) = serve.await {
                    tracing::warn!("simulator server stopped: {e}");
                }
            }));
        }
        let urls = SimUrls {
            onecard: urls[0].clone(),
            volunteer: urls[1].clone(),
            eldercare: urls[2].clone(),
            health: urls[3].clone(),
            platform: format!("{}/api/v1/events", urls[4]),
        };
        Ok(Sim {
            urls,
            options: opts,
            shared,
            stops,
            tasks,
        })
    }

    /// The current ground truth (after any mutations).
    pub fn truth(&self) -> GroundTruth {
        compute_truth(&self.shared.read())
    }

    /// A snapshot of what the platform applied.
    pub fn platform(&self) -> PlatformView {
        self.shared.platform.view()
    }

    /// The platform's chaos knobs.
    pub fn chaos(&self) -> &PlatformChaos {
        &self.shared.platform.chaos
    }

    /// Failure knobs of the four department systems.
    pub fn source_chaos(&self) -> &SourceChaos {
        &self.shared.source_chaos
    }

    /// Applies a mutation now (wall clock, Asia/Shanghai).
    pub fn mutate(&self, m: Mutation) -> Result<MutationOutcome, SimError> {
        apply_mutation(&self.shared, m, world::now_ms())
    }

    /// Applies a mutation with an explicit updated_at (e.g. a few seconds in the past, so a
    /// source with `settle_secs` picks it up at once).
    pub fn mutate_at(
        &self,
        m: Mutation,
        at: DateTime<FixedOffset>,
    ) -> Result<MutationOutcome, SimError> {
        apply_mutation(&self.shared, m, at.timestamp_millis())
    }

    /// Mid-sync mutation: after `pages` more pages of (source, stream) have been served
    /// (counting from now), apply `m` (timestamped with the wall clock at that moment).
    pub fn after_pages(
        &self,
        source: &str,
        stream: &str,
        pages: u64,
        m: Mutation,
    ) -> Result<(), SimError> {
        let s = stream_id(source, stream)?;
        let now = self.pages_served(source, stream)?;
        self.shared
            .triggers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Trigger {
                stream: s,
                at_page: now + pages.max(1),
                mutation: m,
            });
        Ok(())
    }

    /// Pages of (source, stream) served so far (successful data responses).
    pub fn pages_served(&self, source: &str, stream: &str) -> Result<u64, SimError> {
        let s = stream_id(source, stream)?;
        Ok(self.shared.pages.lock().unwrap_or_else(|e| e.into_inner())[s.idx()])
    }

    /// The residents who moved to or from another district (`SimOptions::district`).
    pub fn movers(&self) -> Vec<district::Mover> {
        self.shared.read().movers.clone()
    }

    /// Residents with a (non-deleted) person record in `source`, ascending.
    pub fn residents_in(&self, source: &str) -> Vec<usize> {
        let Ok(s) = person_stream(source) else {
            return Vec::new();
        };
        let w = self.shared.read();
        let mut out: Vec<usize> = w
            .stream(s)
            .recs
            .iter()
            .filter(|r| !r.deleted)
            .map(|r| r.owner as usize)
            .collect();
        out.sort_unstable();
        out
    }

    /// Key of the resident's record in (source, stream): the person record, or the first
    /// activity record of that person.
    pub fn record_key(&self, source: &str, stream: &str, resident: usize) -> Option<String> {
        let s = stream_id(source, stream).ok()?;
        let w = self.shared.read();
        let p = w.person_rec_index(s.person_stream(), resident as u32)?;
        if s.is_person() {
            return w.stream(s).recs.get(p as usize).map(|r| s.key(r.no));
        }
        w.stream(s)
            .recs
            .iter()
            .filter(|r| r.owner == p)
            .map(|r| r.no)
            .min()
            .map(|no| s.key(no))
    }

    /// Facts about the resident's person record in `source`.
    pub fn record_info(&self, source: &str, resident: usize) -> Option<RecordInfo> {
        let s = person_stream(source).ok()?;
        let w = self.shared.read();
        let idx = w.person_rec_index(s, resident as u32)?;
        let rec = w.stream(s).recs.get(idx as usize)?;
        Some(RecordInfo {
            key: s.key(rec.no),
            has_valid_id: !matches!(rec.id, world::IdDirt::Missing | world::IdDirt::BadCheck),
            rejected: w.record_reject(rec).is_some(),
            deleted: rec.deleted,
        })
    }

    /// Number of residents (including ones added by mutations).
    pub fn resident_count(&self) -> usize {
        self.shared.read().residents.len()
    }

    /// The resident's true 18-digit ID number, name and mobile (for assertions only).
    pub fn resident_identity(&self, resident: usize) -> Option<(String, String, String)> {
        let w = self.shared.read();
        let r = w.residents.get(resident)?;
        Some((r.id_str(), r.name.clone(), r.phone.to_string()))
    }

    /// Stops all servers.
    pub async fn shutdown(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(n: usize) -> World {
        World::generate(GenOptions {
            seed: 99,
            residents: n,
            anchor_ms: 1_767_196_800_000,
            hard_cases: false,
            hard_profile: HardProfile::Tuned,
            district: None,
        })
    }

    #[test]
    fn truth_is_consistent() {
        let w = world(4000);
        let t = compute_truth(&w);
        for s in StreamId::PERSON {
            let k = (s.source().to_string(), s.name().to_string());
            let served = t.served[&k];
            let accepted = t.accepted[&k];
            assert!(accepted < served);
            assert!(accepted * 10 > served * 9, "most records are accepted");
        }
        let person_served: usize = StreamId::PERSON
            .iter()
            .map(|s| t.served[&(s.source().to_string(), s.name().to_string())])
            .sum();
        let person_accepted: usize = StreamId::PERSON
            .iter()
            .map(|s| t.accepted[&(s.source().to_string(), s.name().to_string())])
            .sum();
        let rejected: usize = t.rejected_records.values().sum();
        assert_eq!(person_accepted + rejected, person_served);
        assert!(t.rejected_records["id_number.check_digit"] > 0);
        assert!(t.rejected_records["identity.missing"] > 0);
        assert!(t.rejected_fields["phone.invalid"] > 0);
        assert_eq!(t.persons, t.residents_present);
        assert_eq!(t.persons_by_systems[1..].iter().sum::<usize>(), t.persons);
        assert_eq!(t.persons_by_systems.iter().sum::<usize>(), 4000);
        assert_eq!(
            t.resident_of_record.len(),
            person_accepted,
            "every accepted person record is attributed"
        );
        let onecard = t.served[&("onecard".to_string(), "cardholders".to_string())];
        assert!(
            (2000..2800).contains(&onecard),
            "about 60% have a card: {onecard}"
        );
    }

    /// A 500-resident world of `profile` names every kind of `kinds` in its truth, raises
    /// `conflicts` birth-date conflict items, and has a resident per person.
    fn assert_truth_of(profile: HardProfile, kinds: &[&[&str]], conflicts: usize) {
        let w = World::generate(GenOptions {
            seed: 5,
            residents: 500,
            anchor_ms: 1_767_196_800_000,
            hard_cases: true,
            hard_profile: profile,
            district: None,
        });
        let t = compute_truth(&w);
        let named: std::collections::BTreeSet<&str> =
            t.case_of_record.values().map(String::as_str).collect();
        for kind in kinds.iter().flat_map(|k| k.iter()) {
            assert!(named.contains(kind), "{profile:?}: {kind}");
        }
        assert_eq!(
            t.review_items.get("conflict:birth_date"),
            Some(&conflicts),
            "{profile:?}"
        );
        assert_eq!(t.persons, t.residents_present);
    }

    #[test]
    fn holdout_truth_names_every_new_kind_and_its_birth_conflicts() {
        // Swapped, registration and year-off birth dates (20 each); a missing one is no
        // conflict.
        assert_truth_of(HardProfile::Holdout, &[&hard_cases::holdout::KINDS], 60);
    }

    #[test]
    fn blind_truth_names_every_new_kind_and_its_birth_conflicts() {
        // Swapped, registration, year-off and placeholder birth dates (16 each).
        let kinds: [&[&str]; 2] = [&hard_cases::blind::KINDS, &hard_cases::holdout::KINDS];
        assert_truth_of(HardProfile::Blind, &kinds, 64);
    }

    #[test]
    fn fresh_truth_names_every_new_kind_and_its_birth_conflicts() {
        // Swapped, registration, year-off, placeholder and lunar birth dates (12 each).
        let kinds: [&[&str]; 3] = [
            &hard_cases::fresh::KINDS,
            &hard_cases::blind::KINDS,
            &hard_cases::holdout::KINDS,
        ];
        assert_truth_of(HardProfile::Fresh, &kinds, 60);
    }

    #[test]
    fn same_seed_same_truth() {
        assert_eq!(compute_truth(&world(1500)), compute_truth(&world(1500)));
    }

    #[test]
    fn mutations_change_truth_as_expected() {
        let shared = Shared {
            world: RwLock::new(world(1000)),
            triggers: Mutex::new(Vec::new()),
            pages: Mutex::new([0; 8]),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime_secs: 60,
            bases: RwLock::new(Default::default()),
            platform: platform::PlatformState::new(1),
            source_chaos: vendors::SourceChaos::new(),
        };
        let before = compute_truth(&shared.read());
        let out = apply_mutation(
            &shared,
            Mutation::AddResident {
                systems: vec!["onecard".into(), "health".into()],
            },
            world::now_ms(),
        );
        let out = out.map_err(|e| e.to_string());
        assert!(out.is_ok(), "{out:?}");
        let after = compute_truth(&shared.read());
        assert_eq!(after.persons, before.persons + 1);
        assert_eq!(
            after.persons_by_systems[2],
            before.persons_by_systems[2] + 1
        );
        let k = ("health".to_string(), "followups".to_string());
        assert_eq!(after.served[&k], before.served[&k] + 1);
        // Deleting a cardholder removes it from served.
        let key = shared.read().stream(StreamId::Cardholders).recs[0].no;
        let del = apply_mutation(
            &shared,
            Mutation::Delete {
                source: "onecard".into(),
                stream: "cardholders".into(),
                key: StreamId::Cardholders.key(key),
            },
            world::now_ms(),
        );
        assert!(del.is_ok());
        let k = ("onecard".to_string(), "cardholders".to_string());
        assert_eq!(
            compute_truth(&shared.read()).served[&k],
            after.served[&k] - 1
        );
        let bad = apply_mutation(
            &shared,
            Mutation::Delete {
                source: "health".into(),
                stream: "followups".into(),
                key: "enc-00000001".into(),
            },
            world::now_ms(),
        );
        assert!(matches!(bad, Err(SimError::Unsupported(_))));
    }
}
