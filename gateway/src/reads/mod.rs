//! The read side, in one place: every record a partner reads goes through here,
//! so that every read is decided, released and audited the same way.
//!
//! A read flows:
//! 1. load the rows in a read snapshot ([`crate::store::Store::begin_read`]);
//! 2. per record: the requester's relationship to it, the active consent on file
//!    for its person that concerns the asker ([`consents`]: in period by the
//!    reader's clock, not revoked, naming the asker), its Part 2 flag → a
//!    [`DecisionInput`] → [`Policy::decide`] (cached per distinct input, so a
//!    page of one shape costs one evaluation);
//! 3. build the record as JSON with exactly the catalog's field names
//!    ([`crate::policy::resources`]), unsealing (vault) only the sealed parts
//!    the decision discloses — a decision that withholds every identifier
//!    never opens the identity;
//! 4. [`release_view`]: only [`ReleasedView`]s leave this module;
//! 5. one `disclosure` audit entry per released record (actor, purpose,
//!    resource, record id, internal subject, fields released and how, policy
//!    version and reason, consent id when one opened it), appended in one
//!    write transaction that commits before the response is sent.
//!
//! The rows are read in a snapshot before that write transaction rather than
//! inside it: on SQLite a write transaction holds the single writer lock, and
//! holding it while the vault unseals (which may need a second pooled
//! connection to fetch a data key) would serialize every read behind the vault
//! and could starve the pool. The entries still commit, all together, before a
//! byte of the response leaves; a failed append fails the request.
//!
//! # Who sees what (the policy decides; this module asks it)
//! - `GET /v1/referrals`: police list their own submissions (relationship
//!   `submitter`), CBOs their assigned queue (`assigned_cbo`). Any other kind
//!   asks the policy for relationship `none`: where it refuses (health,
//!   evaluator in the baseline) the list is refused; where it allows (admins'
//!   operational view without identities) every referral is listed in that view.
//!   A police partner or CBO never sees another partner's referrals in a list.
//! - `GET /v1/referrals/{id}`: the relationship is computed from the record;
//!   `deny` and `aggregate_only` answer exactly like a nonexistent id, so that
//!   existence is not revealed.
//! - `GET /v1/referrals/{id}/case-status`: first the referral must be readable
//!   (else the same not-found); then each linked case (same person, merges
//!   followed) is decided as `case_status` with relationship `assigned_cbo` for
//!   the referral's assigned CBO and `none` otherwise, Part 2 flag from the
//!   case. Cases the decision does not release are left out of the list,
//!   silently: the list looks the same whether or not such cases exist.
//!
//! # Adding a read
//! Add a function here that loads the rows, and for each record calls
//! [`Reads::decide`], builds its record with the catalog names and
//! [`Reads::release`]s it; return the views and let [`Reads::audit`] commit the
//! entries; a refusal is a [`ReadError`], never a response. Then a handler in
//! `http/` that takes a `Caller`, calls the new function on `state.reads` and
//! shapes its answer (errors convert to `ApiError` with `?`), its path in
//! `http/openapi.rs`, a row in the endpoint matrix
//! (`tests/api/endpoint_matrix.rs`).

mod audit_entries;
mod consents;
pub mod fhir;
mod outcomes;
mod records;

pub use self::audit_entries::{EntriesPage, EntriesRequest};
pub use self::consents::ReadableConsent;
pub use self::outcomes::OutcomePage;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use self::consents::ConsentFinder;
use self::records::{case_record, referral_record};
use crate::audit::read::{READ_ACTION, disclosures_under};
use crate::audit::{self, Event, released_fields};
use crate::clock::Clock;
use crate::config::{Config, PartnerKind};
use crate::domain::PartnerId;
use crate::domain::ids::{CaseId, ReferralId, SubjectRef};
use crate::exchange::vocabulary::{Code as _, ReferralStatus};
use crate::policy::{
    Action, ConsentScope, Decision, DecisionInput, FieldShaper, Policy, Purpose, RecordFacts,
    Relationship, ReleasedView, Requester, Resource, release_view,
};
use crate::pseudonym::Pseudonymizer;
use crate::store::consents::recorded_on_subjects;
use crate::store::holders::held_by;
use crate::store::referrals::{
    ReferralListQuery, ReferralOwner, ReferralRow, get_referral, list_referrals,
    same_person_subjects,
};
use crate::store::{Store, StoreError, cases};
use crate::subjects::RegistryError;
use crate::vault::{Vault, VaultError};

/// The action of a record-level read's audit entry.
pub const DISCLOSURE_ACTION: &str = "disclosure";

/// The most records one page of a list may hold, and the default.
pub const MAX_LIMIT: u32 = 200;
pub const DEFAULT_LIMIT: u32 = 50;

/// Why a read returned no data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No such record, or one the policy does not let the requester see (the
    /// two are indistinguishable to the caller). `refused` carries the
    /// policy's reason in the second case, for the refusal log.
    #[error("not found")]
    NotFound { refused: Option<String> },
    /// The policy refuses the request as a whole (a list it does not allow).
    #[error("refused by the policy")]
    Refused { reason: String },
    /// A parameter the requester may not use, named.
    #[error("invalid parameter {parameter}")]
    Invalid {
        parameter: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a sealed value could not be opened: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("a stored record is malformed: {what}")]
    Corrupt { what: &'static str },
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// Who reads, for what purpose.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub partner: &'a PartnerId,
    pub kind: PartnerKind,
    pub purpose: &'a Purpose,
}

/// Where a list page starts: after the last referral of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: i64,
    id: String,
}

impl Cursor {
    /// The opaque text form (`next_cursor`).
    pub fn encode(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(format!("{}:{}", self.created_at, self.id).as_bytes())
    }

    /// Parses what [`Cursor::encode`] made; anything else is `None`.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 128 {
            return None;
        }
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(text.as_bytes())
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once(':')?;
        let valid_id =
            (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        valid_id.then_some(())?;
        Some(Self {
            created_at: at.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

/// A page of a referral list.
#[derive(Debug)]
pub struct ReferralPage {
    pub referrals: Vec<ReleasedView>,
    pub next_cursor: Option<Cursor>,
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub status: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

/// A page of the accounting of disclosures for one person.
#[derive(Debug)]
pub struct DisclosurePage {
    pub disclosures: Vec<ReleasedView>,
    pub next_cursor: Option<i64>,
}

/// The read side's services, built once with the gateway and shared by every
/// request (cheap to clone: handles and `Arc`s).
#[derive(Clone)]
pub struct Reads {
    pub store: Store,
    pub vault: Vault,
    pub policy: Arc<Policy>,
    pub pseudonyms: Arc<Pseudonymizer>,
    pub clock: Arc<dyn Clock>,
    /// The registry, for the kind of a partner named in an audit entry (a
    /// recorder's accounting names recipients by kind only).
    pub config: Arc<Config>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").finish_non_exhaustive()
    }
}

/// The partner kinds that may read the accounting of disclosures as the
/// recorder of the person's consent (administrators read all of it).
fn may_record_consents(kind: PartnerKind) -> bool {
    matches!(kind, PartnerKind::Cbo | PartnerKind::Health)
}

/// Whose accounting is asked for: the person a referral or a case is about.
#[derive(Debug, Clone)]
pub enum AccountFor {
    /// `?referral=`: administrators, and the CBO that recorded the person's
    /// consent on it.
    Referral(ReferralId),
    /// `?case=`: administrators, and the health partner that recorded the
    /// person's consent (it knows its cases, never referral ids).
    Case(CaseId),
    /// A `referral` or `case` that is not a record id: answered exactly like
    /// an id that does not exist.
    NoSuchRecord {
        /// `referral` or `case`, as asked.
        accounting: &'static str,
    },
}

/// A record released to the asker, with what its audit entry needs.
struct Released {
    view: ReleasedView,
    entry: Event,
}

impl Reads {
    fn requester(asker: &Asker<'_>) -> Requester {
        Requester {
            id: asker.partner.to_string(),
            kind: asker.kind,
        }
    }

    /// The decision for one record, and the input it answered (for the consent
    /// to record).
    pub fn decide(
        &self,
        asker: &Asker<'_>,
        action: Action,
        resource: Resource,
        relationship: Relationship,
        record: RecordFacts,
        consent: Option<ConsentScope>,
    ) -> (DecisionInput, Arc<Decision>) {
        let input = DecisionInput {
            requester: Self::requester(asker),
            purpose: asker.purpose.clone(),
            action,
            resource,
            relationship,
            record,
            consent,
            study: None,
        };
        let decision = self.policy.decide(&input);
        (input, decision)
    }

    /// Shapes `record` for the asker and builds its disclosure entry.
    fn release(
        asker: &Asker<'_>,
        shaper: &FieldShaper<'_>,
        record: &serde_json::Value,
        (input, decision): &(DecisionInput, Arc<Decision>),
        record_id: &str,
        subject_ref: &str,
    ) -> Option<Released> {
        let view = release_view(decision, record, shaper).ok()?;
        let mut entry = Event::new(asker.partner, DISCLOSURE_ACTION)
            .with_purpose(asker.purpose.as_str())
            .with_record(input.resource.as_str(), record_id)
            .with_subject(subject_ref)
            .with_fields(released_fields(decision))
            .with_decision(&*decision.policy_version, &decision.reason);
        if let Some(consent) = decision.consent_to_record(input) {
            entry = entry.with_consent(consent);
        }
        Some(Released { view, entry })
    }

    /// Appends `entries` in one write transaction and commits it.
    async fn audit(&self, entries: &[Event]) -> Result<(), ReadError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        audit::append(&mut tx, entries, self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The asker's relationship to a referral.
    fn relationship(asker: &Asker<'_>, row: &ReferralRow) -> Relationship {
        match asker.kind {
            PartnerKind::Police if row.submitted_by == asker.partner => Relationship::Submitter,
            PartnerKind::Cbo if row.assigned_cbo == asker.partner => Relationship::AssignedCbo,
            _ => Relationship::None,
        }
    }

    /// Whose referrals a list shows, and the asker's relationship to them.
    fn list_scope<'a>(asker: &Asker<'a>) -> (ReferralOwner<'a>, Relationship) {
        match asker.kind {
            PartnerKind::Police => (
                ReferralOwner::SubmittedBy(asker.partner),
                Relationship::Submitter,
            ),
            PartnerKind::Cbo => (
                ReferralOwner::AssignedTo(asker.partner),
                Relationship::AssignedCbo,
            ),
            PartnerKind::Health | PartnerKind::Evaluator | PartnerKind::Admin => {
                (ReferralOwner::Everyone, Relationship::None)
            }
        }
    }

    /// The list as a whole, before any consent: refused outright if the
    /// policy gives no record-level view, and `status` may only filter for a
    /// requester it is released to (police see `workflow_state` only).
    fn check_list(
        &self,
        asker: &Asker<'_>,
        relationship: Relationship,
        request: &ListRequest,
    ) -> Result<(), ReadError> {
        let (_, list_decision) = self.decide(
            asker,
            Action::List,
            Resource::Referral,
            relationship,
            RecordFacts::default(),
            None,
        );
        if !list_decision.allows_records() {
            return Err(ReadError::Refused {
                reason: list_decision.reason.clone(),
            });
        }
        if let Some(status) = &request.status {
            if !list_decision.disclosed_fields().any(|f| f == "status") {
                return Err(ReadError::Invalid {
                    parameter: "status",
                    problem: "the policy does not release referral status to this partner; \
                              filter on what you can see"
                        .to_owned(),
                });
            }
            if ReferralStatus::parse(status).is_none() {
                return Err(ReadError::Invalid {
                    parameter: "status",
                    problem: format!("must be one of {}", ReferralStatus::expected()),
                });
            }
        }
        Ok(())
    }

    /// `GET /v1/referrals`: the asker's own submissions or assigned queue,
    /// newest first.
    pub async fn list_referrals(
        &self,
        asker: &Asker<'_>,
        request: &ListRequest,
    ) -> Result<ReferralPage, ReadError> {
        let (owner, relationship) = Self::list_scope(asker);
        self.check_list(asker, relationship, request)?;
        let limit = request.limit.clamp(1, MAX_LIMIT);
        let mut snapshot = self.store.begin_read().await?;
        let rows = list_referrals(
            &mut snapshot,
            &ReferralListQuery {
                owner,
                status: request.status.as_deref(),
                before: request
                    .cursor
                    .as_ref()
                    .map(|c| (c.created_at, c.id.as_str())),
                limit: i64::from(limit) + 1,
            },
        )
        .await?;
        let mut finder = ConsentFinder::new(asker, self.clock.now().timestamp_micros());
        let mut consents = Vec::with_capacity(rows.len());
        for row in &rows {
            consents.push(
                finder
                    .for_record(&mut snapshot, &row.subject_id, &row.submitted_by)
                    .await?,
            );
        }
        snapshot.commit().await?;

        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let page: Vec<(ReferralRow, Option<ConsentScope>)> = rows
            .into_iter()
            .zip(consents)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        let next_cursor = more
            .then(|| {
                page.last().map(|(row, _)| Cursor {
                    created_at: row.created_at,
                    id: row.id.clone(),
                })
            })
            .flatten();
        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let mut views = Vec::with_capacity(page.len());
        let mut entries = Vec::with_capacity(page.len());
        for (row, consent) in page {
            let decided = self.decide(
                asker,
                Action::List,
                Resource::Referral,
                Self::relationship(asker, &row),
                RecordFacts::held_by(&row.submitted_by, false),
                consent,
            );
            if !decided.1.allows_records() {
                continue;
            }
            let record = referral_record(self, asker, &row, &decided.1).await?;
            if let Some(released) =
                Self::release(asker, &shaper, &record, &decided, &row.id, &row.subject_id)
            {
                views.push(released.view);
                entries.push(released.entry);
            }
        }
        self.audit(&entries).await?;
        Ok(ReferralPage {
            referrals: views,
            next_cursor,
        })
    }

    /// The referral `id` if the asker may read it, with the decision that
    /// allowed it. Not found, and refused, are the same error to the caller.
    async fn readable_referral(
        &self,
        asker: &Asker<'_>,
        id: &ReferralId,
    ) -> Result<(ReferralRow, (DecisionInput, Arc<Decision>)), ReadError> {
        let mut snapshot = self.store.begin_read().await?;
        let Some(row) = get_referral(&mut snapshot, id).await? else {
            return Err(ReadError::NotFound { refused: None });
        };
        let consent = ConsentFinder::new(asker, self.clock.now().timestamp_micros())
            .for_record(&mut snapshot, &row.subject_id, &row.submitted_by)
            .await?;
        snapshot.commit().await?;
        let decided = self.decide(
            asker,
            Action::Read,
            Resource::Referral,
            Self::relationship(asker, &row),
            RecordFacts::held_by(&row.submitted_by, false),
            consent,
        );
        if !decided.1.allows_records() {
            return Err(ReadError::NotFound {
                refused: Some(decided.1.reason.clone()),
            });
        }
        Ok((row, decided))
    }

    /// `GET /v1/referrals/{id}`: the fields the policy releases.
    pub async fn read_referral(
        &self,
        asker: &Asker<'_>,
        id: &ReferralId,
    ) -> Result<ReleasedView, ReadError> {
        let (row, decided) = self.readable_referral(asker, id).await?;
        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let record = referral_record(self, asker, &row, &decided.1).await?;
        let released = Self::release(asker, &shaper, &record, &decided, &row.id, &row.subject_id)
            .ok_or(ReadError::NotFound { refused: None })?;
        self.audit(std::slice::from_ref(&released.entry)).await?;
        Ok(released.view)
    }

    /// `GET /v1/referrals/{id}/case-status`: the latest status of each health
    /// case about the referral's person that the policy releases to the asker.
    pub async fn case_statuses(
        &self,
        asker: &Asker<'_>,
        referral_id: &ReferralId,
    ) -> Result<Vec<ReleasedView>, ReadError> {
        let (referral, _) = self.readable_referral(asker, referral_id).await?;
        let relationship = match asker.kind {
            PartnerKind::Cbo if referral.assigned_cbo == asker.partner => Relationship::AssignedCbo,
            _ => Relationship::None,
        };
        let mut snapshot = self.store.begin_read().await?;
        let family =
            same_person_subjects(&mut snapshot, SubjectRef::of(&referral.subject_id)).await?;
        let reports = cases::cases_of_subjects(&mut snapshot, &family).await?;
        // The latest report of each case (reports come oldest first).
        let mut latest: Vec<cases::CaseRow> = Vec::new();
        for report in reports {
            if let Some(slot) = latest
                .iter_mut()
                .find(|c| c.submitted_by == report.submitted_by && c.case_key == report.case_key)
            {
                *slot = report;
            } else {
                latest.push(report);
            }
        }
        let mut finder = ConsentFinder::new(asker, self.clock.now().timestamp_micros());
        let mut consents = Vec::with_capacity(latest.len());
        for case in &latest {
            consents.push(
                finder
                    .for_record(&mut snapshot, &case.subject_id, &case.submitted_by)
                    .await?,
            );
        }
        snapshot.commit().await?;

        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        let mut views = Vec::new();
        let mut entries = Vec::new();
        for (case, consent) in latest.iter().zip(consents) {
            let decided = self.decide(
                asker,
                Action::Read,
                Resource::CaseStatus,
                relationship,
                RecordFacts::held_by(&case.submitted_by, case.part2),
                consent,
            );
            if !decided.1.allows_records() {
                continue;
            }
            let record = case_record(self, case, &decided.1).await?;
            if let Some(released) = Self::release(
                asker,
                &shaper,
                &record,
                &decided,
                &case.id,
                &case.subject_id,
            ) {
                views.push(released.view);
                entries.push(released.entry);
            }
        }
        self.audit(&entries).await?;
        Ok(views)
    }

    /// `GET /v1/audit/disclosures?referral=` (or `?case=`): the disclosures
    /// about the person the record is about (all their internal subjects,
    /// merges followed), oldest first, shaped by the policy's `audit_entry`
    /// decision. The read is itself recorded (`audit.read`).
    ///
    /// Administrators read every disclosure (relationship `none`). A CBO or
    /// health partner that recorded a consent of the person's reads the
    /// disclosures made under the consents it recorded (relationship
    /// `submitter`: it recorded the consent those entries name) — what the
    /// person authorized through it — and not the rest, which would tell it
    /// which other partners hold records about the person. To anyone else, and
    /// to a recorder asking about a person whose consent it did not record or a
    /// record that does not exist, the answer is the same 403.
    pub async fn disclosures(
        &self,
        asker: &Asker<'_>,
        about: &AccountFor,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<DisclosurePage, ReadError> {
        let refused = || ReadError::Refused {
            reason: "only an administrator, or the partner that recorded the person's consent, \
                     reads the accounting of disclosures"
                .to_owned(),
        };
        let admin = asker.kind == PartnerKind::Admin;
        if !admin && !may_record_consents(asker.kind) {
            return Err(refused());
        }
        let relationship = if admin {
            Relationship::None
        } else {
            Relationship::Submitter
        };
        let (_, decision) = self.decide(
            asker,
            Action::List,
            Resource::AuditEntry,
            relationship,
            RecordFacts::default(),
            None,
        );
        if !decision.allows_records() {
            return Err(ReadError::Refused {
                reason: decision.reason.clone(),
            });
        }
        let mut snapshot = self.store.begin_read().await?;
        let subject = match about {
            AccountFor::Referral(id) => get_referral(&mut snapshot, id)
                .await?
                .map(|referral| referral.subject_id),
            AccountFor::Case(id) => cases::case_owner(&mut snapshot, id)
                .await?
                .map(|(_, subject)| subject),
            AccountFor::NoSuchRecord { .. } => None,
        };
        let family = match &subject {
            Some(subject) => same_person_subjects(&mut snapshot, SubjectRef::of(subject)).await?,
            None => Vec::new(),
        };
        let only_consents = if admin {
            None
        } else {
            let recorded = recorded_on_subjects(&mut snapshot, asker.partner, &family).await?;
            if recorded.is_empty() {
                return Err(refused());
            }
            Some(recorded)
        };
        snapshot.commit().await?;
        if subject.is_none() {
            return Err(ReadError::NotFound { refused: None });
        }

        // The page is read in the transaction that records reading it.
        let mut tx = self.store.begin().await?;
        let mut page = disclosures_under(
            &mut tx,
            &family,
            only_consents.as_deref(),
            cursor,
            limit.clamp(1, MAX_LIMIT),
        )
        .await?;
        let views = self
            .shape_disclosures(&mut tx, asker, &decision, &mut page.disclosures)
            .await?;
        let accounting = match about {
            AccountFor::Referral(_) => "referral",
            AccountFor::Case(_) => "case",
            AccountFor::NoSuchRecord { accounting } => accounting,
        };
        let read = Event::new(asker.partner, READ_ACTION)
            .with_purpose(asker.purpose.as_str())
            .with_resource(Resource::AuditEntry.as_str())
            .with_fields(released_fields(&decision))
            .with_decision(&*decision.policy_version, &decision.reason)
            .with_detail(json!({"returned": views.len(), "accounting": accounting}));
        audit::append(&mut tx, &[read], self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(DisclosurePage {
            disclosures: views,
            next_cursor: page.next_cursor,
        })
    }

    /// The accounting's entries as `asker` reads them: all of them for an
    /// administrator; for the recorder of a consent, only those of records it
    /// holds, with the recipient as its kind and the day
    /// ([`records::recorder_disclosure_record`]).
    async fn shape_disclosures(
        &self,
        tx: &mut crate::store::Tx<'_>,
        asker: &Asker<'_>,
        decision: &Decision,
        disclosures: &mut Vec<crate::audit::read::Disclosure>,
    ) -> Result<Vec<ReleasedView>, ReadError> {
        let records: Vec<serde_json::Value> = if asker.kind == PartnerKind::Admin {
            disclosures.iter().map(records::disclosure_record).collect()
        } else {
            self.keep_held(tx, asker, disclosures).await?;
            disclosures
                .iter()
                .map(|d| {
                    let kind = self.config.partners.get(&d.recipient).map(|p| p.kind);
                    records::recorder_disclosure_record(d, kind)
                })
                .collect()
        };
        let shaper = FieldShaper::for_partner(&self.pseudonyms, asker.partner);
        Ok(records
            .iter()
            .filter_map(|record| release_view(decision, record, &shaper).ok())
            .collect())
    }

    /// Keeps only disclosures of records `asker` holds. Disclosures under its
    /// consents are of its own records anyway (a consent opens only its
    /// recorder's records); this also drops any made before that rule, under a
    /// consent that then opened another partner's record, which would tell the
    /// recorder that the other partner holds one.
    async fn keep_held(
        &self,
        tx: &mut crate::store::Tx<'_>,
        asker: &Asker<'_>,
        disclosures: &mut Vec<crate::audit::read::Disclosure>,
    ) -> Result<(), ReadError> {
        let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in disclosures.iter() {
            if let (Some(resource), Some(id)) = (&d.resource, &d.record_id) {
                by_resource.entry(resource).or_default().push(id);
            }
        }
        let mut held = std::collections::HashSet::new();
        for (resource, ids) in by_resource {
            for id in held_by(tx, resource, &ids, asker.partner).await? {
                held.insert((resource.to_owned(), id));
            }
        }
        disclosures.retain(|d| match (&d.resource, &d.record_id) {
            (Some(resource), Some(id)) => held.contains(&(resource.clone(), id.clone())),
            _ => false,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            created_at: 1_795_388_400_000_123,
            id: "0190c0de-7a1b-7c2d-8e3f-0123456789ab".to_owned(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "abc", "MTIzOng", "bm90OmFuLWlk", &"A".repeat(200)] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
