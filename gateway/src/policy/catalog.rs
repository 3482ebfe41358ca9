//! The field catalog (`data.crosswalk.catalog`): every field of every resource with
//! its class, checked against the fields the code holds ([`super::resources`]).
//!
//! The check runs at start-up and on every reload: a catalog that names a field
//! the code does not hold, misses one it does, or gives a class or Safe Harbor
//! kind outside the vocabulary is refused, so the policy never reasons about a
//! field it has not classified.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::resources::{FieldSpec, Generalization, Resource};

/// A field's privacy class (design §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldClass {
    DirectIdentifier,
    QuasiIdentifier,
    Health,
    /// 42 CFR Part 2 substance-use information.
    SubstanceUse,
    Justice,
    Operational,
    FreeText,
}

impl FieldClass {
    pub const ALL: [Self; 7] = [
        Self::DirectIdentifier,
        Self::QuasiIdentifier,
        Self::Health,
        Self::SubstanceUse,
        Self::Justice,
        Self::Operational,
        Self::FreeText,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DirectIdentifier => "direct_identifier",
            Self::QuasiIdentifier => "quasi_identifier",
            Self::Health => "health",
            Self::SubstanceUse => "substance_use",
            Self::Justice => "justice",
            Self::Operational => "operational",
            Self::FreeText => "free_text",
        }
    }
}

impl fmt::Display for FieldClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HIPAA Safe Harbor identifier kinds, 45 CFR 164.514(b)(2)(i).
const SAFE_HARBOR_KINDS: [&str; 18] = [
    "names",
    "geographic_subdivision",
    "dates",
    "telephone",
    "fax",
    "email",
    "ssn",
    "medical_record_number",
    "health_plan_number",
    "account_number",
    "certificate_license_number",
    "vehicle_identifier",
    "device_identifier",
    "url",
    "ip_address",
    "biometric",
    "photo",
    "other_unique_number",
];

/// One catalog entry as the bundle writes it. Extra keys are allowed (an operator
/// may annotate); the class is what matters.
#[derive(Debug, Clone, Deserialize)]
struct RawEntry {
    class: String,
    #[serde(default)]
    safe_harbor: Option<String>,
}

/// What the engine needs to know about one field of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldEntry {
    pub class: FieldClass,
    pub safe_harbor: Option<String>,
    pub spec: FieldSpec,
}

impl FieldEntry {
    /// The generalization `generalize` applies: the code's declared coarsening,
    /// but only for a quasi-identifier (dates only when the catalog calls them
    /// Safe Harbor `dates`); anything else is withheld.
    pub fn generalization(&self) -> Generalization {
        if self.class != FieldClass::QuasiIdentifier {
            return Generalization::Withhold;
        }
        match self.spec.generalization {
            Generalization::Year | Generalization::YearMonth
                if self.safe_harbor.as_deref() != Some("dates") =>
            {
                Generalization::Withhold
            }
            other => other,
        }
    }
}

/// The fields of one resource, in the code's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePlan {
    pub resource: Resource,
    pub fields: BTreeMap<&'static str, FieldEntry>,
}

/// The checked catalog: every resource's plan.
#[derive(Debug, Clone)]
pub struct Catalog {
    plans: BTreeMap<Resource, Arc<ResourcePlan>>,
}

impl Catalog {
    /// Parses the catalog document and checks it against the code's resources.
    /// Every disagreement is listed, not just the first.
    pub fn check(document: &serde_json::Value) -> Result<Self, Vec<String>> {
        let raw: BTreeMap<String, BTreeMap<String, RawEntry>> = serde_json::from_value(
            document.clone(),
        )
        .map_err(|e| {
            vec![format!(
                "data.crosswalk.catalog is not {{resource: {{field: {{class, safe_harbor}}}}}}: {e}"
            )]
        })?;
        let mut problems = Vec::new();
        for name in raw.keys() {
            if Resource::from_name(name).is_none() {
                problems.push(format!(
                    "the catalog names a resource the gateway does not hold: {name}"
                ));
            }
        }
        let mut plans = BTreeMap::new();
        for resource in Resource::ALL {
            let Some(entries) = raw.get(resource.as_str()) else {
                problems.push(format!("the catalog has no resource {resource}"));
                continue;
            };
            let code: BTreeSet<&str> = resource.fields().iter().map(|f| f.name).collect();
            for name in entries.keys() {
                if !code.contains(name.as_str()) {
                    problems.push(format!(
                        "the catalog names {resource}.{name}, which the gateway does not hold"
                    ));
                }
            }
            let mut fields = BTreeMap::new();
            for spec in resource.fields() {
                let Some(entry) = entries.get(spec.name) else {
                    problems.push(format!(
                        "the gateway holds {resource}.{}, which the catalog does not name",
                        spec.name
                    ));
                    continue;
                };
                let Some(class) = FieldClass::ALL
                    .into_iter()
                    .find(|c| c.as_str() == entry.class)
                else {
                    problems.push(format!(
                        "{resource}.{}: unknown class {:?}",
                        spec.name, entry.class
                    ));
                    continue;
                };
                if let Some(kind) = &entry.safe_harbor
                    && !SAFE_HARBOR_KINDS.contains(&kind.as_str())
                {
                    problems.push(format!(
                        "{resource}.{}: unknown Safe Harbor kind {kind:?}",
                        spec.name
                    ));
                    continue;
                }
                fields.insert(
                    spec.name,
                    FieldEntry {
                        class,
                        safe_harbor: entry.safe_harbor.clone(),
                        spec: *spec,
                    },
                );
            }
            plans.insert(resource, Arc::new(ResourcePlan { resource, fields }));
        }
        if problems.is_empty() {
            Ok(Self { plans })
        } else {
            Err(problems)
        }
    }

    pub fn plan(&self, resource: Resource) -> &Arc<ResourcePlan> {
        // Invariant: `check` refuses a catalog without a plan for every resource.
        &self.plans[&resource]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::tests::matching_catalog;

    #[test]
    fn a_matching_catalog_is_accepted_with_its_generalizations() {
        let catalog = Catalog::check(&matching_catalog()).expect("matches");
        let referral = catalog.plan(Resource::Referral);
        let generalization = |name: &str| referral.fields[name].generalization();
        assert_eq!(generalization("subject.dob"), Generalization::Year);
        assert_eq!(generalization("contact_at"), Generalization::YearMonth);
        assert_eq!(generalization("subject.address.zip"), Generalization::Zip3);
        // Declared YearMonth in code, but operational in the catalog: withheld.
        assert_eq!(generalization("created_at"), Generalization::Withhold);
        assert_eq!(
            generalization("subject.given_name"),
            Generalization::Withhold
        );
    }

    #[test]
    fn every_disagreement_is_named() {
        let mut catalog = matching_catalog();
        let referral = catalog["referral"].as_object_mut().expect("object");
        referral.remove("cad_number");
        referral.insert("ssn".into(), json!({"class": "direct_identifier"}));
        referral.insert("district".into(), json!({"class": "secret"}));
        catalog["outcome"]["notes"]["safe_harbor"] = json!("nickname");
        catalog["widgets"] = json!({});

        let problems = Catalog::check(&catalog).expect_err("disagrees");

        let text = problems.join("\n");
        for expected in [
            "does not hold: widgets",
            "referral.ssn, which the gateway does not hold",
            "referral.cad_number, which the catalog does not name",
            "referral.district: unknown class \"secret\"",
            "outcome.notes: unknown Safe Harbor kind \"nickname\"",
        ] {
            assert!(text.contains(expected), "{expected} in:\n{text}");
        }
    }

    #[test]
    fn a_missing_resource_and_a_malformed_document_are_refused() {
        let mut catalog = matching_catalog();
        catalog
            .as_object_mut()
            .expect("object")
            .remove("audit_entry");
        let problems = Catalog::check(&catalog).expect_err("missing");
        assert_eq!(problems, ["the catalog has no resource audit_entry"]);

        let problems = Catalog::check(&json!({"referral": []})).expect_err("malformed");
        assert!(problems[0].contains("is not"), "{problems:?}");
    }
}
