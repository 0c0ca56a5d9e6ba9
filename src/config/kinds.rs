//! Validation of the source kinds other than HTTP: databases (`type = "sql"`) and drop
//! folders of ledger files (`type = "files"`). Every error names the key path and the fix.

use super::{Config, ConfigError, SourceConfig, StreamConfig, SyncMode};
use crate::source::config::{DbTls, SourceKind};

impl Config {
    /// Source-level checks of a `sql` or `files` source.
    pub(super) fn validate_kind_source(
        &self,
        key: &str,
        s: &SourceConfig,
    ) -> Result<(), ConfigError> {
        if !s.base_url.is_empty() {
            return Err(self.invalid(
                format!("{key}.base_url"),
                format!(
                    "base_url is for type = \"http\" sources; a type = \"{}\" source has none: remove it",
                    s.kind.as_str()
                ),
            ));
        }
        match s.kind {
            SourceKind::Http => Ok(()),
            SourceKind::Sql => self.validate_database(key, s),
            SourceKind::Files => {
                let Some(f) = &s.files else {
                    return Err(self.invalid(
                        format!("{key}.files"),
                        "a type = \"files\" source needs [sources.files] with dir = \"/path/to/drop/folder\"",
                    ));
                };
                if f.dir.trim().is_empty() {
                    return Err(self.invalid(
                        format!("{key}.files.dir"),
                        "empty; give the drop folder (relative paths are relative to this config file)",
                    ));
                }
                if s.database.is_some() {
                    return Err(self.invalid(
                        format!("{key}.database"),
                        "[sources.database] is for type = \"sql\" sources; remove it",
                    ));
                }
                Ok(())
            }
        }
    }

    fn validate_database(&self, key: &str, s: &SourceConfig) -> Result<(), ConfigError> {
        let Some(db) = &s.database else {
            return Err(self.invalid(
                format!("{key}.database"),
                "a type = \"sql\" source needs [sources.database] with url = \"mysql://user@host:3306/db\" or \"postgres://user@host:5432/db\"",
            ));
        };
        let k = format!("{key}.database");
        let url = url::Url::parse(&db.url).map_err(|e| {
            self.invalid(
                format!("{k}.url"),
                format!("{:?} is not a URL ({e}); write it like \"mysql://sync_ro@10.0.0.5:3306/exchange\"", db.url),
            )
        })?;
        if !matches!(
            url.scheme(),
            "mysql" | "mariadb" | "postgres" | "postgresql"
        ) {
            return Err(self.invalid(
                format!("{k}.url"),
                format!(
                    "scheme {:?} is not supported; use mysql:// (MySQL, MariaDB) or postgres:// (PostgreSQL, KingbaseES, openGauss)",
                    url.scheme()
                ),
            ));
        }
        if url.password().is_some() {
            return Err(self.invalid(
                format!("{k}.url"),
                "the URL holds a password; remove it and give password = { file = \"${CREDENTIALS_DIRECTORY}/db\" }",
            ));
        }
        if url.username().is_empty() {
            return Err(self.invalid(
                format!("{k}.url"),
                "no user; write the read-only account before the host: \"mysql://sync_ro@host:3306/db\"",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.invalid(format!("{k}.url"), "no host"));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(self.invalid(
                format!("{k}.url"),
                "no database name; end the URL with /DBNAME",
            ));
        }
        if db.tls == DbTls::Disable && db.ca_file.is_some() {
            return Err(self.invalid(
                format!("{k}.ca_file"),
                "ca_file is set but tls = \"disable\"; set tls = \"require\" to use it",
            ));
        }
        for (name, v) in [
            ("batch_size", db.batch_size),
            ("statement_timeout_secs", db.statement_timeout_secs),
            ("max_connections", db.max_connections as u64),
        ] {
            if v == 0 {
                return Err(self.invalid(format!("{k}.{name}"), "must be at least 1"));
            }
        }
        if !db.connect_timeout_secs.is_finite() || db.connect_timeout_secs <= 0.0 {
            return Err(self.invalid(format!("{k}.connect_timeout_secs"), "must be more than 0"));
        }
        Ok(())
    }

    /// Stream-level checks of a stream of a `sql` or `files` source.
    pub(super) fn validate_kind_stream(
        &self,
        key: &str,
        source: &SourceConfig,
        t: &StreamConfig,
    ) -> Result<(), ConfigError> {
        let kind = source.kind.as_str();
        for (name, set) in [
            ("path", !t.path.is_empty()),
            ("pagination", t.pagination.is_some()),
            ("records", !t.records.is_empty()),
            ("record_pointer", t.record_pointer.is_some()),
            ("body", !t.body.is_empty()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{key}.{name}"),
                    format!("{name} is for HTTP streams; a type = \"{kind}\" stream has none: remove it"),
                ));
            }
        }
        for p in t.key_paths() {
            if p.is_empty() {
                return Err(self.invalid(
                    format!("{key}.key"),
                    "empty key column; name the column(s) that identify a record, comma-separated for a composite key",
                ));
            }
        }
        match source.kind {
            SourceKind::Sql => self.validate_sql_stream(key, t),
            SourceKind::Files => self.validate_file_stream(key, t),
            SourceKind::Http => Ok(()),
        }
    }

    fn validate_sql_stream(&self, key: &str, t: &StreamConfig) -> Result<(), ConfigError> {
        for (name, set) in [
            ("folder", t.folder.is_some()),
            ("semantics", t.semantics.is_some()),
            ("sheet", t.sheet.is_some()),
            ("header_row", t.header_row.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{key}.{name}"),
                    format!("{name} is for file streams; remove it"),
                ));
            }
        }
        match (&t.table, &t.sql) {
            (None, None) | (Some(_), Some(_)) => {
                return Err(self.invalid(
                    format!("{key}.table"),
                    "give exactly one of table = \"schema.table\" (a table or view) or sql = \"SELECT …\"",
                ))
            }
            (Some(table), None) => {
                if !table
                    .split('.')
                    .all(|p| is_sql_identifier(p.trim_matches(|c| c == '`' || c == '"')))
                {
                    return Err(self.invalid(
                        format!("{key}.table"),
                        format!("{table:?} is not a table name; write table = \"schema.table\" (letters, digits, _ and $), or use sql = \"SELECT …\""),
                    ));
                }
            }
            (None, Some(q)) => {
                let q = q.trim().trim_end_matches(';').trim_end();
                let head = q
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if head != "SELECT" && head != "WITH" {
                    return Err(self.invalid(
                        format!("{key}.sql"),
                        "must be one SELECT (or WITH … SELECT): community-sync only reads",
                    ));
                }
                if q.contains(';') {
                    return Err(self.invalid(
                        format!("{key}.sql"),
                        "holds more than one statement (a ';'); give a single SELECT",
                    ));
                }
            }
        }
        for col in t.key_paths() {
            if !is_sql_identifier(col) {
                return Err(self.invalid(
                    format!("{key}.key"),
                    format!("{col:?} is not a column name; the key of a SQL stream is one or more columns of the result, comma-separated"),
                ));
            }
        }
        if let Some(inc) = &t.incremental {
            if !is_sql_identifier(&inc.cursor_field) {
                return Err(self.invalid(
                    format!("{key}.incremental.cursor_field"),
                    format!("{:?} is not a column name; name the watermark column (a change time or a growing version/ID)", inc.cursor_field),
                ));
            }
            if !inc.request.param.is_empty() || inc.request.upper_param.is_some() {
                return Err(self.invalid(
                    format!("{key}.incremental.param"),
                    "a SQL stream sends no request parameters (its bounds go in the WHERE): remove param / upper_param",
                ));
            }
            if let Some(f) = inc.cursor_format.as_deref() {
                if f != "integer" {
                    return Err(self.invalid(
                        format!("{key}.incremental.cursor_format"),
                        format!("{f:?}: a SQL watermark is read by its column type; leave cursor_format out for a date/time column, or set \"integer\" for a version/ID column"),
                    ));
                }
            }
        }
        if t.mode == SyncMode::FullRefresh && t.incremental.is_some() {
            return Err(self.invalid(
                format!("{key}.incremental"),
                "mode = \"full_refresh\" reads the whole table: remove [incremental], or remove mode",
            ));
        }
        Ok(())
    }

    fn validate_file_stream(&self, key: &str, t: &StreamConfig) -> Result<(), ConfigError> {
        for (name, set) in [
            ("table", t.table.is_some()),
            ("sql", t.sql.is_some()),
            ("column_encoding", !t.column_encoding.is_empty()),
            ("incremental", t.incremental.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("{key}.{name}"),
                    format!(
                        "{name} is not used by file streams (each file is read whole); remove it"
                    ),
                ));
            }
        }
        if t.mode == SyncMode::FullRefresh {
            return Err(self.invalid(
                format!("{key}.mode"),
                "a file stream says what a file means with semantics = \"replace\" or \"append\"; remove mode",
            ));
        }
        if t.semantics.is_none() {
            return Err(self.invalid(
                format!("{key}.semantics"),
                "say what a new file means: semantics = \"replace\" (the file is the whole list: records missing from it are deleted) or \"append\" (it adds and updates records)",
            ));
        }
        if let Some(folder) = &t.folder {
            if folder.is_empty() || folder.contains("..") || folder.starts_with('/') {
                return Err(self.invalid(
                    format!("{key}.folder"),
                    format!("{folder:?} must be a sub-folder name inside [sources.files] dir"),
                ));
            }
        }
        if t.header_row == Some(0) {
            return Err(self.invalid(
                format!("{key}.header_row"),
                "rows are counted from 1, as a spreadsheet shows them",
            ));
        }
        Ok(())
    }
}

/// A plain SQL identifier: letters (any script), digits, `_` and `$`.
fn is_sql_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}
