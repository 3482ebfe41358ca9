//! The envelope's way in: who is calling and for what purpose, in one
//! extractor every data handler takes.
//!
//! A [`Caller`] is a partner whose token verified ([`AuthenticatedPartner`])
//! and the purpose of use it declared in `X-Purpose-Of-Use`, or the default
//! the endpoint's [`PurposeDefault`] gives when it declared none (see
//! [`super::purpose`]). Building one also tells the refusal layer who is
//! asking (see [`super::record_refusals`]), so that a refusal the handler
//! returns is recorded with the caller and the purpose without the handler
//! recording it.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::purpose::{declared_purpose, default_for};
use super::{AppState, AuthenticatedPartner};
use crate::domain::PartnerId;
use crate::policy::Purpose;
use crate::reads::Asker;

/// The default purpose of an endpoint, for a caller that declares none.
pub(crate) trait PurposeDefault {
    fn default_purpose(partner: &AuthenticatedPartner) -> &str;
}

/// The partner's own default from the registry, else its kind's: what most
/// endpoints use.
pub(crate) struct PartnerDefault;

impl PurposeDefault for PartnerDefault {
    fn default_purpose(partner: &AuthenticatedPartner) -> &str {
        partner
            .default_purpose
            .as_deref()
            .unwrap_or_else(|| default_for(partner.kind))
    }
}

/// `HOPERAT` whoever asks: reading the audit log is operating the gateway.
pub(crate) struct Operating;

impl PurposeDefault for Operating {
    fn default_purpose(_: &AuthenticatedPartner) -> &'static str {
        "HOPERAT"
    }
}

/// The aggregates' default (program performance measurement) whoever asks.
pub(crate) struct Measuring;

impl PurposeDefault for Measuring {
    fn default_purpose(_: &AuthenticatedPartner) -> &'static str {
        crate::aggregates::DEFAULT_PURPOSE
    }
}

/// An authenticated partner and the purpose it acts for.
pub(crate) struct Caller<D: PurposeDefault = PartnerDefault> {
    pub(crate) partner: AuthenticatedPartner,
    pub(crate) purpose: Purpose,
    default: PhantomData<D>,
}

impl<D: PurposeDefault> Caller<D> {
    /// The caller as the read services take it.
    pub(crate) fn asker(&self) -> Asker<'_> {
        Asker {
            partner: &self.partner.id,
            kind: self.partner.kind,
            purpose: &self.purpose,
        }
    }
}

impl<D: PurposeDefault> FromRequestParts<AppState> for Caller<D> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let partner = AuthenticatedPartner::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let purpose = declared_purpose(&parts.headers, D::default_purpose(&partner))
            .map_err(IntoResponse::into_response)?;
        if let Some(seen) = parts.extensions.get::<CallerSeen>() {
            // Set once: a handler takes one `Caller`.
            let _ = seen.0.set((partner.id.clone(), purpose.clone()));
        }
        Ok(Self {
            partner,
            purpose,
            default: PhantomData,
        })
    }
}

/// Who asked and for what, once a [`Caller`] was built: the refusal layer puts
/// an empty one in each request and reads it after the response.
#[derive(Clone, Default)]
pub(crate) struct CallerSeen(Arc<OnceLock<(PartnerId, Purpose)>>);

impl CallerSeen {
    pub(crate) fn get(&self) -> Option<&(PartnerId, Purpose)> {
        self.0.get()
    }
}
