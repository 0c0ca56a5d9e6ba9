//! `community-sync backup FILE`: a consistent copy of the store, safe while a sync or the
//! daemon is running.
//!
//! Uses SQLite's online backup API in a single step: the copy is read inside one read
//! transaction, so it is a snapshot of one committed state. In WAL mode readers never block
//! writers, so the running daemon is not held up. The copy is written beside the target and
//! renamed into place only once it passed `PRAGMA integrity_check`.

use crate::cli::out::outln;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy (a new file; see --force).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("store {0} does not exist. Check [store] path in the config (or --config)")]
    NoStore(PathBuf),
    #[error("{0} already exists; choose a new file name or pass --force to replace it")]
    Exists(PathBuf),
    #[error(
        "cannot open the store {path} for reading: {source}. Check the path and its permissions"
    )]
    OpenSource {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the backup file {path}: {source}. Check the directory exists, is writable and has free space")]
    OpenTarget {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("copying {from} to {to} failed: {source}. If the disk is full, free space and try again; if the store is busy, try again in a moment")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the backup {path} failed its integrity check ({detail}); it was not kept. Try again; if it repeats, check the disk")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot move the finished backup into place at {path}: {source}")]
    Rename {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a backup copied.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub file: String,
    pub bytes: u64,
    pub source_records: i64,
    pub persons: i64,
    pub outbox: i64,
}

/// Copies the store at `store` to `dest`, checked; refuses to replace `dest` unless `force`.
pub fn backup(store: &Path, dest: &Path, force: bool) -> Result<BackupSummary, BackupError> {
    if !store.exists() {
        return Err(BackupError::NoStore(store.to_path_buf()));
    }
    if dest.exists() && !force {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let src = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BackupError::OpenSource {
        path: store.to_path_buf(),
        source,
    })?;
    src.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|source| BackupError::OpenSource {
            path: store.to_path_buf(),
            source,
        })?;
    let tmp = PathBuf::from(format!("{}.partial", dest.display()));
    let _ = std::fs::remove_file(&tmp);
    let result = copy_checked(&src, store, &tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let summary = result?;
    std::fs::rename(&tmp, dest).map_err(|source| BackupError::Rename {
        path: dest.to_path_buf(),
        source,
    })?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupSummary {
        file: dest.display().to_string(),
        bytes,
        ..summary
    })
}

fn copy_checked(src: &Connection, store: &Path, tmp: &Path) -> Result<BackupSummary, BackupError> {
    let target_err = |source| BackupError::OpenTarget {
        path: tmp.to_path_buf(),
        source,
    };
    let copy_err = |source| BackupError::Copy {
        from: store.to_path_buf(),
        to: tmp.to_path_buf(),
        source,
    };
    {
        let mut dst = Connection::open(tmp).map_err(target_err)?;
        restrict(tmp);
        let b = rusqlite::backup::Backup::new(src, &mut dst).map_err(copy_err)?;
        // -1: every page in one step, i.e. one read transaction: a snapshot. A step-wise copy
        // would restart whenever the daemon commits.
        loop {
            match b.step(-1).map_err(copy_err)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    let dst = Connection::open(tmp).map_err(target_err)?;
    // The copy stands alone: one file, no WAL beside it.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(copy_err)?;
    let check: String = dst
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(copy_err)?;
    if check != "ok" {
        return Err(BackupError::Corrupt {
            path: tmp.to_path_buf(),
            detail: check,
        });
    }
    let count = |t: &str| -> i64 {
        dst.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap_or(0)
    };
    Ok(BackupSummary {
        file: String::new(),
        bytes: 0,
        source_records: count("source_records"),
        persons: count("persons"),
        outbox: count("outbox"),
    })
}

fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    let _ = path;
}

/// The CLI entry: backs up the configured store and says what was copied.
pub fn run(config: &crate::config::Config, args: &BackupArgs) -> anyhow::Result<()> {
    let s = backup(&config.store.path, &args.file, args.force)?;
    outln!(
        "backup written to {} ({} bytes): {} source records, {} residents, {} outbox events; integrity check ok",
        s.file, s.bytes, s.source_records, s.persons, s.outbox
    );
    outln!(
        "restore: stop the service, copy it over {}, start the service",
        config.store.path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_store_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO persons (version, created_at, updated_at) VALUES (1, 'now', 'now')",
                [],
            )
            .unwrap();
        let dest = dir.path().join("b.db");
        let s = backup(store.path(), &dest, false).unwrap();
        assert_eq!(s.persons, 1);
        assert!(s.bytes > 0);
        assert!(!dir.path().join("b.db.partial").exists());
        assert!(matches!(
            backup(store.path(), &dest, false),
            Err(BackupError::Exists(_))
        ));
        assert!(backup(store.path(), &dest, true).is_ok());
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM persons", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_missing_store_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = backup(&dir.path().join("nope.db"), &dir.path().join("b.db"), false).unwrap_err();
        assert!(e.to_string().contains("nope.db"), "{e}");
        assert!(!dir.path().join("nope.db").exists());
    }
}
