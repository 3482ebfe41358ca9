//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`. Add each new handler to `paths(...)`.

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Crosswalk",
        description = "Privacy-preserving data exchange gateway for community-responder programs."
    ),
    paths(
        super::system::healthz,
        super::system::readyz,
        super::system::openapi,
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
    modifiers(&PartnerToken)
)]
pub struct ApiDoc;

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
