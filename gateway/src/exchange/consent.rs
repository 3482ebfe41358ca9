//! `POST /v1/consents` and `POST /v1/consents/{id}/revoke`: the person's consent
//! to share, recorded by the partner they gave it to.
//!
//! # Who records it, and on what
//! - A **CBO** names a referral assigned to it (`"referral": id`).
//! - A **health partner** names one of its own case statuses (`"case": id`). It
//!   never names a referral: it does not know referral ids, and must not learn
//!   from the answer whether police know the person. The answer is the same
//!   whether or not the person is linked to anyone else's records.
//!
//! Either way the consent is stored on the record's *subject* (the gateway's
//! internal reference for the person), so it follows the person to every
//! record linked to them (reads follow subject merges) — but it opens only
//! the records its recorder holds (see the discloser below).
//!
//! # The discloser
//! A consent authorizes its *discloser* — the partner whose records it opens —
//! to disclose to its recipients; 42 CFR §2.31 has a consent name the program
//! that discloses, and HIPAA's authorizations (§164.508(c)(1)(ii)) name who
//! may disclose. The discloser is always the recorder: a CBO's consent opens
//! the CBO's outcomes to police, never county health's cases, and a health
//! partner's opens its cases, never a CBO's outcomes. A holder that wants to
//! honour a consent the person gave elsewhere records its own. The body may
//! state `discloser`, and then it must be the recorder (anything else is a
//! 400 naming `discloser`), so a client that thinks otherwise learns so.
//! Only a holder of Part 2 records ([`holds_part2_records`]) records a
//! consent covering `substance_use`; from anyone else it is a 400 naming the
//! class.
//!
//! A referral (or case) that does not exist and one the recorder may not use
//! get the same 400 naming the field, so the answer reveals nothing.
//!
//! # What is checked (400 naming each field; nothing is stored)
//! `recipients` (partner kinds `police`, `cbo`, `health` or registered partner
//! ids of those kinds), `purposes` (HL7 `PurposeOfUse` codes the policy knows),
//! `classes` (catalog classes; not `direct_identifier`), `period.start` from
//! the program start (`exchange.program_start`) to a year ahead and before
//! `period.end`, the end not already past and at most 100 years ahead,
//! `method` (`written`, `verbal`, `electronic`), `evidence_hash` (`sha256:`
//! or `blake3:` and 64 lower-case hex digits: the hash of the signed form,
//! which itself is never sent). A consent
//! covering `substance_use` is a 42 CFR Part 2 consent and needs the §2.31
//! elements: `part2.recipients` (partner ids — a kind does not name a
//! recipient; never police, §2.32), the purposes, an expiration (`period.end`)
//! and `part2.right_to_revoke: true` (the person was told they may revoke).
//!
//! # Revocation
//! Only the partner that recorded the consent revokes it (the person asks
//! through them); anyone else gets 404. A revoked consent is `409` on a second
//! revocation. Reads find consents at request time, so a revocation takes
//! effect on the very next request.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::input::{self, Invalid};
use super::vocabulary::{Code as _, ConsentClass, ConsentMethod, ConsentPurpose, RecipientKind};
use super::{ExchangeError, Shared, rfc3339};
use crate::audit::{self, Event};
use crate::config::PartnerKind;
use crate::domain::PartnerId;
use crate::domain::ids::{CaseId, ConsentId, ReferralId};
use crate::policy::Purpose;
use crate::store::cases::case_owner;
use crate::store::consents::{ConsentRow, get_consent, insert_consent, revoke_consent};
use crate::store::referrals::lock_referral;

/// The action of a consent's audit entry when it is recorded.
pub const CREATE_ACTION: &str = "consent.create";
/// ... and when it is revoked.
pub const REVOKE_ACTION: &str = "consent.revoke";

/// How many recipients, purposes or classes one consent may list.
const MAX_LIST: usize = 32;

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// A CBO: the referral assigned to it that the person was referred on.
    #[serde(default)]
    #[schema(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub referral: Option<String>,
    /// A health partner: its own case status about the person.
    #[serde(default)]
    #[schema(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub case: Option<String>,
    /// Partner kinds (`police`, `cbo`, `health`) and/or partner ids: 1-32.
    #[schema(min_items = 1, max_items = 32, inline, value_type = Vec<input::PartnerIdText>)]
    pub recipients: Vec<String>,
    /// HL7 `PurposeOfUse` codes: 1-32 (a repeat counts once).
    #[schema(value_type = Vec<ConsentPurpose>, min_items = 1, max_items = 32)]
    pub purposes: Vec<String>,
    /// Catalog field classes the consent covers: 1-32 (a repeat counts once).
    #[schema(value_type = Vec<ConsentClass>, min_items = 1, max_items = 32)]
    pub classes: Vec<String>,
    #[serde(deserialize_with = "input::object")]
    pub period: PeriodRequest,
    #[schema(value_type = ConsentMethod)]
    pub method: String,
    /// `sha256:<64 hex>` or `blake3:<64 hex>`: the hash of the signed form.
    #[schema(
        example = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        pattern = r"^(?:sha256|blake3):[0-9a-f]{64}$"
    )]
    pub evidence_hash: String,
    /// The 42 CFR Part 2 elements; required when `classes` has `substance_use`.
    #[serde(default, deserialize_with = "input::optional_object")]
    pub part2: Option<Part2Request>,
    /// The partner whose records the consent opens. Optional: it is always
    /// the recorder, and any other value is refused.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9-]{1,64}$")]
    pub discloser: Option<String>,
}

/// When the consent is in force.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodRequest {
    /// RFC 3339 with an offset: not before `exchange.program_start`, at
    /// most a year ahead.
    #[schema(example = "2026-03-20T08:00:00-07:00")]
    pub start: String,
    /// RFC 3339 with an offset; after `start`, not in the past, at most 100
    /// years ahead. Also the expiration a Part 2 consent must state.
    #[schema(example = "2027-03-20T08:00:00-07:00")]
    pub end: String,
}

/// 42 CFR §2.31 elements beyond the recipients, purposes and period.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Part2Request {
    /// The partner ids named to receive substance-use information: 1-32.
    #[schema(min_items = 1, max_items = 32, inline, value_type = Vec<input::PartnerIdText>)]
    pub recipients: Vec<String>,
    /// The person was told of their right to revoke: must be `true`.
    pub right_to_revoke: bool,
}

struct CheckedConsent {
    on: Target,
    recipients: Vec<String>,
    purposes: Vec<String>,
    classes: Vec<String>,
    part2_recipients: Vec<String>,
    part2: bool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    method: ConsentMethod,
    evidence_hash: String,
}

/// The record a consent is recorded on.
enum Target {
    Referral(String),
    Case(String),
}

/// Whether partners of `kind` can hold 42 CFR Part 2 records, and so record a
/// consent covering `substance_use`: health partners, whose `substance_use`
/// program cases are Part 2 records. CBOs and police hold none (their records
/// are referrals and follow-up outcomes), so a Part 2 consent from them could
/// only be meant to open someone else's records.
pub fn holds_part2_records(kind: PartnerKind) -> bool {
    kind == PartnerKind::Health
}

fn check(
    body: &[u8],
    shared: &Shared,
    (recorder, recorder_kind): (&str, PartnerKind),
    now: DateTime<Utc>,
) -> Result<CheckedConsent, Invalid> {
    let request: ConsentRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();
    if request.discloser.as_deref().is_some_and(|d| d != recorder) {
        invalid.push(
            "discloser",
            "must be the recorder: a consent opens only the records of the partner that \
             records it; the holder of other records records its own",
        );
    }
    let on = target(&mut invalid, recorder_kind, request.referral, request.case);
    let recipients = check_list(&mut invalid, "recipients", &request.recipients, |r| {
        recipient(shared, r)
    });
    let purposes = check_list(&mut invalid, "purposes", &request.purposes, |p| {
        ConsentPurpose::parse(p)
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| {
                format!(
                    "unknown value; expected one of: {}",
                    ConsentPurpose::expected()
                )
            })
    });
    let classes = check_list(&mut invalid, "classes", &request.classes, |c| {
        if c == "direct_identifier" {
            return Err(
                "a consent cannot cover direct identifiers: they never cross \
                        between partners"
                    .to_owned(),
            );
        }
        if c == ConsentClass::SubstanceUse.as_str() && !holds_part2_records(recorder_kind) {
            return Err(
                "only the program that holds 42 CFR Part 2 records records a consent to \
                 disclose them (§2.31); this partner holds none"
                    .to_owned(),
            );
        }
        ConsentClass::parse(c)
            .map(|c| c.as_str().to_owned())
            .ok_or_else(|| {
                format!(
                    "unknown value; expected one of: {}",
                    ConsentClass::expected()
                )
            })
    });
    let (start, end) = check_period(&mut invalid, &request.period, shared, now);
    let method = input::code::<ConsentMethod>(&mut invalid, "method", &request.method);
    let evidence_hash = evidence_hash(&mut invalid, &request.evidence_hash);
    // From the classes as asked, so that a refused substance_use class is not
    // also reported as a `part2` given without one.
    let part2 = request
        .classes
        .iter()
        .any(|c| c == ConsentClass::SubstanceUse.as_str());
    let part2_recipients = part2_elements(&mut invalid, shared, request.part2.as_ref(), part2);
    match (on, start, end, method, evidence_hash) {
        (Some(on), Some(start), Some(end), Some(method), Some(evidence_hash))
            if invalid.is_empty() =>
        {
            Ok(CheckedConsent {
                on,
                recipients,
                purposes,
                classes,
                part2_recipients,
                part2,
                start,
                end,
                method,
                evidence_hash,
            })
        }
        _ => Err(invalid),
    }
}

/// How far ahead a consent may start: it is recorded when the person gives it.
const MAX_START_AHEAD_DAYS: i64 = 366;
/// How far ahead a consent may end: an expiration, not "never" (42 CFR §2.31
/// and HIPAA §164.508(c) want one), and no year-9999 typo.
const MAX_END_AHEAD_YEARS: i64 = 100;

/// `period.start` from the program start to a year ahead, `period.end` after
/// it, not already past and at most [`MAX_END_AHEAD_YEARS`] ahead.
fn check_period(
    invalid: &mut Invalid,
    period: &PeriodRequest,
    shared: &Shared,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = input::event_time(
        invalid,
        "period.start",
        &period.start,
        input::EventWindow {
            earliest: shared.config.exchange.earliest_event(),
            latest: now + TimeDelta::days(MAX_START_AHEAD_DAYS),
        },
    );
    let end = input::timestamp(invalid, "period.end", &period.end);
    let (Some(start), Some(end)) = (start, end) else {
        return (start, None);
    };
    if end <= start {
        invalid.push("period.end", "must be after period.start");
    } else if end <= now {
        invalid.push(
            "period.end",
            "is in the past: the consent would never be in force",
        );
    } else if end > now + TimeDelta::days(MAX_END_AHEAD_YEARS * 365) {
        invalid.push(
            "period.end",
            format!("is more than {MAX_END_AHEAD_YEARS} years ahead: a consent expires"),
        );
    } else {
        return (Some(start), Some(end));
    }
    (Some(start), None)
}

/// The record the consent is given on: a CBO names a referral, a health
/// partner its case.
fn target(
    invalid: &mut Invalid,
    recorder: PartnerKind,
    referral: Option<String>,
    case: Option<String>,
) -> Option<Target> {
    match (recorder, referral, case) {
        (PartnerKind::Cbo, Some(id), None) => Some(Target::Referral(id)),
        (PartnerKind::Health, None, Some(id)) => Some(Target::Case(id)),
        (PartnerKind::Cbo, _, Some(_)) => {
            invalid.push("case", "a CBO records consent on a referral assigned to it");
            None
        }
        (PartnerKind::Cbo, None, None) => {
            invalid.push(
                "referral",
                "is required: the referral the consent is given on",
            );
            None
        }
        (_, Some(_), _) => {
            invalid.push(
                "referral",
                "a health partner records consent on its own case (`case`)",
            );
            None
        }
        _ => {
            invalid.push("case", "is required: the case the consent is given on");
            None
        }
    }
}

/// The 42 CFR §2.31 elements: required exactly when the consent covers
/// substance-use information.
fn part2_elements(
    invalid: &mut Invalid,
    shared: &Shared,
    elements: Option<&Part2Request>,
    part2: bool,
) -> Vec<String> {
    match (elements, part2) {
        (None, true) => {
            invalid.push(
                "part2",
                "is required when classes include substance_use (42 CFR §2.31: named \
                 recipients and the right to revoke)",
            );
            Vec::new()
        }
        (Some(_), false) => {
            invalid.push("part2", "is only given when classes include substance_use");
            Vec::new()
        }
        (None, false) => Vec::new(),
        (Some(elements), true) => {
            if !elements.right_to_revoke {
                invalid.push(
                    "part2.right_to_revoke",
                    "must be true: a Part 2 consent states the right to revoke (42 CFR §2.31)",
                );
            }
            check_list(invalid, "part2.recipients", &elements.recipients, |r| {
                part2_recipient(shared, r)
            })
        }
    }
}

/// Checks each item of a non-empty list, naming `field[i]`; sorted, deduplicated.
fn check_list(
    invalid: &mut Invalid,
    field: &str,
    items: &[String],
    check: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    if items.is_empty() {
        invalid.push(field, "must list at least one");
        return Vec::new();
    }
    if items.len() > MAX_LIST {
        invalid.push(field, format!("lists at most {MAX_LIST}"));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{field}[{i}]");
        match check(item) {
            Ok(value) => out.push(value),
            Err(problem) => invalid.push(name, problem),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A recipient: a kind that receives records under consent, or a registered
/// partner of such a kind.
fn recipient(shared: &Shared, value: &str) -> Result<String, String> {
    if let Some(kind) = RecipientKind::parse(value) {
        return Ok(kind.as_str().to_owned());
    }
    match shared.config.partners.get(value) {
        Some(partner) if RecipientKind::parse(partner.kind.as_str()).is_some() => {
            Ok(value.to_owned())
        }
        Some(_) => Err(
            "names a partner that does not receive records under a consent \
                        (evaluators and admins never do)"
                .to_owned(),
        ),
        None => Err(format!(
            "unknown recipient; expected a registered partner id or one of: {}",
            RecipientKind::expected()
        )),
    }
}

/// A Part 2 recipient: a registered CBO or health partner, by id.
fn part2_recipient(shared: &Shared, value: &str) -> Result<String, String> {
    match shared.config.partners.get(value).map(|p| p.kind) {
        Some(PartnerKind::Cbo | PartnerKind::Health) => Ok(value.to_owned()),
        Some(PartnerKind::Police) => Err("police never receive substance-use information \
                                          (42 CFR §2.32)"
            .to_owned()),
        Some(_) => Err("names a partner that does not receive records under a consent".to_owned()),
        None if RecipientKind::parse(value).is_some() => Err("must name a partner id: under \
                                                               42 CFR §2.31 a kind does not \
                                                               name a recipient"
            .to_owned()),
        None => Err("unknown partner id".to_owned()),
    }
}

/// `sha256:` or `blake3:` and 64 lower-case hex digits.
fn evidence_hash(invalid: &mut Invalid, value: &str) -> Option<String> {
    let valid = value.split_once(':').is_some_and(|(algorithm, digest)| {
        matches!(algorithm, "sha256" | "blake3")
            && digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if valid {
        Some(value.to_owned())
    } else {
        invalid.push(
            "evidence_hash",
            "must be sha256: or blake3: and 64 lower-case hex digits (the hash of the signed \
             form; the form itself is not sent)",
        );
        None
    }
}

/// A consent as the `consent` resource (the catalog's field names): what the
/// recorder is told (`201` and the revoke's `200`), and what reads shape with
/// the policy. The OpenAPI document's schema is this type's, so the two cannot
/// drift.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentRecord {
    pub id: String,
    /// The referral a CBO recorded it on (`null` for a health partner's).
    pub referral_id: Option<String>,
    /// The case a health partner recorded it on (`null` for a CBO's).
    pub case_id: Option<String>,
    /// Partner kinds and partner ids.
    pub recipients: Vec<String>,
    #[schema(value_type = Vec<ConsentPurpose>)]
    pub purposes: Vec<String>,
    #[schema(value_type = Vec<ConsentClass>)]
    pub classes: Vec<String>,
    #[schema(value_type = ConsentMethod)]
    pub method: String,
    pub recorded_by: String,
    pub discloser: String,
    /// RFC 3339, UTC.
    pub period_start: String,
    /// RFC 3339, UTC.
    pub period_end: String,
    pub evidence_hash: String,
    /// RFC 3339, UTC; `null` while in force.
    pub revoked_at: Option<String>,
    /// The 42 CFR Part 2 elements; `null` unless it covers substance use.
    pub part2: Option<Part2Record>,
}

/// The Part 2 elements of a recorded consent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Part2Record {
    pub recipients: Vec<String>,
    /// Always `true`: a consent without it is refused.
    pub right_to_revoke: bool,
}

impl ConsentRecord {
    pub fn of(row: &ConsentRow) -> Self {
        Self {
            id: row.id.clone(),
            referral_id: row.referral_id.clone(),
            case_id: row.case_id.clone(),
            recipients: row.recipients.clone(),
            purposes: row.purposes.clone(),
            classes: row.classes.clone(),
            method: row.method.clone(),
            recorded_by: row.recorded_by.clone(),
            discloser: row.discloser.clone(),
            period_start: rfc3339(row.period_start),
            period_end: rfc3339(row.period_end),
            evidence_hash: row.evidence_hash.clone(),
            revoked_at: row.revoked_at.map(rfc3339),
            part2: row.part2.then(|| Part2Record {
                recipients: row.part2_recipients.clone(),
                right_to_revoke: true,
            }),
        }
    }
}

/// [`ConsentRecord`] as JSON, for reads that shape it with the policy.
pub fn consent_record(row: &ConsentRow) -> Value {
    serde_json::to_value(ConsentRecord::of(row)).unwrap_or(Value::Null)
}

pub(super) async fn record(
    shared: &Shared,
    partner: &PartnerId,
    kind: PartnerKind,
    purpose: &Purpose,
    body: &[u8],
) -> Result<ConsentRow, ExchangeError> {
    let clock = &*shared.clock;
    let now = clock.now();
    let checked = check(body, shared, (partner, kind), now)?;
    let mut tx = shared.store.begin().await?;
    // A record that does not exist and one the recorder may not use are the
    // same answer.
    let (referral_id, case_id, subject_id) = match &checked.on {
        Target::Referral(id) => {
            let referral = match ReferralId::parse(id) {
                Ok(id) => lock_referral(&mut tx, &id)
                    .await?
                    .filter(|r| r.assigned_cbo == *partner),
                Err(_) => None,
            };
            let referral = referral.ok_or_else(|| {
                Invalid::field("referral", "is not a referral assigned to this partner")
            })?;
            (Some(referral.id), None, referral.subject_id)
        }
        Target::Case(id) => {
            let owner = match CaseId::parse(id) {
                Ok(id) => case_owner(&mut tx, &id)
                    .await?
                    .filter(|(submitted_by, _)| submitted_by == partner),
                Err(_) => None,
            };
            let (_, subject_id) = owner.ok_or_else(|| {
                Invalid::field("case", "is not a case status this partner recorded")
            })?;
            (None, Some(id.clone()), subject_id)
        }
    };
    let row = ConsentRow {
        id: shared.ids.next(now),
        subject_id,
        referral_id,
        case_id,
        recorded_by: partner.as_str().to_owned(),
        discloser: partner.as_str().to_owned(),
        method: checked.method.as_str().to_owned(),
        recipients: checked.recipients,
        purposes: checked.purposes,
        classes: checked.classes,
        part2_recipients: checked.part2_recipients,
        part2: checked.part2,
        period_start: checked.start.timestamp_micros(),
        period_end: checked.end.timestamp_micros(),
        evidence_hash: checked.evidence_hash,
        created_at: now.timestamp_micros(),
        revoked_at: None,
        revoked_by: None,
    };
    insert_consent(&mut tx, &row).await?;
    let event = Event::new(partner, CREATE_ACTION)
        .with_purpose(purpose.as_str())
        .with_record("consent", &row.id)
        .with_subject(&row.subject_id)
        .with_consent(&row.id)
        .with_detail(json!({
            "method": row.method,
            "part2": row.part2,
            "on": if row.referral_id.is_some() { "referral" } else { "case" },
        }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(row)
}

pub(super) async fn revoke(
    shared: &Shared,
    partner: &PartnerId,
    purpose: &Purpose,
    consent_id: &ConsentId,
) -> Result<ConsentRow, ExchangeError> {
    let clock = &*shared.clock;
    let now = clock.now().timestamp_micros();
    let mut tx = shared.store.begin().await?;
    let mut row = get_consent(&mut tx, consent_id)
        .await?
        .filter(|c| c.recorded_by == partner)
        .ok_or(ExchangeError::NotFound)?;
    if row.revoked_at.is_some() || !revoke_consent(&mut tx, consent_id, partner, now).await? {
        return Err(ExchangeError::Conflict(
            "the consent is already revoked".to_owned(),
        ));
    }
    row.revoked_at = Some(now);
    row.revoked_by = Some(partner.as_str().to_owned());
    let event = Event::new(partner, REVOKE_ACTION)
        .with_purpose(purpose.as_str())
        .with_record("consent", &row.id)
        .with_subject(&row.subject_id)
        .with_consent(&row.id);
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(row)
}
