//! How an operator describes a department system in TOML: an HTTP API (pagination, auth,
//! encoding, resilience, the incremental cursor), a database (`type = "sql"`: connection,
//! TLS, timeouts) or a drop folder of ledger files (`type = "files"`). Declared, never coded.

use serde::{Deserialize, Serialize};

use crate::normalize::path::PathSpec;
use crate::normalize::predicate::PredicateSpec;

/// Where a secret comes from. Never required inline: `env` or `file` (e.g.
/// `${CREDENTIALS_DIRECTORY}/onecard` under systemd's `LoadCredential=`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    /// Inline value: allowed for tests and demos only, warned about at start.
    #[serde(default)]
    pub value: Option<String>,
}

/// Shows where the secret comes from, never an inline value.
impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRef")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("value", &self.value.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    Bearer {
        token: SecretRef,
    },
    ApiKey {
        /// Header name (e.g. `X-API-Key`) or query parameter name.
        name: String,
        #[serde(default)]
        location: ApiKeyLocation,
        key: SecretRef,
    },
    Basic {
        username: String,
        password: SecretRef,
    },
    Oauth2ClientCredentials {
        /// Token endpoint path (joined to base_url) or absolute URL.
        token_url: String,
        client_id: String,
        client_secret: SecretRef,
        #[serde(default)]
        scope: Option<String>,
    },
    /// Government data-exchange gateway signing: app key, timestamp, nonce and a signature over
    /// the sorted parameters (and body).
    Signed {
        app_key: String,
        secret: SecretRef,
        #[serde(default)]
        algorithm: SignAlgorithm,
        /// Template of the string to sign. Placeholders: `{app_key}`, `{timestamp}`,
        /// `{nonce}`, `{params}` (sorted `k=v` joined by `&`), `{body}`, `{secret}`.
        #[serde(default = "default_sign_template")]
        template: String,
        /// Where the signature parameters go.
        #[serde(default)]
        location: ApiKeyLocation,
        #[serde(default = "default_sign_param_names")]
        param_names: SignParamNames,
        /// Upper-case hex (most gateways) or lower-case.
        #[serde(default = "default_true")]
        uppercase: bool,
    },
}

fn default_true() -> bool {
    true
}

fn default_sign_template() -> String {
    "{params}&key={secret}".to_string()
}

fn default_sign_param_names() -> SignParamNames {
    SignParamNames::default()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignParamNames {
    pub app_key: String,
    pub timestamp: String,
    pub nonce: String,
    pub sign: String,
}

impl Default for SignParamNames {
    fn default() -> Self {
        SignParamNames {
            app_key: "appkey".into(),
            timestamp: "timestamp".into(),
            nonce: "nonce".into(),
            sign: "sign".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignAlgorithm {
    #[default]
    Md5,
    HmacSha256,
    Sm3,
}

/// Response body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EncodingConfig {
    /// From the response's `Content-Type` charset; UTF-8 (BOM stripped) when absent.
    #[default]
    Auto,
    Utf8,
    Gbk,
    Gb18030,
}

/// Timeouts, retries, rate and size limits for one source (the same options as the
/// platform's): they live with the HTTP layer.
pub use crate::net::HttpConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaginationConfig {
    /// `?page=N&size=M`; stops on an empty page, a short page, `total`, or a has-more flag.
    PageNumber {
        #[serde(default = "default_page_param")]
        page_param: String,
        #[serde(default = "default_size_param")]
        size_param: String,
        #[serde(default = "default_page_size")]
        size: u64,
        #[serde(default = "default_one")]
        start: u64,
        /// JSON pointer to the total record count, if the API gives one.
        #[serde(default)]
        total_path: Option<String>,
        /// JSON pointer to a boolean "has more" flag.
        #[serde(default)]
        has_more_path: Option<String>,
        /// Send page and size in a JSON POST body instead of the query string.
        #[serde(default)]
        in_body: bool,
    },
    /// `?offset=N&limit=M`.
    OffsetLimit {
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[serde(default = "default_page_size")]
        limit: u64,
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        in_body: bool,
    },
    /// Next-page token in the body, sent back as a parameter.
    Cursor {
        /// JSON pointer to the next cursor; null/absent/empty ends.
        cursor_path: String,
        cursor_param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_page_size")]
        size: u64,
        #[serde(default)]
        in_body: bool,
    },
    /// A full next URL in the body: a JSON pointer, or an HL7 FHIR Bundle's `link` list
    /// (`relation = "next"`) with `fhir = true`.
    NextLink {
        #[serde(default)]
        next_path: Option<String>,
        #[serde(default)]
        fhir: bool,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_page_size")]
        size: u64,
    },
    /// RFC 8288 `Link: <...>; rel="next"` response header.
    LinkHeader {
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "default_page_size")]
        size: u64,
    },
    /// One request returns everything.
    None,
}

fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "size".into()
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_size() -> u64 {
    100
}
fn default_one() -> u64 {
    1
}

/// How to read a vendor's answer beyond its HTTP status: many government and vendor APIs answer
/// every request with `200 OK` and put the outcome in an envelope (`{"code": 0, "msg": "成功",
/// "data": …}`, `{"success": false, "resultCode": "E503", …}`). Declared per source; a stream
/// may override any part. Without it, a 200 whose body is JSON is a success (today's
/// behaviour for APIs without an envelope).
///
/// In order: a body matching `empty` is a page without records (the system's way of saying
/// "no data"); then, when `success` is given, a body that satisfies it is a page; a body that
/// matches `retry` is retried like a 503 (the vendor is busy), and a body that fails `success`
/// without matching `retry` fails the stream at once. `message` and `code` say where the
/// vendor explains itself; both go into the error, masked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<PredicateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<PredicateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<PredicateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<PathSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<PathSpec>,
}

impl ResponseConfig {
    /// The source's classification with the stream's parts over it.
    pub fn merged(
        source: Option<&ResponseConfig>,
        stream: Option<&ResponseConfig>,
    ) -> ResponseConfig {
        let base = source.cloned().unwrap_or_default();
        let Some(over) = stream else {
            return base;
        };
        ResponseConfig {
            success: over.success.clone().or(base.success),
            retry: over.retry.clone().or(base.retry),
            empty: over.empty.clone().or(base.empty),
            message: over.message.clone().or(base.message),
            code: over.code.clone().or(base.code),
        }
    }
}

/// How the incremental lower bound is sent to the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalParam {
    /// Request parameter that carries the lower bound (inclusive). HTTP streams only (a SQL
    /// stream puts the bound in its `WHERE`).
    #[serde(default)]
    pub param: String,
    /// How to write the bound: a chrono format string (`%Y-%m-%d %H:%M:%S`), or one of
    /// `rfc3339`, `epoch_ms`, `epoch_s`, `integer` (a version number cursor).
    #[serde(default = "default_param_format")]
    pub format: String,
    /// Text put before the value (FHIR search prefixes such as `ge`).
    #[serde(default)]
    pub prefix: String,
    /// Optional parameter for the upper bound ("now minus settle delay").
    #[serde(default)]
    pub upper_param: Option<String>,
    #[serde(default)]
    pub upper_prefix: String,
}

fn default_param_format() -> String {
    "rfc3339".into()
}

/// What kind of system a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A JSON API over HTTP(S) (`base_url`, `[sources.http]`, `[sources.auth]`).
    #[default]
    Http,
    /// Tables or views of a database, read-only (`[sources.database]`): MySQL/MariaDB and
    /// PostgreSQL protocols (KingbaseES, openGauss).
    Sql,
    /// Ledger files (CSV, XLSX) dropped into a folder (`[sources.files]`).
    Files,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Http => "http",
            SourceKind::Sql => "sql",
            SourceKind::Files => "files",
        }
    }
}

/// `[sources.database]`: how to reach a department's database (前置机 / 中间库).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `mysql://user@host:3306/db` (MySQL, MariaDB) or `postgres://user@host:5432/db`
    /// (PostgreSQL, KingbaseES, openGauss). No password in the URL: use `password`.
    pub url: String,
    /// The account's password (a read-only account): `{ file = … }`, `{ env = … }`.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `require` (certificate and host name checked against `ca_file` alone when given, else
    /// the public roots) or `disable`. Plain connections to a non-loopback host need
    /// `allow_plaintext = true`.
    #[serde(default)]
    pub tls: DbTls,
    /// PEM bundle of the CA that signed the database's certificate (intranet CAs), trusted
    /// instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Allow an unencrypted connection to a host that is not on this machine.
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default = "default_db_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Each statement is cancelled by the server after this long (and abandoned here a little
    /// later).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: u64,
    /// Rows per query (one keyset page).
    #[serde(default = "default_db_batch")]
    pub batch_size: u64,
    /// Connections to this database at once (streams of a source run one after another).
    #[serde(default = "default_one_usize")]
    pub max_connections: usize,
}

fn default_db_connect_timeout() -> f64 {
    10.0
}
fn default_statement_timeout() -> u64 {
    60
}
fn default_db_batch() -> u64 {
    1000
}
fn default_one_usize() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DbTls {
    #[default]
    Disable,
    Require,
}

/// `[sources.files]`: a drop folder of ledgers. Each stream reads its own sub-folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The drop folder; each stream reads `<dir>/<stream folder>` and keeps `done/` and
    /// `failed/` inside it. Relative to the config file.
    pub dir: String,
    /// When a file counts as completely written: `stable` (not modified for `stable_secs`,
    /// and the same size before and after it was read) or `marker` (a `<name>.ready` file
    /// beside it, written by the sender after the file).
    #[serde(default)]
    pub ready: FileReady,
    #[serde(default = "default_stable_secs")]
    pub stable_secs: u64,
    /// Larger files are refused (moved to `failed/`): a ledger is read whole.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_stable_secs() -> u64 {
    10
}
fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileReady {
    #[default]
    Stable,
    Marker,
}

/// What a new ledger file means for the records of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSemantics {
    /// The file is the whole list: records of the stream missing from it are deletions.
    Replace,
    /// The file adds and updates records; nothing is deleted.
    Append,
}

/// How a ledger file's text is encoded (CSV; XLSX is always Unicode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileEncoding {
    /// UTF-8 (with or without BOM) when the bytes are valid UTF-8, GB18030 (a superset of
    /// GBK) otherwise.
    #[default]
    Auto,
    Utf8,
    Gbk,
    Gb18030,
}

/// The text encoding of a column whose bytes are not what the database declares (GBK text
/// in a `latin1` or binary column of a legacy system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnEncoding {
    Gbk,
    Gb18030,
    Utf8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_ref_debug_hides_inline_values() {
        let r = SecretRef {
            env: Some("VAR".into()),
            file: None,
            value: Some("hunter2".into()),
        };
        let d = format!("{r:?}");
        assert!(d.contains("VAR") && d.contains("***"), "{d}");
        assert!(!d.contains("hunter2"), "{d}");
        let auth = AuthConfig::Bearer { token: r };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
