//! Errors of the source stage. Every message names the source, the stream and the URL path
//! (never the query string: it may carry signatures or keys), says what happened and what
//! to do. Secrets never appear: they live in [`super::secret::Secret`].

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: configuration problem: {message}")]
    Config {
        source_name: String,
        message: String,
    },

    #[error("source {source_name}: secret for `{key}` cannot be read: {message}")]
    Secret {
        source_name: String,
        key: String,
        message: String,
    },

    /// Plain http to a host that is not this machine ([`crate::net::check_scheme`]).
    #[error("source {source_name}: {message}")]
    InsecureHttp {
        source_name: String,
        message: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {host} {path}: no response within {secs}s (after {attempts} attempt(s)); check that the system is up, or raise http.timeout_secs / http.retries"
    )]
    Timeout {
        source_name: String,
        stream: String,
        /// `host:port` of the system.
        host: String,
        path: String,
        secs: f64,
        attempts: u32,
    },

    #[error(
        "source {source_name}, stream {stream}: {host} {path}: cannot connect ({message}) after {attempts} attempt(s); check base_url, the network and that the system is up"
    )]
    Connect {
        source_name: String,
        stream: String,
        /// `host:port` of the system.
        host: String,
        path: String,
        message: String,
        attempts: u32,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: HTTP {status}: access denied; check the credentials for source {source_name} (auth in its config and the secret it points at)"
    )]
    Auth {
        source_name: String,
        stream: String,
        path: String,
        status: u16,
    },

    #[error(
        "source {source_name}: token endpoint {host} {path}: {message}; check the credentials for source {source_name} (client_id and client_secret)"
    )]
    Token {
        source_name: String,
        host: String,
        path: String,
        message: String,
    },

    #[error(
        "source {source_name}: token endpoint {host} {path}: {message}; check auth.token_url and base_url, the network and that the system is up (the credentials were not tried)"
    )]
    TokenUnreachable {
        source_name: String,
        host: String,
        path: String,
        message: String,
    },

    #[error(
        "source {source_name}: token endpoint {host} {path}: HTTP {status}; the system's token service failed, try later (the credentials were not judged)"
    )]
    TokenServer {
        source_name: String,
        host: String,
        path: String,
        status: u16,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: HTTP {status} after {attempts} attempt(s): {what}"
    )]
    Status {
        source_name: String,
        stream: String,
        path: String,
        status: u16,
        attempts: u32,
        what: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: redirected to another host ({target_host}); not followed. Fix base_url, or set http.follow_cross_host_redirects = true if that host is trusted"
    )]
    CrossHostRedirect {
        source_name: String,
        stream: String,
        path: String,
        target_host: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: the next-page link points at another host ({target_host}); not followed. Set http.follow_cross_host_redirects = true if that host is trusted"
    )]
    CrossHostLink {
        source_name: String,
        stream: String,
        path: String,
        target_host: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: response larger than http.max_response_bytes = {limit}; lower the page size or raise the limit"
    )]
    TooLarge {
        source_name: String,
        stream: String,
        path: String,
        limit: usize,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: JSON nested deeper than http.max_json_depth = {max}; the response is malformed or hostile"
    )]
    TooDeep {
        source_name: String,
        stream: String,
        path: String,
        max: usize,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: body is not valid {encoding}; set `encoding` for the source (auto, utf8, gbk, gb18030) to what the system really sends"
    )]
    Malformed {
        source_name: String,
        stream: String,
        path: String,
        encoding: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: unsupported charset {charset:?} in Content-Type; set `encoding` for the source (utf8, gbk, gb18030)"
    )]
    Charset {
        source_name: String,
        stream: String,
        path: String,
        charset: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: response is not JSON ({detail}) after {attempts} attempt(s); it starts with {snippet:?}. The system (or a gateway in front of it) may be returning an error page: check it and the stream's path"
    )]
    NotJson {
        source_name: String,
        stream: String,
        path: String,
        snippet: String,
        detail: String,
        attempts: u32,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: HTTP 200 but the system reported an error{said} after {attempts} attempt(s): {what}"
    )]
    Refused {
        source_name: String,
        stream: String,
        path: String,
        attempts: u32,
        /// The vendor's code and message, masked (` (code 500: 系统繁忙)`), or empty.
        said: String,
        what: String,
    },

    #[error("source {source_name}, stream {stream}: {path}: unexpected response shape: {message}")]
    Shape {
        source_name: String,
        stream: String,
        path: String,
        message: String,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: the system returned a {what} already seen on page {page}; stopping instead of looping forever. The system's paging is broken: report it to the vendor"
    )]
    Repeated {
        source_name: String,
        stream: String,
        path: String,
        what: &'static str,
        page: u64,
    },

    #[error(
        "source {source_name}, stream {stream}: {path}: more than http.max_pages = {max} pages; the paging may be broken, or raise the limit"
    )]
    TooManyPages {
        source_name: String,
        stream: String,
        path: String,
        max: u64,
    },

    #[error("source {source_name}, stream {stream}: the page receiver was closed (run cancelled)")]
    Cancelled { source_name: String, stream: String },

    /// A database source: what failed, where (host:port/database, the stream's table or
    /// query) and what to do.
    #[error("source {source_name}, stream {stream}: database {target}: {message}")]
    Database {
        source_name: String,
        stream: String,
        target: String,
        message: String,
    },

    /// A ledger file (or its drop folder) could not be read.
    #[error("source {source_name}, stream {stream}: {path}: {message}")]
    File {
        source_name: String,
        stream: String,
        path: String,
        message: String,
    },

    #[error("source {source_name}: {message}")]
    Other {
        source_name: String,
        message: String,
    },
}
