//! Property tests of the normalize functions: idempotence, the check digit catching every
//! single-digit change, and no panic on arbitrary input.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Asia::Shanghai;
use community_sync::model::{Gender, RejectReason};
use community_sync::normalize::money::{self, MoneyUnit};
use community_sync::normalize::{address, datetime, divisions, gender, id_number, name, phone};
use proptest::prelude::*;

/// A valid 18-character ID number: a real county, a birth date 1900..=2024, any sequence.
fn valid_id() -> impl Strategy<Value = String> {
    valid_id_born_within(45_000)
}

/// A valid ID number born within `max_days` days after 1900-01-01.
fn valid_id_born_within(max_days: i64) -> impl Strategy<Value = String> {
    let counties = divisions::county_codes();
    let n = counties.len();
    (0..n, 0i64..max_days, 0u32..1000).prop_map(move |(ci, days, seq)| {
        let birth = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + Duration::days(days);
        let first17 = format!("{}{}{seq:03}", counties[ci], birth.format("%Y%m%d"));
        let check = id_number::check_char(&first17).unwrap();
        format!("{first17}{check}")
    })
}

/// Strings that look a bit like the values the parsers expect, to reach deeper branches than
/// random Unicode does.
fn messy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9０-９xX+()（） .:/\\-_年月日号时分秒TZ转#]{0,30}",
        "[0-9]{0,20}",
        "[-+¥￥,.0-9元]{0,20}",
        "[张三李四·・•‧．. 　a-zA-Z]{0,12}",
        "[东湖区滕王阁街道豫章社区村镇乡栋单元室号楼座三二一十0-9 \\-]{0,30}",
    ]
}

proptest! {
    #[test]
    fn valid_ids_pass(id in valid_id()) {
        let got = id_number::normalize(&id).unwrap();
        prop_assert_eq!(&got.value, &id);
        prop_assert_eq!(got.birth_date.format("%Y%m%d").to_string(), &id[6..14]);
        let odd = (id.as_bytes()[16] - b'0') % 2 == 1;
        prop_assert_eq!(got.gender, if odd { Gender::Male } else { Gender::Female });
        prop_assert!(got.county_known);
        prop_assert!(!got.upgraded_from_15);
    }

    #[test]
    fn every_single_character_change_is_caught(id in valid_id(), pos in 0usize..18, shift in 1u32..11) {
        // Any other of the 11 symbols 0-9, X (X anywhere but last is a format error anyway).
        let symbols = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'X'];
        let mut chars: Vec<char> = id.chars().collect();
        let old = symbols.iter().position(|c| *c == chars[pos]).unwrap() as u32;
        let replacement = symbols[((old + shift) % 11) as usize];
        prop_assert_ne!(chars[pos], replacement);
        chars[pos] = replacement;
        let changed: String = chars.into_iter().collect();
        let e = id_number::normalize(&changed).unwrap_err();
        prop_assert!(matches!(
            e.reason,
            RejectReason::IdNumberCheckDigit
                | RejectReason::IdNumberBirthDate
                | RejectReason::IdNumberRegion
                | RejectReason::IdNumberFormat
        ));
        if pos == 17 {
            prop_assert_eq!(e.reason, RejectReason::IdNumberCheckDigit);
        }
        prop_assert!(!e.detail.contains(&changed));
    }

    #[test]
    fn upgraded_15_digit_ids_pass_and_are_stable(id in valid_id_born_within(36_524)) {
        prop_assert_eq!(&id[6..8], "19");
        let old = format!("{}{}", &id[..6], &id[8..17]);
        let got = id_number::normalize(&old).unwrap();
        prop_assert_eq!(&got.value, &id);
        prop_assert!(got.upgraded_from_15);
        let again = id_number::normalize(&got.value).unwrap();
        prop_assert_eq!(again.value, got.value);
    }

    #[test]
    fn id_number_is_idempotent(raw in prop_oneof![messy(), valid_id(), valid_id().prop_map(|s| format!(" {} ", s.to_lowercase()))]) {
        if let Ok(a) = id_number::normalize(&raw) {
            let b = id_number::normalize(&a.value).unwrap();
            prop_assert_eq!(&b.value, &a.value);
            prop_assert_eq!(b.birth_date, a.birth_date);
            prop_assert_eq!(b.gender, a.gender);
            prop_assert_eq!(&b.county_code, &a.county_code);
            prop_assert_eq!(b.county_known, a.county_known);
        }
    }

    #[test]
    fn mobiles_with_noise_normalize(
        second in 3u8..10,
        rest in "[0-9]{9}",
        prefix in prop::sample::select(vec!["", "+86", "+86 ", "0086", "86", "(+86)"]),
        sep in prop::sample::select(vec!["", " ", "-", "."]),
    ) {
        let digits = format!("1{second}{rest}");
        let spaced = format!("{prefix}{}{sep}{}{sep}{}", &digits[..3], &digits[3..7], &digits[7..]);
        prop_assert_eq!(phone::normalize(&spaced), Ok(digits.clone()));
        let full_width: String = spaced
            .chars()
            .map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
            .collect();
        prop_assert_eq!(phone::normalize(&full_width), Ok(digits));
    }

    #[test]
    fn phone_is_idempotent(raw in messy()) {
        if let Ok(p) = phone::normalize(&raw) {
            prop_assert_eq!(phone::normalize(&p), Ok(p.clone()));
            prop_assert!(p.len() == 11 || p.contains('-'));
        }
    }

    #[test]
    fn name_is_idempotent(raw in messy()) {
        if let Ok(n) = name::normalize(&raw) {
            prop_assert_eq!(name::normalize(&n), Ok(n.clone()));
            prop_assert!(!n.starts_with(' ') && !n.ends_with(' ') && !n.contains("  "));
            let ideographic_space = '\u{3000}';
            prop_assert!(!n.contains(ideographic_space));
        }
    }

    #[test]
    fn money_is_idempotent(raw in messy()) {
        for unit in [MoneyUnit::Yuan, MoneyUnit::Fen] {
            if let Ok(f) = money::to_fen(&raw, unit) {
                prop_assert_eq!(money::to_fen(&f.to_string(), MoneyUnit::Fen), Ok(f));
                if f != i64::MIN {
                    prop_assert_eq!(money::to_fen(&money::format_yuan(f), MoneyUnit::Yuan), Ok(f));
                }
            }
        }
    }

    #[test]
    fn money_is_exact(yuan in -9_999_999_999i64..9_999_999_999, fen in 0i64..100, commas: bool) {
        let int = if commas {
            let digits = yuan.unsigned_abs().to_string();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        } else {
            yuan.unsigned_abs().to_string()
        };
        let sign = if yuan < 0 { "-" } else { "" };
        let raw = format!("{sign}¥{int}.{fen:02}元");
        let want = (yuan.abs() * 100 + fen) * if yuan < 0 { -1 } else { 1 };
        prop_assert_eq!(money::to_fen(&raw, MoneyUnit::Yuan), Ok(want));
    }

    #[test]
    fn dates_round_trip(days in -700_000i64..2_900_000, secs in 0i64..86_400) {
        let date = NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + Duration::days(days.rem_euclid(3_000_000));
        prop_assume!(date.year() <= 9999);
        prop_assert_eq!(datetime::parse_date(&date.format("%Y-%m-%d").to_string(), None), Ok(date));
        prop_assert_eq!(datetime::parse_date(&date.format("%Y/%-m/%-d").to_string(), None), Ok(date));
        prop_assert_eq!(datetime::parse_date(&date.format("%Y年%-m月%-d日").to_string(), None), Ok(date));
        let naive = date.and_hms_opt(0, 0, 0).unwrap() + Duration::seconds(secs);
        // Before 1901 Shanghai used local mean time (+08:05:43), which RFC 3339 cannot write.
        if let Some(t) = Shanghai.from_local_datetime(&naive).earliest().filter(|_| date.year() > 1901) {
            let text = t.fixed_offset().to_rfc3339();
            let back = datetime::parse_datetime(&text, Some("rfc3339"), Shanghai).unwrap();
            prop_assert_eq!(back, t.fixed_offset());
            let back = datetime::parse_datetime(&naive.format("%Y-%m-%d %H:%M:%S").to_string(), None, Shanghai).unwrap();
            prop_assert_eq!(back, t.fixed_offset());
        }
    }

    #[test]
    fn nothing_panics(raw in messy()) {
        let _ = id_number::normalize(&raw);
        let _ = phone::normalize(&raw);
        let _ = gender::normalize(&raw);
        let _ = name::normalize(&raw);
        let _ = money::to_fen(&raw, MoneyUnit::Yuan);
        let _ = money::to_fen(&raw, MoneyUnit::Fen);
        let a = address::parse(&raw);
        let _ = a.normalized_key();
        let _ = address::street_code(&a);
        for f in [None, Some("auto"), Some("rfc3339"), Some("epoch_s"), Some("epoch_ms"), Some("excel"), Some("%Y-%m-%d %H:%M:%S"), Some("%Y%m%d%H%M%S"), Some("%s")] {
            let _ = datetime::parse_date(&raw, f);
            let _ = datetime::parse_datetime(&raw, f, Shanghai);
            let _ = datetime::parse_datetime(&raw, f, chrono_tz::America::New_York);
        }
        let _ = datetime::parse_date("2020-01-01", Some(&raw));
        let _ = datetime::parse_datetime("2020-01-01 10:00:00", Some(&raw), Shanghai);
    }
}
