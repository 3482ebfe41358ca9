//! Reading the audit log itself (`GET /v1/audit/entries`): decided, shaped and
//! audited like every other record-level read.
//!
//! The policy decides `list` on the `audit_entry` resource with no relationship
//! (administrators, in the baseline); each entry is shaped by
//! [`release_view`] under that decision; and the page is read and its
//! `audit.read` entry appended in one transaction, so no page leaves without
//! its record. The entry names which filters were given, never their values.

use serde_json::json;

use super::{Asker, ReadError, Reads};
use crate::audit::read::{READ_ACTION, entry_record, list_entries};
use crate::audit::{Event, append, released_fields};
use crate::policy::{
    Action, Effect, FieldShaper, RecordFacts, Relationship, ReleasedView, Resource, release_view,
};
use crate::store::audit::EntryFilter;

/// A page of the log as released to the asker.
#[derive(Debug)]
pub struct EntriesPage {
    pub entries: Vec<ReleasedView>,
    /// The `seq` to pass as `cursor` for the next page.
    pub next_cursor: Option<i64>,
}

/// What to read: the filter, where to start and how many.
#[derive(Debug, Default)]
pub struct EntriesRequest {
    pub filter: EntryFilter,
    pub cursor: Option<i64>,
    pub limit: u32,
    /// Which filters were given, for the `audit.read` entry (names, not values).
    pub given: Vec<&'static str>,
}

impl Reads {
    /// A page of the audit log, oldest first, if the policy lets the asker
    /// read it; [`ReadError::Refused`] with the policy's reason otherwise.
    pub async fn audit_entries(
        &self,
        asker: &Asker<'_>,
        request: &EntriesRequest,
    ) -> Result<EntriesPage, ReadError> {
        let (_, decision) = self.decide(
            asker,
            Action::List,
            Resource::AuditEntry,
            Relationship::None,
            RecordFacts::default(),
            None,
        );
        if decision.effect != Effect::Allow {
            return Err(ReadError::Refused {
                reason: decision.reason.clone(),
            });
        }
        let mut tx = self.store.begin().await?;
        let page = list_entries(&mut tx, &request.filter, request.cursor, request.limit).await?;
        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let entries: Vec<ReleasedView> = page
            .entries
            .iter()
            .filter_map(|(entry, hash)| {
                release_view(&decision, &entry_record(entry, hash), &shaper).ok()
            })
            .collect();
        let read = Event::new(asker.partner, READ_ACTION)
            .with_purpose(asker.purpose.as_str())
            .with_resource(Resource::AuditEntry.as_str())
            .with_fields(released_fields(&decision))
            .with_decision(&*decision.policy_version, &decision.reason)
            .with_detail(json!({"returned": entries.len(), "filters": request.given}));
        append(&mut tx, &[read], self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(EntriesPage {
            entries,
            next_cursor: page.next_cursor,
        })
    }
}
