//! The simulated population and the records of the four department systems.
//!
//! Everything is stored compactly (one small struct per record) and rendered to vendor JSON on
//! demand, page by page. Every random choice comes from a ChaCha8 generator seeded by the
//! caller, so a seed always gives the same population, records, dirt and timestamps.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, Timelike, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::names;
use crate::normalize::id_number::check_char;

pub(super) const STREETS_CSV: &str = include_str!("../../data/divisions/streets-jiangxi.csv");
pub(super) const AREAS_CSV: &str = include_str!("../../data/divisions/areas.csv");

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// 2026-01-01T00:00:00+08:00 in epoch ms: generated timestamps lie in the two years before.
const FIXED_ANCHOR_MS: i64 = 1_767_196_800_000;

pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Current wall clock in epoch ms.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The eight streams, in a fixed order used as an index everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    Cardholders = 0,
    Transactions = 1,
    Volunteers = 2,
    ServiceRecords = 3,
    Elders = 4,
    ServiceOrders = 5,
    Patients = 6,
    Followups = 7,
}

impl StreamId {
    pub const ALL: [StreamId; 8] = [
        StreamId::Cardholders,
        StreamId::Transactions,
        StreamId::Volunteers,
        StreamId::ServiceRecords,
        StreamId::Elders,
        StreamId::ServiceOrders,
        StreamId::Patients,
        StreamId::Followups,
    ];
    pub const PERSON: [StreamId; 4] = [
        StreamId::Cardholders,
        StreamId::Volunteers,
        StreamId::Elders,
        StreamId::Patients,
    ];

    pub fn idx(self) -> usize {
        self as usize
    }
    pub fn source(self) -> &'static str {
        match self {
            StreamId::Cardholders | StreamId::Transactions => "onecard",
            StreamId::Volunteers | StreamId::ServiceRecords => "volunteer",
            StreamId::Elders | StreamId::ServiceOrders => "eldercare",
            StreamId::Patients | StreamId::Followups => "health",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            StreamId::Cardholders => "cardholders",
            StreamId::Transactions => "transactions",
            StreamId::Volunteers => "volunteers",
            StreamId::ServiceRecords => "service_records",
            StreamId::Elders => "elders",
            StreamId::ServiceOrders => "service_orders",
            StreamId::Patients => "patients",
            StreamId::Followups => "followups",
        }
    }
    pub fn entity(self) -> &'static str {
        match self {
            StreamId::Cardholders => "card_account",
            StreamId::Transactions => "card_transaction",
            StreamId::Volunteers => "volunteer",
            StreamId::ServiceRecords => "volunteer_service",
            StreamId::Elders => "elder",
            StreamId::ServiceOrders => "eldercare_order",
            StreamId::Patients => "patient",
            StreamId::Followups => "health_followup",
        }
    }
    pub fn is_person(self) -> bool {
        matches!(
            self,
            StreamId::Cardholders | StreamId::Volunteers | StreamId::Elders | StreamId::Patients
        )
    }
    /// The person stream of the same source.
    pub fn person_stream(self) -> StreamId {
        StreamId::PERSON[self.idx() / 2]
    }
    /// The activity stream of the same source.
    pub fn activity_stream(self) -> StreamId {
        StreamId::ALL[self.idx() / 2 * 2 + 1]
    }
    /// Whether the vendor's API can say a record of this stream is deleted: by a status value
    /// (a cardholder's `kzt` = 注销), a flag (volunteers' `deleted`, elders' `is_deleted`) or
    /// HL7 FHIR `Patient.active = false`.
    pub fn has_deleted_flag(self) -> bool {
        StreamId::PERSON.contains(&self)
    }
    /// The URL path the vendor serves this stream at.
    pub fn path(self) -> &'static str {
        match self {
            StreamId::Cardholders => "/api/ykt/v1/cardholders",
            StreamId::Transactions => "/api/ykt/v1/transactions",
            StreamId::Volunteers => "/api/v2/volunteers",
            StreamId::ServiceRecords => "/api/v2/service-records",
            StreamId::Elders => "/api/elders",
            StreamId::ServiceOrders => "/api/service_orders",
            StreamId::Patients => "/fhir/Patient",
            StreamId::Followups => "/fhir/Encounter",
        }
    }
    /// The stream served at a URL path.
    pub fn of_path(path: &str) -> Option<StreamId> {
        StreamId::ALL.into_iter().find(|s| s.path() == path)
    }
    /// Timestamps of this stream are whole seconds (all but eldercare, which uses epoch ms).
    pub fn whole_seconds(self) -> bool {
        !matches!(self, StreamId::Elders | StreamId::ServiceOrders)
    }
    pub fn parse(source: &str, stream: &str) -> Option<StreamId> {
        StreamId::ALL
            .into_iter()
            .find(|s| s.source() == source && s.name() == stream)
    }
    pub fn person_of_source(source: &str) -> Option<StreamId> {
        StreamId::PERSON.into_iter().find(|s| s.source() == source)
    }
    /// The record key for a sequence number.
    pub fn key(self, no: u32) -> String {
        match self {
            StreamId::Cardholders => format!("NC{no:08}"),
            StreamId::Transactions => format!("T{no:010}"),
            StreamId::Volunteers => format!("VOL-{no:07}"),
            StreamId::ServiceRecords => format!("SR-{no:08}"),
            StreamId::Elders => format!("E{no:07}"),
            StreamId::ServiceOrders => format!("SO{no:08}"),
            StreamId::Patients => format!("pat-{no:07}"),
            StreamId::Followups => format!("enc-{no:08}"),
        }
    }
    /// The sequence number of a key (inverse of [`StreamId::key`]).
    pub fn parse_key(self, key: &str) -> Option<u32> {
        let digits = match self {
            StreamId::Cardholders => key.strip_prefix("NC"),
            StreamId::Transactions => key.strip_prefix('T'),
            StreamId::Volunteers => key.strip_prefix("VOL-"),
            StreamId::ServiceRecords => key.strip_prefix("SR-"),
            StreamId::Elders => key.strip_prefix('E'),
            StreamId::ServiceOrders => key.strip_prefix("SO"),
            StreamId::Patients => key.strip_prefix("pat-"),
            StreamId::Followups => key.strip_prefix("enc-"),
        }?;
        let no: u32 = digits.parse().ok()?;
        (self.key(no) == key).then_some(no)
    }
}

/// How a record spells the ID number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdDirt {
    Clean,
    Spaces,
    LowerX,
    FullWidth,
    /// 15-digit legacy number (eldercare only; upgrades exactly to the 18-digit one).
    Legacy15,
    /// Wrong check digit: the whole record is rejected (`id_number.check_digit`).
    BadCheck,
    /// No ID number at all.
    Missing,
}

/// How a record spells the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneDirt {
    Clean,
    Plus86,
    Dashes,
    Spaces,
    FullWidth,
    /// A landline `0791-86xxxxxx` (eldercare only; record always has a valid ID).
    Landline,
    /// Not a phone number: field-level reject (`phone.invalid`); record has a valid ID.
    Invalid,
    Missing,
}

/// How a record spells the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameDirt {
    Clean,
    InnerSpace,
    IdeographicSpace,
    Padded,
}

/// What one record says differently from its resident (hard cases, mutations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub name: Option<String>,
    pub phone: Option<u64>,
    /// Birth date as this record spells it (hard cases: day/month swapped).
    pub birth: Option<NaiveDate>,
    /// The record has no birth date at all (wins over `birth`).
    pub no_birth: bool,
    /// The address as this record writes it (hard cases: another building notation).
    pub address: Option<String>,
    /// The phone as this record writes it, wins over `phone` and the record's `PhoneDirt`
    /// (hard cases: another format of the mobile, a landline).
    pub phone_text: Option<String>,
    /// The community (index) this record names (hard cases: a resident's former one).
    pub community: Option<u32>,
    /// The community name this record writes, wins over `community` (hard cases: the
    /// community's old or abbreviated name).
    pub community_name: Option<String>,
}

/// One record of any stream. For a person stream `owner` is the resident index; for an
/// activity stream it is the index of the parent record in the person stream.
#[derive(Debug, Clone)]
pub struct Rec {
    pub owner: u32,
    pub no: u32,
    pub ts: i64,
    pub seed: u32,
    pub deleted: bool,
    pub id: IdDirt,
    pub phone: PhoneDirt,
    pub name: NameDirt,
    pub over: Option<Box<Overrides>>,
}

#[derive(Debug, Clone)]
pub struct Resident {
    pub name: String,
    /// 18 ASCII characters.
    pub id: [u8; 18],
    pub male: bool,
    pub birth: NaiveDate,
    pub phone: u64,
    pub community: u32,
    pub building: u8,
    pub unit: u8,
    pub room: u16,
}

impl Resident {
    pub fn id_str(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
    pub fn id15(&self) -> String {
        let s = self.id_str();
        format!("{}{}", &s[..6], &s[8..17])
    }
}

#[derive(Debug, Clone)]
pub struct Community {
    pub district: String,
    pub street: String,
    pub name: String,
}

/// A stream's records plus an index sorted by (timestamp, key number).
#[derive(Debug, Default)]
pub struct Stream {
    pub recs: Vec<Rec>,
    pub order: Vec<(i64, u32, u32)>, // (ts, no, index into recs)
}

impl Stream {
    /// Index of the record with sequence number `no` (numbers are dense from 1).
    pub fn index_of(&self, no: u32) -> Option<u32> {
        let idx = no.checked_sub(1)?;
        self.recs
            .get(idx as usize)
            .is_some_and(|r| r.no == no)
            .then_some(idx)
    }
    pub(crate) fn push(&mut self, rec: Rec) -> u32 {
        let idx = self.recs.len() as u32;
        debug_assert_eq!(rec.no, idx + 1, "record numbers are dense from 1");
        self.recs.push(rec);
        idx
    }
    fn build_order(&mut self) {
        self.order = self
            .recs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.ts, r.no, i as u32))
            .collect();
        self.order.sort_unstable();
    }
    /// Changes a record's timestamp, keeping the order index sorted.
    pub fn retime(&mut self, idx: u32, ts: i64) {
        let Some(rec) = self.recs.get_mut(idx as usize) else {
            return;
        };
        let old = (rec.ts, rec.no, idx);
        rec.ts = ts;
        let new = (ts, rec.no, idx);
        if let Ok(pos) = self.order.binary_search(&old) {
            self.order.remove(pos);
        }
        let pos = self.order.partition_point(|e| *e < new);
        self.order.insert(pos, new);
    }
    fn insert_new(&mut self, rec: Rec) -> u32 {
        let entry = (rec.ts, rec.no, self.recs.len() as u32);
        let idx = self.push(rec);
        let pos = self.order.partition_point(|e| *e < entry);
        self.order.insert(pos, entry);
        idx
    }
    /// Positions in `order` of records with lo <= ts < hi.
    pub fn range(&self, lo: Option<i64>, hi: Option<i64>) -> std::ops::Range<usize> {
        let start = match lo {
            Some(lo) => self.order.partition_point(|e| e.0 < lo),
            None => 0,
        };
        let end = match hi {
            Some(hi) => self.order.partition_point(|e| e.0 < hi),
            None => self.order.len(),
        };
        start..end.max(start)
    }
}

pub struct World {
    pub residents: Vec<Resident>,
    pub communities: Vec<Community>,
    pub streams: Vec<Stream>,
    /// Per person stream (index 0..4), resident -> index of its record.
    pub person_rec: [HashMap<u32, u32>; 4],
    pub phones: HashMap<u64, Vec<u32>>,
    /// (stream index, record number) -> hard-case kind (sim::hard_cases).
    pub case_kind: HashMap<(usize, u32), &'static str>,
    /// Residents who moved to or from another district (sim::district).
    pub movers: Vec<super::district::Mover>,
    pub(super) ids: HashSet<[u8; 17]>,
    next_no: [u32; 8],
    rng: ChaCha8Rng,
    street_pool: Vec<(String, String)>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A derived pseudo-random number for field `salt` of a record.
fn derive(seed: u32, salt: u64, modulo: u64) -> u64 {
    splitmix(u64::from(seed) ^ (salt << 32)) % modulo.max(1)
}

fn nanchang_streets() -> Vec<(String, String)> {
    let mut districts = HashMap::new();
    for line in AREAS_CSV.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() >= 3 && cols[2] == "3601" {
            districts.insert(cols[0].to_string(), cols[1].trim_matches('"').to_string());
        }
    }
    let mut out = Vec::new();
    for line in STREETS_CSV.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() >= 5 && cols[4] == "3601" {
            if let Some(d) = districts.get(cols[2]) {
                out.push((d.clone(), cols[1].trim_matches('"').to_string()));
            }
        }
    }
    if out.is_empty() {
        out.push(("东湖区".to_string(), "滕王阁街道".to_string()));
    }
    out
}

fn nanchang_counties() -> Vec<String> {
    let mut out: Vec<String> = AREAS_CSV
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.len() >= 3 && cols[2] == "3601").then(|| cols[0].to_string())
        })
        .collect();
    if out.is_empty() {
        out.push("360102".to_string());
    }
    out
}

const MOBILE_PREFIXES: [u64; 30] = [
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159,
    166, 177, 180, 181, 182, 183, 186, 187, 188, 189, 199,
];

/// Options for one generation.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    pub seed: u64,
    pub residents: usize,
    pub anchor_ms: i64,
    /// Add the matching hard cases (sim::hard_cases).
    pub hard_cases: bool,
    /// Which hard-case population.
    pub hard_profile: super::hard_cases::HardProfile,
    /// One district of a city (sim::district).
    pub district: Option<super::district::DistrictOptions>,
}

/// Default anchor: 2026-01-01 Shanghai, or the current hour if the clock is earlier.
pub fn default_anchor() -> i64 {
    let now = now_ms();
    if now > FIXED_ANCHOR_MS {
        FIXED_ANCHOR_MS
    } else {
        now - now.rem_euclid(3_600_000)
    }
}

/// Picks timestamps for a stream, with occasional runs of records sharing one timestamp.
struct TsGen {
    lo: i64,
    hi: i64,
    whole: bool,
    run_left: u32,
    run_ts: i64,
}

impl TsGen {
    fn new(anchor: i64, whole: bool) -> TsGen {
        TsGen {
            lo: anchor - 730 * DAY_MS,
            hi: anchor - 60_000,
            whole,
            run_left: 0,
            run_ts: 0,
        }
    }
    fn next(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        if self.run_left > 0 {
            self.run_left -= 1;
            return self.run_ts;
        }
        let mut ts = rng.random_range(self.lo..self.hi);
        if self.whole {
            ts -= ts.rem_euclid(1000);
        }
        if rng.random_bool(0.004) {
            self.run_left = rng.random_range(3..40);
            self.run_ts = ts;
        }
        ts
    }
}

impl World {
    pub fn generate(opts: GenOptions) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let street_pool = match &opts.district {
            Some(d) => super::district::streets(d.code),
            None => nanchang_streets(),
        };
        let counties = nanchang_counties();
        let mut w = World {
            residents: Vec::with_capacity(opts.residents),
            communities: Vec::new(),
            streams: (0..8).map(|_| Stream::default()).collect(),
            person_rec: Default::default(),
            phones: HashMap::with_capacity(opts.residents),
            case_kind: HashMap::new(),
            movers: Vec::new(),
            ids: HashSet::with_capacity(opts.residents),
            next_no: [1; 8],
            rng: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x005E_ED0F_5EED),
            street_pool,
        };
        // Communities: a few per street.
        let streets = w.street_pool.clone();
        for (district, street) in &streets {
            let n = rng.random_range(2..5);
            let mut seen = HashSet::new();
            for _ in 0..n {
                let name = names::community_name(&mut rng);
                if seen.insert(name.clone()) {
                    w.communities.push(Community {
                        district: district.clone(),
                        street: street.clone(),
                        name,
                    });
                }
            }
        }
        // Residents, in families sharing an address and sometimes a phone.
        let today = chrono::DateTime::from_timestamp_millis(opts.anchor_ms)
            .map(|d| d.with_timezone(&shanghai()).date_naive())
            .unwrap_or_default();
        for i in 0..opts.residents {
            let family_of = if i > 0 && rng.random_bool(0.25) {
                Some(i - 1)
            } else {
                None
            };
            let male = rng.random_bool(0.5);
            let birth = random_birth(&mut rng);
            let county = if rng.random_bool(0.97) {
                counties[rng.random_range(0..counties.len())].clone()
            } else {
                names::OTHER_COUNTIES[rng.random_range(0..names::OTHER_COUNTIES.len())].to_string()
            };
            let county = opts.district.map_or(county, |d| d.code.to_string());
            let id = w.fresh_id(&mut rng, &county, birth, male);
            let (community, building, unit, room, shared_phone) = match family_of {
                Some(f) => {
                    let r = &w.residents[f];
                    let phone = rng.random_bool(0.5).then_some(r.phone);
                    (r.community, r.building, r.unit, r.room, phone)
                }
                None => (
                    rng.random_range(0..w.communities.len()) as u32,
                    rng.random_range(1..30),
                    rng.random_range(1..6),
                    rng.random_range(1..33) * 100 + rng.random_range(1..5),
                    None,
                ),
            };
            let phone = match shared_phone {
                Some(p) => p,
                None => w.fresh_phone(&mut rng),
            };
            let mut name = names::person_name(&mut rng, male);
            while w.name_taken(phone, &name) {
                name = names::person_name(&mut rng, male);
            }
            w.phones.entry(phone).or_default().push(i as u32);
            w.residents.push(Resident {
                name,
                id,
                male,
                birth,
                phone,
                community,
                building,
                unit,
                room,
            });
        }
        if let Some(d) = &opts.district {
            super::district::place_movers(&mut w, d);
        }
        // Coverage.
        let elderly: Vec<bool> = w
            .residents
            .iter()
            .map(|r| age_at(r.birth, today) >= 60)
            .collect();
        let n_elderly = elderly.iter().filter(|e| **e).count().max(1);
        let p_elder = (0.2 * opts.residents as f64 / n_elderly as f64).min(1.0);
        let mut membership = vec![[false; 4]; opts.residents];
        for (i, m) in membership.iter_mut().enumerate() {
            m[0] = rng.random_bool(0.6);
            m[1] = rng.random_bool(0.15);
            m[2] = elderly[i] && rng.random_bool(p_elder);
            m[3] = rng.random_bool(0.5);
        }
        // Which residents have an ID-less record (one-card 35%, health 3%): their other
        // records must carry a valid phone so that name + phone links them.
        let mut idless = vec![[false; 4]; opts.residents];
        for (i, m) in membership.iter().enumerate() {
            idless[i][0] = m[0] && rng.random_bool(0.35);
            idless[i][3] = m[3] && rng.random_bool(0.03);
        }
        for (sys, person) in StreamId::PERSON.into_iter().enumerate() {
            let mut tsgen = TsGen::new(opts.anchor_ms, person.whole_seconds());
            for i in 0..opts.residents {
                if !membership[i][sys] {
                    continue;
                }
                let needs_phone = idless[i].iter().any(|x| *x);
                let ts = tsgen.next(&mut rng);
                let rec =
                    w.dirty_person_rec(&mut rng, person, i as u32, idless[i][sys], needs_phone, ts);
                let idx = w.streams[person.idx()].push(rec);
                w.person_rec[sys].insert(i as u32, idx);
            }
            // Activity records.
            let act = person.activity_stream();
            let mean = match act {
                StreamId::Transactions => 3,
                StreamId::ServiceRecords => 4,
                StreamId::ServiceOrders => 5,
                _ => 2,
            };
            let mut tsgen = TsGen::new(opts.anchor_ms, act.whole_seconds());
            let parents = w.streams[person.idx()].recs.len() as u32;
            for p in 0..parents {
                let n = rng.random_range(0..=2 * mean);
                for _ in 0..n {
                    let no = w.take_no(act);
                    let rec = Rec {
                        owner: p,
                        no,
                        ts: tsgen.next(&mut rng),
                        seed: rng.random(),
                        deleted: false,
                        id: IdDirt::Clean,
                        phone: PhoneDirt::Clean,
                        name: NameDirt::Clean,
                        over: None,
                    };
                    w.streams[act.idx()].push(rec);
                }
            }
        }
        if opts.hard_cases {
            super::hard_cases::add(&mut w, &mut rng, opts.anchor_ms, opts.hard_profile);
        }
        for s in &mut w.streams {
            s.build_order();
        }
        w
    }

    pub(crate) fn take_no(&mut self, s: StreamId) -> u32 {
        let no = self.next_no[s.idx()];
        self.next_no[s.idx()] += 1;
        no
    }

    fn name_taken(&self, phone: u64, name: &str) -> bool {
        self.phones.get(&phone).is_some_and(|owners| {
            owners.iter().any(|o| {
                self.residents
                    .get(*o as usize)
                    .is_some_and(|r| r.name == name)
            })
        })
    }

    pub(crate) fn fresh_phone(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        loop {
            let prefix = MOBILE_PREFIXES[rng.random_range(0..MOBILE_PREFIXES.len())];
            let phone = prefix * 100_000_000 + rng.random_range(0..100_000_000u64);
            if !self.phones.contains_key(&phone) {
                return phone;
            }
        }
    }

    pub(crate) fn fresh_id(
        &mut self,
        rng: &mut ChaCha8Rng,
        county: &str,
        birth: NaiveDate,
        male: bool,
    ) -> [u8; 18] {
        loop {
            let seq = rng.random_range(0..100u32);
            let parity = rng.random_range(0..5u32) * 2 + u32::from(male);
            let first17 = format!(
                "{county}{:04}{:02}{:02}{seq:02}{parity}",
                birth.year(),
                birth.month(),
                birth.day()
            );
            let mut key = [0u8; 17];
            key.copy_from_slice(&first17.as_bytes()[..17]);
            if !self.ids.insert(key) {
                continue;
            }
            let check = check_char(&first17).unwrap_or('0');
            let mut id = [0u8; 18];
            id[..17].copy_from_slice(&key);
            id[17] = check as u8;
            return id;
        }
    }

    fn dirty_person_rec(
        &mut self,
        rng: &mut ChaCha8Rng,
        stream: StreamId,
        resident: u32,
        idless: bool,
        needs_phone: bool,
        ts: i64,
    ) -> Rec {
        let no = self.take_no(stream);
        let ends_x = self.residents[resident as usize].id[17] == b'X';
        let mut id = if idless {
            IdDirt::Missing
        } else {
            let x: f64 = rng.random();
            if x < 0.01 {
                IdDirt::BadCheck
            } else if stream == StreamId::Elders && x < 0.16 {
                IdDirt::Legacy15
            } else if x < 0.04 {
                IdDirt::Spaces
            } else if x < 0.06 {
                IdDirt::FullWidth
            } else if ends_x && x < 0.5 {
                IdDirt::LowerX
            } else {
                IdDirt::Clean
            }
        };
        let id_valid = !matches!(id, IdDirt::Missing | IdDirt::BadCheck);
        let x: f64 = rng.random();
        let mut phone = if x < 0.03 {
            PhoneDirt::Plus86
        } else if x < 0.06 {
            PhoneDirt::Dashes
        } else if x < 0.08 {
            PhoneDirt::Spaces
        } else if x < 0.10 {
            PhoneDirt::FullWidth
        } else if x < 0.105 && id_valid && !needs_phone {
            PhoneDirt::Invalid
        } else if x < 0.125 && id_valid && !needs_phone {
            PhoneDirt::Missing
        } else if x < 0.225 && id_valid && !needs_phone && stream == StreamId::Elders {
            PhoneDirt::Landline
        } else {
            PhoneDirt::Clean
        };
        // identity.missing: no ID number and no phone (~0.5%).
        if !needs_phone && rng.random_bool(0.005) {
            id = IdDirt::Missing;
            phone = PhoneDirt::Missing;
        }
        let x: f64 = rng.random();
        let name = if x < 0.02 {
            NameDirt::InnerSpace
        } else if x < 0.03 {
            NameDirt::IdeographicSpace
        } else if x < 0.05 {
            NameDirt::Padded
        } else {
            NameDirt::Clean
        };
        Rec {
            owner: resident,
            no,
            ts,
            seed: rng.random(),
            deleted: false,
            id,
            phone,
            name,
            over: None,
        }
    }

    pub fn stream(&self, s: StreamId) -> &Stream {
        &self.streams[s.idx()]
    }

    /// The resident a record belongs to.
    pub fn resident_of(&self, s: StreamId, rec: &Rec) -> Option<u32> {
        if s.is_person() {
            Some(rec.owner)
        } else {
            self.stream(s.person_stream())
                .recs
                .get(rec.owner as usize)
                .map(|p| p.owner)
        }
    }

    pub fn rec_name(&self, rec: &Rec) -> String {
        match rec.over.as_ref().and_then(|o| o.name.clone()) {
            Some(n) => n,
            None => self
                .residents
                .get(rec.owner as usize)
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        }
    }

    /// The birth date a record states; `None` when it states none.
    pub fn rec_birth(&self, rec: &Rec) -> Option<NaiveDate> {
        match rec.over.as_deref() {
            Some(o) if o.no_birth => None,
            Some(Overrides { birth: Some(b), .. }) => Some(*b),
            _ => Some(
                self.residents
                    .get(rec.owner as usize)
                    .map(|r| r.birth)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The address text a record states: its resident's, unless the record writes it
    /// another way.
    pub fn rec_address(&self, rec: &Rec, r: &Resident) -> String {
        match rec.over.as_ref().and_then(|o| o.address.clone()) {
            Some(a) => a,
            None => self.address(r),
        }
    }

    pub fn rec_phone(&self, rec: &Rec) -> u64 {
        match rec.over.as_ref().and_then(|o| o.phone) {
            Some(p) => p,
            None => self
                .residents
                .get(rec.owner as usize)
                .map(|r| r.phone)
                .unwrap_or_default(),
        }
    }

    // ----- classification (ground truth) -----

    /// Why a person record is rejected whole, if it is.
    pub fn record_reject(&self, rec: &Rec) -> Option<&'static str> {
        match rec.id {
            IdDirt::BadCheck => Some("id_number.check_digit"),
            IdDirt::Missing
                if matches!(rec.phone, PhoneDirt::Missing | PhoneDirt::Invalid)
                    || self.rec_name(rec).trim().is_empty() =>
            {
                Some("identity.missing")
            }
            _ => None,
        }
    }

    /// Field-level rejects of an accepted person record.
    pub fn field_reject(&self, rec: &Rec) -> Option<&'static str> {
        (rec.phone == PhoneDirt::Invalid).then_some("phone.invalid")
    }

    // ----- rendering -----

    pub fn id_text(&self, rec: &Rec) -> Option<String> {
        let r = self.residents.get(rec.owner as usize)?;
        let id = r.id_str();
        Some(match rec.id {
            IdDirt::Clean => id,
            IdDirt::Spaces => format!("{} {} {}", &id[..6], &id[6..14], &id[14..]),
            IdDirt::LowerX => id.to_ascii_lowercase(),
            IdDirt::FullWidth => full_width(&id),
            IdDirt::Legacy15 => r.id15(),
            IdDirt::BadCheck => {
                let c = r.id[17];
                let bad = match c {
                    b'X' => '0',
                    b'9' => 'X',
                    d => char::from(d + 1),
                };
                format!("{}{}", &id[..17], bad)
            }
            IdDirt::Missing => return None,
        })
    }

    pub fn landline(&self, rec: &Rec) -> String {
        format!("0791-86{:06}", derive(rec.seed, 77, 1_000_000))
    }

    pub fn phone_text(&self, rec: &Rec) -> Option<String> {
        if let Some(text) = rec.over.as_ref().and_then(|o| o.phone_text.clone()) {
            return Some(text);
        }
        let p = self.rec_phone(rec).to_string();
        Some(match rec.phone {
            PhoneDirt::Clean => p,
            PhoneDirt::Plus86 => {
                if rec.seed % 2 == 0 {
                    format!("+86 {p}")
                } else {
                    format!("+86{p}")
                }
            }
            PhoneDirt::Dashes => format!("{}-{}-{}", &p[..3], &p[3..7], &p[7..]),
            PhoneDirt::Spaces => format!("{} {} {}", &p[..3], &p[3..7], &p[7..]),
            PhoneDirt::FullWidth => full_width(&p),
            PhoneDirt::Landline => self.landline(rec),
            PhoneDirt::Invalid => {
                if rec.seed % 2 == 0 {
                    p[..10].to_string()
                } else {
                    "12345".to_string()
                }
            }
            PhoneDirt::Missing => return None,
        })
    }

    pub fn name_text(&self, rec: &Rec) -> String {
        let n = self.rec_name(rec);
        match rec.name {
            NameDirt::Clean => n,
            NameDirt::InnerSpace | NameDirt::IdeographicSpace => {
                let sep = if rec.name == NameDirt::InnerSpace {
                    " "
                } else {
                    "\u{3000}"
                };
                let mut chars = n.chars();
                match chars.next() {
                    Some(first) if !n.contains('·') => format!("{first}{sep}{}", chars.as_str()),
                    _ => n,
                }
            }
            NameDirt::Padded => format!(" {n} "),
        }
    }

    pub fn address(&self, r: &Resident) -> String {
        format!(
            "{}{}栋{}单元{}室",
            self.address_prefix(r),
            r.building,
            r.unit,
            r.room
        )
    }

    /// The address down to the community (`江西省南昌市东湖区滕王阁街道豫章社区`): what
    /// precedes building, unit and room.
    pub fn address_prefix(&self, r: &Resident) -> String {
        let c = self.community(r);
        format!("江西省南昌市{}{}{}", c.district, c.street, c.name)
    }

    /// The community a record names: its resident's, unless the record names another.
    pub fn rec_community(&self, rec: &Rec, r: &Resident) -> &Community {
        match rec.over.as_ref().and_then(|o| o.community) {
            Some(c) => self
                .communities
                .get(c as usize)
                .unwrap_or(self.community(r)),
            None => self.community(r),
        }
    }

    /// The community name a record writes: its own wording, else its community's name.
    pub fn rec_community_name(&self, rec: &Rec, r: &Resident) -> String {
        match rec.over.as_ref().and_then(|o| o.community_name.clone()) {
            Some(name) => name,
            None => self.rec_community(rec, r).name.clone(),
        }
    }

    pub fn community(&self, r: &Resident) -> &Community {
        static FALLBACK: std::sync::OnceLock<Community> = std::sync::OnceLock::new();
        self.communities
            .get(r.community as usize)
            .unwrap_or_else(|| {
                FALLBACK.get_or_init(|| Community {
                    district: "东湖区".into(),
                    street: "滕王阁街道".into(),
                    name: "阳明社区".into(),
                })
            })
    }

    /// Renders one record in its vendor's JSON shape. `base` is the server's base URL
    /// (FHIR full URLs).
    pub fn render(&self, s: StreamId, rec: &Rec, base: &str) -> Value {
        let key = s.key(rec.no);
        match s {
            StreamId::Cardholders => self.render_cardholder(rec, key),
            StreamId::Transactions => {
                let parent = self
                    .stream(StreamId::Cardholders)
                    .recs
                    .get(rec.owner as usize);
                let kh = parent
                    .map(|p| StreamId::Cardholders.key(p.no))
                    .unwrap_or_default();
                let occurred = rec.ts - derive(rec.seed, 1, 3 * DAY_MS as u64) as i64;
                json!({
                    "jylsh": key,
                    "kh": kh,
                    "jyje": 100 + derive(rec.seed, 2, 5000) as i64,
                    "jysj": fmt_ts(occurred, "%Y%m%d%H%M%S"),
                    "shmc": names::MERCHANTS[derive(rec.seed, 3, names::MERCHANTS.len() as u64) as usize],
                    "gxsj": fmt_ts(rec.ts, "%Y-%m-%d %H:%M:%S"),
                })
            }
            StreamId::Volunteers => self.render_volunteer(rec, key),
            StreamId::ServiceRecords => {
                let parent = self
                    .stream(StreamId::Volunteers)
                    .recs
                    .get(rec.owner as usize);
                let vid = parent
                    .map(|p| StreamId::Volunteers.key(p.no))
                    .unwrap_or_default();
                let date = rec.ts - derive(rec.seed, 1, 10 * DAY_MS as u64) as i64;
                let hours = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0][derive(rec.seed, 2, 7) as usize];
                json!({
                    "recordId": key,
                    "volunteerId": vid,
                    "activity": names::ACTIVITIES[derive(rec.seed, 3, names::ACTIVITIES.len() as u64) as usize],
                    "serviceDate": fmt_ts(date, "%Y-%m-%d"),
                    "hours": hours,
                    "updatedAt": rfc3339_local(rec.ts),
                })
            }
            StreamId::Elders => self.render_elder(rec, key),
            StreamId::ServiceOrders => {
                let parent = self.stream(StreamId::Elders).recs.get(rec.owner as usize);
                let eid = parent
                    .map(|p| StreamId::Elders.key(p.no))
                    .unwrap_or_default();
                let types = ["ZC", "ZJ", "ZY", "ZX", "ZY2"];
                let statuses = ["NEW", "DONE", "DONE", "DONE", "CANCEL"];
                let fen = 1000 + derive(rec.seed, 2, 9000);
                let when = rec.ts - derive(rec.seed, 1, 5 * DAY_MS as u64) as i64;
                let when = when - when.rem_euclid(1_800_000);
                json!({
                    "order_no": key,
                    "elder_id": eid,
                    "service_type": types[derive(rec.seed, 3, 5) as usize],
                    "amount": format!("{}.{:02}", fen / 100, fen % 100),
                    "service_time": fmt_loose_datetime(when),
                    "status": statuses[derive(rec.seed, 4, 5) as usize],
                    "updated_at": rec.ts,
                })
            }
            StreamId::Patients => self.render_patient(rec, key, base),
            StreamId::Followups => {
                let parent = self.stream(StreamId::Patients).recs.get(rec.owner as usize);
                let pid = parent
                    .map(|p| StreamId::Patients.key(p.no))
                    .unwrap_or_default();
                let start = rec.ts - derive(rec.seed, 1, 7 * DAY_MS as u64) as i64;
                let start = start - start.rem_euclid(60_000);
                json!({
                    "fullUrl": format!("{base}/fhir/Encounter/{key}"),
                    "resource": {
                        "resourceType": "Encounter",
                        "id": key,
                        "meta": {"lastUpdated": rfc3339_utc(rec.ts)},
                        "status": "finished",
                        "subject": {"reference": format!("Patient/{pid}")},
                        "type": [{"text": names::FOLLOWUP_TYPES[derive(rec.seed, 3, names::FOLLOWUP_TYPES.len() as u64) as usize]}],
                        "period": {"start": rfc3339_local(start)},
                        "extension": [
                            {"url": "systolic", "valueInteger": 105 + derive(rec.seed, 4, 60)},
                            {"url": "diastolic", "valueInteger": 65 + derive(rec.seed, 5, 35)},
                        ],
                    }
                })
            }
        }
    }

    fn render_cardholder(&self, rec: &Rec, key: String) -> Value {
        let Some(r) = self.residents.get(rec.owner as usize) else {
            return json!({"kh": key});
        };
        let fen = derive(rec.seed, 1, 100_000);
        let opened = rec.ts - derive(rec.seed, 2, 2000) as i64 * DAY_MS;
        let opened = opened - opened.rem_euclid(1000);
        // The card's status is also how the system says a card was cancelled: 注销.
        let status = if rec.deleted {
            "注销"
        } else {
            [
                "正常", "正常", "正常", "正常", "正常", "正常", "正常", "挂失", "冻结", "正常",
            ][derive(rec.seed, 3, 10) as usize]
        };
        json!({
            "kh": key,
            "xm": self.name_text(rec),
            "sfzh": self.id_text(rec).unwrap_or_default(),
            "xb": if r.male { "1" } else { "2" },
            "csrq": self
                .rec_birth(rec)
                .map(|b| b.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            "sjhm": self.phone_text(rec).unwrap_or_default(),
            "sqmc": self.rec_community_name(rec, r),
            "zz": self.rec_address(rec, r),
            "ye": format!("{}.{:02}", fen / 100, fen % 100),
            "kzt": status,
            "kksj": fmt_ts(opened, "%Y-%m-%d %H:%M:%S"),
            "gxsj": fmt_ts(rec.ts, "%Y-%m-%d %H:%M:%S"),
        })
    }

    fn render_volunteer(&self, rec: &Rec, key: String) -> Value {
        let Some(r) = self.residents.get(rec.owner as usize) else {
            return json!({"volunteerId": key});
        };
        let registered = rec.ts - derive(rec.seed, 2, 1500) as i64 * DAY_MS;
        let registered = registered - registered.rem_euclid(1000);
        let status = [
            "ACTIVE",
            "ACTIVE",
            "ACTIVE",
            "ACTIVE",
            "SUSPENDED",
            "RETIRED",
        ][derive(rec.seed, 3, 6) as usize];
        // The volunteer system carries the ID number but neither birth date nor gender: the
        // golden record reads them from the ID number (GB 11643).
        json!({
            "volunteerId": key,
            "fullName": self.name_text(rec),
            "idCardNo": self.id_text(rec),
            "mobile": self.phone_text(rec),
            "community": self.rec_community_name(rec, r),
            "address": self.rec_address(rec, r),
            "registeredAt": rfc3339_local(registered),
            "status": status,
            "updatedAt": rfc3339_local(rec.ts),
            "deleted": rec.deleted,
        })
    }

    fn render_elder(&self, rec: &Rec, key: String) -> Value {
        let Some(r) = self.residents.get(rec.owner as usize) else {
            return json!({"elder_id": key});
        };
        let birth = match self.rec_birth(rec) {
            None => String::new(),
            Some(b) if rec.seed % 3 == 0 => format!("{}年{}月{}日", b.year(), b.month(), b.day()),
            Some(b) => b.format("%Y%m%d").to_string(),
        };
        json!({
            "elder_id": key,
            "resident_name": self.name_text(rec),
            "id_no": self.id_text(rec).unwrap_or_default(),
            "sex": if r.male { "男" } else { "女" },
            "birth_date": birth,
            "phone": self.phone_text(rec).unwrap_or_default(),
            "community_name": self.rec_community_name(rec, r),
            "address": self.rec_address(rec, r),
            "care_level": 1 + derive(rec.seed, 1, 4),
            "updated_at": rec.ts,
            "is_deleted": u8::from(rec.deleted),
        })
    }

    fn render_patient(&self, rec: &Rec, key: String, base: &str) -> Value {
        let Some(r) = self.residents.get(rec.owner as usize) else {
            return json!({"resource": {"resourceType": "Patient", "id": key}});
        };
        let mut identifier = Vec::new();
        if let Some(id) = self.id_text(rec) {
            identifier.push(json!({"system": "urn:cn:resident-id", "value": id}));
        }
        identifier.push(json!({
            "system": "urn:cn:health-record",
            "value": format!("JKDA{:010}", 3_601_000_000u64 + u64::from(rec.no)),
        }));
        let mut resource = json!({
            "resourceType": "Patient",
            "id": key,
            "meta": {"lastUpdated": rfc3339_utc(rec.ts)},
            "identifier": identifier,
            "name": [{"text": self.name_text(rec)}],
            "gender": if r.male { "male" } else { "female" },
            "address": [{"text": self.rec_address(rec, r)}],
        });
        if let (Some(b), Some(obj)) = (self.rec_birth(rec), resource.as_object_mut()) {
            obj.insert("birthDate".into(), json!(b.format("%Y-%m-%d").to_string()));
        }
        if let Some(obj) = resource.as_object_mut() {
            // Patient.active is optional in FHIR: a quarter of the records leave it out
            // (absent means in use); an inactive patient is how the system deletes one.
            if rec.deleted {
                obj.insert("active".into(), json!(false));
            } else if derive(rec.seed, 11, 4) != 0 {
                obj.insert("active".into(), json!(true));
            }
            // birthDate is optional too: a fifth of the patients with an ID number have none
            // (never a hard-case record, whose matching evidence is measured).
            let hard_case = self
                .case_kind
                .contains_key(&(StreamId::Patients.idx(), rec.no));
            if !hard_case && self.id_text(rec).is_some() && derive(rec.seed, 12, 5) == 0 {
                obj.remove("birthDate");
            }
        }
        if let (Some(phone), Some(obj)) = (self.phone_text(rec), resource.as_object_mut()) {
            obj.insert(
                "telecom".into(),
                json!([{"system": "phone", "value": phone, "use": "mobile"}]),
            );
        }
        json!({"fullUrl": format!("{base}/fhir/Patient/{key}"), "resource": resource})
    }

    // ----- mutations -----

    pub fn person_rec_index(&self, s: StreamId, resident: u32) -> Option<u32> {
        let sys = s.person_stream().idx() / 2;
        self.person_rec[sys].get(&resident).copied()
    }

    pub fn change_phone(&mut self, s: StreamId, resident: u32, ts: i64) -> Option<String> {
        let idx = self.person_rec_index(s, resident)?;
        let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
        let phone = self.fresh_phone(&mut rng);
        self.rng = rng;
        self.phones.entry(phone).or_default().push(resident);
        let stream = &mut self.streams[s.idx()];
        let rec = stream.recs.get_mut(idx as usize)?;
        let over = rec
            .over
            .get_or_insert_with(|| Box::new(Overrides::default()));
        over.phone = Some(phone);
        if matches!(
            rec.phone,
            PhoneDirt::Invalid | PhoneDirt::Missing | PhoneDirt::Landline
        ) {
            rec.phone = PhoneDirt::Clean;
        }
        let key = s.key(rec.no);
        stream.retime(idx, ts);
        Some(key)
    }

    pub fn change_name(&mut self, s: StreamId, resident: u32, ts: i64) -> Option<String> {
        let idx = self.person_rec_index(s, resident)?;
        let r = self.residents.get(resident as usize)?;
        let (male, phone, old) = (r.male, r.phone, r.name.clone());
        let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
        let mut name = names::person_name(&mut rng, male);
        while name == old || self.name_taken(phone, &name) {
            name = names::person_name(&mut rng, male);
        }
        self.rng = rng;
        let stream = &mut self.streams[s.idx()];
        let rec = stream.recs.get_mut(idx as usize)?;
        let over = rec
            .over
            .get_or_insert_with(|| Box::new(Overrides::default()));
        over.name = Some(name);
        let key = s.key(rec.no);
        stream.retime(idx, ts);
        Some(key)
    }

    pub fn touch(&mut self, s: StreamId, no: u32, ts: i64, delete: bool) -> bool {
        let stream = &mut self.streams[s.idx()];
        let Some(idx) = stream.index_of(no) else {
            return false;
        };
        if delete {
            if let Some(rec) = stream.recs.get_mut(idx as usize) {
                rec.deleted = true;
            }
        }
        stream.retime(idx, ts);
        true
    }

    /// A new, clean resident with one record (and one activity record) in each named system.
    pub fn add_resident(
        &mut self,
        systems: &[StreamId],
        ts: i64,
    ) -> (u32, Vec<(StreamId, String)>) {
        let mut rng = std::mem::replace(&mut self.rng, ChaCha8Rng::seed_from_u64(0));
        let male = rng.random_bool(0.5);
        let birth = random_birth(&mut rng);
        let county = "360102".to_string();
        let id = self.fresh_id(&mut rng, &county, birth, male);
        let phone = self.fresh_phone(&mut rng);
        let name = names::person_name(&mut rng, male);
        let idx = self.residents.len() as u32;
        self.phones.entry(phone).or_default().push(idx);
        let community = rng.random_range(0..self.communities.len().max(1)) as u32;
        self.residents.push(Resident {
            name,
            id,
            male,
            birth,
            phone,
            community,
            building: rng.random_range(1..30),
            unit: rng.random_range(1..6),
            room: rng.random_range(1..33) * 100 + rng.random_range(1..5),
        });
        let ts = |s: StreamId| {
            if s.whole_seconds() {
                ts - ts.rem_euclid(1000)
            } else {
                ts
            }
        };
        let mut keys = Vec::new();
        for s in systems {
            let person = s.person_stream();
            let sys = person.idx() / 2;
            if self.person_rec[sys].contains_key(&idx) {
                continue;
            }
            let no = self.take_no(person);
            let rec = Rec {
                owner: idx,
                no,
                ts: ts(person),
                seed: rng.random(),
                deleted: false,
                id: IdDirt::Clean,
                phone: PhoneDirt::Clean,
                name: NameDirt::Clean,
                over: None,
            };
            let p = self.streams[person.idx()].insert_new(rec);
            self.person_rec[sys].insert(idx, p);
            keys.push((person, person.key(no)));
            let act = person.activity_stream();
            let no = self.take_no(act);
            let rec = Rec {
                owner: p,
                no,
                ts: ts(act),
                seed: rng.random(),
                deleted: false,
                id: IdDirt::Clean,
                phone: PhoneDirt::Clean,
                name: NameDirt::Clean,
                over: None,
            };
            self.streams[act.idx()].insert_new(rec);
            keys.push((act, act.key(no)));
        }
        self.rng = rng;
        (idx, keys)
    }

    /// All ID and phone values of the population, as served and normalized.
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for r in &self.residents {
            out.insert(r.id_str());
            out.insert(r.id15());
            out.insert(r.phone.to_string());
        }
        for s in StreamId::PERSON {
            for rec in &self.stream(s).recs {
                if let Some(id) = self.id_text(rec) {
                    out.insert(id);
                }
                if let Some(p) = self.phone_text(rec) {
                    out.insert(p);
                }
                out.insert(self.rec_phone(rec).to_string());
                if rec.phone == PhoneDirt::Landline {
                    out.insert(self.landline(rec));
                }
            }
        }
        // Too-short junk (an invalid phone like "12345") is not personal data.
        out.into_iter()
            .filter(|v| {
                v.chars().filter(char::is_ascii_digit).count() >= 7
                    || v.chars().any(|c| ('０'..='９').contains(&c))
            })
            .collect()
    }
}

pub(super) fn random_birth(rng: &mut ChaCha8Rng) -> NaiveDate {
    let lo = NaiveDate::from_ymd_opt(1930, 1, 1).unwrap_or_default();
    let days = rng.random_range(0..29_585i64); // to 2010-12-31
    lo + chrono::Duration::days(days)
}

fn age_at(birth: NaiveDate, today: NaiveDate) -> i32 {
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() {
                char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

pub fn local(ms: i64) -> DateTime<FixedOffset> {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&shanghai())
}

pub fn fmt_ts(ms: i64, f: &str) -> String {
    local(ms).format(f).to_string()
}

/// "2024/5/1 10:00"
fn fmt_loose_datetime(ms: i64) -> String {
    let d = local(ms);
    format!(
        "{}/{}/{} {:02}:{:02}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute()
    )
}

pub fn rfc3339_local(ms: i64) -> String {
    local(ms).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

pub fn rfc3339_utc(ms: i64) -> String {
    let d = DateTime::from_timestamp_millis(ms).unwrap_or_default();
    if ms.rem_euclid(1000) == 0 {
        d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::id_number;

    fn world(n: usize) -> World {
        World::generate(GenOptions {
            seed: 7,
            residents: n,
            anchor_ms: FIXED_ANCHOR_MS,
            hard_cases: false,
            hard_profile: Default::default(),
            district: None,
        })
    }

    #[test]
    fn ids_are_valid_and_unique_and_15_digit_upgrades() {
        let w = world(2000);
        let mut seen = HashSet::new();
        for r in &w.residents {
            let id = r.id_str();
            let parsed = id_number::normalize(&id).map_err(|e| e.to_string());
            assert!(parsed.is_ok(), "generated ID must be valid: {parsed:?}");
            assert!(seen.insert(id.clone()));
            assert_eq!(r.male, id.as_bytes()[16] % 2 == 1);
            if r.birth.year() >= 2000 {
                continue;
            }
            let from15 = format!("{}19{}", &r.id15()[..6], &r.id15()[6..]);
            assert_eq!(
                check_char(&from15).map(|c| format!("{from15}{c}")),
                Some(id)
            );
        }
    }

    #[test]
    fn name_phone_pairs_are_unique() {
        let w = world(5000);
        let mut pairs = HashSet::new();
        for r in &w.residents {
            assert!(pairs.insert((r.name.clone(), r.phone)));
        }
        assert!(
            w.phones.values().any(|v| v.len() > 1),
            "families share phones"
        );
    }

    #[test]
    fn every_onecard_record_is_gbk_encodable() {
        let w = world(3000);
        for rec in &w.stream(StreamId::Cardholders).recs {
            let text = w.render(StreamId::Cardholders, rec, "").to_string();
            let (_, _, unmappable) = encoding_rs::GBK.encode(&text);
            assert!(!unmappable, "not GBK: {}", crate::mask::scrub_text(&text));
        }
    }

    #[test]
    fn keys_round_trip() {
        for s in StreamId::ALL {
            assert_eq!(s.parse_key(&s.key(42)), Some(42));
            assert_eq!(s.parse_key("nonsense"), None);
        }
    }

    #[test]
    fn bad_check_digit_is_really_bad_and_dirty_forms_normalize() {
        let w = world(3000);
        let mut bad = 0;
        for s in StreamId::PERSON {
            for rec in &w.stream(s).recs {
                let Some(text) = w.id_text(rec) else { continue };
                let r = &w.residents[rec.owner as usize];
                match rec.id {
                    IdDirt::BadCheck => {
                        bad += 1;
                        assert!(id_number::normalize(&text).is_err());
                    }
                    IdDirt::Legacy15 => assert_eq!(text.len(), 15),
                    _ => assert_eq!(
                        id_number::normalize(&text).map(|i| i.value).ok(),
                        Some(r.id_str())
                    ),
                }
            }
        }
        assert!(bad > 0);
    }

    #[test]
    fn order_index_is_sorted_and_retime_keeps_it_sorted() {
        let mut w = world(500);
        let s = &mut w.streams[StreamId::Cardholders.idx()];
        assert!(s.order.windows(2).all(|p| p[0] <= p[1]));
        s.retime(3, 0);
        assert_eq!(s.order[0].2, 3);
        assert!(s.order.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(s.order.len(), s.recs.len());
    }

    #[test]
    fn runs_of_equal_timestamps_exist() {
        let w = world(3000);
        let order = &w.stream(StreamId::Transactions).order;
        let max_run = order
            .chunk_by(|a, b| a.0 == b.0)
            .map(|c| c.len())
            .max()
            .unwrap_or(0);
        assert!(max_run >= 3, "max run {max_run}");
    }
}

#[cfg(test)]
mod scale {
    use super::*;

    /// About one million source records (run with --ignored to time it).
    #[test]
    #[ignore]
    fn a_million_records() {
        let t = std::time::Instant::now();
        let w = World::generate(GenOptions {
            seed: 1,
            residents: 170_000,
            anchor_ms: FIXED_ANCHOR_MS,
            hard_cases: false,
            hard_profile: Default::default(),
            district: None,
        });
        let total: usize = w.streams.iter().map(|s| s.recs.len()).sum();
        eprintln!("{total} records in {:?}", t.elapsed());
        assert!(total > 900_000);
    }
}
