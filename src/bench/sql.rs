//! `community-sync bench --sql mariadb|postgres`: a SQL stream of `--records` rows in the
//! machine's real server (the simulator's vendor tables, in database `test`), synced by a
//! child `sync --no-push --json` process: the initial read of the whole table (keyset pages
//! of `batch_size` rows, an incremental stream without a cursor yet), then a 1 % change
//! cycle. Reports rows/s of the stream (read + map + store), reconcile seconds, and the
//! child's peak RSS, the figure that shows memory stays flat whatever the table's size.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use super::{fresh_dir, BenchArgs};
use crate::sim::sqldb::{SqlFlavor, SqlVendor, SqlVendorOptions, FIRST_KEY, SQL_CODE_TABLES};

/// What one child sync did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SqlCycle {
    pub rows: u64,
    pub stream_secs: f64,
    pub rows_per_sec: f64,
    pub reconcile_records: u64,
    pub wall_secs: f64,
    pub peak_rss_mb: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SqlBench {
    pub flavor: String,
    pub rows: u64,
    pub fill_secs: f64,
    pub initial: SqlCycle,
    pub change_1pct: SqlCycle,
}

pub async fn run(args: &BenchArgs, flavor: &str) -> anyhow::Result<SqlBench> {
    let flavor_kind = match flavor {
        "mariadb" => SqlFlavor::MariaDb,
        _ => SqlFlavor::Postgres,
    };
    fresh_dir(&args.dir)?;
    let dir = std::path::absolute(&args.dir)?;
    eprintln!("bench: filling {} rows into {flavor} …", args.records);
    let started = Instant::now();
    let mut vendor = SqlVendor::start(
        flavor_kind,
        SqlVendorOptions {
            seed: 20240501,
            rows: args.records as usize,
            orders_per_elder: 0,
            insert_batch: 2_000,
        },
    )
    .await
    .with_context(|| {
        format!("cannot create the vendor's tables in {flavor} (is the server running?)")
    })?;
    let fill_secs = started.elapsed().as_secs_f64();
    let result = measure(&mut vendor, &dir, flavor, args, fill_secs).await;
    vendor.drop_tables().await?;
    let report = result?;
    print(&report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report)
}

async fn measure(
    vendor: &mut SqlVendor,
    dir: &Path,
    flavor: &str,
    args: &BenchArgs,
    fill_secs: f64,
) -> anyhow::Result<SqlBench> {
    let config = write_config(vendor, dir, &args.cipher)?;
    eprintln!("bench: initial sync of the SQL stream …");
    let initial = child_sync(&config).await?;
    // 1 % of the rows change (their balance or care level), stamped a minute ago.
    let n = (args.records / 100).max(1) as i64;
    let at = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local()
        - chrono::Duration::seconds(60);
    let keys: Vec<i64> = (0..n)
        .map(|i| FIRST_KEY + i * 97 % args.records as i64)
        .collect();
    for chunk in keys.chunks(5_000) {
        vendor.touch(chunk, at).await?;
    }
    eprintln!("bench: 1 % change cycle …");
    let change_1pct = child_sync(&config).await?;
    Ok(SqlBench {
        flavor: flavor.to_string(),
        rows: args.records,
        fill_secs,
        initial,
        change_1pct,
    })
}

/// The vendor's source with the store sealed as `--cipher` asks (as the HTTP bench does).
fn write_config(
    vendor: &SqlVendor,
    dir: &Path,
    cipher: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let key = dir.join("store-key");
    crate::crypto::write_new_key_file(&key)
        .with_context(|| format!("cannot write {}", key.display()))?;
    let security = match cipher {
        "none" => "[security]\nencrypt = false\n".to_string(),
        c => format!(
            "[security]\nkey_file = {:?}\nalgorithm = {c:?}\n",
            key.display().to_string()
        ),
    };
    let text = format!(
        "timezone = \"Asia/Shanghai\"\n[store]\npath = {:?}\n{security}[platform]\nurl = \"http://127.0.0.1:9/events\"\n{}\n{SQL_CODE_TABLES}",
        dir.join("store.db").display().to_string(),
        vendor.source_toml("bench_db", 1_000, 0)
    );
    let path = dir.join("community-sync.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

async fn child_sync(config: &Path) -> anyhow::Result<SqlCycle> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let started = Instant::now();
    let out = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["--log-level", "warn", "sync", "--no-push", "--json"])
        .output()
        .await
        .context("cannot run the sync child process")?;
    let wall_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "sync child failed: {}{}",
        crate::mask::scrub_text(&String::from_utf8_lossy(&out.stderr)),
        crate::mask::scrub_text(&String::from_utf8_lossy(&out.stdout))
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("sync --json output")?;
    let stream = v
        .get("streams")
        .and_then(|s| s.get(0))
        .ok_or_else(|| anyhow::anyhow!("sync --json reported no stream"))?;
    let rows = stream.get("fetched").and_then(|x| x.as_u64()).unwrap_or(0);
    let stream_secs = stream
        .get("seconds")
        .and_then(|x| x.as_f64())
        .unwrap_or(0.0);
    Ok(SqlCycle {
        rows,
        stream_secs,
        rows_per_sec: if stream_secs > 0.0 {
            rows as f64 / stream_secs
        } else {
            0.0
        },
        reconcile_records: v
            .pointer("/reconcile/records")
            .and_then(|x| x.as_u64())
            .unwrap_or(0),
        wall_secs,
        peak_rss_mb: v.get("peak_rss_mb").and_then(|x| x.as_f64()).unwrap_or(0.0),
    })
}

fn print(r: &SqlBench) {
    println!(
        "SQL stream ({}), {} rows (filled in {:.1} s)",
        r.flavor, r.rows, r.fill_secs
    );
    for (what, c) in [
        ("initial sync", &r.initial),
        ("1 % change cycle", &r.change_1pct),
    ] {
        println!(
            "  {what:<17} {:>9} rows in {:>7.1} s = {:>8.0} rows/s (read + map + store); reconcile of {} records; wall {:.1} s; peak RSS {:.1} MiB",
            c.rows, c.stream_secs, c.rows_per_sec, c.reconcile_records, c.wall_secs, c.peak_rss_mb
        );
    }
}
