//! SQL sources against the machine's real MariaDB and PostgreSQL: the simulator's vendor
//! tables are read with keyset pagination, values keep their meaning, ties across a page
//! boundary and late commits are caught, a full refresh deletes only after a complete read.
//! Outside CI a missing server skips these tests (with a line saying so); under CI it fails.

mod services;
mod sources_support;

use chrono::{Duration, NaiveDateTime, TimeZone};
use community_sync::pipeline;
use community_sync::sim::sqldb::{SqlFlavor, SqlVendor, SqlVendorOptions, FIRST_KEY};
use sources_support::{context, count, has_key, opts, records, rejects};

fn shanghai_now() -> NaiveDateTime {
    chrono_tz::Asia::Shanghai
        .from_utc_datetime(&chrono::Utc::now().naive_utc())
        .naive_local()
}

async fn vendor(flavor: SqlFlavor, rows: usize, seed: u64) -> SqlVendor {
    SqlVendor::start(
        flavor,
        SqlVendorOptions {
            seed,
            rows,
            orders_per_elder: 2,
            insert_batch: 500,
        },
    )
    .await
    .expect("the vendor's tables are created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_rows_arrive_with_their_values_exact() {
    if services::require(
        &services::MARIADB,
        "mariadb_rows_arrive_with_their_values_exact",
    )
    .is_none()
    {
        return;
    }
    let v = vendor(SqlFlavor::MariaDb, 1_500, 11).await;
    let truth = v.truth();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &v.source_toml("onecard_db", 200, 0));
    let report = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(report.failed_streams(), 0, "{:?}", report.streams);
    assert_eq!(records(&ctx, "cards"), truth.rows as i64);
    assert_eq!(
        rejects(&ctx, "id_number.check_digit"),
        truth.bad_check_digit as i64
    );
    assert_eq!(
        rejects(&ctx, "identity.missing"),
        truth.identity_missing as i64
    );
    assert_eq!(rejects(&ctx, "phone.invalid"), truth.phone_invalid as i64);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE status = 'ok'"
        ),
        truth.accepted as i64
    );
    // BIGINT keys above 2^53 arrive exactly (a float would make ...993 into ...992).
    assert!(has_key(&ctx, "cards", &FIRST_KEY.to_string()));
    assert!(has_key(&ctx, "cards", &(FIRST_KEY + 1).to_string()));
    // DECIMAL money is exact fen; DATETIME without zone is Asia/Shanghai; GBK text stored in
    // a latin1 column reads as Chinese.
    let mut db = mysql_conn().await;
    use mysql_async::prelude::Queryable;
    let rows: Vec<(i64, String, String)> = db
        .query(format!(
            "SELECT id, CAST(ye AS CHAR), DATE_FORMAT(kksj, '%Y-%m-%dT%H:%i:%s+08:00') FROM `{}` ORDER BY id LIMIT 50",
            v.person_table()
        ))
        .await
        .unwrap();
    let mut checked = 0;
    for (id, ye, opened) in rows {
        let got: Option<(i64, String)> = {
            let g = ctx.store.lock().unwrap();
            g.conn()
                .query_row(
                    "SELECT balance_fen, opened_at FROM card_accounts WHERE card_no = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok()
        };
        let Some((fen, at)) = got else { continue };
        let want: i64 = ye.replace('.', "").parse().unwrap();
        assert_eq!(fen, want, "card {id}: {ye} yuan");
        assert_eq!(at, opened, "card {id}");
        checked += 1;
    }
    assert!(checked > 40, "{checked} cards compared");
    let addresses = count(
        &ctx,
        "SELECT count(*) FROM persons WHERE address LIKE '江西省南昌市东湖区%'",
    );
    assert!(addresses > 1_000, "{addresses} GBK addresses decoded");
    drop(db);
    v.drop_tables().await.unwrap();
}

async fn mysql_conn() -> mysql_async::Conn {
    mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(3306)
            .user(Some("root"))
            .db_name(Some("test"))
            .prefer_socket(false),
    )
    .await
    .unwrap()
}

/// Ties on the watermark across a page boundary, a late commit with the cursor's watermark,
/// one below it (within lookback), and rows inside the settle window: none is lost.
async fn ties_and_late_commits(flavor: SqlFlavor, test: &str) {
    let service = match flavor {
        SqlFlavor::MariaDb => &services::MARIADB,
        SqlFlavor::Postgres => &services::POSTGRES,
    };
    if services::require(service, test).is_none() {
        return;
    }
    let mut v = vendor(flavor, 20, 12).await;
    let stream = match flavor {
        SqlFlavor::MariaDb => "cards",
        SqlFlavor::Postgres => "elders",
    };
    let toml = v.source_toml("dept", 4, 3).replacen(
        "settle_secs = 3",
        "settle_secs = 3\nlookback_secs = 60",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &toml);
    let base = v.truth().rows as i64;
    // Ten rows stamped with one watermark: pages of 4 cut through the tie twice.
    let t1 = (shanghai_now() - Duration::seconds(600)).with_nanosecond0();
    let tied = v.insert_at(10, t1).await.unwrap();
    let sync = |ctx| async move {
        let r = pipeline::ingest_sources(ctx, &opts()).await.unwrap();
        assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
        r
    };
    sync(&ctx).await;
    assert_eq!(records(&ctx, stream), base + 10);
    for k in &tied {
        assert!(has_key(&ctx, stream, &k.to_string()), "tied row {k}");
    }
    // Committed after that run, with the very watermark the cursor stopped at.
    let same = v.insert_at(1, t1).await.unwrap();
    sync(&ctx).await;
    assert!(
        has_key(&ctx, stream, &same[0].to_string()),
        "late row on the cursor's watermark"
    );
    // Committed late with a watermark below the cursor (a long transaction): lookback.
    let below = v.insert_at(1, t1 - Duration::seconds(30)).await.unwrap();
    sync(&ctx).await;
    assert!(
        has_key(&ctx, stream, &below[0].to_string()),
        "late row below the cursor"
    );
    // Inside the settle window: not read yet, so the cursor stays below it, and a row
    // committed late with an earlier watermark is still ahead of the cursor.
    let now = shanghai_now().with_nanosecond0();
    let fresh = v.insert_at(1, now).await.unwrap();
    sync(&ctx).await;
    assert!(
        !has_key(&ctx, stream, &fresh[0].to_string()),
        "read inside the settle window"
    );
    let late = v.insert_at(1, now - Duration::seconds(1)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    sync(&ctx).await;
    assert!(has_key(&ctx, stream, &fresh[0].to_string()));
    assert!(
        has_key(&ctx, stream, &late[0].to_string()),
        "late commit inside the settle window"
    );
    assert_eq!(records(&ctx, stream), base + 14);
    // Unchanged rows read again (the tie, the window) wrote nothing.
    assert_eq!(count(&ctx, "SELECT coalesce(sum(updated), 0) FROM runs"), 0);
    v.drop_tables().await.unwrap();
}

trait Whole {
    fn with_nanosecond0(self) -> Self;
}

impl Whole for NaiveDateTime {
    fn with_nanosecond0(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_ties_across_pages_and_late_commits_are_caught() {
    ties_and_late_commits(
        SqlFlavor::MariaDb,
        "mariadb_ties_across_pages_and_late_commits_are_caught",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ties_across_pages_and_late_commits_are_caught() {
    ties_and_late_commits(
        SqlFlavor::Postgres,
        "postgres_ties_across_pages_and_late_commits_are_caught",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_numeric_timestamptz_and_integer_watermark() {
    if services::require(
        &services::POSTGRES,
        "postgres_numeric_timestamptz_and_integer_watermark",
    )
    .is_none()
    {
        return;
    }
    let mut v = vendor(SqlFlavor::Postgres, 300, 13).await;
    let truth = v.truth();
    let toml = v.source_toml("eldercare_db", 64, 0).replacen(
        "cursor_format = \"integer\"",
        "cursor_format = \"integer\"\nlookback_ids = 5",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &toml);
    let r = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    assert_eq!(records(&ctx, "elders"), truth.rows as i64);
    assert_eq!(records(&ctx, "orders"), truth.orders as i64);
    assert_eq!(
        rejects(&ctx, "id_number.check_digit"),
        truth.bad_check_digit as i64
    );
    // numeric(12,2) to fen, exactly; timestamptz as +08:00.
    let (sum_fen, bad_time): (i64, i64) = {
        let g = ctx.store.lock().unwrap();
        g.conn()
            .query_row(
                "SELECT sum(amount_fen), sum(served_at NOT LIKE '%+08:00') FROM eldercare_orders",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (pg, conn) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let want: i64 = pg
        .query_one(
            &format!(
                "SELECT (sum(je) * 100)::bigint FROM \"{}\"",
                v.order_table()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum_fen, want);
    assert_eq!(bad_time, 0);
    // An order committed late with a version below the largest seen (allocated earlier,
    // committed after): lookback_ids re-reads it.
    let max: i64 = pg
        .query_one(
            &format!("SELECT max(bbh) FROM \"{}\"", v.order_table()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let elder = FIRST_KEY;
    v.execute(&format!(
        "INSERT INTO \"{}\" (order_id, elder_id, fwlx, je, fwsj, zt, bbh) VALUES (7, {elder}, '助餐', 12.34, now(), 'done', {})",
        v.order_table(),
        max - 2
    ))
    .await
    .unwrap();
    let r = pipeline::sync(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    assert!(
        has_key(&ctx, "orders", "7"),
        "late order below the integer watermark"
    );
    v.drop_tables().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refresh_deletes_only_after_a_complete_read() {
    if services::require(
        &services::POSTGRES,
        "full_refresh_deletes_only_after_a_complete_read",
    )
    .is_none()
    {
        return;
    }
    let mut v = vendor(SqlFlavor::Postgres, 200, 14).await;
    let t = v.person_table();
    let full = |extra: &str| {
        format!(
            r#"
[[sources]]
name = "elders_full"
type = "sql"
[sources.database]
url = "postgres://postgres@127.0.0.1:5432/test"
batch_size = 50
[[sources.streams]]
name = "elders"
entity = "elder"
mode = "full_refresh"
sql = "SELECT e.*{extra} FROM {t} e"
key = "elder_id"
[sources.streams.fields]
elder_no = "elder_id"
name = "xm"
id_number = "sfzh"
phone = "lxdh"
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &full(""));
    pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(records(&ctx, "elders"), 200);
    let gone: Vec<i64> = (0..3).map(|i| FIRST_KEY + 10 + i).collect();
    v.execute(&format!(
        "DELETE FROM \"{t}\" WHERE elder_id IN ({})",
        gone.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await
    .unwrap();
    // A read that fails on its third page (division by zero on one row) is not complete:
    // nothing is deleted.
    let boom = format!(
        ", 1 / (CASE WHEN e.elder_id = {} THEN 0 ELSE 1 END) AS boom",
        FIRST_KEY + 120
    );
    let broken = context(dir.path(), &full(&boom));
    let r = pipeline::ingest_sources(&broken, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 1);
    assert!(
        r.streams[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("division by zero"),
        "{:?}",
        r.streams[0].error
    );
    drop(broken);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        0
    );
    // A complete read deletes exactly the rows that are gone.
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM source_records WHERE deleted = 1"
        ),
        3
    );
    for k in gone {
        assert_eq!(
            count(
                &ctx,
                &format!("SELECT deleted FROM source_records WHERE source_key = '{k}'")
            ),
            1
        );
    }
    v.drop_tables().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_names_the_column_and_the_fix() {
    if services::require(
        &services::MARIADB,
        "check_connect_names_the_column_and_the_fix",
    )
    .is_none()
    {
        return;
    }
    let v = vendor(SqlFlavor::MariaDb, 10, 15).await;
    let dir = tempfile::tempdir().unwrap();
    let good = v.source_toml("onecard_db", 100, 5);
    let bad = good.replacen("phone = \"lxdh\"", "phone = \"lxdh_typo\"", 1);
    let path = sources_support::write_config(dir.path(), &bad);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args(["--config", path.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("fields.phone")
            && text.contains("lxdh_typo")
            && text.contains("127.0.0.1:3306/test"),
        "{text}"
    );
    // The good config's platform answers, so that every line of the check is ok.
    let platform = sources_support::accepting_platform();
    let path = sources_support::write_config_with_platform(dir.path(), &good, &platform);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args(["--config", path.to_str().unwrap(), "check", "--connect"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 row read with LIMIT 1"), "{text}");
    assert!(
        text.contains("date-time without zone, read in Asia/Shanghai"),
        "{text}"
    );
    v.drop_tables().await.unwrap();
}

/// The machine's PostgreSQL serves TLS with Debian's self-signed "snakeoil" certificate
/// (CN = localhost): trusted through `ca_file` the connection is made and verified; without
/// it the certificate is refused and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_verifies_the_server_against_ca_file() {
    if services::require(
        &services::POSTGRES,
        "postgres_tls_verifies_the_server_against_ca_file",
    )
    .is_none()
    {
        return;
    }
    let ca = std::path::Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if !ca.exists() {
        eprintln!("SKIPPED postgres_tls_verifies_the_server_against_ca_file: no {} (Debian's ssl-cert package) to trust", ca.display());
        return;
    }
    let v = vendor(SqlFlavor::Postgres, 5, 16).await;
    let dir = tempfile::tempdir().unwrap();
    let with_tls = |ca_line: &str| {
        v.source_toml("pg_tls", 100, 0)
            .replace(
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@localhost:5432/test",
            )
            .replace(
                "batch_size = 100",
                &format!("batch_size = 100\ntls = \"require\"\n{ca_line}"),
            )
    };
    let ctx = context(
        dir.path(),
        &with_tls(&format!("ca_file = {:?}", ca.display().to_string())),
    );
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    assert_eq!(r.failed_streams(), 0, "{:?}", r.streams);
    assert_eq!(records(&ctx, "elders"), 5);
    let dir2 = tempfile::tempdir().unwrap();
    let ctx = context(dir2.path(), &with_tls(""));
    let r = pipeline::ingest_sources(&ctx, &opts()).await.unwrap();
    let e = r.streams[0].error.clone().unwrap_or_default();
    assert!(
        e.contains("localhost:5432/test") && e.to_lowercase().contains("cert"),
        "{e}"
    );
    v.drop_tables().await.unwrap();
}

/// `bench --sql` at a small size, so that it cannot rot (no timing asserted).
#[test]
fn bench_sql_runs_at_a_small_size() {
    if services::require(&services::POSTGRES, "bench_sql_runs_at_a_small_size").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_community-sync"))
        .args([
            "--log-level",
            "warn",
            "bench",
            "--sql",
            "postgres",
            "--records",
            "1500",
            "--json",
            "--dir",
        ])
        .arg(dir.path().join("b"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    assert_eq!(json["initial"]["rows"], 1500);
    assert!(json["change_1pct"]["rows"].as_u64().unwrap() >= 15);
    assert!(json["initial"]["peak_rss_mb"].as_f64().unwrap() > 0.0);
}
