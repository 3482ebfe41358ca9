//! Stored rows as the policy's resources see them: JSON objects whose keys are
//! exactly the catalog's field names (`crate::policy::resources`), for
//! [`crate::policy::release_view`].
//!
//! Sealed parts are opened only when the decision discloses at least one field
//! that lives in them: the person's identity (`subject.*`) and the referral's
//! own sealed fields (`cad_number`, `officer_id`, `circumstances`) for a
//! referral, `case_ref` for a case. Otherwise those keys are simply absent, and
//! the vault is never asked.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{Asker, ReadError, Reads};
use crate::audit::read::Disclosure;
use crate::config::PartnerKind;
use crate::exchange::case::{CaseSealed, sealed_context as case_context};
use crate::exchange::referral::{ReferralSealed, sealed_context as referral_context};
use crate::policy::Decision;
use crate::store::cases::CaseRow;
use crate::store::referrals::ReferralRow;
use crate::subjects::{partner_pseudonym, unseal_identity};
use crate::vault::Sealed;

/// The referral fields kept sealed in `referrals.sealed`.
const REFERRAL_SEALED_FIELDS: [&str; 3] = ["cad_number", "officer_id", "circumstances"];

/// Whether `decision` discloses (in any form) a field `matches` accepts.
fn discloses(decision: &Decision, matches: impl Fn(&str) -> bool) -> bool {
    decision.disclosed_fields().any(matches)
}

/// A stored time (unix microseconds) as RFC 3339, UTC.
pub(super) fn time(micros: i64) -> Value {
    DateTime::from_timestamp_micros(micros).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    })
}

/// The referral as the `referral` resource: every catalog field, sealed ones
/// only when disclosed. `subject_pseudonym` is the asker's own pseudonym of the
/// person ([`partner_pseudonym`]): computed from the asker's own cluster of the
/// referral's identity — so it changes only when the asker's own records link
/// the person further, never because of another partner's — or, for an asker
/// that does not hold the referral, from the referral alone.
pub(super) async fn referral_record(
    reads: &Reads,
    asker: &Asker<'_>,
    row: &ReferralRow,
    decision: &Decision,
) -> Result<Value, ReadError> {
    let resources: Value =
        serde_json::from_str(&row.resources).map_err(|_| ReadError::Corrupt {
            what: "a referral's resources are not a JSON array",
        })?;
    let mut record = json!({
        "id": row.id,
        "workflow_state": row.workflow_state,
        "status": row.status,
        "created_at": time(row.created_at),
        "submitted_by": row.submitted_by,
        "assigned_cbo": row.assigned_cbo,
        "subject_pseudonym": partner_pseudonym(&reads.pseudonyms, asker.partner, &row.holding).as_str(),
        "contact_at": time(row.contact_at),
        "district": row.district,
        "arrested": row.arrested,
        "resources": resources,
        "follow_up_by": row.follow_up_by,
    });
    let Some(object) = record.as_object_mut() else {
        return Err(ReadError::Corrupt {
            what: "a referral record is not an object",
        });
    };
    if discloses(decision, |f| REFERRAL_SEALED_FIELDS.contains(&f)) {
        let sealed = match &row.sealed {
            Some(bytes) => {
                let plain: Zeroizing<Vec<u8>> = reads
                    .vault
                    .unseal(
                        &referral_context(&row.id),
                        &Sealed::from_bytes(bytes.clone()),
                    )
                    .await?;
                serde_json::from_slice::<ReferralSealed>(&plain).map_err(|_| {
                    ReadError::Corrupt {
                        what: "a referral's sealed fields do not parse",
                    }
                })?
            }
            None => ReferralSealed::default(),
        };
        object.insert("cad_number".into(), json!(sealed.cad_number));
        object.insert("officer_id".into(), json!(sealed.officer_id));
        object.insert("circumstances".into(), json!(sealed.circumstances));
    }
    if discloses(decision, |f| f.starts_with("subject.")) {
        let identity =
            unseal_identity(&reads.vault, &row.identity_id, &row.identity_sealed).await?;
        object.insert(
            "subject".into(),
            json!({
                "given_name": identity.given_name,
                "surname": identity.surname,
                "dob": identity.dob,
                "sex": identity.sex,
                "address": {
                    "street": identity.street,
                    "city": identity.city,
                    "state": identity.state,
                    "zip": identity.zip,
                },
                "phone": identity.phone,
                "email": identity.email,
            }),
        );
    }
    Ok(record)
}

/// A case status report as the `case_status` resource.
pub(super) async fn case_record(
    reads: &Reads,
    case: &CaseRow,
    decision: &Decision,
) -> Result<Value, ReadError> {
    let mut record = Map::new();
    record.insert("id".into(), json!(case.id));
    record.insert("submitted_by".into(), json!(case.submitted_by));
    record.insert("program".into(), json!(case.program));
    record.insert("status".into(), json!(case.status));
    record.insert("effective_at".into(), time(case.effective_at));
    if discloses(decision, |f| f == "case_ref") {
        let plain = reads
            .vault
            .unseal(
                &case_context(&case.id),
                &Sealed::from_bytes(case.sealed.clone()),
            )
            .await?;
        let sealed: CaseSealed =
            serde_json::from_slice(&plain).map_err(|_| ReadError::Corrupt {
                what: "a case's sealed fields do not parse",
            })?;
        record.insert("case_ref".into(), json!(sealed.case_ref));
    }
    Ok(Value::Object(record))
}

/// A disclosure as the `audit_entry` resource. The person's internal
/// references are not part of it: the caller asked about one person.
/// A disclosure as the partner that recorded the consent it was made under
/// reads it: the recipient as its partner kind (`cbo`, `police`, `health`),
/// never its id, and the day, not the instant. Everything else as
/// [`disclosure_record`].
///
/// Why (docs/privacy.md, "Consents"): the recorder owes the person an
/// accounting (§164.528(b)(2): date, recipient, what, why), but a partner id
/// — or the minute of a read — would tell the recorder which other partner
/// holds a record about the person: only a CBO assigned a police referral can
/// read county health's case through it. The kind and the day say "a
/// community-based organization received these fields on that day for care
/// coordination"; the administrator's accounting names the partner, for the
/// recorder to pass on when the person asks for the full accounting (the
/// gateway's operator answers for it as the partners' business associate,
/// §164.504(e)(2)(ii)(G)). A recipient no longer in the registry is
/// `unknown`.
pub(super) fn recorder_disclosure_record(
    disclosure: &Disclosure,
    recipient_kind: Option<PartnerKind>,
) -> Value {
    let mut record = disclosure_record(disclosure);
    record["actor"] = json!(recipient_kind.map_or("unknown", PartnerKind::as_str));
    record["at"] = json!(disclosure.at.format("%Y-%m-%d").to_string());
    record
}

pub(super) fn disclosure_record(disclosure: &Disclosure) -> Value {
    let fields: Vec<Value> = disclosure
        .fields
        .iter()
        .map(|(field, how)| json!({"field": field, "how": how.as_str()}))
        .collect();
    json!({
        "seq": disclosure.seq,
        "at": disclosure.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "actor": disclosure.recipient,
        "action": disclosure.action,
        "purpose": disclosure.purpose,
        "resource": disclosure.resource,
        "record_id": disclosure.record_id,
        "fields": fields,
        "policy_version": disclosure.policy_version,
        "consent_id": disclosure.consent_id,
    })
}
