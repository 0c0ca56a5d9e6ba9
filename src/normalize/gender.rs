//! GB/T 2261.1 gender codes.

use crate::model::{Gender, Reject, RejectReason};

pub fn normalize(raw: &str) -> Result<Gender, Reject> {
    match crate::normalize::text::clean(raw).to_lowercase().as_str() {
        "1" | "男" | "m" | "male" => Ok(Gender::Male),
        "2" | "女" | "f" | "female" => Ok(Gender::Female),
        "0" | "unknown" | "未知" => Ok(Gender::Unknown),
        "9" => Ok(Gender::Unstated),
        _ => Err(Reject::new(RejectReason::GenderInvalid, "unknown gender spelling")),
    }
}
