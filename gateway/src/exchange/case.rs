//! `POST /v1/cases`: a health partner's case status for a person it serves.
//!
//! The person is identified by the health partner's own identifiers (the same
//! `subject` object as on a referral) and linked to a subject by the same tokens,
//! so police and CBO records about the same person meet it — without the health
//! partner learning that they exist. Hence the response: it carries the case
//! record's id and the codes sent, and is the same shape, size and status whether
//! or not the person was already known. It carries no subject pseudonym: a
//! pseudonym that stayed equal across two of the partner's cases could tell it
//! that another partner's record bridged the two.
//!
//! `case_ref` (the partner's case or medical record number) is sealed. Reports
//! about one case share `case_key`, a keyed hash of (partner, case reference), so
//! the read side can take the latest status per case without unsealing. A case
//! in the `substance_use` program is flagged `part2` (42 CFR Part 2) when it is
//! written, and reads pass that flag to the policy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::input::{self, Invalid};
use super::linking::{LinkItem, link_identities};
use super::subject::{CheckedSubject, SubjectRequest, Tolerance};
use super::vocabulary::{CaseStatus, Code as _, Program};
use super::{ExchangeError, Shared, rfc3339};
use crate::audit::{self, Event};
use crate::domain::PartnerId;
use crate::policy::Purpose;
use crate::store::cases::{NewCase, insert_case};

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectRequest,
    /// The partner's own case or record number (sealed; at most 64
    /// characters, no control characters).
    #[schema(
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub case_ref: String,
    #[schema(value_type = Program)]
    pub program: String,
    #[schema(value_type = CaseStatus)]
    pub status: String,
    /// When the status took effect (RFC 3339 with an offset): not before
    /// `exchange.program_start`, not in the future.
    #[schema(example = "2026-03-20T08:00:00-07:00")]
    pub effective_at: String,
}

impl std::fmt::Debug for CaseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRequest")
            .field("program", &self.program)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A case's sealed fields (`cases.sealed`, context `cases:<id>`).
#[derive(Clone, Serialize, Deserialize)]
pub struct CaseSealed {
    pub case_ref: String,
}

impl std::fmt::Debug for CaseSealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaseSealed([redacted])")
    }
}

/// The vault context of a case's sealed fields.
pub fn sealed_context(case_id: &str) -> Vec<u8> {
    format!("cases:{case_id}").into_bytes()
}

/// What the health partner is told. Nothing in it depends on linkage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordedCase {
    pub id: String,
    pub program: Program,
    pub status: CaseStatus,
    pub effective_at: String,
    /// Whether the record carries 42 CFR Part 2 protection.
    pub part2: bool,
}

struct CheckedCase {
    subject: CheckedSubject,
    case_ref: String,
    program: Program,
    status: CaseStatus,
    effective_at: DateTime<Utc>,
}

fn check(body: &[u8], shared: &Shared, now: DateTime<Utc>) -> Result<CheckedCase, Invalid> {
    let request: CaseRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();
    let subject = request.subject.check(
        &mut invalid,
        &shared.normalize_options(now),
        Tolerance::RefuseRequest,
    );
    let case_ref = input::reference(&mut invalid, "case_ref", &request.case_ref);
    let program = input::code::<Program>(&mut invalid, "program", &request.program);
    let status = input::code::<CaseStatus>(&mut invalid, "status", &request.status);
    let effective_at = input::event_time(
        &mut invalid,
        "effective_at",
        &request.effective_at,
        shared.event_window(now),
    );
    match (subject, case_ref, program, status, effective_at) {
        (Some(subject), Some(case_ref), Some(program), Some(status), Some(effective_at))
            if invalid.is_empty() =>
        {
            Ok(CheckedCase {
                subject,
                case_ref,
                program,
                status,
                effective_at,
            })
        }
        _ => Err(invalid),
    }
}

pub(super) async fn record(
    shared: &Shared,
    partner: &PartnerId,
    purpose: &Purpose,
    body: &[u8],
) -> Result<RecordedCase, ExchangeError> {
    let clock = &*shared.clock;
    let now = clock.now();
    let checked = check(body, shared, now)?;
    let part2 = checked.program == Program::SubstanceUse;
    let id = shared.ids.next(now);
    let mut tx = shared.store.begin().await?;
    let linked = link_identities(
        &shared.registry,
        &mut tx,
        &[LinkItem {
            source_partner: partner,
            assigned_cbo: None,
            input: &checked.subject.input,
            identity: &checked.subject.identity,
        }],
        clock,
    )
    .await?;
    let Some(link) = linked.into_iter().next() else {
        return Err(ExchangeError::Store(crate::store::StoreError::Corrupt {
            what: "linking returned no result",
        }));
    };
    let plain = Zeroizing::new(
        serde_json::to_vec(&CaseSealed {
            case_ref: checked.case_ref.clone(),
        })
        .unwrap_or_default(),
    );
    let sealed = shared
        .vault
        .seal(&mut tx, &sealed_context(&id), &plain, clock)
        .await?;
    let effective_at = checked.effective_at.timestamp_micros();
    insert_case(
        &mut tx,
        &NewCase {
            id: id.clone(),
            submitted_by: partner.as_str().to_owned(),
            subject_id: link.subject_id.clone(),
            identity_id: link.identity_id.clone(),
            case_key: case_key(&shared.case_key, partner, &checked.case_ref),
            program: checked.program.as_str(),
            status: checked.status.as_str(),
            part2,
            effective_at,
            created_at: now.timestamp_micros(),
            sealed: sealed.into_bytes(),
        },
    )
    .await?;
    let event = Event::new(partner, "case.create")
        .with_purpose(purpose.as_str())
        .with_record("case_status", &id)
        .with_subject(&link.subject_id)
        .with_detail(serde_json::json!({ "part2": part2 }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(RecordedCase {
        id,
        program: checked.program,
        status: checked.status,
        effective_at: rfc3339(effective_at),
        part2,
    })
}

/// Keyed BLAKE3 of (partner, case reference as sent, trimmed).
fn case_key(key: &[u8; 32], partner: &PartnerId, case_ref: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    for part in [partner.as_bytes(), case_ref.as_bytes()] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}
