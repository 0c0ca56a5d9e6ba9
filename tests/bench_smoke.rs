//! A small run of `community-sync bench`, so the benchmark cannot rot. No timing is asserted:
//! only that every figure is produced and the steady state writes nothing. The JetStream drain
//! needs the machine's NATS server (tests/services): skipped with a reason where it is missing.

mod services;

use std::process::Command;

#[test]
fn bench_produces_every_figure_on_a_small_population() {
    let dir = tempfile::tempdir().unwrap();
    let nats = services::require(&services::NATS, "bench_smoke's JetStream drain").is_some();
    let out = Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args([
            "--log-level",
            "warn",
            "bench",
            "--records",
            "3000",
            "--json",
            "--dir",
        ])
        .arg(dir.path())
        .args(if nats {
            &[][..]
        } else {
            &["--no-jetstream"][..]
        })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in [
        "initial sync",
        "parse limit",
        "write limit",
        "push drain",
        "no-change cycle",
        "1% change cycle",
        "peak RSS",
    ] {
        assert!(stdout.contains(figure), "missing {figure:?} in:\n{stdout}");
    }
    let json_start = stdout.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout[json_start..]).unwrap();
    assert!(v["source_records"].as_u64().unwrap() > 2000);
    assert_eq!(
        v["no_change_rows_written"].as_u64(),
        Some(0),
        "a no-change cycle writes nothing"
    );
    assert!(v["rows_written"].as_u64().unwrap() > v["source_records"].as_u64().unwrap());
    assert!(v["change_1pct_records"].as_u64().unwrap() > 0);
    assert!(v["change_1pct_rows_written"].as_u64().unwrap() > 0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 1.0);
    assert!(v["push_events"].as_u64().unwrap() > 0);
    if nats {
        assert!(stdout.contains("JetStream drain"), "{stdout}");
        assert_eq!(
            v["jetstream_events"].as_u64(),
            v["push_events"].as_u64(),
            "the same outbox, drained both ways"
        );
    }
}
