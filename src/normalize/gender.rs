//! GB/T 2261.1 gender codes: 0 未知的性别, 1 男性, 2 女性, 9 未说明的性别.

use crate::model::{Gender, Reject, RejectReason};
use crate::normalize::id_number::IdNumber;

/// Reads a gender from its common spellings: GB/T 2261.1 codes (`1`, `2`, `0`, `9`, also
/// `01`/`02`), Chinese (`男`, `女`, `男性`, `女性`, `未知`, `未说明`, ...), English
/// (`M`, `F`, `male`, `female`, `unknown`, `U`) and FHIR (`other` → 9). Case-insensitive;
/// full-width and surrounding spaces are accepted.
pub fn normalize(raw: &str) -> Result<Gender, Reject> {
    let s = crate::normalize::text::clean(raw).to_lowercase();
    let s = s.trim_end_matches('.');
    Ok(match s {
        "1" | "01" | "男" | "男性" | "男士" | "m" | "male" | "man" => Gender::Male,
        "2" | "02" | "女" | "女性" | "女士" | "f" | "female" | "woman" => Gender::Female,
        "0" | "00" | "未知" | "未知的性别" | "不详" | "u" | "unknown" => Gender::Unknown,
        "9" | "09" | "未说明" | "未说明的性别" | "其他" | "其它" | "other" | "unspecified"
        | "not stated" => Gender::Unstated,
        "" => {
            return Err(Reject::new(RejectReason::GenderInvalid, "gender is empty"));
        }
        _ => {
            return Err(Reject::new(
                RejectReason::GenderInvalid,
                format!(
                    "a {}-character value is not a known gender spelling (expected 1/2/0/9, 男/女, M/F, male/female/unknown/other)",
                    s.chars().count()
                ),
            ))
        }
    })
}

/// True when a stated gender (male or female) disagrees with the gender encoded in the ID
/// number's sequence digit: a review flag, not a reject. Unknown and unstated never
/// contradict.
pub fn contradicts_id(gender: Gender, id: &IdNumber) -> bool {
    matches!(gender, Gender::Male | Gender::Female) && gender != id.gender
}

/// The same check on an already normalized 18-digit number (its 17th digit: odd = male),
/// without parsing it again.
pub fn contradicts_id_number(gender: Gender, id18: &str) -> bool {
    let encoded = match id18.as_bytes().get(16) {
        Some(d) if d.is_ascii_digit() => {
            if (d - b'0') % 2 == 1 {
                Gender::Male
            } else {
                Gender::Female
            }
        }
        _ => return false,
    };
    matches!(gender, Gender::Male | Gender::Female) && gender != encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradiction_on_a_normalized_number() {
        assert!(contradicts_id_number(Gender::Female, "11010519491231001X"));
        assert!(!contradicts_id_number(Gender::Male, "11010519491231001X"));
        assert!(!contradicts_id_number(
            Gender::Unknown,
            "11010519491231001X"
        ));
        assert!(!contradicts_id_number(Gender::Male, "short"));
    }

    #[test]
    fn spellings() {
        let cases = [
            ("1", Gender::Male),
            ("男", Gender::Male),
            ("男性", Gender::Male),
            (" 男 ", Gender::Male),
            ("M", Gender::Male),
            ("m", Gender::Male),
            ("Male", Gender::Male),
            ("MALE", Gender::Male),
            ("ｍａｌｅ", Gender::Male),
            ("１", Gender::Male),
            ("2", Gender::Female),
            ("女", Gender::Female),
            ("女性", Gender::Female),
            ("F", Gender::Female),
            ("female", Gender::Female),
            ("Ｆ", Gender::Female),
            ("0", Gender::Unknown),
            ("未知", Gender::Unknown),
            ("未知的性别", Gender::Unknown),
            ("unknown", Gender::Unknown),
            ("9", Gender::Unstated),
            ("未说明", Gender::Unstated),
            ("未说明的性别", Gender::Unstated),
            ("other", Gender::Unstated),
            ("Other", Gender::Unstated),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), Ok(want), "{raw:?}");
        }
        assert_eq!(Gender::Male.code(), 1);
        assert_eq!(Gender::Unstated.code(), 9);
    }

    #[test]
    fn rejects() {
        for raw in ["", "  ", "3", "x", "男女", "malee", "10"] {
            let e = normalize(raw).unwrap_err();
            assert_eq!(e.reason, RejectReason::GenderInvalid, "{raw:?}");
            assert!(!e.detail.is_empty());
        }
    }

    #[test]
    fn contradiction_with_id_number() {
        let female = crate::normalize::id_number::normalize("11010519491231002X").unwrap();
        assert!(contradicts_id(Gender::Male, &female));
        assert!(!contradicts_id(Gender::Female, &female));
        assert!(!contradicts_id(Gender::Unknown, &female));
        assert!(!contradicts_id(Gender::Unstated, &female));
    }
}
