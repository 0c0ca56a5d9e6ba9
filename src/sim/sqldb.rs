//! Simulated department databases (前置机 / 中间库) in the machine's real servers: a one-card
//! vendor that exposes its card accounts in MariaDB/MySQL, and an elder-care vendor that
//! exposes its elders and service orders in PostgreSQL. Each creates its own uniquely named
//! tables in the database `test`, fills them from a seed, mutates them for incremental tests
//! and drops them at the end ([`SqlVendor::drop_tables`]).
//!
//! What a real exchange database does to a reader, the tables do:
//! - keys are BIGINTs above 2^53 (a float reader loses them);
//! - money is DECIMAL/NUMERIC with cents (`ye DECIMAL(14,2)`, `je NUMERIC(12,2)`);
//! - the change time is a DATETIME / `timestamp` without zone in Asia/Shanghai, in runs of
//!   rows sharing one value (batch jobs stamp many rows at once);
//! - the one-card address column is `latin1` holding GBK bytes (a legacy application wrote
//!   GBK through a latin1 connection), read right only with `column_encoding = { dz = "gbk" }`;
//! - the service orders carry an integer version (`bbh`) as their watermark and a
//!   `timestamptz` service time;
//! - person columns have the HTTP vendors' dirt: names with inner or ideographic spaces,
//!   ID numbers with spaces / full-width digits / lower-case x, ~1 % with a wrong check digit
//!   (rejected whole: `id_number.check_digit`), ~2 % without an ID but with name and phone
//!   (kept), ~0.5 % with neither (`identity.missing`), phones with +86 / dashes / full-width
//!   digits, ~0.5 % not a phone (field reject `phone.invalid`).
//!
//! [`SqlTruth`] says what a correct pipeline keeps and rejects.

use std::fmt::Write as _;

use chrono::{Duration as ChronoDuration, NaiveDate, NaiveDateTime};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::names;
use super::SimError;
use crate::normalize::id_number::check_char;

/// Which server a vendor lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFlavor {
    /// The one-card vendor's card accounts, in MariaDB/MySQL (127.0.0.1:3306, root).
    MariaDb,
    /// The elder-care vendor's elders and orders, in PostgreSQL (127.0.0.1:5432, postgres).
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlVendorOptions {
    pub seed: u64,
    /// Person rows (card accounts or elders).
    pub rows: usize,
    /// Service orders per elder, on average (PostgreSQL only).
    pub orders_per_elder: usize,
    /// Rows per INSERT statement while filling.
    pub insert_batch: usize,
}

impl Default for SqlVendorOptions {
    fn default() -> Self {
        SqlVendorOptions {
            seed: 20240501,
            rows: 2_000,
            orders_per_elder: 2,
            insert_batch: 1_000,
        }
    }
}

/// What a correct pipeline keeps and rejects of the person table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlTruth {
    pub rows: usize,
    pub accepted: usize,
    /// Rows rejected whole for a wrong check digit.
    pub bad_check_digit: usize,
    /// Rows with neither ID number nor phone.
    pub identity_missing: usize,
    /// Kept rows whose phone is rejected alone.
    pub phone_invalid: usize,
    pub orders: usize,
}

/// The first key: 2^53 + 1, the first integer an f64 cannot hold.
pub const FIRST_KEY: i64 = 9_007_199_254_740_993;

enum Client {
    My(mysql_async::Conn),
    Pg(tokio_postgres::Client, tokio::task::JoinHandle<()>),
}

/// A simulated vendor database.
pub struct SqlVendor {
    pub flavor: SqlFlavor,
    /// Prefix of its table names (`sim_<pid>_<n>`).
    pub prefix: String,
    client: Client,
    truth: SqlTruth,
    rng: ChaCha8Rng,
    next_key: i64,
    next_version: i64,
}

/// A person row and what the pipeline must make of it.
struct PersonRow {
    key: i64,
    name: String,
    id_number: Option<String>,
    phone: Option<String>,
    birth: NaiveDate,
    address: String,
    code: u8,
    cents: i64,
    opened: NaiveDateTime,
    updated: NaiveDateTime,
}

fn sim_err(e: impl std::fmt::Display) -> SimError {
    SimError::Generate(e.to_string())
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn opt_lit(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL".to_string(), lit)
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            _ => c,
        })
        .collect()
}

impl SqlVendor {
    /// Connects as the machine's test account and creates and fills the tables.
    pub async fn start(flavor: SqlFlavor, opts: SqlVendorOptions) -> Result<SqlVendor, SimError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "sim_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            opts.seed % 1000
        );
        let client = match flavor {
            SqlFlavor::MariaDb => {
                let o = mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(3306)
                    .user(Some("root"))
                    .db_name(Some("test"))
                    .prefer_socket(false);
                let mut c = mysql_async::Conn::new(o).await.map_err(sim_err)?;
                c.query_drop("SET NAMES utf8mb4").await.map_err(sim_err)?;
                Client::My(c)
            }
            SqlFlavor::Postgres => {
                let (c, conn) = tokio_postgres::connect(
                    "host=127.0.0.1 port=5432 user=postgres dbname=test",
                    tokio_postgres::NoTls,
                )
                .await
                .map_err(sim_err)?;
                let h = tokio::spawn(async move {
                    let _ = conn.await;
                });
                Client::Pg(c, h)
            }
        };
        let mut v = SqlVendor {
            flavor,
            prefix,
            client,
            truth: SqlTruth::default(),
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            next_key: FIRST_KEY,
            next_version: 1,
        };
        v.create_tables().await?;
        v.fill(&opts).await?;
        Ok(v)
    }

    /// The person table's name (`<prefix>_card` or `<prefix>_elder`).
    pub fn person_table(&self) -> String {
        match self.flavor {
            SqlFlavor::MariaDb => format!("{}_card", self.prefix),
            SqlFlavor::Postgres => format!("{}_elder", self.prefix),
        }
    }

    /// The orders table (PostgreSQL only).
    pub fn order_table(&self) -> String {
        format!("{}_order", self.prefix)
    }

    pub fn truth(&self) -> SqlTruth {
        self.truth.clone()
    }

    /// Runs statements (tests mutate rows with it).
    pub async fn execute(&mut self, sql: &str) -> Result<(), SimError> {
        match &mut self.client {
            Client::My(c) => c.query_drop(sql).await.map_err(sim_err),
            Client::Pg(c, _) => c.batch_execute(sql).await.map_err(sim_err),
        }
    }

    async fn create_tables(&mut self) -> Result<(), SimError> {
        let t = self.person_table();
        let ddl = match self.flavor {
            SqlFlavor::MariaDb => format!(
                "CREATE TABLE `{t}` (
                    id BIGINT NOT NULL PRIMARY KEY,
                    xm VARCHAR(40) CHARACTER SET utf8mb4,
                    sfzh VARCHAR(40) CHARACTER SET utf8mb4,
                    lxdh VARCHAR(40) CHARACTER SET utf8mb4,
                    csrq DATE,
                    dz VARCHAR(200) CHARACTER SET latin1,
                    kzt CHAR(1),
                    ye DECIMAL(14,2),
                    kksj DATETIME,
                    gxsj DATETIME NOT NULL,
                    KEY gxsj_id (gxsj, id)
                ) ENGINE=InnoDB DEFAULT CHARSET=gbk"
            ),
            SqlFlavor::Postgres => format!(
                "CREATE TABLE \"{t}\" (
                    elder_id BIGINT PRIMARY KEY,
                    xm TEXT, sfzh VARCHAR(40), lxdh VARCHAR(40), csrq DATE, jzdz TEXT,
                    hldj SMALLINT, btje NUMERIC(12,2),
                    gxsj TIMESTAMP(3) WITHOUT TIME ZONE NOT NULL
                );
                CREATE INDEX \"{t}_gxsj\" ON \"{t}\" (gxsj, elder_id);
                CREATE TABLE \"{o}\" (
                    order_id BIGINT PRIMARY KEY, elder_id BIGINT NOT NULL, fwlx TEXT,
                    je NUMERIC(12,2), fwsj TIMESTAMPTZ, zt TEXT, bbh BIGINT NOT NULL
                );
                CREATE INDEX \"{o}_bbh\" ON \"{o}\" (bbh, order_id);",
                o = self.order_table()
            ),
        };
        self.execute(&ddl).await
    }

    /// Drops the vendor's tables.
    pub async fn drop_tables(mut self) -> Result<(), SimError> {
        let sql = match self.flavor {
            SqlFlavor::MariaDb => format!("DROP TABLE IF EXISTS `{}`", self.person_table()),
            SqlFlavor::Postgres => format!(
                "DROP TABLE IF EXISTS \"{}\"; DROP TABLE IF EXISTS \"{}\"",
                self.person_table(),
                self.order_table()
            ),
        };
        self.execute(&sql).await?;
        match self.client {
            Client::My(c) => {
                let _ = c.disconnect().await;
            }
            Client::Pg(c, h) => {
                drop(c);
                let _ = h.await;
            }
        }
        Ok(())
    }

    async fn fill(&mut self, opts: &SqlVendorOptions) -> Result<(), SimError> {
        // Change times: two years before 2026-01-01, in runs sharing one second.
        let mut at = NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(8, 0, 0))
            .ok_or_else(|| sim_err("bad anchor date"))?;
        let mut remaining = opts.rows;
        let mut batch: Vec<PersonRow> = Vec::with_capacity(opts.insert_batch);
        let mut run_left = 0;
        while remaining > 0 {
            if run_left == 0 {
                run_left = self.rng.random_range(1..=40);
                at += ChronoDuration::seconds(self.rng.random_range(1..=60));
            }
            run_left -= 1;
            let row = self.person_row(at);
            batch.push(row);
            remaining -= 1;
            if batch.len() >= opts.insert_batch || remaining == 0 {
                let rows = std::mem::take(&mut batch);
                self.insert_persons(&rows).await?;
                if self.flavor == SqlFlavor::Postgres && opts.orders_per_elder > 0 {
                    self.insert_orders(&rows, opts.orders_per_elder).await?;
                }
            }
        }
        Ok(())
    }

    fn person_row(&mut self, updated: NaiveDateTime) -> PersonRow {
        let rng = &mut self.rng;
        let male = rng.random_bool(0.5);
        let birth = NaiveDate::from_ymd_opt(
            rng.random_range(1935..=1965),
            rng.random_range(1..=12),
            rng.random_range(1..=28),
        )
        .unwrap_or_default();
        let seq: u32 = rng.random_range(0..500);
        let gender_digit = if male { seq * 2 % 10 + 1 } else { seq * 2 % 10 };
        let first17 = format!(
            "360102{}{:02}{}",
            birth.format("%Y%m%d"),
            seq % 100,
            gender_digit % 10
        );
        let check = check_char(&first17).unwrap_or('0');
        let clean_id = format!("{first17}{check}");
        let phone = format!(
            "1{}{:09}",
            rng.random_range(3..=9),
            rng.random_range(0..1_000_000_000u32)
        );
        let name = names::person_name(rng, male);
        let roll: f64 = rng.random();
        let (id_number, phone, outcome) = if roll < 0.01 {
            let wrong = if check == '0' { '1' } else { '0' };
            (Some(format!("{first17}{wrong}")), Some(phone), 1)
        } else if roll < 0.015 {
            (None, None, 2)
        } else if roll < 0.035 {
            (None, Some(phone), 0)
        } else if roll < 0.04 {
            (Some(clean_id.clone()), Some("1381234567".to_string()), 3)
        } else {
            let id = match rng.random_range(0..10) {
                0 => format!(
                    "{} {} {}",
                    &clean_id[..6],
                    &clean_id[6..14],
                    &clean_id[14..]
                ),
                1 => full_width(&clean_id),
                2 => clean_id.to_lowercase(),
                _ => clean_id.clone(),
            };
            let ph = match rng.random_range(0..10) {
                0 => format!("+86 {phone}"),
                1 => format!("{}-{}-{}", &phone[..3], &phone[3..7], &phone[7..]),
                2 => full_width(&phone),
                _ => phone,
            };
            (Some(id), Some(ph), 0)
        };
        let name = match rng.random_range(0..20) {
            0 => {
                let mut c = name.chars();
                let first: String = c.next().into_iter().collect();
                format!("{first} {}", c.as_str())
            }
            1 => format!("{name}\u{3000}"),
            _ => name,
        };
        match outcome {
            1 => self.truth.bad_check_digit += 1,
            2 => self.truth.identity_missing += 1,
            3 => {
                self.truth.accepted += 1;
                self.truth.phone_invalid += 1
            }
            _ => self.truth.accepted += 1,
        }
        self.truth.rows += 1;
        let key = self.next_key;
        self.next_key += 1;
        let rng = &mut self.rng;
        PersonRow {
            key,
            name,
            id_number,
            phone,
            birth,
            address: format!(
                "江西省南昌市东湖区{}社区{}栋{}室",
                names::community_name(rng),
                rng.random_range(1..40),
                rng.random_range(101..1800)
            ),
            code: rng.random_range(1..=3),
            cents: rng.random_range(0..1_000_000_000i64),
            opened: updated - ChronoDuration::days(rng.random_range(30..3000)),
            updated,
        }
    }

    async fn insert_persons(&mut self, rows: &[PersonRow]) -> Result<(), SimError> {
        let t = self.person_table();
        let mut sql = String::new();
        match self.flavor {
            SqlFlavor::MariaDb => {
                let _ = write!(
                    sql,
                    "INSERT INTO `{t}` (id, xm, sfzh, lxdh, csrq, dz, kzt, ye, kksj, gxsj) VALUES "
                );
                for (i, r) in rows.iter().enumerate() {
                    let (gbk, _, _) = encoding_rs::GBK.encode(&r.address);
                    let _ = write!(
                        sql,
                        "{}({}, {}, {}, {}, '{}', X'{}', '{}', {}.{:02}, '{}', '{}')",
                        if i > 0 { "," } else { "" },
                        r.key,
                        lit(&r.name),
                        opt_lit(&r.id_number),
                        opt_lit(&r.phone),
                        r.birth,
                        hex::encode(gbk),
                        r.code,
                        r.cents / 100,
                        r.cents % 100,
                        r.opened.format("%Y-%m-%d %H:%M:%S"),
                        r.updated.format("%Y-%m-%d %H:%M:%S")
                    );
                }
            }
            SqlFlavor::Postgres => {
                let _ = write!(sql, "INSERT INTO \"{t}\" (elder_id, xm, sfzh, lxdh, csrq, jzdz, hldj, btje, gxsj) VALUES ");
                for (i, r) in rows.iter().enumerate() {
                    let _ = write!(
                        sql,
                        "{}({}, {}, {}, {}, '{}', {}, {}, {}.{:02}, '{}')",
                        if i > 0 { "," } else { "" },
                        r.key,
                        lit(&r.name),
                        opt_lit(&r.id_number),
                        opt_lit(&r.phone),
                        r.birth,
                        lit(&r.address),
                        r.code,
                        r.cents % 100_000 / 100,
                        r.cents % 100,
                        r.updated.format("%Y-%m-%d %H:%M:%S%.3f")
                    );
                }
            }
        }
        self.execute(&sql).await
    }

    async fn insert_orders(&mut self, elders: &[PersonRow], mean: usize) -> Result<(), SimError> {
        let o = self.order_table();
        let mut values = Vec::new();
        for e in elders {
            let n = self.rng.random_range(0..=2 * mean);
            for _ in 0..n {
                let id = self.next_key + 1_000_000_000;
                self.next_key += 1;
                let version = self.next_version;
                self.next_version += self.rng.random_range(0..=1);
                let cents: i64 = self.rng.random_range(1000..100_000);
                values.push(format!(
                    "({id}, {}, {}, {}.{:02}, '{}+08', 'done', {version})",
                    e.key,
                    lit(["助餐", "助浴", "助洁", "助医"][self.rng.random_range(0..4)]),
                    cents / 100,
                    cents % 100,
                    e.updated.format("%Y-%m-%d %H:%M:%S")
                ));
                self.truth.orders += 1;
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO \"{o}\" (order_id, elder_id, fwlx, je, fwsj, zt, bbh) VALUES {}",
            values.join(",")
        );
        self.execute(&sql).await
    }

    /// Adds `n` clean person rows whose change time is `at` (wall time in Asia/Shanghai);
    /// returns their keys.
    pub async fn insert_at(&mut self, n: usize, at: NaiveDateTime) -> Result<Vec<i64>, SimError> {
        let mut rows = Vec::with_capacity(n);
        while rows.len() < n {
            let before = self.truth.clone();
            let r = self.person_row(at);
            // Only rows a pipeline keeps, so that counts in tests are exact.
            if self.truth.accepted > before.accepted
                && self.truth.phone_invalid == before.phone_invalid
            {
                rows.push(r);
            } else {
                self.truth = before;
            }
        }
        self.insert_persons(&rows).await?;
        Ok(rows.iter().map(|r| r.key).collect())
    }

    /// Changes the balance (or care level) of the rows with these keys and stamps them `at`.
    pub async fn touch(&mut self, keys: &[i64], at: NaiveDateTime) -> Result<(), SimError> {
        if keys.is_empty() {
            return Ok(());
        }
        let list = keys
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let at = at.format("%Y-%m-%d %H:%M:%S");
        let sql = match self.flavor {
            SqlFlavor::MariaDb => format!(
                "UPDATE `{}` SET ye = ye + 1.01, gxsj = '{at}' WHERE id IN ({list})",
                self.person_table()
            ),
            SqlFlavor::Postgres => format!(
                "UPDATE \"{}\" SET hldj = hldj % 3 + 1, gxsj = '{at}' WHERE elder_id IN ({list})",
                self.person_table()
            ),
        };
        self.execute(&sql).await
    }

    /// The `[[sources]]` block that reads this vendor (no TLS: loopback), with the code table
    /// its one-card status needs.
    pub fn source_toml(&self, name: &str, batch_size: u64, settle_secs: u64) -> String {
        let t = self.person_table();
        match self.flavor {
            SqlFlavor::MariaDb => format!(
                r#"
[[sources]]
name = "{name}"
type = "sql"
schedule = "*/5 * * * *"
[sources.database]
url = "mysql://root@127.0.0.1:3306/test"
batch_size = {batch_size}
statement_timeout_secs = 60
[[sources.streams]]
name = "cards"
entity = "card_account"
table = "{t}"
key = "id"
column_encoding = {{ dz = "gbk" }}
[sources.streams.incremental]
cursor_field = "gxsj"
settle_secs = {settle_secs}
[sources.streams.fields]
card_no = "id"
name = "xm"
id_number = "sfzh"
phone = "lxdh"
birth_date = "csrq"
address = "dz"
card_status = {{ path = "kzt", map = "sim_card_status" }}
balance_fen = {{ path = "ye", unit = "yuan" }}
opened_at = "kksj"
"#
            ),
            SqlFlavor::Postgres => format!(
                r#"
[[sources]]
name = "{name}"
type = "sql"
schedule = "*/5 * * * *"
[sources.database]
url = "postgres://postgres@127.0.0.1:5432/test"
batch_size = {batch_size}
[[sources.streams]]
name = "elders"
entity = "elder"
table = "public.{t}"
key = "elder_id"
[sources.streams.incremental]
cursor_field = "gxsj"
settle_secs = {settle_secs}
[sources.streams.fields]
elder_no = "elder_id"
name = "xm"
id_number = "sfzh"
phone = "lxdh"
birth_date = "csrq"
address = "jzdz"
care_level = "hldj"
[[sources.streams]]
name = "orders"
entity = "eldercare_order"
sql = "SELECT o.order_id, o.elder_id, o.fwlx, o.je, o.fwsj, o.zt, o.bbh FROM {o} o"
key = "order_id"
link = {{ stream = "elders", field = "elder_no" }}
[sources.streams.incremental]
cursor_field = "bbh"
cursor_format = "integer"
[sources.streams.fields]
elder_no = "elder_id"
service_type = "fwlx"
amount_fen = {{ path = "je", unit = "yuan" }}
served_at = "fwsj"
order_status = "zt"
"#,
                o = self.order_table()
            ),
        }
    }
}

/// The code table the one-card vendor's `kzt` column needs, as TOML.
pub const SQL_CODE_TABLES: &str = r#"
[code_tables.sim_card_status]
"1" = "active"
"2" = "frozen"
"3" = "cancelled"
"#;
