//! A consent as an HL7 FHIR R4 `Consent` resource (`GET /v1/consents/{id}`
//! with `Accept: application/fhir+json`).
//!
//! Built from the consent's **released view** (what the policy gave the
//! asker), never from the stored row, so the FHIR form cannot say more than
//! the JSON form. The mapping (docs/api.md, "Consents"):
//!
//! | Crosswalk | FHIR R4 Consent |
//! |---|---|
//! | in period and not revoked | `status` `active`; otherwise `inactive` |
//! | — | `scope` `patient-privacy` (consentscope), `category` LOINC 59284-0 "Patient Consent" |
//! | the person | `patient`: an identifier reference whose value is the asker's own pseudonym of the person (`cwp-...`, system `urn:crosswalk:pseudonym`; from the asker's own cluster of the consented record's identity, see `subjects/clusters.rs`), never an identifier |
//! | `recorded_by` | `organization` (system `urn:crosswalk:partner`) |
//! | `method`, `evidence_hash`, `revoked_at`, `referral_id`/`case_id` | extensions under `https://crosswalk.invalid/fhir/StructureDefinition/` (FHIR's `Attachment.hash` is SHA-1 of the attachment itself, which is not stored) |
//! | `part2` | `policyRule` v3-ActCode `42CFRPart2` (else `OPTIN`) |
//! | `period_start`/`period_end` | `provision.period`; `dateTime` is `period_start` (when it was given) |
//! | `recipients` | `provision.actor[]`, role v3-ParticipationType `IRCP` (information recipient), a partner id (`urn:crosswalk:partner`) or kind (`urn:crosswalk:partner-kind`) |
//! | `discloser` | `provision.actor[]` first, role v3-ParticipationType `CST` (custodian: the partner whose records the consent opens — for a Part 2 consent, the Part 2 program; `organization` stays the recorder, which is the same partner) |
//! | `purposes` | `provision.purpose[]`, system v3-ActReason (HL7 PurposeOfUse) |
//! | `classes` | `provision.code[]`, system `https://crosswalk.invalid/fhir/CodeSystem/field-class`; `substance_use` also `provision.securityLabel` v3-ActCode `ETH` |
//! | Part 2 recipients | a nested `provision` (permit, `ETH`) whose actors are the named recipients |
//! | — | `provision.type` `permit`, `provision.action` consentaction `disclose` |

use serde_json::{Value, json};

const EXT: &str = "https://crosswalk.invalid/fhir/StructureDefinition/";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PURPOSE_OF_USE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTNER: &str = "urn:crosswalk:partner";
const PARTNER_KIND: &str = "urn:crosswalk:partner-kind";
const RECIPIENT_KINDS: [&str; 3] = ["police", "cbo", "health"];

fn strings(view: &Value, key: &str) -> Vec<String> {
    view[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn recipient_actor(recipient: &str) -> Value {
    let system = if RECIPIENT_KINDS.contains(&recipient) {
        PARTNER_KIND
    } else {
        PARTNER
    };
    actor("IRCP", "information recipient", system, recipient)
}

/// The partner whose records the consent opens: the custodian that discloses.
fn discloser_actor(discloser: &str) -> Value {
    actor("CST", "custodian", PARTNER, discloser)
}

fn actor(code: &str, display: &str, system: &str, value: &str) -> Value {
    json!({
        "role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": code,
            "display": display,
        }]},
        "reference": {"identifier": {"system": system, "value": value}},
    })
}

fn extension(name: &str, kind: &str, value: &Value) -> Option<Value> {
    (!value.is_null()).then(|| {
        let mut ext = json!({"url": format!("{EXT}{name}")});
        ext[kind] = value.clone();
        ext
    })
}

/// The FHIR R4 Consent for a released consent view. `active` is whether the
/// consent is in force at the reader's clock; `pseudonym` is the asker's own
/// pseudonym of the person.
pub fn consent_resource(view: &Value, active: bool, pseudonym: &str) -> Value {
    let purposes: Vec<Value> = strings(view, "purposes")
        .iter()
        .map(|p| json!({"system": PURPOSE_OF_USE, "code": p}))
        .collect();
    let classes = strings(view, "classes");
    let codes: Vec<Value> = classes
        .iter()
        .map(|c| {
            json!({"coding": [{
                "system": "https://crosswalk.invalid/fhir/CodeSystem/field-class",
                "code": c,
            }]})
        })
        .collect();
    let eth = json!({"system": ACT_CODE, "code": "ETH", "display": "substance abuse information sensitivity"});
    let part2 = view["part2"].is_object();
    let actors: Vec<Value> = view["discloser"]
        .as_str()
        .map(discloser_actor)
        .into_iter()
        .chain(
            strings(view, "recipients")
                .iter()
                .map(|r| recipient_actor(r)),
        )
        .collect();
    let mut provision = json!({
        "type": "permit",
        "period": {"start": view["period_start"], "end": view["period_end"]},
        "actor": actors,
        "action": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
            "code": "disclose",
        }]}],
        "purpose": purposes,
        "code": codes,
    });
    if classes.iter().any(|c| c == "substance_use") {
        provision["securityLabel"] = json!([eth]);
    }
    if part2 {
        let named: Vec<Value> = view["part2"]["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(recipient_actor)
            .collect();
        provision["provision"] = json!([{
            "type": "permit",
            "actor": named,
            "securityLabel": [eth],
            "purpose": provision["purpose"],
        }]);
    }
    let extensions: Vec<Value> = [
        extension("consent-method", "valueCode", &view["method"]),
        extension("evidence-hash", "valueString", &view["evidence_hash"]),
        extension("revoked-at", "valueDateTime", &view["revoked_at"]),
        extension("recorded-on-referral", "valueString", &view["referral_id"]),
        extension("recorded-on-case", "valueString", &view["case_id"]),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut resource = json!({
        "resourceType": "Consent",
        "id": view["id"],
        "status": if active { "active" } else { "inactive" },
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }]},
        "category": [{"coding": [{
            "system": "http://loinc.org",
            "code": "59284-0",
            "display": "Patient Consent",
        }]}],
        "dateTime": view["period_start"],
        "patient": {
            "type": "Patient",
            "identifier": {"system": "urn:crosswalk:pseudonym", "value": pseudonym},
        },
        "policyRule": {"coding": [{
            "system": ACT_CODE,
            "code": if part2 { "42CFRPart2" } else { "OPTIN" },
        }]},
        "provision": provision,
    });
    if let Some(recorder) = view["recorded_by"].as_str() {
        resource["organization"] = json!([{"identifier": {"system": PARTNER, "value": recorder}}]);
    }
    if !extensions.is_empty() {
        resource["extension"] = Value::Array(extensions);
    }
    resource
}
