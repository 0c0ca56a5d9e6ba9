//! `keygen`, `rotate-key` and `audit verify`.

use crate::cli::out::{errln, outln};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;
use crate::crypto::StoreKey;
use crate::store::codec::{self, Codec, Keyring};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit trail's hash chain; exit 1 when a row was edited or deleted.
    Verify {
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `community-sync keygen --out FILE`: a new random store key, mode 0600.
pub fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    crate::crypto::write_new_key_file(out).with_context(|| {
        format!(
            "cannot create key file {} (it must not exist yet)",
            out.display()
        )
    })?;
    outln!(
        "wrote a new store key to {} (mode 0600). Keep a copy offline: without it the store cannot be read.",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `community-sync rotate-key --new-key FILE`: re-encrypts the store online.
pub fn rotate_key(config: &Config, new_key: &Path, chunk: usize) -> anyhow::Result<ExitCode> {
    let s = &config.security;
    let base = config.path.parent().unwrap_or(Path::new("."));
    let new = StoreKey::load(
        &new_key.display().to_string(),
        base,
        s.algorithm,
        s.blind_algorithm,
    )?;
    let old = match Codec::from_config(config)? {
        Codec::Plain => None,
        Codec::Sealed(_) => {
            let active = StoreKey::load(
                s.key_file.as_deref().unwrap_or_default(),
                base,
                s.algorithm,
                s.blind_algorithm,
            )?;
            let mut previous = Vec::new();
            for f in &s.previous_key_files {
                previous.push(StoreKey::load(f, base, s.algorithm, s.blind_algorithm)?);
            }
            Some(Keyring::new(active, previous))
        }
    };
    let new_id = new.id_hex();
    let socket = crate::daemon::control::socket_path(config);
    if daemon_answers(&socket) {
        anyhow::bail!(
            "a daemon answers on {}: stop it first (systemctl stop community-sync). rotate-key rewrites the store in one transaction, and a daemon still running would go on writing under the old key",
            socket.display()
        );
    }
    let mut store = Store::open(&config.store.path)?;
    errln!(
        "re-encrypting {} under key id {new_id} in one transaction (stop the daemon first) …",
        store.path().display()
    );
    let report = codec::rotate(&mut store, old, new, chunk)?;
    outln!(
        "rotated to key id {}: {} rows rewritten ({} values re-encrypted, {} match keys re-blinded, {} dropped), {} audit rows re-keyed; recorded in the audit trail (key_rotated).",
        report.new_key,
        report.rows_rewritten,
        report.values_resealed,
        report.blinds_recomputed,
        report.blinds_dropped,
        report.audit_rows_rekeyed
    );
    outln!(
        "Now set [security] key_file to {} and start the daemon; the old key is no longer needed (keep it offline for old backups).",
        new_key.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether a daemon listens on its control socket.
fn daemon_answers(socket: &Path) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        false
    }
}

/// `community-sync audit verify`.
pub fn audit(config: &Config, cmd: &AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { json } => {
            let store = Store::open_configured(config)?;
            let report = crate::audit::verify(store.conn(), store.codec())?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.ok() {
                outln!(
                    "audit trail intact: {} rows ({} keyed with the store key), head {}",
                    report.rows,
                    report.keyed_rows,
                    report.head.as_deref().unwrap_or("-")
                );
            } else {
                outln!("audit trail BROKEN ({} rows checked):", report.rows);
                for p in &report.problems {
                    outln!("  row {}: {}", p.id, p.what);
                }
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
