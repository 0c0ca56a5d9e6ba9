//! Mainland phone numbers.

use crate::model::{Reject, RejectReason};

/// An 11-digit mobile (`13812345678`) or a landline with area code (`0791-86123456`).
pub fn normalize(raw: &str) -> Result<String, Reject> {
    let digits: String = crate::normalize::text::to_half_width(raw).chars().filter(|c| c.is_ascii_digit()).collect();
    let d = digits.strip_prefix("86").filter(|d| d.len() == 11).unwrap_or(&digits);
    if d.len() == 11 && d.starts_with('1') {
        Ok(d.to_string())
    } else {
        Err(Reject::new(RejectReason::PhoneInvalid, "not a mainland phone number"))
    }
}
