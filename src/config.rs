//! The TOML configuration: loading, defaults and validation.
//!
//! Every error names the file and the key path (`sources[onecard].streams[holders].fields.phone`)
//! and says what to do. `community-sync check` runs exactly this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{EntityKind, PERSON_FIELDS};
use crate::source::config::{
    AuthConfig, EncodingConfig, HttpConfig, IncrementalParam, Method, PaginationConfig,
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
    /// Score at or above which records link automatically.
    pub link_threshold: f64,
    /// Score at or above which (and below `link_threshold`) a review item is raised.
    pub review_threshold: f64,
    /// Sources in order of trust, for the `source_priority` survivorship rule.
    pub source_priority: Vec<String>,
    /// Survivorship rule per person field: `most_recent` (default), `source_priority`,
    /// `most_frequent`.
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
}

/// Weights of the match score's features; a score is their sum (see docs/matching.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchWeights {
    pub name_exact: f64,
    pub name_pinyin: f64,
    pub phone_current: f64,
    pub phone_earlier: f64,
    pub phone_household: f64,
    pub birth_equal: f64,
    pub birth_swapped: f64,
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
            phone_current: 0.45,
            phone_earlier: 0.25,
            phone_household: 0.30,
            birth_equal: 0.15,
            birth_swapped: 0.10,
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
    /// `sm4-gcm` (default) or `aes-256-gcm`.
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
    /// Full URL of the platform's batch endpoint.
    pub url: String,
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
    /// Cron schedule of the push in `run`.
    #[serde(default = "default_push_schedule")]
    pub schedule: String,
    /// PEM client certificate (chain) for mutual TLS with the platform.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert` (file must not be readable by others).
    #[serde(default)]
    pub client_key: Option<String>,
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
    pub base_url: String,
    /// Cron schedule (5-field crontab, `@hourly`, or 6/7-field with seconds).
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
    /// URL path joined to the source's base_url.
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
    /// Field path of the record's unique key.
    pub key: String,
    pub pagination: PaginationConfig,
    #[serde(default)]
    pub mode: SyncMode,
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
    /// Field path of a boolean/flag that marks the record deleted at the source.
    #[serde(default)]
    pub deleted_flag: Option<String>,
    /// Canonical field → source field mapping.
    pub fields: BTreeMap<String, FieldMapping>,
    /// For activity streams: which stream's key the record points at.
    #[serde(default)]
    pub link: Option<LinkConfig>,
    #[serde(default)]
    pub schema_drift: DriftAction,
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

/// A field mapping: a bare path string, or a table with options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldMapping {
    Path(String),
    Detailed(FieldSpec),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub path: String,
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
                path: p.clone(),
                ..FieldSpec::default()
            },
            FieldMapping::Detailed(s) => s.clone(),
        }
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
    /// A config writable by others is refused; one readable by others is refused when it
    /// holds an inline secret (`value = ...`), and fine otherwise (the service's dynamic user
    /// reads it as "others").
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
        if let Err(mode) = crate::crypto::check_private(path, 0o002) {
            return Err(ConfigError::Insecure {
                path: path.to_path_buf(),
                mode,
                why: "writable by others: anybody could redirect the agent or its data".into(),
            });
        }
        if let Err(mode) = crate::crypto::check_private(path, 0o004) {
            if config.has_inline_secret() {
                return Err(ConfigError::Insecure {
                    path: path.to_path_buf(),
                    mode,
                    why: "readable by others and it holds an inline secret (`value = ...`)".into(),
                });
            }
            // Fine without an inline secret: the unit's dynamic user (not root, no group)
            // must read it, so the installed config is 0644 and holds no secret.
            tracing::debug!(
                config = %path.display(),
                mode = format!("{mode:04o}"),
                "config file is readable by others (it holds no inline secret)"
            );
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
        check_url(&self.platform.url).map_err(|m| self.invalid("platform.url", m))?;
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
            if !["most_recent", "source_priority", "most_frequent"].contains(&rule.as_str()) {
                return Err(self.invalid(
                    format!("reconcile.survivorship.{field}"),
                    format!(
                        "unknown rule {rule:?}; use most_recent, source_priority or most_frequent"
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
            check_url(&s.base_url).map_err(|m| self.invalid(format!("{key}.base_url"), m))?;
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
        if !t.path.starts_with('/') {
            return Err(self.invalid(format!("{key}.path"), "must start with '/'"));
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
            if spec.path.trim().is_empty() {
                return Err(self.invalid(format!("{key}.fields.{field}"), "empty source path"));
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
        match (t.mode, &t.incremental) {
            (SyncMode::Incremental, None) => {
                return Err(self.invalid(
                    format!("{key}.incremental"),
                    "mode = \"incremental\" (the default) needs an [incremental] table; or set mode = \"full_refresh\"",
                ))
            }
            (_, Some(inc)) => {
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

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{u:?}: only http and https URLs are supported"));
    }
    Ok(())
}

/// Parses a schedule as operators write it: a 5-field crontab line (minute precision),
/// `@hourly`/`@daily`/…, or the cron crate's 6/7-field form with seconds.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let trimmed = expr.trim();
    let fields = trimmed.split_whitespace().count();
    let full = if trimmed.starts_with('@') {
        match trimmed {
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
            "@monthly" => "0 0 0 1 * *".to_string(),
            "@weekly" => "0 0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
            "@hourly" => "0 0 * * * *".to_string(),
            other => return Err(format!("unknown schedule shorthand {other:?}; use @hourly, @daily, @weekly, @monthly or @yearly")),
        }
    } else if fields == 5 {
        format!("0 {trimmed}")
    } else if fields == 6 || fields == 7 {
        trimmed.to_string()
    } else {
        return Err(format!(
            "{expr:?} has {fields} fields; write a crontab line (\"*/5 * * * *\"), @hourly, or 6 fields with seconds"
        ));
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("{expr:?} is not a valid schedule: {e}"))
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
