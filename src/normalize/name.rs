//! Personal names.

use crate::model::{Reject, RejectReason};

pub fn normalize(raw: &str) -> Result<String, Reject> {
    let s = crate::normalize::text::clean(raw);
    if s.is_empty() {
        return Err(Reject::new(RejectReason::RecordMalformed, "empty name"));
    }
    Ok(s)
}
