//! Partner-facing and study pseudonyms for subjects.
//!
//! A pseudonym is computed from a random internal id — never from identifiers —
//! under a key of its own for each partner and each study. Which id depends on
//! the audience, so that no partner learns links made by others' records:
//! - a **study** pseudonym ([`Pseudonymizer::for_study`]) from the subject: the
//!   gateway's global grouping, which evaluators need;
//! - a **partner** pseudonym from the partner's own cluster of the record's
//!   identity ([`Pseudonymizer::for_partner_cluster`]), or, for a partner that
//!   does not hold the record, from its identity alone
//!   ([`Pseudonymizer::for_partner_record`]): another partner's records never
//!   group a partner's (see `subjects/clusters.rs`);
//! - [`Pseudonymizer::for_partner`] from the subject remains for the audit
//!   log's subject reference as administrators read it.
//!
//! Either way:
//! - one partner always sees the same pseudonym for one person;
//! - two partners (two CBOs, police and health) see unrelated values and cannot
//!   join their data; likewise two studies;
//! - nobody without the gateway's master secret can compute or reverse one (it is
//!   a keyed BLAKE3 hash of a random id, a re-identification code in the sense of
//!   HIPAA §164.514(c)).
//!
//! Form: a prefix naming the audience kind, then 26 lower-case base32 characters
//! (128 bits): `cwp-` for partners, `cws-` for studies, e.g.
//! `cwp-k3v7q2x4m5n6b7c8d9f2g3h4j5`.
//!
//! Keys are derived from the master secret under the versioned contexts below.
//! Rotating the master secret changes every pseudonym: that is what rotation is
//! for. When two subjects are merged, the surviving (older) subject keeps its
//! pseudonyms and the other's stop being issued.

use std::fmt;

use data_encoding::BASE32_NOPAD;

use crate::domain::PartnerId;
use crate::domain::ids::SubjectRef;
use crate::secrets::MasterSecret;

const PARTNER_CONTEXT: &str = "crosswalk 2026-11 partner pseudonym key v1";
const STUDY_CONTEXT: &str = "crosswalk 2026-11 study pseudonym key v1";

/// A subject's pseudonym for one audience. Not secret (it is what partners see),
/// but still printed only in full by `Display`, which is used to build responses.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Pseudonym(String);

impl Pseudonym {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell two apart in a test failure, not enough to look one up.
        write!(f, "Pseudonym({}…)", &self.0[..self.0.len().min(8)])
    }
}

/// Derives pseudonyms. Holds only derived keys, never the master secret.
pub struct Pseudonymizer {
    partner_root: [u8; 32],
    study_root: [u8; 32],
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer([redacted])")
    }
}

impl Pseudonymizer {
    pub fn new(master: &MasterSecret) -> Self {
        Self {
            partner_root: master.derive(PARTNER_CONTEXT),
            study_root: master.derive(STUDY_CONTEXT),
        }
    }

    /// The pseudonym `partner_id` sees for the subject `subject_id`.
    pub fn for_partner(&self, partner_id: &PartnerId, subject_id: &SubjectRef) -> Pseudonym {
        Self::derive(&self.partner_root, "cwp-", partner_id, subject_id.as_str())
    }

    /// The pseudonym `partner_id` sees for the person of its own cluster
    /// `cluster_id`. Domain-separated (ids never hold control characters) from
    /// subject pseudonyms and from [`crate::policy::FieldShaper`]'s values.
    pub fn for_partner_cluster(&self, partner_id: &PartnerId, cluster_id: &str) -> Pseudonym {
        let value = format!("\u{1f}cluster\u{1f}{cluster_id}");
        Self::derive(&self.partner_root, "cwp-", partner_id, &value)
    }

    /// The pseudonym `partner_id` sees for the person of a record it does not
    /// hold, computed from the record's identity `identity_id` alone.
    pub fn for_partner_record(&self, partner_id: &PartnerId, identity_id: &str) -> Pseudonym {
        let value = format!("\u{1f}identity\u{1f}{identity_id}");
        Self::derive(&self.partner_root, "cwp-", partner_id, &value)
    }

    /// The pseudonym the study `study_id` uses for the subject `subject_id`.
    pub fn for_study(&self, study_id: &str, subject_id: &SubjectRef) -> Pseudonym {
        Self::derive(&self.study_root, "cws-", study_id, subject_id.as_str())
    }

    /// The study's keys, derived once for the many pseudonyms of an export.
    pub fn study(&self, study_id: &str) -> StudyPseudonyms {
        StudyPseudonyms {
            key: *blake3::keyed_hash(&self.study_root, study_id.as_bytes()).as_bytes(),
        }
    }

    fn derive(root: &[u8; 32], prefix: &str, audience: &str, subject_id: &str) -> Pseudonym {
        // The audience's own key, then the subject under it: two audiences' values
        // are outputs of unrelated keys.
        let audience_key = blake3::keyed_hash(root, audience.as_bytes());
        let digest = blake3::keyed_hash(audience_key.as_bytes(), subject_id.as_bytes());
        let encoded = BASE32_NOPAD
            .encode(&digest.as_bytes()[..16])
            .to_ascii_lowercase();
        Pseudonym(format!("{prefix}{encoded}"))
    }
}

/// One study's pseudonyms: subjects as [`Pseudonymizer::for_study`] gives them
/// (`cws-`), and the study's stand-ins for gateway record ids (`cwr-`) and
/// partner ids (`cwo-`), so that outcomes still join to referrals inside the
/// export while no gateway id leaves it (Safe Harbor (R)). Each kind is keyed
/// apart, so a record id can never collide with a subject's pseudonym.
pub struct StudyPseudonyms {
    key: [u8; 32],
}

impl fmt::Debug for StudyPseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StudyPseudonyms([redacted])")
    }
}

impl StudyPseudonyms {
    pub fn subject(&self, subject_id: &SubjectRef) -> Pseudonym {
        Self::encode(
            "cws-",
            &blake3::keyed_hash(&self.key, subject_id.as_str().as_bytes()),
        )
    }

    /// A record id of `kind` (`referral`, `outcome`, `case`).
    pub fn record(&self, kind: &str, id: &[u8]) -> Pseudonym {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"record\0");
        hasher.update(kind.as_bytes());
        hasher.update(b"\0");
        hasher.update(id);
        Self::encode("cwr-", &hasher.finalize())
    }

    pub fn organization(&self, partner_id: &PartnerId) -> Pseudonym {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"organization\0");
        hasher.update(partner_id.as_bytes());
        Self::encode("cwo-", &hasher.finalize())
    }

    fn encode(prefix: &str, digest: &blake3::Hash) -> Pseudonym {
        let encoded = BASE32_NOPAD
            .encode(&digest.as_bytes()[..16])
            .to_ascii_lowercase();
        Pseudonym(format!("{prefix}{encoded}"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pid(text: &str) -> PartnerId {
        PartnerId::parse(text).expect("a partner id")
    }

    fn pseudonymizer(seed: u8) -> Pseudonymizer {
        Pseudonymizer::new(&MasterSecret::from_bytes([seed; 32]))
    }

    #[test]
    fn the_form_is_a_prefix_and_26_base32_characters() {
        let p = pseudonymizer(1).for_partner(&pid("pd"), SubjectRef::of("subject-1"));
        assert!(p.as_str().starts_with("cwp-"));
        let body = &p.as_str()[4..];
        assert_eq!(body.len(), 26);
        assert!(
            body.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert!(
            pseudonymizer(1)
                .for_study("demo-study", SubjectRef::of("subject-1"))
                .as_str()
                .starts_with("cws-")
        );
    }

    proptest! {
        #[test]
        fn stable_for_one_audience_and_different_across_audiences(
            subject in "[a-f0-9-]{8,36}",
            a in "[a-z][a-z0-9-]{0,20}",
            b in "[a-z][a-z0-9-]{0,20}",
        ) {
            let p = pseudonymizer(7);
            prop_assert_eq!(p.for_partner(&pid(&a), SubjectRef::of(&subject)), pseudonymizer(7).for_partner(&pid(&a), SubjectRef::of(&subject)));
            prop_assert_eq!(p.for_study(&a, SubjectRef::of(&subject)), p.for_study(&a, SubjectRef::of(&subject)));
            prop_assert_eq!(p.study(&a).subject(SubjectRef::of(&subject)), p.for_study(&a, SubjectRef::of(&subject)));
            if a != b {
                prop_assert_ne!(p.for_partner(&pid(&a), SubjectRef::of(&subject)), p.for_partner(&pid(&b), SubjectRef::of(&subject)));
                prop_assert_ne!(p.for_study(&a, SubjectRef::of(&subject)), p.for_study(&b, SubjectRef::of(&subject)));
            }
            // A partner and a study of the same name still differ.
            let (partner, study) = (p.for_partner(&pid(&a), SubjectRef::of(&subject)), p.for_study(&a, SubjectRef::of(&subject)));
            prop_assert_ne!(&partner.as_str()[4..], &study.as_str()[4..]);
        }

        #[test]
        fn different_subjects_and_master_secrets_give_different_pseudonyms(
            s1 in "[a-f0-9]{32}", s2 in "[a-f0-9]{32}",
        ) {
            let p = pseudonymizer(3);
            if s1 != s2 {
                prop_assert_ne!(p.for_partner(&pid("pd"), SubjectRef::of(&s1)), p.for_partner(&pid("pd"), SubjectRef::of(&s2)));
            }
            prop_assert_ne!(p.for_partner(&pid("pd"), SubjectRef::of(&s1)), pseudonymizer(4).for_partner(&pid("pd"), SubjectRef::of(&s1)));
            // A cluster, an identity and a subject with the same id are kept apart.
            let forms = [
                p.for_partner(&pid("pd"), SubjectRef::of(&s1)),
                p.for_partner_cluster(&pid("pd"), &s1),
                p.for_partner_record(&pid("pd"), &s1),
            ];
            prop_assert_ne!(&forms[0], &forms[1]);
            prop_assert_ne!(&forms[1], &forms[2]);
            prop_assert_ne!(&forms[0], &forms[2]);
            prop_assert_ne!(p.for_partner_cluster(&pid("pd"), &s1), p.for_partner_cluster(&pid("cbo-north"), &s1));
        }
    }
}
