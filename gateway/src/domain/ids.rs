//! Record ids: what names a referral, an outcome, a case status, a consent, an
//! export or a budget spend. Each is a UUID v7 the gateway stamped
//! (`crate::randomness::RecordIds`, with the gateway's clock and randomness), so
//! ids sort by creation. Here are their typed forms, parsed where they come in
//! (the path, a body field) so that everything below knows which id it holds.

use std::fmt;

/// Whether `id` could be a record id: anything else is "not found" without a
/// database round trip.
pub fn is_record_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

/// The path or body gave something that is not a record id: the answer is the
/// same "not found" an unknown id gets, without a database round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotARecordId;

impl fmt::Display for NotARecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a record id")
    }
}

impl std::error::Error for NotARecordId {}

/// A typed record id: a UUID the gateway stamped, parsed at the boundary (the
/// path, a body field) or read back from the store. It reads as a `&str`
/// where one is wanted (a bind, an audit entry), and a stored column (a
/// `String`) compares with it as text. Record ids name records, not people,
/// so `Debug` shows them.
macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = NotARecordId;

            fn try_from(text: String) -> Result<Self, NotARecordId> {
                if is_record_id(&text) {
                    Ok(Self(text))
                } else {
                    Err(NotARecordId)
                }
            }
        }

        impl $name {
            /// `text` as an id, if it has the form of a record id.
            pub fn parse(text: &str) -> Result<Self, NotARecordId> {
                if is_record_id(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(NotARecordId)
                }
            }

            /// An id the store gave back: the gateway wrote it, so it is not
            /// parsed again.
            pub fn stored(id: String) -> Self {
                Self(id)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NotARecordId;

            fn from_str(text: &str) -> Result<Self, NotARecordId> {
                Self::parse(text)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

record_id!(
    /// A referral's id (`/v1/referrals/{id}`).
    ReferralId
);
record_id!(
    /// A health case status's id: one report of a case's status.
    CaseId
);
record_id!(
    /// A consent's id (`/v1/consents/{id}`).
    ConsentId
);
record_id!(
    /// An evaluator export's id (`/v1/exports/{id}`).
    ExportId
);
record_id!(
    /// A linkage review's id (`/v1/admin/link-reviews/{id}`).
    ReviewId
);

/// The gateway's own id of a person as linkage knows them (a linked subject):
/// random, meaningless outside this deployment, and never released — every
/// partner and study sees a pseudonym derived from it instead. It is still the
/// key that joins one person's records, so `Debug` does not show it.
///
/// Borrowed, like `str`: subject ids are read from rows and record JSON in the
/// hot loops of shaping and exports, where an owned copy per value would cost
/// an allocation. `SubjectRef::of(&row.subject_id)` names the string a subject
/// id at no cost, so a function that wants one cannot be handed a partner or
/// record id by mistake.
#[derive(ref_cast::RefCastCustom, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SubjectRef(str);

impl SubjectRef {
    /// `id` (a stored subject id) as a subject reference.
    #[ref_cast::ref_cast_custom]
    pub fn of(id: &str) -> &Self;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectRef(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_id_is_a_uuid_and_reads_as_one() {
        let id = ReferralId::parse("0193b2a4-7c1e-7d2a-9f10-3a4b5c6d7e8f").expect("a uuid");
        assert_eq!(&*id, "0193b2a4-7c1e-7d2a-9f10-3a4b5c6d7e8f");
        assert_eq!(
            serde_json::to_string(&id).expect("serializes"),
            "\"0193b2a4-7c1e-7d2a-9f10-3a4b5c6d7e8f\""
        );
        for bad in ["", "1", "../etc/passwd", "0193b2a4-7c1e-7d2a-9f10"] {
            assert_eq!(CaseId::parse(bad), Err(NotARecordId), "{bad:?}");
        }
    }

    #[test]
    fn a_subject_ref_is_not_shown_by_debug() {
        let subject = SubjectRef::of("0193b2a4-7c1e-7d2a-9f10-3a4b5c6d7e8f");
        assert_eq!(format!("{subject:?}"), "SubjectRef(…)");
        assert_eq!(subject.as_str(), "0193b2a4-7c1e-7d2a-9f10-3a4b5c6d7e8f");
    }
}
