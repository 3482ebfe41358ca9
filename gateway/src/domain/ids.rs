//! Record ids: what names a referral, an outcome, a case status, a consent, an
//! export or a budget spend. Each is a UUID v7 stamped by the gateway's clock
//! (never the system's: tests pin the time through [`crate::clock`]), so ids
//! sort by creation; the rest of each id is random.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Record ids: UUID v7 stamped by the gateway's clock, monotonic within the
/// process (so a batch's referrals sort in line order), random across replicas.
#[derive(Default)]
pub struct RecordIds {
    context: Mutex<uuid::ContextV7>,
}

impl RecordIds {
    pub fn next(&self, at: DateTime<Utc>) -> String {
        let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
        let timestamp =
            uuid::Timestamp::from_unix(&self.context, seconds, at.timestamp_subsec_nanos());
        uuid::Uuid::new_v7(timestamp).to_string()
    }
}

/// Whether `id` could be a record id: anything else is "not found" without a
/// database round trip.
pub fn is_record_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

/// One id stamped `at`, for a record made alone (no ordering within a
/// process needed).
pub fn stamped_id(at: DateTime<Utc>) -> String {
    RecordIds::default().next(at)
}
