//! File sources: ledgers (台账) that community workers keep as spreadsheets, dropped into a
//! folder. Each stream reads its own sub-folder (`<dir>/<folder>`, default the stream's
//! name) and keeps `done/` and `failed/` inside it.
//!
//! - **Formats**: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030; comma or tab separated) and
//!   Excel (`.xlsx`, `.xlsm`, `.xls`, through calamine). A header row names the columns;
//!   the mapping names columns by header (`name = "姓名"`).
//! - **What real ledgers look like**: a merged title row or two above the header (the header
//!   is the first row holding the key column and every mapped column, or `header_row`), blank
//!   lines, a total row at the bottom (a row whose first cell starts with 合计/总计/小计/共计
//!   is skipped), the header repeated on each printed page (skipped), vertically merged cells
//!   (filled down), dates as Excel date cells (written `YYYY-MM-DD`), numbers typed as
//!   numbers (written without `.0`). Every cell reaches the mapping as text, so a
//!   column's JSON type never drifts between rows.
//! - **Once only**: a file is identified by the SHA-256 of its bytes, recorded in the store
//!   in the transaction that commits its last records; it is moved to `done/` only after
//!   that commit. A crash before the commit ingests it again (unchanged records write
//!   nothing); a crash after the commit finds its hash recorded and only moves it. The same
//!   bytes dropped again are moved to `done/` without being read.
//! - **Not half-written**: `ready = "stable"` (default) reads a file only when it has not been
//!   modified for `stable_secs`, and gives up on it for this run when its size or modification
//!   time changed while it was read; `ready = "marker"` reads `X` only when `X.ready` exists
//!   (the sender writes the marker after the file). Names starting with `.` or `~$` (Excel's
//!   lock files) and ending in `.tmp`, `.part`, `.crdownload` are never read.
//! - **Bad files**: a file that cannot be read (not a spreadsheet, no header, malformed
//!   encoding, too large) is moved to `failed/` with a `<name>.error.txt` beside it saying
//!   why; a bad row is a quarantined record (`rejects`) whose detail names the file and the
//!   row as the spreadsheet numbers it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::config::{FileEncoding, FileReady, FilesConfig};
use super::{FetchStats, Page, SourceError};
use crate::config::{SourceConfig, StreamConfig};

/// Rows per page sent to the writer.
const PAGE_ROWS: usize = 500;
/// Rows searched for the header when `header_row` is not given.
const HEADER_SEARCH_ROWS: usize = 30;

/// A drop folder of ledgers.
#[derive(Debug)]
pub struct FileSource {
    pub name: String,
    root: PathBuf,
    cfg: FilesConfig,
}

/// A ready file, read whole: its bytes and their hash.
#[derive(Debug, Clone)]
pub struct PendingFile {
    pub path: PathBuf,
    /// The file name (what rejects and logs name).
    pub name: String,
    /// SHA-256 of the bytes, hex.
    pub hash: String,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

impl FileSource {
    pub fn new(source: &SourceConfig, config_dir: &Path) -> Result<FileSource, SourceError> {
        let cfg = source.files.clone().ok_or_else(|| SourceError::Config {
            source_name: source.name.clone(),
            message: "[sources.files] is missing".into(),
        })?;
        let root =
            super::secret::expand_path(&cfg.dir, config_dir).map_err(|p| SourceError::Config {
                source_name: source.name.clone(),
                message: format!("files.dir: {}", p.0),
            })?;
        Ok(FileSource {
            name: source.name.clone(),
            root,
            cfg,
        })
    }

    /// The folder a stream reads.
    pub fn folder(&self, stream: &StreamConfig) -> PathBuf {
        self.root
            .join(stream.folder.as_deref().unwrap_or(stream.name.as_str()))
    }

    fn err(&self, stream: &StreamConfig, path: &Path, message: impl Into<String>) -> SourceError {
        SourceError::File {
            source_name: self.name.clone(),
            stream: stream.name.clone(),
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// The files of `stream` ready to be read, oldest first.
    pub fn ready_files(&self, stream: &StreamConfig) -> Result<Vec<PathBuf>, SourceError> {
        let dir = self.folder(stream);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            self.err(stream, &dir, format!("cannot list the drop folder: {e}; create it (and done/, failed/ inside) with write access for the service's user"))
        })?;
        let now = SystemTime::now();
        let mut out: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !is_ledger_name(name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(now);
            let ready = match self.cfg.ready {
                FileReady::Marker => marker_of(&path).exists(),
                FileReady::Stable => now
                    .duration_since(mtime)
                    .is_ok_and(|age| age >= Duration::from_secs(self.cfg.stable_secs)),
            };
            if ready {
                out.push((mtime, path));
            } else {
                tracing::debug!(source = %self.name, stream = %stream.name, file = name, "not ready yet (being written?)");
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, p)| p).collect())
    }

    /// Reads a ready file whole and hashes it. `Ok(None)` when it changed while it was read
    /// (still being written: left for the next run).
    pub fn load(
        &self,
        stream: &StreamConfig,
        path: &Path,
    ) -> Result<Option<PendingFile>, SourceError> {
        let before = std::fs::metadata(path)
            .map_err(|e| self.err(stream, path, format!("cannot read: {e}")))?;
        if before.len() > self.cfg.max_file_bytes {
            return Err(self.err(
                stream,
                path,
                format!(
                    "{} bytes is over files.max_file_bytes ({}); split the ledger or raise the limit",
                    before.len(),
                    self.cfg.max_file_bytes
                ),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| self.err(stream, path, format!("cannot read: {e}")))?;
        let after = std::fs::metadata(path)
            .map_err(|e| self.err(stream, path, format!("cannot read: {e}")))?;
        if after.len() != before.len()
            || after.modified().ok() != before.modified().ok()
            || bytes.len() as u64 != after.len()
        {
            tracing::info!(source = %self.name, stream = %stream.name, file = %path.display(), "the file changed while it was read; it is read again by the next run");
            return Ok(None);
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        Ok(Some(PendingFile {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            hash,
            bytes: std::sync::Arc::new(bytes),
        }))
    }

    /// Moves a file (and its marker) into `done/`, after its records committed.
    pub fn mark_done(
        &self,
        stream: &StreamConfig,
        file: &PendingFile,
    ) -> Result<PathBuf, SourceError> {
        self.move_to(stream, file, "done")
    }

    /// Moves a file that cannot be read into `failed/`, with `<name>.error.txt` saying why.
    pub fn mark_failed(
        &self,
        stream: &StreamConfig,
        file: &PendingFile,
        why: &str,
    ) -> Result<PathBuf, SourceError> {
        let to = self.move_to(stream, file, "failed")?;
        let mut sidecar = to.clone().into_os_string();
        sidecar.push(".error.txt");
        let text = format!(
            "community-sync could not ingest {}\nsha256: {}\nwhen: {}\nwhy: {}\n\nFix the file and drop it into {} again.\n",
            file.name,
            file.hash,
            crate::store::now_text(),
            crate::mask::scrub_text(why),
            self.folder(stream).display()
        );
        std::fs::write(&sidecar, text)
            .map_err(|e| self.err(stream, Path::new(&sidecar), format!("cannot write: {e}")))?;
        Ok(to)
    }

    fn move_to(
        &self,
        stream: &StreamConfig,
        file: &PendingFile,
        sub: &str,
    ) -> Result<PathBuf, SourceError> {
        let dir = self.folder(stream).join(sub);
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.err(stream, &dir, format!("cannot create: {e}")))?;
        // The same name is dropped week after week: prefix the time and the hash.
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let to = dir.join(format!("{stamp}-{}-{}", &file.hash[..8], file.name));
        std::fs::rename(&file.path, &to).map_err(|e| {
            self.err(
                stream,
                &file.path,
                format!("cannot move to {}: {e}", dir.display()),
            )
        })?;
        let marker = marker_of(&file.path);
        if marker.exists() {
            let _ = std::fs::remove_file(marker);
        }
        Ok(to)
    }

    /// Parses `file` and sends its records, a page at a time. Complete when the whole file
    /// was read.
    pub async fn read_file(
        &self,
        stream: &StreamConfig,
        file: &PendingFile,
        tx: mpsc::Sender<Page>,
    ) -> Result<FetchStats, SourceError> {
        let parsed = {
            let (s, f) = (stream.clone(), file.clone());
            tokio::task::spawn_blocking(move || parse(&s, &f)).await
        };
        let table = parsed
            .map_err(|e| self.err(stream, &file.path, format!("reader failed: {e}")))?
            .map_err(|m| self.err(stream, &file.path, m))?;
        if table.data_rows == 0 && stream.full_refresh() {
            return Err(self.err(
                stream,
                &file.path,
                format!(
                    "no data rows below the header (row {}); with semantics = \"replace\" an empty ledger would delete every record, so it is not read. Drop the full ledger",
                    table.header_row
                ),
            ));
        }
        let mut stats = FetchStats::default();
        let mut rows = table.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<(usize, Value)> = rows.by_ref().take(PAGE_ROWS).collect();
            stats.pages += 1;
            stats.records += chunk.len() as u64;
            let (locations, records) = chunk
                .into_iter()
                .map(|(row, v)| (format!("{} row {row}", file.name), v))
                .unzip();
            let page = Page {
                records,
                number: stats.pages,
                total: Some(table.data_rows as u64),
                url_path: file.name.clone(),
                bytes: 0,
                cursor: None,
                locations,
            };
            tx.send(page).await.map_err(|_| SourceError::Cancelled {
                source_name: self.name.clone(),
                stream: stream.name.clone(),
            })?;
        }
        stats.bytes = file.bytes.len() as u64;
        stats.complete = true;
        if table.skipped > 0 {
            tracing::info!(source = %self.name, stream = %stream.name, file = %file.name, skipped = table.skipped, "blank, total and repeated header rows skipped");
        }
        Ok(stats)
    }

    /// `check --connect`: the folder is there and writable, and the oldest waiting file (if
    /// any) has the columns the mapping names.
    pub async fn probe(&self, stream: &StreamConfig) -> Result<String, SourceError> {
        let dir = self.folder(stream);
        let files = self.ready_files(stream)?;
        for sub in ["done", "failed"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| {
                self.err(
                    stream,
                    &d,
                    format!("cannot create: {e}; give the service's user write access"),
                )
            })?;
        }
        let Some(first) = files.first() else {
            return Ok(format!("{}: no file waiting", dir.display()));
        };
        let Some(file) = self.load(stream, first)? else {
            return Ok(format!(
                "{}: {} is being written",
                dir.display(),
                first.display()
            ));
        };
        let table = parse(stream, &file).map_err(|m| self.err(stream, &file.path, m))?;
        Ok(format!(
            "{}: {} file(s) waiting; {} has its header on row {} and {} data rows",
            dir.display(),
            files.len(),
            file.name,
            table.header_row,
            table.data_rows
        ))
    }
}

fn marker_of(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(".ready");
    PathBuf::from(m)
}

fn is_ledger_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    if name.starts_with('.') || name.starts_with("~$") {
        return false;
    }
    if [".tmp", ".part", ".crdownload", ".ready", ".error.txt"]
        .iter()
        .any(|s| lower.ends_with(s))
    {
        return false;
    }
    [".csv", ".txt", ".xlsx", ".xlsm", ".xls"]
        .iter()
        .any(|s| lower.ends_with(s))
}

/// A parsed ledger: records with the spreadsheet's row numbers.
#[derive(Debug)]
pub(crate) struct Table {
    pub header_row: usize,
    pub data_rows: usize,
    pub skipped: usize,
    pub rows: Vec<(usize, Value)>,
}

/// One sheet as text cells, with the spreadsheet row number of each row.
struct Grid {
    rows: Vec<(usize, Vec<String>)>,
}

/// Parses a file by its extension.
pub(crate) fn parse(stream: &StreamConfig, file: &PendingFile) -> Result<Table, String> {
    let lower = file.name.to_lowercase();
    let grid = if lower.ends_with(".csv") || lower.ends_with(".txt") {
        csv_grid(&file.bytes, stream.file_encoding)?
    } else {
        sheet_grid(&file.bytes, stream.sheet.as_deref())?
    };
    table(stream, grid)
}

/// Header names as compared: without any whitespace (headers wrap: "联系\n电话").
fn header_key(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The columns a stream's config names: its key and the first segment of each mapped path.
fn wanted_columns(stream: &StreamConfig) -> Vec<String> {
    let mut out: Vec<String> = stream.key_paths().iter().map(|k| header_key(k)).collect();
    for m in stream.fields.values() {
        let spec = m.spec();
        // Of a fallback list, the first column is the one a header row must hold.
        let Some(first) = spec
            .path
            .texts()
            .first()
            .map(|p| header_key(p.trim_start_matches('/')))
        else {
            continue;
        };
        if !out.contains(&first) {
            out.push(first);
        }
    }
    out
}

const TOTAL_WORDS: [&str; 6] = ["合计", "总计", "小计", "共计", "总数", "total"];

fn table(stream: &StreamConfig, grid: Grid) -> Result<Table, String> {
    let wanted = wanted_columns(stream);
    let header_at = match stream.header_row {
        Some(n) => grid
            .rows
            .iter()
            .position(|(r, _)| *r == n)
            .ok_or_else(|| format!("header_row = {n}, but the file has no row {n}"))?,
        None => grid
            .rows
            .iter()
            .take(HEADER_SEARCH_ROWS)
            .position(|(_, cells)| {
                let keys: Vec<String> = cells.iter().map(|c| header_key(c)).collect();
                wanted.iter().all(|w| keys.contains(w))
            })
            .ok_or_else(|| missing_header_message(&wanted, &grid))?,
    };
    let (header_row, header_cells) = grid.rows[header_at].clone();
    let headers: Vec<String> = header_cells.iter().map(|h| header_key(h)).collect();
    if let Some(missing) = wanted.iter().find(|w| !headers.contains(w)) {
        return Err(format!(
            "the header (row {header_row}) has no column {missing:?}; its columns: {}. Fix the mapping or the file",
            headers.iter().filter(|h| !h.is_empty()).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (row, cells) in grid.rows.into_iter().skip(header_at + 1) {
        let first = cells.iter().map(|c| c.trim()).find(|c| !c.is_empty());
        let Some(first) = first else {
            skipped += 1;
            continue;
        };
        let first_lower = header_key(first).to_lowercase();
        let repeated_header = cells.iter().map(|c| header_key(c)).collect::<Vec<_>>() == headers;
        if repeated_header || TOTAL_WORDS.iter().any(|w| first_lower.starts_with(w)) {
            skipped += 1;
            continue;
        }
        let mut rec = Map::new();
        for (h, v) in headers.iter().zip(cells) {
            if h.is_empty() {
                continue;
            }
            let v = v.trim().to_string();
            rec.insert(
                h.clone(),
                if v.is_empty() {
                    Value::Null
                } else {
                    Value::String(v)
                },
            );
        }
        rows.push((row, Value::Object(rec)));
    }
    Ok(Table {
        header_row,
        data_rows: rows.len(),
        skipped,
        rows,
    })
}

fn missing_header_message(wanted: &[String], grid: &Grid) -> String {
    let seen: Vec<String> = grid
        .rows
        .iter()
        .take(3)
        .map(|(r, c)| {
            format!(
                "row {r}: {}",
                c.iter()
                    .filter(|s| !s.trim().is_empty())
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        })
        .collect();
    format!(
        "no row among the first {HEADER_SEARCH_ROWS} holds every column the stream names ({}); the file starts with: {}. Fix the headers in the file, the names in the mapping, or set header_row",
        wanted.join(", "),
        seen.join("; ")
    )
}

/// CSV text in the stream's encoding (auto: UTF-8 with or without BOM, else GB18030).
fn decode_text(bytes: &[u8], enc: FileEncoding) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let codec = match enc {
        FileEncoding::Utf8 => encoding_rs::UTF_8,
        FileEncoding::Gbk => encoding_rs::GBK,
        FileEncoding::Gb18030 => encoding_rs::GB18030,
        FileEncoding::Auto => {
            if std::str::from_utf8(bytes).is_ok() {
                encoding_rs::UTF_8
            } else {
                encoding_rs::GB18030
            }
        }
    };
    codec
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or_else(|| {
            let at = match codec.new_decoder_without_bom_handling().decode_to_string_without_replacement(
                bytes,
                &mut String::with_capacity(bytes.len() * 3),
                true,
            ) {
                (encoding_rs::DecoderResult::Malformed(_, _), read) => read,
                _ => 0,
            };
            format!(
                "the bytes are not valid {} (near byte {at}); set file_encoding = \"utf8\", \"gbk\" or \"gb18030\" to what the file is, or save it again as UTF-8",
                codec.name()
            )
        })
}

fn csv_grid(bytes: &[u8], enc: FileEncoding) -> Result<Grid, String> {
    let text = decode_text(bytes, enc)?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let delimiter = if first.matches('\t').count() > first.matches(',').count() {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    // Line numbers as an editor shows them: newlines up to the record's start, plus one
    // (after a CRLF the reader's position is the LF itself, which is counted).
    let (mut line, mut scanned) = (1usize, 0usize);
    for record in reader.records() {
        let record = record.map_err(|e| format!("not a readable CSV: {e}"))?;
        let at = record
            .position()
            .map_or(scanned, |p| (p.byte() as usize + 1).min(text.len()))
            .max(scanned);
        line += text.as_bytes()[scanned..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        scanned = at;
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(Grid { rows })
}

fn sheet_grid(bytes: &[u8], sheet: Option<&str>) -> Result<Grid, String> {
    use calamine::Reader;
    let cursor = std::io::Cursor::new(bytes.to_vec());
    let mut book = calamine::open_workbook_auto_from_rs(cursor)
        .map_err(|e| format!("not a readable spreadsheet ({e}); save it as .xlsx or .csv"))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(s) => names
            .iter()
            .find(|n| n.as_str() == s)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no sheet {s:?} (sheets: {}); fix sheet in the stream",
                    names.join(", ")
                )
            })?,
        None => names.first().cloned().ok_or("the workbook has no sheet")?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| format!("cannot read sheet {name:?}: {e}"))?;
    let merges = match &mut book {
        calamine::Sheets::Xlsx(x) => x.merge_cells_by_sheet_name(&name).ok(),
        calamine::Sheets::Xls(x) => x.merge_cells_by_sheet_name(&name).ok(),
        _ => None,
    }
    .unwrap_or_default();
    let (r0, c0) = range.start().unwrap_or((0, 0));
    let mut rows: Vec<(usize, Vec<String>)> = range
        .rows()
        .enumerate()
        .map(|(i, cells)| (r0 as usize + i + 1, cells.iter().map(cell_text).collect()))
        .collect();
    // Vertically merged cells hold their value in the top cell only: fill it down.
    for m in merges {
        if m.end.0 <= m.start.0 {
            continue;
        }
        for col in m.start.1..=m.end.1 {
            let Some(c) = col.checked_sub(c0).map(|c| c as usize) else {
                continue;
            };
            let top = (m.start.0.saturating_sub(r0)) as usize;
            let Some(value) = rows.get(top).and_then(|(_, r)| r.get(c)).cloned() else {
                continue;
            };
            for r in (top + 1)..=((m.end.0.saturating_sub(r0)) as usize) {
                if let Some(cell) = rows.get_mut(r).and_then(|(_, row)| row.get_mut(c)) {
                    if cell.is_empty() {
                        *cell = value.clone();
                    }
                }
            }
        }
    }
    Ok(Grid { rows })
}

/// A cell as the text a person sees: integers without `.0`, dates as `YYYY-MM-DD`.
fn cell_text(d: &calamine::Data) -> String {
    use calamine::Data;
    match d {
        Data::Empty | Data::Error(_) => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            }
        }
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(n) if n.time() == chrono::NaiveTime::MIN => n.date().to_string(),
            Some(n) => n.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => dt.as_f64().to_string(),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_files_being_written_or_locked_are_never_read() {
        assert!(is_ledger_name("老人台账.xlsx"));
        assert!(is_ledger_name("visits.CSV"));
        assert!(!is_ledger_name("~$老人台账.xlsx"));
        assert!(!is_ledger_name(".老人台账.xlsx.swp"));
        assert!(!is_ledger_name("upload.csv.part"));
        assert!(!is_ledger_name("a.xlsx.ready"));
        assert!(!is_ledger_name("notes.docx"));
    }

    #[test]
    fn gbk_csv_decodes_and_bad_bytes_are_an_error() {
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名,身份证号\n张三,1\n");
        assert!(decode_text(&gbk, FileEncoding::Auto)
            .unwrap()
            .contains("张三"));
        let bom = [b"\xEF\xBB\xBF".as_slice(), "姓名\n".as_bytes()].concat();
        assert_eq!(decode_text(&bom, FileEncoding::Auto).unwrap(), "姓名\n");
        let e = decode_text(&[0xff, 0xff, 0xff], FileEncoding::Utf8).unwrap_err();
        assert!(e.contains("file_encoding"), "{e}");
    }
}
#[cfg(test)]
mod line_tests {
    #[test]
    fn csv_rows_are_numbered_as_an_editor_shows_them() {
        let g = super::csv_grid(
            "t,,\r\n,,\r\na,b,c\r\n1,2,3\r\n,,\r\n4,5,6\r\n".as_bytes(),
            super::FileEncoding::Utf8,
        )
        .unwrap();
        let rows: Vec<usize> = g.rows.iter().map(|r| r.0).collect();
        assert_eq!(rows, vec![1, 2, 3, 4, 5, 6]);
    }
}
