//! `GET /v1/outcomes`: police see record-level outcomes of their own referrals
//! only where the person's consent covers them.
//!
//! Each outcome of a referral the police partner submitted is decided as
//! `outcome` (action `list`, relationship `none`: police did not record it)
//! with the consent found for the referral's person among those the outcome's
//! CBO recorded ([`super::consents::ConsentFinder`]: a consent opens only its
//! recorder's records). The baseline policy gives police
//! `aggregate_only` without a consent naming them and covering the purpose,
//! and under one releases only the fields of the classes it covers (never
//! identifiers, never substance-use information). An outcome the decision does
//! not release is simply not listed: a referral without such a consent does
//! not appear at all, and the page looks the same whether or not it has
//! outcomes. Every outcome listed is a disclosure audited with the consent
//! that allowed it.
//!
//! # Pages
//! Newest first by when the gateway received the outcome, `limit` per page and
//! an opaque `cursor`, like `GET /v1/referrals`. Outcomes without consent are
//! skipped while filling a page; a page stops after scanning [`MAX_SCAN`]
//! outcomes even if it is not full (with a `next_cursor`), so a police partner
//! with many referrals and few consents never makes one request scan its whole
//! history.

use serde_json::{Map, Value, json};

use super::consents::ConsentFinder;
use super::records::time;
use super::{Asker, Cursor, MAX_LIMIT, ReadError, Reads, Released};
use crate::config::PartnerKind;
use crate::exchange::outcome::{OutcomeSealed, sealed_context};
use crate::policy::{
    Action, Decision, Effect, FieldShaper, RecordFacts, Relationship, ReleasedView, Resource,
};
use crate::store::outcomes::{OutcomeRow, outcomes_of_submitter};
use crate::vault::Sealed;

/// The most outcomes one page scans for ones it may list.
pub const MAX_SCAN: usize = 2_000;

/// A page of outcomes.
#[derive(Debug)]
pub struct OutcomePage {
    pub outcomes: Vec<ReleasedView>,
    pub next_cursor: Option<Cursor>,
}

impl Reads {
    /// `GET /v1/outcomes` (police only; see the module docs).
    pub async fn police_outcomes(
        &self,
        asker: &Asker<'_>,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<OutcomePage, ReadError> {
        if asker.kind != PartnerKind::Police {
            return Err(ReadError::Refused {
                reason: "record-level outcomes under consent are for police; CBOs read the \
                         outcomes of their referrals, others get aggregates"
                    .to_owned(),
            });
        }
        // Without a consent police get aggregates; a deny here is a request the
        // policy refuses whatever the consents (a purpose police may not declare).
        let (_, baseline) = self.decide(
            asker,
            Action::List,
            Resource::Outcome,
            Relationship::None,
            RecordFacts::default(),
            None,
        );
        if baseline.effect == Effect::Deny {
            return Err(ReadError::Refused {
                reason: baseline.reason.clone(),
            });
        }
        let limit = usize::try_from(limit.clamp(1, MAX_LIMIT)).unwrap_or(1);
        let batch = limit + 1;
        let now = self.clock.now().timestamp_micros();
        let mut finder = ConsentFinder::new(asker, now);
        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let mut released: Vec<Released> = Vec::new();
        let mut before = cursor;
        let mut scanned = 0;
        let next_cursor = 'pages: loop {
            let mut snapshot = self.store.begin_read().await?;
            let rows = outcomes_of_submitter(
                &mut snapshot,
                asker.partner,
                before.as_ref().map(|c| (c.created_at, c.id.as_str())),
                i64::try_from(batch).unwrap_or(i64::MAX),
            )
            .await?;
            let mut consents = Vec::with_capacity(rows.len());
            for row in &rows {
                consents.push(
                    finder
                        .for_record(&mut snapshot, &row.subject_id, &row.recorded_by)
                        .await?,
                );
            }
            snapshot.commit().await?;
            let exhausted = rows.len() < batch;
            let count = rows.len();
            for (index, (row, consent)) in rows.iter().zip(consents).enumerate() {
                let here = Cursor {
                    created_at: row.created_at,
                    id: row.id.clone(),
                };
                scanned += 1;
                let decided = self.decide(
                    asker,
                    Action::List,
                    Resource::Outcome,
                    Relationship::None,
                    RecordFacts::held_by(&row.recorded_by, false),
                    consent,
                );
                if decided.1.allows_records() {
                    let record = self.outcome_record(row, &decided.1).await?;
                    if let Some(one) =
                        Self::release(asker, &shaper, &record, &decided, &row.id, &row.subject_id)
                    {
                        released.push(one);
                    }
                }
                if released.len() == limit || scanned >= MAX_SCAN {
                    let more = index + 1 < count || !exhausted;
                    break 'pages more.then_some(here);
                }
                before = Some(here);
            }
            if exhausted {
                break None;
            }
        };
        let entries: Vec<_> = released.iter().map(|r| r.entry.clone()).collect();
        self.audit(&entries).await?;
        Ok(OutcomePage {
            outcomes: released.into_iter().map(|r| r.view).collect(),
            next_cursor,
        })
    }

    /// The outcome as the `outcome` resource; the notes are unsealed only when
    /// the decision discloses them.
    async fn outcome_record(
        &self,
        row: &OutcomeRow,
        decision: &Decision,
    ) -> Result<Value, ReadError> {
        let mut record = Map::new();
        record.insert("id".into(), json!(row.id));
        record.insert("referral_id".into(), json!(row.referral_id));
        record.insert("recorded_by".into(), json!(row.recorded_by));
        record.insert("kind".into(), json!(row.kind));
        record.insert("resource".into(), json!(row.resource));
        record.insert("occurred_at".into(), time(row.occurred_at));
        if decision.disclosed_fields().any(|f| f == "notes") {
            let notes = match &row.sealed {
                Some(bytes) => {
                    let plain = self
                        .vault
                        .unseal(&sealed_context(&row.id), &Sealed::from_bytes(bytes.clone()))
                        .await?;
                    let sealed: OutcomeSealed =
                        serde_json::from_slice(&plain).map_err(|_| ReadError::Corrupt {
                            what: "an outcome's sealed fields do not parse",
                        })?;
                    Some(sealed.notes)
                }
                None => None,
            };
            record.insert("notes".into(), json!(notes));
        }
        Ok(Value::Object(record))
    }
}
