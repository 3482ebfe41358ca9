//! The domain's words, on the ground floor: what a partner is, the purpose of
//! use a read declares, and the codes of the referral form and the follow-up
//! (resource categories, outcome kinds, programs, statuses). Everything above
//! parses into these at its boundary; nothing here imports from the rest of
//! the crate, so any layer may use them.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

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

/// A partner's id as the registry names it: 1-64 of `a-z`, `0-9` and `-`.
/// A token's `sub` becomes one only once the registry knows it, so a
/// `PartnerId` in hand names a partner that was registered when the request
/// came in. Reads as a `&str` where one is wanted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PartnerId(String);

/// Text that does not have the form of a partner id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAPartnerId;

impl fmt::Display for NotAPartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a partner id: 1-64 of a-z, 0-9 and -")
    }
}

impl TryFrom<String> for PartnerId {
    type Error = NotAPartnerId;

    fn try_from(text: String) -> Result<Self, NotAPartnerId> {
        if is_partner_id(&text) {
            Ok(Self(text))
        } else {
            Err(NotAPartnerId)
        }
    }
}

impl PartnerId {
    /// `text` as a partner id, if it has the form of one.
    pub fn parse(text: &str) -> Option<Self> {
        is_partner_id(text).then(|| Self(text.to_owned()))
    }

    /// A partner id the gateway itself checked before (the registry, a
    /// routing table, a stored column), not parsed again.
    pub fn stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` has the form of a partner id.
pub fn is_partner_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Deref for PartnerId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<PartnerId> for String {
    fn from(id: PartnerId) -> Self {
        id.0
    }
}

impl From<&PartnerId> for String {
    fn from(id: &PartnerId) -> Self {
        id.0.clone()
    }
}

// A stored column (a `String`) compares with a partner id as text.
impl PartialEq<PartnerId> for String {
    fn eq(&self, other: &PartnerId) -> bool {
        *self == other.0
    }
}

impl PartialEq<&PartnerId> for String {
    fn eq(&self, other: &&PartnerId) -> bool {
        *self == other.0
    }
}

impl PartialEq<str> for PartnerId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl AsRef<str> for PartnerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PartnerId {
    // Partner ids are registry names, not identifiers of people: shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartnerId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_id_has_the_registry_form() {
        for good in ["pd", "cbo-north", "county-health", "a", &"x".repeat(64)] {
            let id = PartnerId::parse(good).expect(good);
            assert_eq!(&*id, good, "reads as the str it was parsed from");
        }
        for bad in [
            "",
            "Cbo",
            "cbo north",
            "cbo_north",
            "cbo/../x",
            &"x".repeat(65),
        ] {
            assert!(PartnerId::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            serde_json::to_string(&PartnerId::parse("pd").expect("valid")).expect("serializes"),
            "\"pd\""
        );
    }
}
