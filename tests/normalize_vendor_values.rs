//! Table tests with values shaped like the four department systems' (see
//! config/community-sync.toml): vendor A (one-card, pinyin keys, `%Y-%m-%d %H:%M:%S`, yuan
//! strings), B (volunteers, RFC 3339), C (elder care, epoch milliseconds, `%Y/%m/%d %H:%M`),
//! D (FHIR R4).

use chrono::NaiveDate;
use chrono_tz::Asia::Shanghai;
use community_sync::model::{Gender, RejectReason};
use community_sync::normalize::money::{to_fen, MoneyUnit};
use community_sync::normalize::{address, datetime, gender, id_number, name, phone};

#[test]
fn vendor_a_one_card() {
    // 36010219800101123 has check digit 5; a lower-case x where 5 belongs is caught.
    assert_eq!(
        id_number::normalize("360102 19800101 1235").map(|i| i.value),
        Ok("360102198001011235".to_string())
    );
    assert_eq!(
        id_number::normalize("36010219800101123x").map_err(|e| e.detail),
        Err("check digit is X, expected 5".to_string())
    );
    assert_eq!(gender::normalize("男"), Ok(Gender::Male));
    assert_eq!(gender::normalize("2"), Ok(Gender::Female));
    assert_eq!(
        datetime::parse_date("1980-01-01", None),
        Ok(NaiveDate::from_ymd_opt(1980, 1, 1).unwrap())
    );
    assert_eq!(
        datetime::parse_datetime("2024-05-01 10:00:00", Some("%Y-%m-%d %H:%M:%S"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:00:00+08:00")
    );
    assert_eq!(
        datetime::parse_datetime("20240501103000", Some("%Y%m%d%H%M%S"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:30:00+08:00")
    );
    assert_eq!(to_fen("35.50", MoneyUnit::Yuan), Ok(3550));
    assert_eq!(to_fen("1200", MoneyUnit::Fen), Ok(1200));
    assert_eq!(
        phone::normalize("138 1234 5678").as_deref(),
        Ok("13812345678")
    );
}

#[test]
fn vendor_b_volunteers() {
    assert_eq!(gender::normalize("MALE"), Ok(Gender::Male));
    assert_eq!(
        datetime::parse_datetime("2024-05-01T02:00:00Z", Some("rfc3339"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:00:00+08:00")
    );
    assert_eq!(
        name::normalize(" 热依拉・买买提 ").as_deref(),
        Ok("热依拉·买买提")
    );
    assert_eq!(
        phone::normalize("+86-138-1234-5678").as_deref(),
        Ok("13812345678")
    );
}

#[test]
fn vendor_c_elder_care() {
    assert_eq!(gender::normalize("F"), Ok(Gender::Female));
    assert_eq!(
        datetime::parse_datetime("1714528800000", Some("epoch_ms"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:00:00+08:00")
    );
    assert_eq!(
        datetime::parse_datetime("2024/05/01 10:00", Some("%Y/%m/%d %H:%M"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:00:00+08:00")
    );
    assert_eq!(to_fen("¥35.5", MoneyUnit::Yuan), Ok(3550));
    assert_eq!(
        to_fen("35.555", MoneyUnit::Yuan).map_err(|e| e.reason),
        Err(RejectReason::MoneyInvalid)
    );
    assert_eq!(
        phone::normalize("0791-86123456").as_deref(),
        Ok("0791-86123456")
    );
}

#[test]
fn vendor_d_fhir() {
    assert_eq!(gender::normalize("female"), Ok(Gender::Female));
    assert_eq!(gender::normalize("other"), Ok(Gender::Unstated));
    assert_eq!(gender::normalize("unknown"), Ok(Gender::Unknown));
    assert_eq!(
        datetime::parse_date("1980-01-01", None),
        Ok(NaiveDate::from_ymd_opt(1980, 1, 1).unwrap())
    );
    // An Encounter's period.start as a date: the date as written.
    assert_eq!(
        datetime::parse_date("2024-05-01T23:30:00+08:00", None),
        Ok(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap())
    );
    assert_eq!(
        datetime::parse_datetime("2024-05-01T10:00:00.000+08:00", Some("rfc3339"), Shanghai)
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Ok("2024-05-01T10:00:00+08:00")
    );
    let a = address::parse("江西省南昌市青山湖区上海路街道某某社区12栋1单元302室");
    assert_eq!(a.normalized_key(), "青山湖区|上海路街道|某某社区|12|1|302");
    assert_eq!(address::street_code(&a).as_deref(), Some("360111003"));
}

#[test]
fn rejects_never_quote_sensitive_values() {
    let bad_ids = [
        "36010219800101123Y",
        "360102198001011234",
        "990102198001011234",
        "360102198013011234",
    ];
    for raw in bad_ids {
        let e = id_number::normalize(raw).unwrap_err();
        assert!(!e.detail.contains(raw), "{e}");
        assert!(!e.detail.contains(&raw[..14]), "{e}");
    }
    for raw in ["1381234567", "12812345678", "0791-8612", "+1 415 555 2671"] {
        let e = phone::normalize(raw).unwrap_err();
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        assert!(!e.detail.contains(&digits), "{e}");
    }
}
