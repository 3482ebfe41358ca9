//! The purpose of use every read declares.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An HL7 `PurposeOfUse` code (`CAREMGT`, `PERFMSR`, ...), from the
/// `X-Purpose-Of-Use` header or the partner's default. Only its form is checked
/// here (2-16 upper-case letters); which codes a requester may use is the policy's
/// decision (`vocabulary.purposes_by_kind`), so adding a purpose needs no code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Purpose(String);

impl Purpose {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A purpose of use that is not 2-16 upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a purpose of use is an HL7 PurposeOfUse code: 2-16 upper-case letters, e.g. CAREMGT")]
pub struct InvalidPurpose;

impl FromStr for Purpose {
    type Err = InvalidPurpose;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if (2..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidPurpose)
        }
    }
}

impl TryFrom<String> for Purpose {
    type Error = InvalidPurpose;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Purpose> for String {
    fn from(purpose: Purpose) -> Self {
        purpose.0
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Purpose({})", self.0)
    }
}
