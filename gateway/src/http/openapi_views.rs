//! Response schemas for released records, written from the code's own field
//! lists ([`Resource::fields`]), the lists the policy catalog is checked against
//! at start-up.
//!
//! A released record carries only the fields its decision names, shaped by the
//! action (as-is, pseudonymized, generalized), so the schema lists every field
//! the record could carry, requires none, and admits nothing else
//! (`additionalProperties: false`, nested objects likewise): a response with a
//! field that is not in the catalog breaks the document, which the outside
//! fuzzer checks. A field's value has no fixed type here, because the action
//! decides it (a date of birth is a date, or its year when generalized, or a
//! pseudonym).

use std::collections::BTreeMap;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type,
};

use crate::policy::{NOTICES_KEY, Resource};

/// A tree of field names: a leaf is a field, a branch a nested object.
#[derive(Default)]
struct Fields(BTreeMap<&'static str, Fields>);

impl Fields {
    fn of(resource: Resource) -> Self {
        let mut root = Self::default();
        for spec in resource.fields() {
            let mut node = &mut root;
            for part in spec.name.split('.') {
                node = node.0.entry(part).or_default();
            }
        }
        root
    }

    fn schema(&self, description: Option<String>) -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(description)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, child) in &self.0 {
            let property: RefOr<Schema> = if child.0.is_empty() {
                // Any JSON value: the decision's action decides its form.
                Object::with_type(SchemaType::AnyValue).into()
            } else {
                child.schema(None)
            };
            object = object.property(*name, property);
        }
        object.into()
    }
}

/// The schema of a record of `resource` as a release leaves the gateway.
fn released(resource: Resource) -> RefOr<Schema> {
    let names: Vec<_> = resource.fields().iter().map(|f| f.name).collect();
    let description = format!(
        "A `{resource}` record with the fields the release policy gives the caller for its \
         purpose (none required, no others): {}; and `{NOTICES_KEY}`, the notices the \
         recipient must keep with the record (42 CFR Part 2), when the decision has any.",
        names.join(", "),
    );
    let RefOr::T(Schema::Object(mut object)) = Fields::of(resource).schema(Some(description))
    else {
        unreachable!("Fields::schema builds an object")
    };
    // The policy's Part 2 overlay can attach notices to a record of any resource.
    object.properties.insert(
        NOTICES_KEY.to_owned(),
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .into(),
    );
    RefOr::T(Schema::Object(object))
}

macro_rules! released_schema {
    ($(#[$doc:meta])* $name:ident = $resource:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                released($resource)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

released_schema!(
    /// A released referral.
    ReleasedReferral = Resource::Referral
);
released_schema!(
    /// A released follow-up outcome.
    ReleasedOutcome = Resource::Outcome
);
released_schema!(
    /// A released health case status.
    ReleasedCaseStatus = Resource::CaseStatus
);
released_schema!(
    /// A released consent record.
    ReleasedConsent = Resource::Consent
);
released_schema!(
    /// A released audit log entry.
    ReleasedAuditEntry = Resource::AuditEntry
);

/// An HL7 FHIR R4 `Consent` resource (see `reads::fhir` for the mapping): the
/// schema states its `resourceType` only and leaves the rest to FHIR's.
pub(crate) struct FhirConsent;

impl utoipa::PartialSchema for FhirConsent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An HL7 FHIR R4 Consent resource"))
            .property(
                "resourceType",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["Consent"])),
            )
            .required("resourceType")
            .into()
    }
}

impl utoipa::ToSchema for FhirConsent {}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn schema_json(resource: Resource) -> Value {
        serde_json::to_value(released(resource)).expect("serializes")
    }

    #[test]
    fn nested_fields_become_closed_nested_objects() {
        let referral = schema_json(Resource::Referral);
        assert_eq!(referral["additionalProperties"], json!(false));
        let subject = &referral["properties"]["subject"];
        assert_eq!(subject["additionalProperties"], json!(false));
        let zip = &subject["properties"]["address"]["properties"]["zip"];
        assert_eq!(zip, &json!({}), "any value: the action decides its form");
        assert!(referral["properties"].get("subject.dob").is_none());
        assert!(referral.get("required").is_none());
    }

    #[test]
    fn every_field_of_every_resource_is_listed() {
        for resource in Resource::ALL {
            let schema = schema_json(resource);
            for spec in resource.fields() {
                let mut node = &schema;
                for part in spec.name.split('.') {
                    node = &node["properties"][part];
                }
                assert!(node.is_object(), "{resource}.{} missing", spec.name);
            }
        }
    }

    #[test]
    fn notices_are_a_list_of_strings() {
        let case = schema_json(Resource::CaseStatus);
        assert_eq!(
            case["properties"][NOTICES_KEY]["items"]["type"],
            json!("string")
        );
    }
}
