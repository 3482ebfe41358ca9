//! The linkage review queue and unmerge, for administrators:
//! `GET /v1/admin/link-reviews`, `POST /v1/admin/link-reviews/{id}/decision`
//! and `POST /v1/admin/unmerge`. The rules are in `subjects/review.rs`; this
//! module checks the input, runs each write in one transaction with its audit
//! entry, and shapes what leaves: review ids, scores, times and one word per
//! field — never an identity, a subject id or an identity id.
//!
//! Only an admin may use them, and only for operating the gateway (purpose
//! `HOPERAT`, the admin's default; 403 otherwise); later, a coordinator role
//! (issue 19) joins through the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::input::{self, Invalid};
use super::{ExchangeError, Shared, rfc3339};
use crate::audit::{self, Event};
use crate::domain::PartnerId;
use crate::domain::ids::{CaseId, ReferralId, ReviewId};
use crate::policy::Purpose;
use crate::store::subjects::reviews as repo;
use crate::subjects::{FieldAgreement, ReviewDecision, ReviewError};

/// Open reviews per page when `limit` is not given, and the most a page holds.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// One pair waiting for a decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewBody {
    #[schema(format = "uuid")]
    pub id: String,
    /// The match rule's score: below 0.5, so not linked automatically.
    pub score: f64,
    /// When the pair was queued (RFC 3339).
    pub queued_at: String,
    /// Other evidence has linked the two since: accepting changes nothing,
    /// rejecting keeps them linked but never merges through this pair.
    pub already_linked: bool,
    /// How the two identities compare, field by field: `agree`, `close`,
    /// `differ` or `missing` (either side lacks it). Computed inside the
    /// gateway from keyed encodings; no identifier is shown.
    #[schema(value_type = BTreeMap<String, FieldAgreement>)]
    pub fields: BTreeMap<&'static str, FieldAgreement>,
}

/// A page of the queue, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewPage {
    pub reviews: Vec<ReviewBody>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The body of a decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `accept` (the two are one person: link them) or `reject` (they are
    /// not: keep them apart for good).
    #[schema(pattern = "^(accept|reject)$")]
    pub decision: String,
}

/// A decision as recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionBody {
    #[schema(format = "uuid")]
    pub id: String,
    /// `accepted` or `rejected`.
    pub decision: &'static str,
    /// An accept merged two people into one (false when already linked).
    pub merged: bool,
}

/// One record named in an unmerge: exactly one of `referral` and `case`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    #[serde(default)]
    #[schema(format = "uuid")]
    pub referral: Option<String>,
    #[serde(default)]
    #[schema(format = "uuid")]
    pub case: Option<String>,
}

/// The body of an unmerge: two records about people wrongly linked as one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnmergeRequest {
    /// Exactly two records (referrals or case statuses).
    pub records: Vec<RecordRef>,
}

/// What an unmerge did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnmergeBody {
    /// How many people the wrongly linked person is now (2 or more; more
    /// when identities that linked only through the wrong link are left
    /// alone).
    pub people: usize,
    /// Identities whose person or partner grouping changed.
    pub identities_moved: usize,
}

/// The purpose every use of the queue declares: keeping the gateway's links
/// right is operating the gateway.
pub const PURPOSE: &str = "HOPERAT";

/// Administrators only, for operations only. (The purpose is checked here,
/// not in the policy, because the queue is not a policy resource yet; when a
/// coordinator role joins (issue 19), it becomes one. Stricter than the
/// bundle, never looser: `HOPERAT` is one of the admin's purposes there.)
fn admin_only(kind: crate::config::PartnerKind, purpose: &Purpose) -> Result<(), ExchangeError> {
    if kind != crate::config::PartnerKind::Admin {
        return Err(ExchangeError::WrongKind(
            "only administrators work the linkage review queue",
        ));
    }
    if purpose.as_str() != PURPOSE {
        return Err(ExchangeError::WrongKind(
            "the linkage review queue is for operating the gateway: purpose of use HOPERAT",
        ));
    }
    Ok(())
}

fn review_error(e: ReviewError) -> ExchangeError {
    match e {
        ReviewError::NotFound => ExchangeError::NotFound,
        ReviewError::AlreadyDecided(done) => {
            ExchangeError::Conflict(format!("the review was already decided ({done})"))
        }
        ReviewError::KeptApart => ExchangeError::Conflict(
            "the two are kept apart by an earlier decision (a rejected review or an unmerge)"
                .to_owned(),
        ),
        ReviewError::NotLinked => ExchangeError::Conflict(
            "the two records are not linked to one person: there is nothing to unmerge".to_owned(),
        ),
        ReviewError::Registry(e) => e.into(),
    }
}

/// A page of open reviews. Reading the queue is audited (`linkage.review.read`).
pub(super) async fn list(
    shared: &Shared,
    (partner, kind): (&PartnerId, crate::config::PartnerKind),
    purpose: &Purpose,
    cursor: Option<&ReviewId>,
    limit: u32,
) -> Result<ReviewPage, ExchangeError> {
    admin_only(kind, purpose)?;
    let clock = &*shared.clock;
    let options = shared.normalize_options(clock.now());
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut tx = shared.store.begin().await?;
    let mut items = shared
        .registry
        .open_reviews(
            &mut tx,
            &options,
            cursor.map(ReviewId::as_str),
            i64::from(limit) + 1,
        )
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let event = Event::new(partner, "linkage.review.read")
        .with_purpose(purpose.as_str())
        .with_resource("link_review")
        .with_detail(serde_json::json!({ "reviews": items.len() }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    let next_cursor = more.then(|| items.last().map(|i| i.id.clone())).flatten();
    let reviews = items
        .into_iter()
        .map(|item| ReviewBody {
            id: item.id,
            score: (item.score * 1000.0).round() / 1000.0,
            queued_at: rfc3339(item.created_at.saturating_mul(1_000_000)),
            already_linked: item.already_linked,
            fields: item.fields.into_iter().collect(),
        })
        .collect();
    Ok(ReviewPage {
        reviews,
        next_cursor,
    })
}

/// Accepts or rejects an open review, with its audit entry.
pub(super) async fn decide(
    shared: &Shared,
    (partner, kind): (&PartnerId, crate::config::PartnerKind),
    purpose: &Purpose,
    review_id: &ReviewId,
    body: &[u8],
) -> Result<DecisionBody, ExchangeError> {
    admin_only(kind, purpose)?;
    let request: DecisionRequest = input::parse_json(body)?;
    let decision = match request.decision.as_str() {
        "accept" => ReviewDecision::Accept,
        "reject" => ReviewDecision::Reject,
        _ => return Err(Invalid::field("decision", "must be accept or reject").into()),
    };
    let clock = &*shared.clock;
    let now = clock.now().timestamp();
    let mut tx = shared.store.begin().await?;
    let decided = shared
        .registry
        .decide_review(&mut tx, review_id.as_str(), decision, partner.as_str(), now)
        .await
        .map_err(review_error)?;
    let action = match decision {
        ReviewDecision::Accept => "linkage.review.accept",
        ReviewDecision::Reject => "linkage.review.reject",
    };
    let event = Event::new(partner, action)
        .with_purpose(purpose.as_str())
        .with_record("link_review", review_id.as_str())
        .with_subject(&decided.subject_id)
        .with_detail(serde_json::json!({ "merged": decided.merged.is_some() }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(DecisionBody {
        id: review_id.as_str().to_owned(),
        decision: decision.as_str(),
        merged: decided.merged.is_some(),
    })
}

/// Splits the person two records were wrongly linked as, with its audit entry.
pub(super) async fn unmerge(
    shared: &Shared,
    (partner, kind): (&PartnerId, crate::config::PartnerKind),
    purpose: &Purpose,
    body: &[u8],
) -> Result<UnmergeBody, ExchangeError> {
    admin_only(kind, purpose)?;
    let request: UnmergeRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();
    if request.records.len() != 2 {
        invalid.push("records", "must name exactly two records");
    }
    let mut records = Vec::with_capacity(2);
    for (i, record) in request.records.iter().enumerate().take(2) {
        let at = |name: &str| format!("records[{i}].{name}");
        match (&record.referral, &record.case) {
            (Some(id), None) => match ReferralId::parse(id) {
                Ok(id) => records.push(("referrals", id.into_string())),
                Err(_) => invalid.push(at("referral"), "is not a referral id"),
            },
            (None, Some(id)) => match CaseId::parse(id) {
                Ok(id) => records.push(("cases", id.into_string())),
                Err(_) => invalid.push(at("case"), "is not a case status id"),
            },
            _ => invalid.push(
                format!("records[{i}]"),
                "must name one referral or one case",
            ),
        }
    }
    if !invalid.is_empty() {
        return Err(invalid.into());
    }
    let clock = &*shared.clock;
    let now = clock.now().timestamp();
    let mut tx = shared.store.begin().await?;
    let mut identities = Vec::with_capacity(2);
    for (i, (table, id)) in records.iter().enumerate() {
        let field = if *table == "cases" {
            "case"
        } else {
            "referral"
        };
        let found = repo::record_identity(&mut tx, table, id)
            .await?
            .ok_or_else(|| {
                ExchangeError::from(Invalid::field(
                    format!("records[{i}].{field}"),
                    "names no such record",
                ))
            })?;
        identities.push(found.0);
    }
    if identities[0] == identities[1] {
        return Err(Invalid::field("records", "name the same record twice").into());
    }
    let unmerged = shared
        .registry
        .unmerge(&mut tx, &identities[0], &identities[1], now)
        .await
        .map_err(review_error)?;
    let event = Event::new(partner, "linkage.unmerge")
        .with_purpose(purpose.as_str())
        .with_resource("subject")
        .with_subject(&unmerged.subject_id)
        .with_detail(serde_json::json!({
            "people": unmerged.subjects.len(),
            "identities_moved": unmerged.identities_moved,
        }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(UnmergeBody {
        people: unmerged.subjects.len(),
        identities_moved: unmerged.identities_moved,
    })
}
