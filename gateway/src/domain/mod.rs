//! The domain's words, on the ground floor: what a partner is, the purpose of
//! use a read declares, and the codes of the referral form and the follow-up
//! (resource categories, outcome kinds, programs, statuses). Everything above
//! parses into these at its boundary; nothing here imports from the rest of
//! the crate, so any layer may use them.

use std::fmt;

use serde::Deserialize;

pub mod ids;
pub mod purpose;
pub mod vocabulary;

pub use self::purpose::{InvalidPurpose, Purpose};

/// What a partner is. It comes from the registry, never from a token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerKind {
    Police,
    Health,
    Cbo,
    Evaluator,
    Admin,
}

impl PartnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Police => "police",
            Self::Health => "health",
            Self::Cbo => "cbo",
            Self::Evaluator => "evaluator",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for PartnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
