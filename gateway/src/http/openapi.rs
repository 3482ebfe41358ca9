//! The OpenAPI document, generated from the handlers' annotations, completed
//! by [`super::openapi_ranges`] and served at `/openapi.json`. Add each new
//! handler to `paths(...)`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi as _;

use utoipa::Modify;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Crosswalk",
        description = "Privacy-preserving data exchange gateway for community-responder programs."
    ),
    paths(
        super::system::healthz,
        super::system::readyz,
        openapi,
        super::whoami::whoami,
        super::audit::entries,
        super::audit::signing_key,
        super::referrals::create_referral,
        super::referrals_batch::create_batch,
        super::referrals::create_outcome,
        super::referrals::reassign,
        super::cases::create_case,
        super::reads::list_referrals,
        super::reads::read_referral,
        super::reads::case_status,
        super::reads::disclosures,
        super::reads::police_outcomes,
        super::consents::create_consent,
        super::consents::read_consent,
        super::consents::revoke_consent,
        super::aggregates::outcomes,
        super::exports::create_export,
        super::exports::export_file,
        super::exports::export_manifest,
        super::link_reviews::list_reviews,
        super::link_reviews::decide_review,
        super::link_reviews::unmerge,
    ),
    components(schemas(
        super::problem::Problem,
        super::problem::FieldError,
        super::audit::EntryPageBody,
        super::reads::ReferralPageBody,
        super::reads::CaseStatusBody,
        super::reads::DisclosurePageBody,
        super::reads::OutcomePageBody,
        crate::aggregates::AggregateTable,
        crate::aggregates::PrivacySpend,
        super::exports::ManifestBody,
        crate::exports::Manifest,
        crate::exports::PlanInfo,
        crate::exports::Started,
        crate::exports::ExportRequest
    )),
    modifiers(&PartnerToken, &ResponsePresets)
)]
pub struct ApiDoc;

pub(crate) fn router() -> Router<super::AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// This API's OpenAPI 3 description, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi(
    State(state): State<super::AppState>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi_ranges::complete(
        ApiDoc::openapi(),
        &state.config,
        state.audit.clock.now(),
    ))
}

/// Declares the bearer scheme partner tokens use.
struct PartnerToken;

impl Modify for PartnerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "partner_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (EdDSA), sub = partner id, aud = crosswalk")
                    .build(),
            ),
        );
    }
}

/// The response presets, stated once for every operation instead of in each
/// handler's annotation: the `X-Purpose-Of-Use` header's schema (the form
/// [`super::purpose`] checks, never null; which codes allow what is the
/// policy's decision, so it lists none) and the problems any operation can
/// answer with besides its own — 400 for a malformed purpose header, 401
/// without a valid token (every operation with a `security` requirement),
/// 413 and 415 for a body too large or not of the documented type. An
/// annotation names these only to say more than the preset does.
struct ResponsePresets;

/// What `X-Purpose-Of-Use` must look like.
pub(crate) const PURPOSE_PATTERN: &str = "^[A-Z]{2,16}$";

impl Modify for ResponsePresets {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut has_purpose = false;
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == ParameterIn::Header
                        && parameter
                            .name
                            .eq_ignore_ascii_case(super::auth::PURPOSE_OF_USE)
                    {
                        has_purpose = true;
                        parameter.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .pattern(Some(PURPOSE_PATTERN))
                                .examples(["CAREMGT"])
                                .into(),
                        );
                    }
                }
                let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                for (status, applies, description) in [
                    (
                        "400",
                        has_purpose,
                        "The X-Purpose-Of-Use header is not valid",
                    ),
                    ("401", authenticated, "No valid partner token"),
                    (
                        "413",
                        has_body,
                        "The body is larger than the gateway accepts",
                    ),
                    (
                        "415",
                        has_body,
                        "The body is not of the documented media type",
                    ),
                ] {
                    if applies && !responses.contains_key(status) {
                        responses.insert(status.to_owned(), problem_response(description));
                    }
                }
            }
        }
    }
}

/// A response whose body is a [`super::problem::Problem`].
fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .into()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::config::Config;

    /// The document is served without a token, so nothing in it may depend on
    /// which partners or studies are registered: a caller could otherwise
    /// learn the registry from it.
    #[test]
    fn the_document_does_not_depend_on_the_registry() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
        let example = Config::load(&path, std::iter::empty()).expect("example config");
        let mut other = example.clone();
        let cbo = other
            .partners
            .remove("cbo-south")
            .expect("the example has cbo-south");
        other.partners.insert("cbo-east-side".to_owned(), cbo);
        other.partners.remove("county-health");
        let study = other
            .studies
            .remove("demo-study")
            .expect("the example has demo-study");
        other.studies.insert("another-study".to_owned(), study);
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let served = |config: &Config| {
            let doc = super::super::openapi_ranges::complete(ApiDoc::openapi(), config, now);
            serde_json::to_string(&doc).expect("serializes")
        };
        let (a, b) = (served(&example), served(&other));
        assert_eq!(a, b, "the registry changed the document");
        for registered in [
            "cbo-south",
            "county-health",
            "cbo-east-side",
            "another-study",
        ] {
            assert!(!a.contains(registered), "the document names {registered}");
        }
    }

    /// The presets reach every operation: a 401 wherever a token is
    /// required, a 400 wherever a purpose is read, and none of them where
    /// they cannot happen.
    #[test]
    fn every_operation_gets_the_shared_responses() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let mut secured = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                let responses = &operation["responses"];
                let has_security = operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty());
                assert_eq!(
                    responses.get("401").is_some(),
                    has_security,
                    "{method} {path}: 401 exactly where a token is required"
                );
                secured += usize::from(has_security);
                let reads_purpose = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "X-Purpose-Of-Use");
                if reads_purpose {
                    assert!(responses.get("400").is_some(), "{method} {path}: 400");
                }
            }
        }
        assert!(secured >= 15, "only {secured} operations require a token");
    }
}
