//! The ledger generator: elder-visit ledgers (高龄老人走访台账) as community workers keep
//! them, in XLSX (rust_xlsxwriter, a dev-dependency: the production binary never writes
//! spreadsheets) and in GBK CSV. Real ones look like this: a merged title row and a
//! "填报单位" row above the header, blank lines between blocks, a 合计 row at the bottom,
//! birth dates as Excel date cells or bare serial numbers or 1950年3月4日, phones typed as
//! numbers, full-width digits, and some rows a machine must refuse. [`Ledger::expect`] says,
//! row by row (numbered as the spreadsheet shows them), what a correct ingest does.
#![allow(dead_code)]

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a correct ingest makes of one data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Kept,
    /// Kept, with this field rejected alone (reason code).
    FieldRejected(&'static str),
    /// Rejected whole (reason code).
    Rejected(&'static str),
}

#[derive(Debug, Clone)]
pub struct Expect {
    /// The row as the spreadsheet (or a text editor, for CSV) numbers it.
    pub row: usize,
    /// 档案编号, empty for a row without one.
    pub key: String,
    pub outcome: Outcome,
}

pub struct Ledger {
    pub expect: Vec<Expect>,
}

pub const HEADERS: [&str; 7] = [
    "序号",
    "档案编号",
    "姓名",
    "身份证号",
    "联系电话",
    "出生日期",
    "护理等级",
];

/// The stream block that reads these ledgers (headers as the mapping's paths).
pub fn stream_toml(folder: &str, semantics: &str) -> String {
    format!(
        r#"
[[sources.streams]]
name = "{folder}"
entity = "elder"
semantics = "{semantics}"
key = "档案编号"
[sources.streams.fields]
elder_no = "档案编号"
name = "姓名"
id_number = "身份证号"
phone = "联系电话"
birth_date = "出生日期"
care_level = "护理等级"
"#
    )
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn id_for(birth: NaiveDate, seq: u32) -> String {
    let first17 = format!("360102{}{:03}", birth.format("%Y%m%d"), seq % 1000);
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(weights)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{first17}{check}")
}

/// One generated row: cells as text, how the birth date is written, and the outcome.
struct Row {
    no: usize,
    key: String,
    name: String,
    id: String,
    phone: String,
    phone_as_number: bool,
    birth: NaiveDate,
    birth_style: u8,
    level: String,
    outcome: Outcome,
}

fn rows(seed: u64, n: usize) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let surnames = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周"];
    let given = [
        "秀英", "桂兰", "建国", "玉兰", "德明", "淑珍", "国华", "凤英", "志强", "美华",
    ];
    (0..n)
        .map(|i| {
            let birth = NaiveDate::from_ymd_opt(
                rng.random_range(1956..=1964),
                rng.random_range(1..=12),
                rng.random_range(1..=28),
            )
            .unwrap();
            let id = id_for(birth, i as u32 * 7 + 1);
            let phone = format!(
                "1{}{:09}",
                rng.random_range(3..=9),
                rng.random_range(0..1_000_000_000u32)
            );
            let mut r = Row {
                no: i + 1,
                key: format!("LR-{:05}", i + 1),
                name: format!(
                    "{}{}",
                    surnames[rng.random_range(0..10)],
                    given[rng.random_range(0..10)]
                ),
                id: id.clone(),
                phone: phone.clone(),
                phone_as_number: rng.random_bool(0.4),
                birth,
                birth_style: rng.random_range(0..3),
                level: rng.random_range(1..=3).to_string(),
                outcome: Outcome::Kept,
            };
            match i % 25 {
                3 => r.id = full_width(&id),
                5 => r.phone = full_width(&phone),
                7 => {
                    // Wrong check digit.
                    let last = id.chars().last().unwrap();
                    r.id = format!("{}{}", &id[..17], if last == '0' { '1' } else { '0' });
                    r.outcome = Outcome::Rejected("id_number.check_digit");
                }
                11 => {
                    r.phone = "1381234567".into();
                    r.phone_as_number = false;
                    r.outcome = Outcome::FieldRejected("phone.invalid");
                }
                13 => {
                    r.id = String::new();
                    r.phone = String::new();
                    r.outcome = Outcome::Rejected("identity.missing");
                }
                17 => {
                    r.key = String::new();
                    r.outcome = Outcome::Rejected("key.missing");
                }
                19 => {
                    r.name = format!("{} ", r.name.chars().next().unwrap())
                        + &r.name.chars().skip(1).collect::<String>()
                }
                _ => {}
            }
            r
        })
        .collect()
}

/// Excel's serial day number of a date (1900 system).
fn serial(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1899, 12, 30).unwrap()).num_days()
}

/// Writes an XLSX ledger of `n` rows to `path`.
pub fn xlsx(path: &std::path::Path, seed: u64, n: usize) -> Ledger {
    use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("走访台账").unwrap();
    let title = Format::new().set_bold().set_align(FormatAlign::Center);
    let date = Format::new().set_num_format("yyyy-mm-dd");
    ws.merge_range(
        0,
        0,
        0,
        6,
        "青山湖区某社区高龄老人走访台账（2024年）",
        &title,
    )
    .unwrap();
    ws.merge_range(
        1,
        0,
        1,
        6,
        "填报单位：某社区居委会        填报日期：2024年5月1日",
        &Format::new(),
    )
    .unwrap();
    for (c, h) in HEADERS.iter().enumerate() {
        ws.write_string(2, c as u16, *h).unwrap();
    }
    let mut expect = Vec::new();
    let mut r: u32 = 3; // 0-based sheet row
    for (i, row) in rows(seed, n).into_iter().enumerate() {
        if i > 0 && i % 40 == 0 {
            r += 1; // a blank line between blocks
        }
        ws.write_number(r, 0, row.no as f64).unwrap();
        ws.write_string(r, 1, &row.key).unwrap();
        ws.write_string(r, 2, &row.name).unwrap();
        ws.write_string(r, 3, &row.id).unwrap();
        if row.phone_as_number
            && !row.phone.is_empty()
            && row.phone.bytes().all(|b| b.is_ascii_digit())
        {
            ws.write_number(r, 4, row.phone.parse::<f64>().unwrap())
                .unwrap();
        } else {
            ws.write_string(r, 4, &row.phone).unwrap();
        }
        match row.birth_style {
            0 => {
                let d = ExcelDateTime::from_ymd(
                    row.birth.format("%Y").to_string().parse().unwrap(),
                    row.birth.format("%m").to_string().parse().unwrap(),
                    row.birth.format("%d").to_string().parse().unwrap(),
                )
                .unwrap();
                ws.write_datetime_with_format(r, 5, &d, &date).unwrap();
            }
            1 => {
                ws.write_number(r, 5, serial(row.birth) as f64).unwrap();
            }
            _ => {
                ws.write_string(r, 5, row.birth.format("%Y年%-m月%-d日").to_string())
                    .unwrap();
            }
        }
        ws.write_string(r, 6, &row.level).unwrap();
        expect.push(Expect {
            row: r as usize + 1,
            key: row.key,
            outcome: row.outcome,
        });
        r += 1;
    }
    r += 1;
    ws.write_string(r, 0, "合计").unwrap();
    ws.write_string(r, 2, format!("共 {n} 人")).unwrap();
    wb.save(path).unwrap();
    Ledger { expect }
}

/// Writes a GBK CSV ledger of `n` rows to `path` (CRLF, as Excel saves "CSV (逗号分隔)").
pub fn gbk_csv(path: &std::path::Path, seed: u64, n: usize) -> Ledger {
    let mut text = String::new();
    text.push_str("青山湖区某社区高龄老人走访台账（2024年）,,,,,,\r\n");
    text.push_str(",,,,,,\r\n");
    text.push_str(&HEADERS.join(","));
    text.push_str("\r\n");
    let mut line = 3;
    let mut expect = Vec::new();
    for (i, row) in rows(seed, n).into_iter().enumerate() {
        if i > 0 && i % 40 == 0 {
            text.push_str(",,,,,,\r\n");
            line += 1;
        }
        let birth = match row.birth_style {
            0 => row.birth.format("%Y/%-m/%-d").to_string(),
            1 => serial(row.birth).to_string(),
            _ => row.birth.format("%Y年%-m月%-d日").to_string(),
        };
        line += 1;
        text.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            row.no, row.key, row.name, row.id, row.phone, birth, row.level
        ));
        expect.push(Expect {
            row: line,
            key: row.key,
            outcome: row.outcome,
        });
    }
    text.push_str(&format!("合计,,共{n}人,,,,\r\n"));
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    std::fs::write(path, bytes).unwrap();
    Ledger { expect }
}
