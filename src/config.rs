//! The TOML configuration: loading, defaults and validation.
//!
//! Every error names the file and the key path (`sources[onecard].streams[holders].fields.phone`)
//! and says what to do. `community-sync check` runs exactly this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{EntityKind, PERSON_FIELDS};
use crate::normalize::path::{FieldPath, PathSpec};
use crate::normalize::predicate::{Predicate, PredicateSpec};
use crate::source::config::{
    AuthConfig, ColumnEncoding, DatabaseConfig, EncodingConfig, FileEncoding, FileSemantics,
    FilesConfig, HttpConfig, IncrementalParam, Method, PaginationConfig, ResponseConfig,
    SourceKind,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}. Check the path (or pass --config FILE).")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML or has a wrong key/type: {message}. Fix the line shown and run `community-sync check`.")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} is {why} (mode {mode:04o}); run `chmod 600 {path}`")]
    Insecure {
        path: PathBuf,
        mode: u32,
        why: String,
    },
    #[error("config file {path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Encryption of personal data at rest (docs/security.md).
    #[serde(default)]
    pub security: SecurityConfig,
    pub platform: PlatformConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Department code tables: `code_tables.<table>.<raw code> = "canonical value"`.
    #[serde(default)]
    pub code_tables: BTreeMap<String, BTreeMap<String, String>>,
    /// Time zone for naive timestamps and schedules.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Where the config was loaded from (for error messages); not part of the file.
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Records per write transaction.
    pub batch_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/community-sync/store.db"),
            batch_size: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or a tracing filter; `RUST_LOG` wins.
    pub level: String,
    /// `auto` (terminal: text with colour; journald: no timestamps), `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Unix socket for manual triggers; default `$RUNTIME_DIRECTORY/control.sock`.
    pub control_socket: Option<PathBuf>,
    /// Jobs of different sources running at once.
    pub max_concurrent_jobs: usize,
    /// Grace period on SIGTERM before the batch in hand is abandoned (it is transactional).
    pub shutdown_timeout_secs: u64,
    /// Random delay added to each scheduled start, to spread load.
    pub jitter_secs: u64,
    /// `status` reports unhealthy after this many failed runs in a row.
    pub unhealthy_after_failures: u32,
    /// Optional Prometheus endpoint (`127.0.0.1:9464`).
    pub metrics_listen: Option<String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            control_socket: None,
            max_concurrent_jobs: 4,
            shutdown_timeout_secs: 20,
            jitter_secs: 0,
            unhealthy_after_failures: 3,
            metrics_listen: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Match probability at or above which records link automatically.
    pub link_threshold: f64,
    /// Match probability at or above which (and below `link_threshold`) a review item is raised.
    pub review_threshold: f64,
    /// Sources in order of trust, for the `source_priority` survivorship rule.
    pub source_priority: Vec<String>,
    /// Survivorship rule per person field: `most_recent` (default; for the name `agreement`),
    /// `source_priority`, `most_frequent`, `agreement`.
    pub survivorship: BTreeMap<String, String>,
    /// Feature weights of the match score (docs/matching.md).
    #[serde(default)]
    pub weights: MatchWeights,
    /// Graded address agreement (room > building > community) as a feature.
    #[serde(default = "default_true")]
    pub use_address: bool,
    /// A resident's earlier phones (any system, any time) count as weaker evidence.
    #[serde(default = "default_true")]
    pub use_phone_history: bool,
    /// Toneless pinyin equality of names counts (homophone typos).
    #[serde(default = "default_true")]
    pub use_pinyin: bool,
    /// A phone shared by several residents weighs `weights.phone_household` only.
    #[serde(default = "default_true")]
    pub household_phones: bool,
    /// Pin a trained match model version (`matching show`); default: the newest trained one,
    /// or the hand weights until one is trained.
    pub model_version: Option<i64>,
    /// Train a model automatically during a first load, before its records without an ID
    /// number are decided, or at the first run that finds enough person records when no
    /// model is stored (`matching train` trains one any time).
    #[serde(default = "default_true")]
    pub train_after_first_load: bool,
    /// Retrain the (unpinned) trained model when it is this many days old (0: never by age).
    #[serde(default = "default_retrain_days")]
    pub retrain_after_days: u32,
    /// Retrain when the person records added since the last training reach this share of
    /// the records it was trained on (0: never by growth).
    #[serde(default = "default_retrain_growth")]
    pub retrain_after_growth: f64,
}

fn default_retrain_days() -> u32 {
    30
}

fn default_retrain_growth() -> f64 {
    0.25
}

/// Weights of the match score's features; a score is their sum (see docs/matching.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchWeights {
    pub name_exact: f64,
    pub name_pinyin: f64,
    /// The same syllables in another order (given name first).
    pub name_swapped: f64,
    /// One character apart (never links alone: at most a review item).
    pub name_one_edit: f64,
    pub phone_current: f64,
    pub phone_earlier: f64,
    pub phone_household: f64,
    /// The phone of another resident living in the candidate's room.
    pub phone_family: f64,
    pub birth_equal: f64,
    pub birth_swapped: f64,
    /// Two of year, month and day agree.
    pub birth_one_part: f64,
    pub birth_differs: f64,
    pub gender_differs: f64,
    pub address_room: f64,
    pub address_building: f64,
    pub address_community: f64,
}

impl Default for MatchWeights {
    fn default() -> Self {
        MatchWeights {
            name_exact: 0.45,
            name_pinyin: 0.30,
            name_swapped: 0.30,
            name_one_edit: 0.15,
            phone_current: 0.45,
            phone_earlier: 0.25,
            phone_household: 0.30,
            phone_family: 0.10,
            birth_equal: 0.15,
            birth_swapped: 0.10,
            birth_one_part: 0.0,
            birth_differs: -0.30,
            gender_differs: -0.20,
            address_room: 0.25,
            address_building: 0.20,
            address_community: 0.15,
        }
    }
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            link_threshold: 0.9,
            review_threshold: 0.6,
            source_priority: Vec::new(),
            survivorship: BTreeMap::new(),
            weights: MatchWeights::default(),
            use_address: true,
            use_phone_history: true,
            use_pinyin: true,
            household_phones: true,
            model_version: None,
            train_after_first_load: true,
            retrain_after_days: default_retrain_days(),
            retrain_after_growth: default_retrain_growth(),
        }
    }
}

/// `[security]`: how personal data is protected at rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Encrypt personal data in the store; default: true when `key_file` is set.
    pub encrypt: Option<bool>,
    /// The store key: 32 bytes as hex or base64 in a 0600 file, or a systemd credential
    /// (`${CREDENTIALS_DIRECTORY}/store-key`). Relative paths are relative to the config file.
    pub key_file: Option<String>,
    /// Older keys, only for reading values not yet re-encrypted by `rotate-key`.
    pub previous_key_files: Vec<String>,
    /// `aes-256-gcm` (default) or `sm4-gcm`.
    pub algorithm: crate::crypto::Algorithm,
    /// Keyed hash of match keys: `hmac-sm3` (default) or `hmac-sha256`.
    pub blind_algorithm: crate::crypto::BlindAlgorithm,
}

impl SecurityConfig {
    pub fn encrypt_enabled(&self) -> bool {
        self.encrypt.unwrap_or(self.key_file.is_some())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// How events reach the platform: `http` (batches POSTed to `url`, the default) or
    /// `jetstream` (each event published to a NATS JetStream stream; `url` is the NATS server,
    /// settings in `[platform.jetstream]`).
    #[serde(default)]
    pub kind: PlatformKind,
    /// Full URL of the platform's batch endpoint (`kind = "http"`), or of the NATS server
    /// (`nats://host:4222`, `tls://host:4222`) for `kind = "jetstream"`.
    pub url: String,
    /// The JetStream sink's settings (`kind = "jetstream"` only; docs/platform-api.md).
    #[serde(default)]
    pub jetstream: Option<JetStreamConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Events per batch.
    #[serde(default = "default_push_batch")]
    pub batch_size: usize,
    /// Upper bound of a batch's JSON size in bytes.
    #[serde(default = "default_push_bytes")]
    pub batch_bytes: usize,
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Schedule of the push in `run`: a crontab line, `@hourly` and the like, or 6 fields with
    /// seconds first ([`parse_schedule`]).
    #[serde(default = "default_push_schedule")]
    pub schedule: String,
    /// PEM client certificate (chain) for mutual TLS with the platform.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert` (file must not be readable by others).
    #[serde(default)]
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    #[default]
    Http,
    Jetstream,
}

/// `[platform.jetstream]`: where and how a district agent publishes into the city's stream.
/// Subjects are `{subject_prefix}.{district}.{entity}`; each message's `Nats-Msg-Id` is
/// `{district}:{event_id}`, so the stream's duplicate window drops a re-published event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamConfig {
    /// The stream's name (it must listen on `{subject_prefix}.{district}.>`).
    pub stream: String,
    /// This agent's district, one subject token (the GB/T 2260 county code, `360102`).
    pub district: String,
    /// First token(s) of every subject.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// More servers of the cluster besides `platform.url` (the client picks any, reconnects
    /// to another).
    #[serde(default)]
    pub servers: Vec<String>,
    /// A NATS credentials file (user JWT + NKey seed), 0600.
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// An NKey user seed (`SU…`), from `env` or `file` (0600).
    #[serde(default)]
    pub nkey_seed: Option<crate::source::config::SecretRef>,
    /// Require TLS (also implied by a `tls://` URL). Client certificate: `platform.client_cert`
    /// and `platform.client_key`.
    #[serde(default)]
    pub tls: bool,
    /// PEM bundle of the CA(s) that signed the servers' certificates (a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Plain (non-TLS) NATS to a non-loopback server is refused unless this is true.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Publishes awaiting their acknowledgement at once (the pipelining window).
    #[serde(default = "default_js_window")]
    pub max_in_flight: usize,
    /// How long one publish waits for its acknowledgement before it is retried.
    #[serde(default = "default_js_ack_timeout")]
    pub ack_timeout_secs: f64,
    /// Retries of the unacknowledged events of a batch after the first attempt.
    #[serde(default = "default_js_retries")]
    pub retries: u32,
    #[serde(default = "default_js_backoff_initial")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_js_backoff_max")]
    pub backoff_max_ms: u64,
    /// The duplicate window the stream must have at least: longer than the longest outage
    /// after which a batch is re-published. `check --connect` fails on a shorter one; a
    /// stream created by us gets this one.
    #[serde(default = "default_js_duplicate_window")]
    pub duplicate_window_secs: u64,
    /// Create the stream when it does not exist (otherwise the operator creates it).
    #[serde(default)]
    pub create_stream: bool,
    /// For a stream we create: `limits` (kept until max_age), `interest` or `workqueue`.
    #[serde(default = "default_js_retention")]
    pub retention: String,
    /// For a stream we create: how long messages are kept (0: no limit).
    #[serde(default)]
    pub max_age_days: u64,
    /// For a stream we create: copies in the cluster (1, or 3 on a three-server cluster).
    #[serde(default = "default_js_replicas")]
    pub replicas: usize,
}

fn default_subject_prefix() -> String {
    "community".into()
}
fn default_js_window() -> usize {
    512
}
fn default_js_ack_timeout() -> f64 {
    10.0
}
fn default_js_retries() -> u32 {
    5
}
fn default_js_backoff_initial() -> u64 {
    200
}
fn default_js_backoff_max() -> u64 {
    10_000
}
fn default_js_duplicate_window() -> u64 {
    24 * 3600
}
fn default_js_retention() -> String {
    "limits".into()
}
fn default_js_replicas() -> usize {
    1
}

fn default_push_batch() -> usize {
    2000
}
fn default_push_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_push_schedule() -> String {
    "* * * * *".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Short name used on the command line and in logs (`onecard`).
    pub name: String,
    /// Human title (`社区一卡通`).
    #[serde(default)]
    pub title: String,
    /// `http` (default), `sql` or `files`.
    #[serde(default, rename = "type")]
    pub kind: SourceKind,
    /// HTTP sources: the API's base URL.
    #[serde(default)]
    pub base_url: String,
    /// SQL sources: the database.
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// File sources: the drop folder.
    #[serde(default)]
    pub files: Option<FilesConfig>,
    /// Schedule: a crontab line (`*/10 * * * *`; day of week 0–7, 0 and 7 Sunday), `@hourly`
    /// and the like, or 6 fields with seconds first ([`parse_schedule`]).
    #[serde(default = "default_source_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub encoding: EncodingConfig,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Allowed time since the last successful run before `status` calls it stale.
    #[serde(default)]
    pub max_lag_secs: Option<u64>,
    /// How to tell a success from an error answered with HTTP 200 (an envelope such as
    /// `{code, msg, data}`); each stream may override any part.
    #[serde(default)]
    pub response: Option<ResponseConfig>,
    /// Default of the streams' `max_delete`.
    #[serde(default)]
    pub max_delete: Option<MaxDeleteSpec>,
    pub streams: Vec<StreamConfig>,
}

fn default_source_schedule() -> String {
    "*/5 * * * *".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Only records changed since the cursor (needs `incremental`).
    #[default]
    Incremental,
    /// Re-read everything every time; records not seen in a complete refresh are deleted.
    FullRefresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    #[default]
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    pub entity: EntityKind,
    /// URL path joined to the source's base_url (HTTP streams).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub method: Method,
    /// Fixed query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Fixed JSON body fields for POST queries.
    #[serde(default)]
    pub body: BTreeMap<String, serde_json::Value>,
    /// JSON pointer to the record array (`/data/rows`); empty = the body is the array.
    #[serde(default)]
    pub records: String,
    /// JSON pointer applied to each element to get the record (`/resource` for FHIR).
    #[serde(default)]
    pub record_pointer: Option<String>,
    /// Field path of the record's unique key; several, comma-separated, for a composite key
    /// (`"org_code, person_id"`: the parts joined by `|`).
    pub key: String,
    /// How the next page is found (HTTP streams; required there).
    #[serde(default)]
    pub pagination: Option<PaginationConfig>,
    #[serde(default)]
    pub mode: SyncMode,
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
    /// Field path of a boolean/flag that marks the record deleted at the source: short for
    /// `deleted_when = { path = "…", truthy = true }`.
    #[serde(default)]
    pub deleted_flag: Option<String>,
    /// When a record counts as deleted at the source (`{ path = "zt", in = ["注销"] }`).
    #[serde(default)]
    pub deleted_when: Option<PredicateSpec>,
    /// Records to ignore altogether (test accounts): neither stored nor counted as seen.
    #[serde(default)]
    pub skip_when: Option<PredicateSpec>,
    /// Overrides parts of the source's `response` classification for this stream.
    #[serde(default)]
    pub response: Option<ResponseConfig>,
    /// The most a full refresh may delete without `sync --confirm-deletes`: a share of the
    /// stream's live records (`"10%"`, the default) or a count (`500`).
    #[serde(default)]
    pub max_delete: Option<MaxDeleteSpec>,
    /// A run that receives fewer records than the system's stated total is partial (no
    /// deletions, the cursor stays). Set false only for a system whose total is an estimate.
    #[serde(default = "default_true")]
    pub trust_total: bool,
    /// Canonical field → source field mapping.
    pub fields: BTreeMap<String, FieldMapping>,
    /// For activity streams: which stream's key the record points at.
    #[serde(default)]
    pub link: Option<LinkConfig>,
    #[serde(default)]
    pub schema_drift: DriftAction,
    /// SQL streams: the table or view to read (`schema.table`) …
    #[serde(default)]
    pub table: Option<String>,
    /// … or a `SELECT` of the operator's (wrapped as a derived table for paging).
    #[serde(default)]
    pub sql: Option<String>,
    /// SQL streams: columns whose bytes are text in another encoding than the database
    /// declares (`{ xm = "gbk" }` for GBK in a latin1 column).
    #[serde(default)]
    pub column_encoding: BTreeMap<String, ColumnEncoding>,
    /// File streams: the sub-folder of `[sources.files] dir` (default: the stream's name).
    #[serde(default)]
    pub folder: Option<String>,
    /// File streams: `replace` (each file is the whole list) or `append`.
    #[serde(default)]
    pub semantics: Option<FileSemantics>,
    /// File streams: the XLSX sheet to read (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// File streams: the CSV encoding.
    #[serde(default)]
    pub file_encoding: FileEncoding,
    /// File streams: the 1-based row of the header (default: the first row that holds the key
    /// column and every mapped column, so title rows above it are skipped).
    #[serde(default)]
    pub header_row: Option<usize>,
}

/// Paging of a stream without one (SQL and file streams page themselves).
static NO_PAGINATION: PaginationConfig = PaginationConfig::None;

impl StreamConfig {
    /// The stream's pagination (`none` when not given).
    pub fn pagination(&self) -> &PaginationConfig {
        self.pagination.as_ref().unwrap_or(&NO_PAGINATION)
    }

    /// Whether a run reads the whole list, so that records it did not see are deletions:
    /// `mode = "full_refresh"`, or a file stream with `semantics = "replace"`.
    pub fn full_refresh(&self) -> bool {
        self.mode == SyncMode::FullRefresh || self.semantics == Some(FileSemantics::Replace)
    }

    /// The key's field paths (one, or the parts of a composite key).
    pub fn key_paths(&self) -> Vec<&str> {
        split_top_level(&self.key, ',')
            .into_iter()
            .map(str::trim)
            .collect()
    }
}

/// Splits on `sep` outside `[...]` (filter values may hold any character).
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// Field path of the record's change timestamp or version.
    pub cursor_field: String,
    /// How to read the cursor field (as for a date-time mapping: a format string,
    /// `epoch_ms`, `epoch_s`, `rfc3339`, `integer`); auto-detected when absent.
    #[serde(default)]
    pub cursor_format: Option<String>,
    #[serde(flatten)]
    pub request: IncrementalParam,
    /// Records newer than now minus this are left for the next run (late commits).
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// Re-read this far behind the cursor, for systems whose clocks drift.
    #[serde(default)]
    pub lookback_secs: u64,
    /// SQL streams with an integer watermark: re-read this many values behind the cursor
    /// (IDs allocated by transactions that committed after later ones).
    #[serde(default)]
    pub lookback_ids: u64,
}

fn default_settle() -> u64 {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Sibling stream whose records identify the person.
    pub stream: String,
    /// Canonical field of this record holding that stream's key.
    pub field: String,
}

/// A field mapping: a bare path, a list of fallback paths (the first with a value wins), or a
/// table with options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldMapping {
    Path(String),
    Paths(Vec<String>),
    Detailed(FieldSpec),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// A path, or fallback paths: `["mobile", "telecom[system=phone].value"]`.
    pub path: PathSpec,
    /// Date/time format string or `epoch_ms`/`epoch_s`/`excel`/`rfc3339`.
    #[serde(default)]
    pub format: Option<String>,
    /// Money unit of the source: `yuan` or `fen`; time unit for minutes: `hours`/`minutes`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Code table to translate through.
    #[serde(default)]
    pub map: Option<String>,
    /// Prefix stripped from the value (`Patient/` of a FHIR reference).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Value used when the field is absent.
    #[serde(default)]
    pub default: Option<String>,
}

impl FieldMapping {
    pub fn spec(&self) -> FieldSpec {
        match self {
            FieldMapping::Path(p) => FieldSpec {
                path: PathSpec::One(p.clone()),
                ..FieldSpec::default()
            },
            FieldMapping::Paths(ps) => FieldSpec {
                path: PathSpec::Fallbacks(ps.clone()),
                ..FieldSpec::default()
            },
            FieldMapping::Detailed(s) => s.clone(),
        }
    }

    /// The config key below `fields.<name>` where its paths are written.
    fn path_key(&self) -> &'static str {
        match self {
            FieldMapping::Detailed(_) => ".path",
            _ => "",
        }
    }
}

/// `max_delete` as written: a count (`500`) or a share (`"10%"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxDeleteSpec {
    Count(u64),
    Share(String),
}

/// The most deletions one full refresh may apply without an operator's confirmation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    Count(u64),
    /// A fraction of the stream's live records, 0..=1.
    Share(f64),
}

impl MaxDelete {
    /// Ten percent of a stream's live records. A register of residents, cards or patients
    /// loses a few percent a month at most (moves, deaths, cancelled cards), so a refresh after
    /// weeks of outage still stays well inside; what exceeds it is nearly always the system
    /// hiding records (an error answered as an empty page, a query narrowed by a tenant or
    /// permission change, a half-migrated database). Holding such a refresh costs an operator
    /// one command; applying it would retire residents and send the platform deletions.
    pub const DEFAULT: MaxDelete = MaxDelete::Share(0.10);

    /// Whether deleting `deletions` of `live` records exceeds this limit. A refresh that
    /// deletes a single record is never held (one record of a tiny stream is not a mass
    /// deletion).
    pub fn exceeded(&self, deletions: u64, live: u64) -> bool {
        if deletions <= 1 {
            return false;
        }
        match *self {
            MaxDelete::Count(n) => deletions > n,
            MaxDelete::Share(f) => (deletions as f64) > f * live as f64 + 1e-9,
        }
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n} records"),
            MaxDelete::Share(s) => write!(f, "{}%", (s * 1000.0).round() / 10.0),
        }
    }
}

impl MaxDeleteSpec {
    pub fn parse(&self) -> Result<MaxDelete, String> {
        match self {
            MaxDeleteSpec::Count(n) => Ok(MaxDelete::Count(*n)),
            MaxDeleteSpec::Share(text) => {
                let t = text.trim();
                let number = t.strip_suffix('%').ok_or_else(|| {
                    format!("{text:?} is neither a count nor a share; write max_delete = \"10%\" or max_delete = 500")
                })?;
                let pct: f64 = number
                    .trim()
                    .parse()
                    .map_err(|_| format!("{text:?} is not a percentage; write it like \"10%\""))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("{text:?} must be between \"0%\" and \"100%\""));
                }
                Ok(MaxDelete::Share(pct / 100.0))
            }
        }
    }
}

impl StreamConfig {
    /// The stream's deletion test: `deleted_when`, or the `deleted_flag` shorthand.
    pub fn deleted_predicate(&self) -> Option<PredicateSpec> {
        self.deleted_when
            .clone()
            .or_else(|| self.deleted_flag.as_deref().map(PredicateSpec::truthy_at))
    }

    /// The stream's response classification: the source's, with the stream's parts over it.
    pub fn response_config(&self, source: &SourceConfig) -> ResponseConfig {
        ResponseConfig::merged(source.response.as_ref(), self.response.as_ref())
    }

    /// The stream's deletion limit (its own, the source's, or [`MaxDelete::DEFAULT`]).
    pub fn max_delete(&self, source: &SourceConfig) -> MaxDelete {
        self.max_delete
            .as_ref()
            .or(source.max_delete.as_ref())
            .and_then(|m| m.parse().ok())
            .unwrap_or(MaxDelete::DEFAULT)
    }
}

/// A secret reference is serialised as an object with `value` set when given inline.
fn contains_inline_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => m.iter().any(|(k, v)| {
            (k == "value"
                && v.is_string()
                && m.len() <= 3
                && (m.contains_key("env") || m.contains_key("file")))
                || contains_inline_value(v)
        }),
        serde_json::Value::Array(a) => a.iter().any(contains_inline_value),
        _ => false,
    }
}

/// The top-level keys and tables of a config file.
pub const TOP_LEVEL: [&str; 9] = [
    "timezone",
    "store",
    "log",
    "daemon",
    "reconcile",
    "security",
    "platform",
    "sources",
    "code_tables",
];

/// Names a mistyped top-level table (`[platfrom]`) as such: serde would only say what is
/// then missing (`missing field platform`) or, inside, a confusing `missing field url`.
fn check_top_level(text: &str, path: &Path) -> Result<(), ConfigError> {
    // Syntax errors are reported by the typed parse, with line and column.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    for key in table.keys() {
        if TOP_LEVEL.contains(&key.as_str()) {
            continue;
        }
        let what = match table.get(key) {
            Some(toml::Value::Table(_)) => format!("unknown table [{key}]"),
            Some(toml::Value::Array(a)) if a.iter().all(|v| v.is_table()) => {
                format!("unknown table [[{key}]]")
            }
            _ => format!("unknown top-level key `{key}`"),
        };
        let hint = TOP_LEVEL
            .iter()
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!("did you mean `{k}`? "))
            .unwrap_or_default();
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.clone(),
            message: format!("{what}; {hint}the top level has: {}", TOP_LEVEL.join(", ")),
        });
    }
    Ok(())
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl Config {
    /// Reads, parses and validates a config file.
    /// Checked by the one permission rule (`crypto::check_file_mode`): a config writable by
    /// group or others is refused; one readable by others is refused when it holds an inline
    /// secret (`value = ...`), and fine otherwise (the service's dynamic user reads it as
    /// "others").
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml(&text, path)?;
        // Like key and secret files, a relative store path is relative to the config file,
        // not to wherever the command happens to be run from.
        if config.store.path.is_relative() {
            if let Some(dir) = path.parent() {
                config.store.path = dir.join(&config.store.path);
            }
        }
        // Readable by others is fine without an inline secret: the unit's dynamic user (not
        // root, no group) must read it, so the installed config is 0644 and holds no secret.
        let kind = crate::crypto::FileKind::Config {
            holds_secret: config.has_inline_secret(),
        };
        if let Err(p) = crate::crypto::check_file_mode(path, kind) {
            let why = if p.why.starts_with("writable") {
                format!(
                    "{}: anybody there could redirect the agent or its data",
                    p.why
                )
            } else {
                p.why.to_string()
            };
            return Err(ConfigError::Insecure {
                path: path.to_path_buf(),
                mode: p.mode,
                why,
            });
        }
        Ok(config)
    }

    /// True when any auth block carries a secret inline rather than by env or file.
    pub fn has_inline_secret(&self) -> bool {
        let mut auths = vec![&self.platform.auth];
        auths.extend(self.sources.iter().map(|s| &s.auth));
        auths.iter().any(|a| {
            serde_json::to_value(a)
                .map(|v| contains_inline_value(&v))
                .unwrap_or(false)
        })
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        check_top_level(text, path)?;
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: crate::mask::scrub_text(&e.to_string()),
        })?;
        config.path = path.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Semantic checks serde cannot do. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if chrono_tz::Tz::from_str(&self.timezone).is_err() {
            return Err(self.invalid(
                "timezone",
                format!(
                    "unknown time zone {:?}; use an IANA name such as \"Asia/Shanghai\"",
                    self.timezone
                ),
            ));
        }
        if self.security.encrypt == Some(true) && self.security.key_file.is_none() {
            return Err(self.invalid(
                "security.key_file",
                "security.encrypt = true needs a key_file; make one with `community-sync keygen --out FILE`",
            ));
        }
        match self.platform.kind {
            PlatformKind::Http => {
                check_url(&self.platform.url).map_err(|m| self.invalid("platform.url", m))?;
                if self.platform.jetstream.is_some() {
                    return Err(self.invalid(
                        "platform.jetstream",
                        "is set but platform.kind is \"http\"; set kind = \"jetstream\" to publish to NATS JetStream, or remove the section",
                    ));
                }
            }
            PlatformKind::Jetstream => self.validate_jetstream()?,
        }
        parse_schedule(&self.platform.schedule)
            .map_err(|m| self.invalid("platform.schedule", m))?;
        if self.platform.batch_size == 0 {
            return Err(self.invalid("platform.batch_size", "must be at least 1"));
        }
        if self.store.batch_size == 0 {
            return Err(self.invalid("store.batch_size", "must be at least 1"));
        }
        let r = &self.reconcile;
        if !(0.0..=1.0).contains(&r.review_threshold)
            || !(0.0..=1.0).contains(&r.link_threshold)
            || r.review_threshold > r.link_threshold
        {
            return Err(self.invalid(
                "reconcile",
                "thresholds must satisfy 0 <= review_threshold <= link_threshold <= 1",
            ));
        }
        for (field, rule) in &r.survivorship {
            if !PERSON_FIELDS.contains(&field.as_str()) {
                return Err(self.invalid(
                    format!("reconcile.survivorship.{field}"),
                    format!(
                        "unknown person field; expected one of {}",
                        PERSON_FIELDS.join(", ")
                    ),
                ));
            }
            if ![
                "most_recent",
                "source_priority",
                "most_frequent",
                "agreement",
            ]
            .contains(&rule.as_str())
            {
                return Err(self.invalid(
                    format!("reconcile.survivorship.{field}"),
                    format!(
                        "unknown rule {rule:?}; use most_recent, source_priority, most_frequent or agreement"
                    ),
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = format!("sources[{i}]");
            if !is_identifier(&s.name) {
                return Err(self.invalid(
                    format!("{key}.name"),
                    "must be non-empty and use only letters, digits, '-' and '_'",
                ));
            }
            if !names.insert(s.name.clone()) {
                return Err(self.invalid(
                    format!("{key}.name"),
                    format!("duplicate source name {:?}", s.name),
                ));
            }
            let key = format!("sources[{}]", s.name);
            if s.kind == SourceKind::Http {
                check_url(&s.base_url).map_err(|m| self.invalid(format!("{key}.base_url"), m))?;
            } else {
                self.validate_kind_source(&key, s)?;
            }
            if let Some(r) = &s.response {
                self.check_response(&format!("{key}.response"), r)?;
            }
            if let Some(m) = &s.max_delete {
                m.parse()
                    .map_err(|e| self.invalid(format!("{key}.max_delete"), e))?;
            }
            parse_schedule(&s.schedule).map_err(|m| self.invalid(format!("{key}.schedule"), m))?;
            if s.streams.is_empty() {
                return Err(self.invalid(
                    format!("{key}.streams"),
                    "a source needs at least one stream",
                ));
            }
            let stream_names: BTreeSet<&str> = s.streams.iter().map(|t| t.name.as_str()).collect();
            if stream_names.len() != s.streams.len() {
                return Err(self.invalid(format!("{key}.streams"), "stream names must be unique"));
            }
            for t in &s.streams {
                self.validate_stream(&key, s, t, &stream_names)?;
            }
        }
        Ok(())
    }

    fn validate_jetstream(&self) -> Result<(), ConfigError> {
        let p = &self.platform;
        let Some(js) = &p.jetstream else {
            return Err(self.invalid(
                "platform.jetstream",
                "platform.kind = \"jetstream\" needs a [platform.jetstream] section with at least stream and district",
            ));
        };
        for (i, u) in std::iter::once(&p.url).chain(&js.servers).enumerate() {
            let key = if i == 0 {
                "platform.url".to_string()
            } else {
                format!("platform.jetstream.servers[{}]", i - 1)
            };
            check_nats_url(u, js.tls || js.allow_plaintext).map_err(|m| self.invalid(key, m))?;
        }
        if p.auth != AuthConfig::None {
            return Err(self.invalid(
                "platform.auth",
                "is for the HTTP platform; a JetStream platform authenticates with platform.jetstream.credentials_file or nkey_seed",
            ));
        }
        if !is_identifier(&js.district) {
            return Err(self.invalid(
                "platform.jetstream.district",
                "must be one subject token: letters, digits, '-' and '_' (the county code, \"360102\")",
            ));
        }
        if js.subject_prefix.split('.').any(|t| !is_identifier(t)) {
            return Err(self.invalid(
                "platform.jetstream.subject_prefix",
                "must be tokens of letters, digits, '-' and '_' separated by '.' (no wildcards)",
            ));
        }
        if !is_identifier(&js.stream) {
            return Err(self.invalid(
                "platform.jetstream.stream",
                "a stream name uses only letters, digits, '-' and '_'",
            ));
        }
        if js.credentials_file.is_some() && js.nkey_seed.is_some() {
            return Err(self.invalid(
                "platform.jetstream",
                "set credentials_file or nkey_seed, not both",
            ));
        }
        if js.max_in_flight == 0 {
            return Err(self.invalid("platform.jetstream.max_in_flight", "must be at least 1"));
        }
        if !(js.ack_timeout_secs.is_finite() && js.ack_timeout_secs > 0.0) {
            return Err(self.invalid(
                "platform.jetstream.ack_timeout_secs",
                "must be a positive number of seconds",
            ));
        }
        if js.duplicate_window_secs == 0 {
            return Err(self.invalid(
                "platform.jetstream.duplicate_window_secs",
                "must be positive: without a duplicate window a re-published event is stored twice",
            ));
        }
        if !["limits", "interest", "workqueue"].contains(&js.retention.as_str()) {
            return Err(self.invalid(
                "platform.jetstream.retention",
                "use limits, interest or workqueue",
            ));
        }
        if !(1..=5).contains(&js.replicas) {
            return Err(self.invalid("platform.jetstream.replicas", "must be 1 to 5"));
        }
        Ok(())
    }

    fn validate_stream(
        &self,
        source_key: &str,
        source: &SourceConfig,
        t: &StreamConfig,
        stream_names: &BTreeSet<&str>,
    ) -> Result<(), ConfigError> {
        let key = format!("{source_key}.streams[{}]", t.name);
        if !is_identifier(&t.name) {
            return Err(self.invalid(
                format!("{key}.name"),
                "must use only letters, digits, '-' and '_'",
            ));
        }
        if source.kind == SourceKind::Http {
            if !t.path.starts_with('/') {
                return Err(self.invalid(format!("{key}.path"), "must start with '/'"));
            }
            if t.pagination.is_none() {
                return Err(self.invalid(
                    format!("{key}.pagination"),
                    "an HTTP stream needs pagination = { type = \"…\" } (type = \"none\" when one request returns everything)",
                ));
            }
        } else {
            self.validate_kind_stream(&key, source, t)?;
        }
        for (pointer_key, p) in [
            ("records", Some(&t.records)),
            ("record_pointer", t.record_pointer.as_ref()),
        ] {
            if let Some(p) = p {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(self.invalid(
                        format!("{key}.{pointer_key}"),
                        format!("{p:?} is not a JSON pointer; write it like \"/data/rows\""),
                    ));
                }
            }
        }
        self.validate_stream_fields(&key, t)?;
        self.validate_stream_paths(&key, t)?;
        if t.entity.carries_person()
            && !t.fields.contains_key("id_number")
            && !(t.fields.contains_key("name") && t.fields.contains_key("phone"))
        {
            return Err(self.invalid(
                format!("{key}.fields"),
                format!(
                    "entity {} carries a person: map id_number, or name and phone",
                    t.entity
                ),
            ));
        }
        match (&t.link, t.entity.carries_person()) {
            (None, false) => {
                return Err(self.invalid(
                    format!("{key}.link"),
                    format!("entity {} needs `link = {{ stream = \"…\", field = \"…\" }}` to find its person", t.entity),
                ))
            }
            (Some(link), _) => {
                if !stream_names.contains(link.stream.as_str()) {
                    return Err(self.invalid(
                        format!("{key}.link.stream"),
                        format!("no stream {:?} in source {}", link.stream, source.name),
                    ));
                }
                if !t.fields.contains_key(&link.field) {
                    return Err(self.invalid(
                        format!("{key}.link.field"),
                        format!("{:?} must be one of this stream's mapped fields", link.field),
                    ));
                }
            }
            (None, true) => {}
        }
        self.validate_mode(&key, source, t)
    }

    /// Each mapped field is canonical for the entity, its path compiles, and its code table
    /// and unit exist.
    fn validate_stream_fields(&self, key: &str, t: &StreamConfig) -> Result<(), ConfigError> {
        let domain: Vec<&str> = t.entity.domain_fields().iter().map(|f| f.name).collect();
        for (field, mapping) in &t.fields {
            let allowed = domain.contains(&field.as_str())
                || (t.entity.carries_person() && PERSON_FIELDS.contains(&field.as_str()));
            if !allowed {
                let mut expected: Vec<&str> = domain.clone();
                if t.entity.carries_person() {
                    expected.extend(PERSON_FIELDS);
                }
                return Err(self.invalid(
                    format!("{key}.fields.{field}"),
                    format!(
                        "{:?} is not a canonical field of entity {}; expected one of: {}",
                        field,
                        t.entity,
                        expected.join(", ")
                    ),
                ));
            }
            let spec = mapping.spec();
            if let Err((at, e)) = spec.path.compile() {
                return Err(self.invalid(
                    format!("{key}.fields.{field}{}{at}", mapping.path_key()),
                    e.to_string(),
                ));
            }
            if let Some(table) = &spec.map {
                if !self.code_tables.contains_key(table) {
                    return Err(self.invalid(
                        format!("{key}.fields.{field}.map"),
                        format!("code table {table:?} is not defined under [code_tables]"),
                    ));
                }
            }
            if let Some(unit) = &spec.unit {
                if !["yuan", "fen", "hours", "minutes"].contains(&unit.as_str()) {
                    return Err(self.invalid(
                        format!("{key}.fields.{field}.unit"),
                        format!("unknown unit {unit:?}; use yuan, fen, hours or minutes"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `mode` and the `[incremental]` table agree, and the bound's format is one we write.
    fn validate_mode(
        &self,
        key: &str,
        source: &SourceConfig,
        t: &StreamConfig,
    ) -> Result<(), ConfigError> {
        match (t.mode, &t.incremental) {
            (SyncMode::Incremental, None) if source.kind != SourceKind::Files => {
                return Err(self.invalid(
                    format!("{key}.incremental"),
                    "mode = \"incremental\" (the default) needs an [incremental] table; or set mode = \"full_refresh\"",
                ))
            }
            (_, Some(inc)) if source.kind == SourceKind::Http => {
                if inc.request.param.is_empty() {
                    return Err(self.invalid(
                        format!("{key}.incremental.param"),
                        "an HTTP stream's [incremental] needs param, the request parameter that carries the lower bound",
                    ));
                }
                let f = inc.request.format.as_str();
                if !["rfc3339", "epoch_ms", "epoch_s", "integer"].contains(&f) && !f.contains('%') {
                    return Err(self.invalid(
                        format!("{key}.incremental.format"),
                        format!("{f:?} is not rfc3339, epoch_ms, epoch_s, integer or a %-format"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The key, cursor and deletion paths, the record predicates, the response
    /// classification and `max_delete` of one stream: each parses, or the error names its key.
    fn validate_stream_paths(&self, key: &str, t: &StreamConfig) -> Result<(), ConfigError> {
        let path = |k: String, p: &str| -> Result<(), ConfigError> {
            FieldPath::parse(p)
                .map(|_| ())
                .map_err(|e| self.invalid(k, e.to_string()))
        };
        // A composite key (SQL and file streams) is several paths joined by commas.
        for part in t.key_paths() {
            path(format!("{key}.key"), part)?;
        }
        if let Some(inc) = &t.incremental {
            path(format!("{key}.incremental.cursor_field"), &inc.cursor_field)?;
        }
        if let Some(flag) = &t.deleted_flag {
            path(format!("{key}.deleted_flag"), flag)?;
            if t.deleted_when.is_some() {
                return Err(self.invalid(
                    format!("{key}.deleted_flag"),
                    format!("set deleted_flag or deleted_when, not both; deleted_flag = {flag:?} is short for deleted_when = {{ path = {flag:?}, truthy = true }}"),
                ));
            }
        }
        for (name, spec) in [
            ("deleted_when", &t.deleted_when),
            ("skip_when", &t.skip_when),
        ] {
            if let Some(spec) = spec {
                self.check_predicate(&format!("{key}.{name}"), spec)?;
            }
        }
        if let Some(r) = &t.response {
            self.check_response(&format!("{key}.response"), r)?;
        }
        if let Some(m) = &t.max_delete {
            m.parse()
                .map_err(|e| self.invalid(format!("{key}.max_delete"), e))?;
        }
        Ok(())
    }

    fn check_predicate(&self, key: &str, spec: &PredicateSpec) -> Result<(), ConfigError> {
        Predicate::compile(spec).map(|_| ()).map_err(|e| {
            let full = if e.key.is_empty() {
                key.to_string()
            } else {
                format!("{key}.{}", e.key)
            };
            self.invalid(full, e.message)
        })
    }

    /// A `response` table (a source's or a stream's).
    fn check_response(&self, key: &str, r: &ResponseConfig) -> Result<(), ConfigError> {
        for (name, spec) in [
            ("success", &r.success),
            ("retry", &r.retry),
            ("empty", &r.empty),
        ] {
            if let Some(spec) = spec {
                self.check_predicate(&format!("{key}.{name}"), spec)?;
            }
        }
        for (name, paths) in [("message", &r.message), ("code", &r.code)] {
            if let Some(p) = paths {
                p.compile()
                    .map_err(|(at, e)| self.invalid(format!("{key}.{name}{at}"), e.to_string()))?;
            }
        }
        Ok(())
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

mod kinds;

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A NATS server URL: `nats://` or `tls://`; plain NATS only to loopback unless TLS is
/// required anyway or `allow_plaintext` (personal data would travel unencrypted).
fn check_nats_url(u: &str, tls_or_allowed: bool) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "nats" | "tls") {
        return Err(format!(
            "{u:?}: a JetStream platform is reached by nats://host:4222 or tls://host:4222"
        ));
    }
    // nats:// is not a special scheme to the URL parser: its host comes back as text.
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(format!("{u:?} names no host")),
    };
    if parsed.scheme() == "nats" && !crate::net::is_loopback_host(host) && !tls_or_allowed {
        return Err(format!(
            "{u:?}: plain NATS to a non-loopback host would carry personal data unencrypted; use tls://, or platform.jetstream.tls = true, or allow_plaintext = true for a link protected otherwise"
        ));
    }
    Ok(())
}

fn check_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{u:?}: only http and https URLs are supported"));
    }
    Ok(())
}

/// Parses a schedule as operators write it, with crontab's meaning (croner, after vixie
/// cron): a 5-field line (minute hour day-of-month month day-of-week, minute precision),
/// `@hourly`/`@daily`/`@midnight`/`@weekly`/`@monthly`/`@yearly`, or 6 fields with seconds
/// first (7 with a year last). Day of week runs 0–7 with both 0 and 7 Sunday (`1-5` is Monday
/// to Friday; `MON`…`SUN` too); when both day fields are restricted, either one matching
/// fires, as in crontab.
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    let trimmed = expr.trim();
    let fields = trimmed.split_whitespace().count();
    let line = if trimmed.starts_with('@') {
        match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly" => trimmed,
            "@midnight" => "@daily",
            _ => return Err(format!("unknown schedule shorthand {trimmed:?}; use @hourly, @daily, @weekly, @monthly or @yearly")),
        }
    } else if (5..=7).contains(&fields) {
        trimmed
    } else {
        return Err(format!(
            "{expr:?} has {fields} fields; write a crontab line (\"*/5 * * * *\"), @hourly, or 6 fields with seconds"
        ));
    };
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Optional)
        // `0/15` (from 0, every 15) as the former parser took it, so older configs still load.
        .sloppy_ranges(true)
        .build()
        .parse(line)
        .map_err(|e| format!("{expr:?} is not a valid schedule: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_accept_crontab_and_seconds_forms() {
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("@hourly").is_ok());
        assert!(parse_schedule("*/1 * * * * *").is_ok());
        assert!(parse_schedule("* * *").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
        assert!(parse_schedule("@reboot").is_err());
        assert!(parse_schedule("0/15 * * * *").is_ok());
        // Refused by the former parser (weekdays 1-7 from Sunday there).
        assert!(parse_schedule("@weekly").is_ok());
        assert!(parse_schedule("@midnight").is_ok());
        assert!(parse_schedule("0 9 * * 0").is_ok());
        assert!(parse_schedule("0 9 * * 7").is_ok());
        assert!(parse_schedule("0 9 * * 8").is_err());
    }
}

#[cfg(test)]
mod top_level_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/community-sync.toml");

    #[test]
    fn a_mistyped_table_is_named_with_a_suggestion() {
        let text = EXAMPLE.replace("\n[platform]\n", "\n[platfrom]\n");
        let e = Config::from_toml(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown table [platfrom]") && e.contains("did you mean `platform`"),
            "{e}"
        );
        assert!(!e.contains("missing field"), "{e}");
        let e = Config::from_toml(&format!("colour = 1\n{EXAMPLE}"), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown top-level key `colour`"), "{e}");
    }

    #[test]
    fn every_top_level_key_of_the_schema_is_known() {
        let config = Config::from_toml(EXAMPLE, Path::new("c.toml")).unwrap();
        let v = toml::Table::try_from(&config).unwrap();
        for k in v.keys() {
            assert!(
                TOP_LEVEL.contains(&k.as_str()),
                "{k} missing from TOP_LEVEL"
            );
        }
        assert_eq!(
            v.len(),
            TOP_LEVEL.len(),
            "{:?}",
            v.keys().collect::<Vec<_>>()
        );
    }
}
