//! `community-sync report [--html FILE] [--json]`: the data-quality report.

use crate::cli::out::{errln, out, outln};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Also write the report as one self-contained HTML file (charts included, no external assets).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Builds the report from the configured store, prints it and writes the HTML if asked.
pub fn run(config: &Config, args: &ReportArgs) -> anyhow::Result<()> {
    let store = open_existing(config)?;
    let report = crate::report::collect(config, &store)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", crate::report::table::render(&report));
    }
    if let Some(path) = &args.html {
        let page = crate::report::html::render(&report);
        write_private(path, page.as_bytes()).with_context(|| {
            format!(
                "cannot write the HTML report to {}; check the directory exists and is writable",
                path.display()
            )
        })?;
        errln!("HTML report written to {}", path.display());
    }
    Ok(())
}

/// Opens a store that must already exist (a report or backup of a mistyped path should not
/// create an empty store there).
pub fn open_existing(config: &crate::config::Config) -> anyhow::Result<Store> {
    let path = &config.store.path;
    if !path.exists() {
        // A key that cannot be used is the first thing to fix, store or not.
        crate::store::Codec::from_config(config)?;
        anyhow::bail!(
            "store {} does not exist yet: the service makes it when it first starts (systemctl start community-sync), or `community-sync sync` does; if it should be there, check [store] path in the config (or --config)",
            path.display()
        );
    }
    Ok(Store::open_configured(config)?)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o640);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
