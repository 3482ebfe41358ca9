//! The exchange itself: police referrals, their routing to a CBO, CBO follow-up
//! outcomes and reassignments, and health case statuses (the write side).
//!
//! Handlers in `http/` authenticate, read headers and hand the raw body here;
//! this module checks it, decides, and writes through the store in one
//! transaction with its audit entry. Nothing here knows HTTP, and nothing here
//! writes SQL (that is `store::{referrals, outcomes, cases, idempotency}`).
//!
//! # Layout
//! - [`vocabulary`]: the closed code lists (resource categories, outcome kinds,
//!   programs, case statuses, referral statuses).
//! - [`input`]: JSON to checked values, errors naming the field, never quoting it.
//! - [`subject`], [`referral`]: the request bodies and their checks.
//! - [`routing`]: the `[routing]` configuration and the choice of a CBO.
//! - [`intake`]: the writer task that writes referrals in grouped transactions.
//! - [`linking`]: the one function through which every record links its person.
//! - [`status`]: the referral status state machine (outcomes drive it).
//! - [`outcome`], [`assignment`], [`case`], [`consent`]: the other writes.
//! - [`idempotency`]: keyed hashes of `Idempotency-Key`s and bodies.
//!
//! # Who may write what
//! | write | who | anyone else |
//! |---|---|---|
//! | referral (single, batch) | police | 403 (the route exists for every partner; only police may use it) |
//! | outcome | the referral's assigned CBO | 404, as if the referral did not exist |
//! | reassignment | the assigned CBO (declining it) or an admin | 404 |
//! | case status | health | 403 |
//! | consent | a CBO on its assigned referral, a health partner on its own case | 403 for other kinds; 400 naming `referral`/`case` otherwise |
//! | consent revocation | the partner that recorded it | 404 |
//! | linkage review decision, unmerge | an admin | 403 |
//!
//! # Adding a write
//! 1. A request struct with `#[serde(deny_unknown_fields)]`, codes and dates as
//!    strings, a redacting `Debug` if it holds anything sensitive; a `check`
//!    that reads it with [`input::parse_json`] and collects every [`Invalid`] field.
//! 2. A store function per statement in `store/<table>.rs`.
//! 3. Here: begin with [`crate::store::Store::begin`], write, seal what is
//!    sensitive with the vault (context `<table>:<id>`), build the audit
//!    [`crate::audit::Event`]s (ids and codes only), call
//!    [`crate::audit::append`] last, commit.
//! 4. A handler in `http/` that takes a `Caller` and returns
//!    `Result<_, ApiError>` (an [`ExchangeError`] converts with `?`), its path
//!    in `http/openapi.rs`, a test on both backends.

pub mod assignment;
pub mod case;
pub mod consent;
pub mod idempotency;
pub mod input;
pub mod intake;
pub mod linking;
pub mod outcome;
pub mod referral;
pub mod review;
pub mod routing;
pub mod status;
pub mod subject;
pub use self::subject::Tolerance;
pub use crate::domain::vocabulary;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use self::idempotency::{Claim, IdempotencyKeys};
pub use self::input::{EventWindow, FieldError, Invalid};
use self::intake::Intake;
pub use self::intake::{
    GROUP_LIMIT, Pending, ReferralReceipt, Submission, SubmitError, SubmitResult, Submitted,
};
use self::referral::{CheckContext, ReferralDraft};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::PartnerId;
use crate::domain::ids::{ConsentId, ReferralId};
use crate::normalize::NormalizeOptions;
use crate::policy::Purpose;
use crate::pseudonym::Pseudonymizer;
use crate::randomness::RecordIds;
use crate::secrets::MasterSecret;
use crate::store::{Store, StoreError};
use crate::subjects::{RegistryError, SubjectRegistry};
use crate::vault::{Vault, VaultError};

/// Why an exchange write was refused or failed. The text never holds a value
/// from the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// Bad input: nothing was stored.
    #[error("{0}")]
    Invalid(Invalid),
    /// No such record, or not one the requester may write to.
    #[error("not found")]
    NotFound,
    /// The request conflicts with the record's state (a code-only explanation).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The requester's kind may not make this write at all (403).
    #[error("not allowed for this partner: {0}")]
    WrongKind(&'static str),
    /// The intake writer is not running (the gateway is stopping).
    #[error("the referral intake is not running")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<Invalid> for ExchangeError {
    fn from(invalid: Invalid) -> Self {
        Self::Invalid(invalid)
    }
}

impl From<sqlx::Error> for ExchangeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// What every exchange write shares.
pub(crate) struct Shared {
    config: Arc<Config>,
    store: Store,
    registry: Arc<SubjectRegistry>,
    vault: Vault,
    pseudonyms: Arc<Pseudonymizer>,
    idempotency: IdempotencyKeys,
    /// Keys the hash that groups one health case's reports.
    case_key: [u8; 32],
    clock: Arc<dyn Clock>,
    ids: Arc<RecordIds>,
}

/// The exchange service, one per gateway process. Cheap to share behind an `Arc`.
pub struct Exchange {
    shared: Arc<Shared>,
    intake: Intake,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

/// What the exchange needs from the gateway.
pub struct ExchangeParts {
    pub config: Arc<Config>,
    pub store: Store,
    pub registry: Arc<SubjectRegistry>,
    pub vault: Vault,
    pub pseudonyms: Arc<Pseudonymizer>,
    pub clock: Arc<dyn Clock>,
    /// Names referrals, outcomes, case statuses and consents.
    pub ids: Arc<RecordIds>,
}

const CASE_KEY_CONTEXT: &str = "crosswalk 2026-11 health case reference key v1";

impl Exchange {
    /// Builds the service and starts its intake writer (needs a Tokio runtime).
    pub fn start(parts: ExchangeParts, master: &MasterSecret) -> Self {
        let shared = Arc::new(Shared {
            idempotency: IdempotencyKeys::new(master),
            case_key: master.derive(CASE_KEY_CONTEXT),
            config: parts.config,
            store: parts.store,
            registry: parts.registry,
            vault: parts.vault,
            pseudonyms: parts.pseudonyms,
            clock: parts.clock,
            ids: parts.ids,
        });
        let intake = Intake::start(Arc::clone(&shared));
        Self { shared, intake }
    }

    /// Reads and checks one referral body. Touches no database: a bad
    /// referral costs nothing but CPU. `tolerance` says what a subject field
    /// that does not normalize costs: the request (a single referral), or
    /// that field (a batch line; the draft's `subject.dropped` names it).
    pub fn check_referral(
        &self,
        body: &[u8],
        tolerance: Tolerance,
    ) -> Result<ReferralDraft, Invalid> {
        let now = self.shared.clock.now();
        referral::check(
            body,
            &CheckContext {
                config: &self.shared.config,
                normalize: self.shared.normalize_options(now),
                tolerance,
                window: self.shared.event_window(now),
            },
        )
    }

    /// The idempotency claim of a single submission.
    pub fn claim(&self, partner: &PartnerId, key: &[u8], body: &[u8]) -> Claim {
        self.shared.idempotency.claim(partner, key, body)
    }

    /// The idempotency claim of batch line `line` sent under `key`.
    pub fn line_claim(&self, partner: &PartnerId, key: &[u8], line: u64, body: &[u8]) -> Claim {
        self.shared.idempotency.line_claim(partner, key, line, body)
    }

    /// Writes referrals (at most [`GROUP_LIMIT`]) through the intake; results in
    /// the order given.
    pub async fn submit(&self, items: Vec<Submission>) -> Result<Vec<SubmitResult>, ExchangeError> {
        self.intake.enqueue(items).await?.results().await
    }

    /// Queues referrals (at most [`GROUP_LIMIT`]) without waiting for the write.
    pub async fn enqueue(&self, items: Vec<Submission>) -> Result<Pending, ExchangeError> {
        self.intake.enqueue(items).await
    }

    /// Records an outcome for a referral assigned to `partner`.
    pub async fn record_outcome(
        &self,
        partner: &PartnerId,
        purpose: &Purpose,
        referral_id: &ReferralId,
        body: &[u8],
    ) -> Result<outcome::RecordedOutcome, ExchangeError> {
        outcome::record(&self.shared, partner, purpose, referral_id, body).await
    }

    /// Moves a referral to another CBO: `partner` is its assigned CBO declining
    /// it, or an admin.
    pub async fn reassign(
        &self,
        partner: &crate::auth::AuthenticatedPartner,
        purpose: &Purpose,
        referral_id: &ReferralId,
        body: &[u8],
    ) -> Result<assignment::Reassigned, ExchangeError> {
        assignment::reassign(&self.shared, partner, purpose, referral_id, body).await
    }

    /// Records a consent (`partner` is a CBO or a health partner).
    pub async fn record_consent(
        &self,
        partner: &PartnerId,
        kind: crate::config::PartnerKind,
        purpose: &Purpose,
        body: &[u8],
    ) -> Result<crate::store::consents::ConsentRow, ExchangeError> {
        consent::record(&self.shared, partner, kind, purpose, body).await
    }

    /// Revokes a consent `partner` recorded.
    pub async fn revoke_consent(
        &self,
        partner: &PartnerId,
        purpose: &Purpose,
        consent_id: &ConsentId,
    ) -> Result<crate::store::consents::ConsentRow, ExchangeError> {
        consent::revoke(&self.shared, partner, purpose, consent_id).await
    }

    /// A page of the linkage review queue (admins).
    pub async fn link_reviews(
        &self,
        partner: &crate::auth::AuthenticatedPartner,
        purpose: &Purpose,
        cursor: Option<&crate::domain::ids::ReviewId>,
        limit: u32,
    ) -> Result<review::ReviewPage, ExchangeError> {
        review::list(
            &self.shared,
            (&partner.id, partner.kind),
            purpose,
            cursor,
            limit,
        )
        .await
    }

    /// Accepts or rejects a linkage review (admins).
    pub async fn decide_link_review(
        &self,
        partner: &crate::auth::AuthenticatedPartner,
        purpose: &Purpose,
        review_id: &crate::domain::ids::ReviewId,
        body: &[u8],
    ) -> Result<review::DecisionBody, ExchangeError> {
        review::decide(
            &self.shared,
            (&partner.id, partner.kind),
            purpose,
            review_id,
            body,
        )
        .await
    }

    /// Splits a person two records were wrongly linked as (admins).
    pub async fn unmerge(
        &self,
        partner: &crate::auth::AuthenticatedPartner,
        purpose: &Purpose,
        body: &[u8],
    ) -> Result<review::UnmergeBody, ExchangeError> {
        review::unmerge(&self.shared, (&partner.id, partner.kind), purpose, body).await
    }

    /// Records a health partner's case status.
    pub async fn record_case(
        &self,
        partner: &PartnerId,
        purpose: &Purpose,
        body: &[u8],
    ) -> Result<case::RecordedCase, ExchangeError> {
        case::record(&self.shared, partner, purpose, body).await
    }
}

impl Shared {
    /// Clock skew tolerated for "not in the future" and "not before the
    /// referral": the same leeway as for token times.
    fn leeway(&self) -> TimeDelta {
        TimeDelta::seconds(i64::try_from(self.config.auth.leeway_secs).unwrap_or(0))
    }

    /// Where a contact, outcome or case time may fall (see [`EventWindow`]).
    fn event_window(&self, now: DateTime<Utc>) -> EventWindow {
        EventWindow {
            earliest: self.config.exchange.earliest_event(),
            latest: now + self.leeway(),
        }
    }

    fn normalize_options(&self, now: DateTime<Utc>) -> NormalizeOptions {
        NormalizeOptions::new(self.config.linkage.phone_region(), now.date_naive())
    }
}

/// RFC 3339 with the offset `Z`, to the second (or finer when given finer).
pub(crate) fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}
