//! Consents on the read side: which consent a decision is made under, and
//! `GET /v1/consents/{id}`.
//!
//! # Which consent the policy sees
//! A person may have several consents on file (recorded by a CBO on a
//! referral, by a health partner on a case, renewed, narrowed ...). The
//! policy's input holds one ([`crate::policy::ConsentScope`]), so that a
//! decision can be cached by scope and the disclosure names the one consent
//! that allowed it. [`ConsentFinder::for_record`] picks, among the person's
//! consents (every subject of theirs, merges followed) that are **active at the
//! reader's clock** (in their period, not revoked):
//! 1. only those whose discloser holds the record being decided: a consent
//!    opens only the records of the partner that recorded it (42 CFR §2.31
//!    names the program that discloses) — a CBO's consent never opens county
//!    health's case, and the policy checks the same;
//! 2. only those that name the asker — by partner id or by kind in
//!    `recipients`, or by id in the Part 2 recipients — and cover the declared
//!    purpose: any other consent cannot open anything for this asker;
//! 3. of those, one naming the asker by id before one naming only its kind
//!    (the more specific authorization);
//! 4. then the most recently recorded.
//!
//! No consent is merged with another: each disclosure is accounted to exactly
//! one consent the person gave. A deliberate simplification: a person with one
//! consent covering `health` and another covering `operational` for police
//! opens one of the two per record, not both.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Asker, ReadError, Reads};
use crate::domain::ids::{ConsentId, SubjectRef};
use crate::exchange::consent::consent_record;
use crate::policy::{
    Action, ConsentScope, FieldClass, Purpose, RecordFacts, Relationship, Resource,
};
use crate::store::Tx;
use crate::store::consents::{ConsentRow, get_consent, unrevoked_of_subjects};
use crate::store::referrals::same_person_subjects;
use crate::store::subjects::clusters::{RecordOf, holding_of};
use crate::subjects::partner_pseudonym;

/// The record `consent` was recorded on.
fn consented_record(consent: &ConsentRow) -> Option<RecordOf<'_>> {
    match (&consent.referral_id, &consent.case_id) {
        (Some(referral), _) => Some(RecordOf::Referral(referral)),
        (None, Some(case)) => Some(RecordOf::Case(case)),
        (None, None) => None,
    }
}

/// Finds the consent a decision is made under, once per person and record
/// holder per request.
pub(crate) struct ConsentFinder<'a> {
    asker: &'a Asker<'a>,
    now: i64,
    /// The person's consents not yet revoked, by each of their subjects.
    consents: HashMap<String, Arc<[ConsentRow]>>,
    /// The choice made for a (subject, holder).
    chosen: HashMap<(String, String), Option<ConsentScope>>,
}

impl<'a> ConsentFinder<'a> {
    pub(crate) fn new(asker: &'a Asker<'a>, now: i64) -> Self {
        Self {
            asker,
            now,
            consents: HashMap::new(),
            chosen: HashMap::new(),
        }
    }

    /// The consent on file for `subject_id`'s person that the policy should
    /// see for this asker on a record `holder` holds, if any (see the module
    /// docs).
    pub(crate) async fn for_record(
        &mut self,
        tx: &mut Tx<'_>,
        subject_id: &str,
        holder: &str,
    ) -> Result<Option<ConsentScope>, ReadError> {
        let key = (subject_id.to_owned(), holder.to_owned());
        if let Some(found) = self.chosen.get(&key) {
            return Ok(found.clone());
        }
        let consents = if let Some(consents) = self.consents.get(subject_id) {
            consents.clone()
        } else {
            let family = same_person_subjects(tx, SubjectRef::of(subject_id)).await?;
            let consents: Arc<[ConsentRow]> = unrevoked_of_subjects(tx, &family).await?.into();
            for subject in family {
                self.consents.insert(subject, consents.clone());
            }
            self.consents
                .insert(subject_id.to_owned(), consents.clone());
            consents
        };
        let chosen = choose(self.asker, self.now, holder, &consents)
            .map(scope)
            .transpose()?;
        self.chosen.insert(key, chosen.clone());
        Ok(chosen)
    }
}

/// How specifically `consent` names the asker: 2 by id, 1 by kind, `None` if
/// it does not (or does not cover the purpose).
fn names_asker(asker: &Asker<'_>, consent: &ConsentRow) -> Option<u8> {
    if !consent.purposes.iter().any(|p| p == asker.purpose.as_str()) {
        return None;
    }
    let by_id = consent
        .recipients
        .iter()
        .chain(&consent.part2_recipients)
        .any(|r| r == asker.partner);
    if by_id {
        Some(2)
    } else if consent.recipients.iter().any(|r| r == asker.kind.as_str()) {
        Some(1)
    } else {
        None
    }
}

fn choose<'c>(
    asker: &Asker<'_>,
    now: i64,
    holder: &str,
    consents: &'c [ConsentRow],
) -> Option<&'c ConsentRow> {
    consents
        .iter()
        .filter(|c| c.is_active(now) && c.discloser == holder)
        .filter_map(|c| names_asker(asker, c).map(|rank| (rank, c.created_at, &c.id, c)))
        .max_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
        .map(|(_, _, _, c)| c)
}

/// The policy's view of a stored consent.
fn scope(row: &ConsentRow) -> Result<ConsentScope, ReadError> {
    let corrupt = || ReadError::Corrupt {
        what: "a stored consent holds a code the gateway does not know",
    };
    let purposes = row
        .purposes
        .iter()
        .map(|p| p.parse::<Purpose>().map_err(|_| corrupt()))
        .collect::<Result<Vec<_>, _>>()?;
    let classes = row
        .classes
        .iter()
        .map(|c| {
            FieldClass::ALL
                .into_iter()
                .find(|class| class.as_str() == c)
                .ok_or_else(corrupt)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ConsentScope {
        id: row.id.clone(),
        recipients: row.recipients.clone(),
        purposes,
        classes,
        part2_recipients: row.part2_recipients.clone(),
        discloser: row.discloser.clone(),
    })
}

/// A consent released to the asker.
#[derive(Debug)]
pub struct ReadableConsent {
    /// The consent's fields the policy releases (catalog names).
    pub view: crate::policy::ReleasedView,
    /// The same, as an HL7 FHIR R4 Consent ([`super::fhir`]).
    pub fhir: Value,
}

impl Reads {
    /// `GET /v1/consents/{id}`: the consent as the policy releases it to the
    /// asker (the baseline: its recorder and administrators). Anything else is
    /// the same not-found as an unknown id. Recorded as a disclosure.
    pub async fn read_consent(
        &self,
        asker: &Asker<'_>,
        id: &ConsentId,
    ) -> Result<ReadableConsent, ReadError> {
        let mut snapshot = self.store.begin_read().await?;
        let row = get_consent(&mut snapshot, id).await?;
        // The identity of the record it was recorded on: the FHIR `patient`
        // is the asker's own pseudonym of that person.
        let holding = match row.as_ref().map(consented_record) {
            Some(Some(of)) => holding_of(&mut snapshot, of).await?,
            _ => None,
        };
        snapshot.commit().await?;
        let Some(row) = row else {
            return Err(ReadError::NotFound { refused: None });
        };
        let relationship = if row.recorded_by == asker.partner {
            Relationship::Submitter
        } else {
            Relationship::None
        };
        let decided = self.decide(
            asker,
            Action::Read,
            Resource::Consent,
            relationship,
            RecordFacts::held_by(&row.recorded_by, false),
            None,
        );
        if !decided.1.allows_records() {
            return Err(ReadError::NotFound {
                refused: Some(decided.1.reason.clone()),
            });
        }
        let shaper = crate::policy::FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let record: Value = consent_record(&row);
        let released = Self::release(asker, &shaper, &record, &decided, &row.id, &row.subject_id)
            .ok_or(ReadError::NotFound { refused: None })?;
        self.audit(std::slice::from_ref(&released.entry)).await?;
        let active = row.is_active(self.clock.now().timestamp_micros());
        let holding = holding.ok_or(ReadError::Corrupt {
            what: "a consent's record has no identity",
        })?;
        let pseudonym = partner_pseudonym(&self.pseudonyms, asker.partner, &holding);
        let fhir =
            super::fhir::consent_resource(released.view.as_json(), active, pseudonym.as_str());
        Ok(ReadableConsent {
            view: released.view,
            fhir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PartnerKind;

    fn consent(id: &str, recipients: &[&str], created_at: i64) -> ConsentRow {
        ConsentRow {
            id: id.to_owned(),
            subject_id: "s".to_owned(),
            referral_id: Some("r".to_owned()),
            case_id: None,
            recorded_by: "cbo-north".to_owned(),
            discloser: "cbo-north".to_owned(),
            method: "written".to_owned(),
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            purposes: vec!["CAREMGT".to_owned()],
            classes: vec!["health".to_owned()],
            part2_recipients: Vec::new(),
            part2: false,
            period_start: 0,
            period_end: 100,
            evidence_hash: String::new(),
            created_at,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[test]
    fn the_consent_naming_the_asker_most_specifically_and_newest_is_chosen() {
        let purpose: Purpose = "CAREMGT".parse().expect("purpose");
        let pd = crate::domain::PartnerId::parse("pd").expect("a partner id");
        let asker = Asker {
            partner: &pd,
            kind: PartnerKind::Police,
            purpose: &purpose,
        };
        let by_kind_newer = consent("b", &["police"], 20);
        let by_id = consent("a", &["pd"], 10);
        let other = consent("c", &["cbo"], 30);
        let mut expired = consent("d", &["pd"], 40);
        expired.period_end = 50;
        let mut revoked = consent("e", &["pd"], 45);
        revoked.revoked_at = Some(1);
        let mut elsewhere = consent("g", &["pd"], 50);
        elsewhere.discloser = "county-health".to_owned();
        let all = [
            by_kind_newer.clone(),
            by_id,
            other,
            expired,
            revoked,
            elsewhere,
        ];
        let choose = |asker: &Asker<'_>, now: i64, consents: &[ConsentRow]| {
            choose(asker, now, "cbo-north", consents).map(|c| c.id.clone())
        };

        assert_eq!(choose(&asker, 60, &all).as_deref(), Some("a"));
        assert_eq!(
            super::choose(&asker, 60, "county-health", &all).map(|c| c.id.as_str()),
            Some("g"),
            "on county health's records, only county health's consent"
        );
        assert_eq!(
            choose(
                &asker,
                60,
                &[by_kind_newer.clone(), consent("f", &["police"], 25)]
            )
            .as_deref(),
            Some("f"),
            "newest among equals"
        );
        assert_eq!(choose(&asker, 100, &all), None, "period over");
        let perfmsr: Purpose = "PERFMSR".parse().expect("purpose");
        let other_purpose = Asker {
            purpose: &perfmsr,
            ..asker
        };
        assert!(
            choose(&other_purpose, 60, &all).is_none(),
            "purpose not covered"
        );
    }
}
