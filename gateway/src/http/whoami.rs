//! `GET /v1/whoami`: who the gateway thinks the caller is. The first call a new
//! partner integration makes.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde::Serialize;

use super::{AppState, AuthenticatedPartner};
use crate::config::PartnerKind;
use crate::domain::PartnerId;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/whoami", get(whoami))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The partner id from the registry.
    #[schema(value_type = String)]
    partner: PartnerId,
    /// The partner's kind, from the registry (never from the token).
    #[schema(value_type = String, example = "police")]
    kind: PartnerKind,
}

/// The authenticated partner's id and kind.
#[utoipa::path(get, path = "/v1/whoami", tag = "identity",
    security(("partner_token" = [])),
    responses(
        (status = 200, description = "The authenticated partner", body = WhoAmI)))]
pub(crate) async fn whoami(partner: AuthenticatedPartner) -> Json<WhoAmI> {
    Json(WhoAmI {
        partner: partner.id,
        kind: partner.kind,
    })
}
