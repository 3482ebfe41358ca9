//! The referral status state machine: outcomes drive it.
//!
//! ```text
//!            contact_attempted      contacted       engaged       service_connected
//!   new ──────────► contact_attempted ──► contacted ──► engaged ──► service_connected
//!    │  (any step may be skipped; a step never goes back)                 │
//!    └──────────────┬─────────────────────────────────────────────────────┘
//!                   │ declined / unable_to_locate / closed
//!                   ▼
//!        declined | unable_to_locate | closed        (workflow_state = closed, final)
//! ```
//!
//! - The *open* statuses form a ladder (`new` < `contact_attempted` <
//!   `contacted` < `engaged` < `service_connected`). An outcome on the ladder
//!   moves the status up to its step and never down: a `contact_attempted`
//!   recorded late, after `engaged`, is stored as an outcome but leaves the status
//!   at `engaged`. Outcomes can arrive out of order (a case worker catching up on
//!   paperwork), and the status should say how far the follow-up got.
//! - `declined` (the person declined help), `unable_to_locate` and `closed` end
//!   the follow-up: the status becomes that outcome and `workflow_state` becomes
//!   `closed`. They are final — a later outcome is refused (409), since a closed
//!   referral has left the CBO's queue; a new contact is a new referral.
//! - `workflow_state` is `open` for every open status. It is what police see of
//!   their own referrals: that something happened is theirs to know, what
//!   happened is outcome data (design.md §1).
//!
//! A CBO that cannot take a referral does not record an outcome: it *declines the
//! assignment* (`POST /v1/referrals/{id}/assignment`), which moves the referral to
//! another CBO and leaves its status alone.

use super::vocabulary::{OutcomeKind, ReferralStatus, WorkflowState};

/// Why an outcome cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The referral is closed: its status is final.
    Closed(ReferralStatus),
}

impl ReferralStatus {
    /// The status after an outcome of `kind`.
    pub fn after(self, kind: OutcomeKind) -> Result<Self, TransitionError> {
        if self.workflow_state() == WorkflowState::Closed {
            return Err(TransitionError::Closed(self));
        }
        Ok(match kind {
            OutcomeKind::ContactAttempted => self.max(Self::ContactAttempted),
            OutcomeKind::Contacted => self.max(Self::Contacted),
            OutcomeKind::Engaged => self.max(Self::Engaged),
            OutcomeKind::ServiceConnected => self.max(Self::ServiceConnected),
            OutcomeKind::Declined => Self::Declined,
            OutcomeKind::UnableToLocate => Self::UnableToLocate,
            OutcomeKind::Closed => Self::Closed,
        })
    }

    pub fn workflow_state(self) -> WorkflowState {
        match self {
            Self::New
            | Self::ContactAttempted
            | Self::Contacted
            | Self::Engaged
            | Self::ServiceConnected => WorkflowState::Open,
            Self::Declined | Self::UnableToLocate | Self::Closed => WorkflowState::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::vocabulary::Code as _;
    use OutcomeKind as K;
    use ReferralStatus as S;

    #[test]
    fn the_ladder_only_climbs() {
        let status = S::New.after(K::Engaged).expect("open");
        assert_eq!(status, S::Engaged);
        assert_eq!(status.after(K::ContactAttempted), Ok(S::Engaged));
        assert_eq!(status.after(K::ServiceConnected), Ok(S::ServiceConnected));
        assert_eq!(S::New.after(K::ContactAttempted), Ok(S::ContactAttempted));
    }

    #[test]
    fn ending_outcomes_close_for_good() {
        for (kind, end) in [
            (K::Declined, S::Declined),
            (K::UnableToLocate, S::UnableToLocate),
            (K::Closed, S::Closed),
        ] {
            for &from in &[S::New, S::Contacted, S::ServiceConnected] {
                let ended = from.after(kind).expect("open");
                assert_eq!(ended, end);
                assert_eq!(ended.workflow_state(), WorkflowState::Closed);
                for &later in OutcomeKind::ALL {
                    assert_eq!(ended.after(later), Err(TransitionError::Closed(end)));
                }
            }
        }
        assert_eq!(S::ServiceConnected.workflow_state(), WorkflowState::Open);
    }
}
