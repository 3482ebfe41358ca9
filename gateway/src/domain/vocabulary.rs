//! The exchange's closed vocabularies: resource categories, outcome kinds, health
//! programs and case statuses (design.md §4), and the codes the gateway adds
//! (follow-up, reassignment reasons).
//!
//! Each is an enum with its wire code, so that the domain never handles a raw
//! string after parsing. Parsing is [`Code::parse`]; an unknown code is rejected
//! by the caller with the list of valid ones, never by quoting what was sent.

use std::fmt;

/// What every vocabulary enum offers.
pub trait Code: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The valid codes, for error messages: `a, b, c`.
    fn expected() -> String {
        Self::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $code)] $variant),+
        }

        impl Code for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // Written out rather than derived: utoipa's derive does not see a
        // `rename` that a macro passes in and documented the variant names
        // (`Cbo`) where the wire has the codes (`cbo`). The codes come from
        // `ALL`, the same list parsing uses, so the schema cannot drift.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                code_schema(Self::ALL.iter().map(|c| c.as_str()))
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// A string schema whose only values are `codes`.
fn code_schema(
    codes: impl Iterator<Item = &'static str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(codes))
        .into()
}

vocabulary! {
    /// The resources an officer can request on the outreach referral form.
    ResourceCategory {
        AlcoholDrug = "alcohol_drug",
        DomesticViolence = "domestic_violence",
        EducationCareer = "education_career",
        GangIntervention = "gang_intervention",
        GeneralCommunity = "general_community",
        GunViolence = "gun_violence",
        HumanTrafficking = "human_trafficking",
        CrimeVictim = "crime_victim",
        IdentityTheftVictim = "identity_theft_victim",
        LegalServices = "legal_services",
        Lgbtq = "lgbtq",
        MentalHealth = "mental_health",
        NeighborhoodConcerns = "neighborhood_concerns",
        Nutrition = "nutrition",
        MissingPersons = "missing_persons",
        SeniorCitizen = "senior_citizen",
        Veteran = "veteran",
        YouthServices = "youth_services",
        Homelessness = "homelessness",
        Other = "other",
    }
}

vocabulary! {
    /// Who should follow up, as the officer marked it.
    FollowUpBy {
        Cbo = "cbo",
        Officer = "officer",
    }
}

vocabulary! {
    /// What a CBO's follow-up found.
    OutcomeKind {
        ContactAttempted = "contact_attempted",
        Contacted = "contacted",
        Engaged = "engaged",
        /// Needs the `resource` the person was connected to.
        ServiceConnected = "service_connected",
        Declined = "declined",
        UnableToLocate = "unable_to_locate",
        Closed = "closed",
    }
}

vocabulary! {
    /// A health partner's program serving the person.
    Program {
        MentalHealth = "mental_health",
        /// 42 CFR Part 2: every case in it is flagged `part2`.
        SubstanceUse = "substance_use",
        Housing = "housing",
        Medical = "medical",
        Other = "other",
    }
}

vocabulary! {
    /// A health case's status.
    CaseStatus {
        Referred = "referred",
        Enrolled = "enrolled",
        Active = "active",
        Discharged = "discharged",
        Declined = "declined",
        CrisisEpisode = "crisis_episode",
    }
}

vocabulary! {
    /// Why a referral moves to another CBO.
    ReassignReason {
        /// The CBO cannot take more people now.
        Capacity = "capacity",
        /// The person lives outside the CBO's service area.
        OutOfArea = "out_of_area",
        /// The CBO does not offer what was requested.
        ServiceNotOffered = "service_not_offered",
        ConflictOfInterest = "conflict_of_interest",
        Other = "other",
    }
}

vocabulary! {
    /// Where a referral stands; driven by outcomes (see [`crate::exchange::status`]).
    ReferralStatus {
        /// Assigned, no outcome yet.
        New = "new",
        ContactAttempted = "contact_attempted",
        Contacted = "contacted",
        Engaged = "engaged",
        ServiceConnected = "service_connected",
        Declined = "declined",
        UnableToLocate = "unable_to_locate",
        Closed = "closed",
    }
}

vocabulary! {
    /// The only follow-up information police see on their own referrals.
    WorkflowState {
        Open = "open",
        Closed = "closed",
    }
}

vocabulary! {
    /// How a consent was given (FHIR Consent `sourceAttachment` aside: the form
    /// itself is never stored, only its hash).
    ConsentMethod {
        /// A signed paper or scanned form.
        Written = "written",
        /// Said to the recorder, who attests it.
        Verbal = "verbal",
        /// Signed electronically.
        Electronic = "electronic",
    }
}

vocabulary! {
    /// The HL7 `PurposeOfUse` codes a consent may cover: the purposes the release
    /// policy knows (`policies/crosswalk/vocabulary/data.json`, `purposes`).
    ConsentPurpose {
        Treat = "TREAT",
        Etreat = "ETREAT",
        Caremgt = "CAREMGT",
        Perfmsr = "PERFMSR",
        Hoperat = "HOPERAT",
        Hresch = "HRESCH",
        Pubhlth = "PUBHLTH",
        Patrqt = "PATRQT",
    }
}

vocabulary! {
    /// The catalog classes a consent may cover. Not `direct_identifier`:
    /// identifiers never cross between partners, consent or not (the policy
    /// withholds them on every consent route), so a consent naming them would
    /// promise what is never done.
    ConsentClass {
        Operational = "operational",
        Health = "health",
        /// 42 CFR Part 2: needs the `part2` elements.
        SubstanceUse = "substance_use",
        QuasiIdentifier = "quasi_identifier",
        Justice = "justice",
        FreeText = "free_text",
    }
}

vocabulary! {
    /// The partner kinds a consent may name as recipients (evaluators get
    /// de-identified exports and admins see no identities: neither receives
    /// records under a consent).
    RecipientKind {
        Police = "police",
        Cbo = "cbo",
        Health = "health",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_parse_and_serde() {
        for &category in ResourceCategory::ALL {
            assert_eq!(ResourceCategory::parse(category.as_str()), Some(category));
            assert_eq!(
                serde_json::to_value(category).expect("serializes"),
                category.as_str()
            );
        }
        assert_eq!(ResourceCategory::ALL.len(), 20, "design.md lists 20");
        assert_eq!(OutcomeKind::ALL.len(), 7);
        assert_eq!(OutcomeKind::parse("Contacted"), None, "codes are exact");
        assert!(Program::expected().starts_with("mental_health, substance_use"));
    }
}
