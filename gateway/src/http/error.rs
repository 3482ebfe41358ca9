//! The one error type of the HTTP layer: every handler returns
//! `Result<_, ApiError>`, and this file alone decides each error's status,
//! problem type and wording.
//!
//! The domain's errors convert here (`From<ReadError>`, `From<ExchangeError>`,
//! `From<ExportError>`, `From<AggregateError>`, `From<StoreError>`), so a
//! handler only writes `?`. A refusal — a policy's or a partner kind's — also
//! names the reason the audit log records: the response carries it as an
//! extension ([`RefusedBecause`]) that the refusal layer in [`super`] takes off
//! and records with the caller, the route and the purpose, so no handler
//! records one itself.
//!
//! `Internal` logs its cause and answers a bare 500: no database message, path
//! or value reaches a partner.
//!
//! What the layers around the handlers refuse before a handler runs — a body
//! over the size limit (413), a request that took too long (408), an unknown
//! route (404) or method (405) — is a bare status that
//! [`super::problem::problem_for_bare_errors`] turns into the same problem
//! shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::problem::{FieldError, Problem, ProblemType};
use crate::aggregates::AggregateError;
use crate::exchange::{ExchangeError, Invalid as InvalidInput};
use crate::exports::ExportError;
use crate::reads::ReadError;
use crate::store::StoreError;

/// Where the wrong values were: the body, or the query and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A request body (or a header that goes with it): nothing was stored.
    Body,
    /// A query parameter or a header of a read.
    Query,
}

/// Why a request failed, as the partner learns it.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum ApiError {
    /// 400: each value that is wrong, by field.
    Invalid {
        place: Place,
        /// What was not done ("nothing was stored; see errors").
        detail: &'static str,
        errors: Vec<FieldError>,
    },
    /// 404 with the body an unknown path gets: no such record, or one the
    /// policy hides. `refused` is the policy's reason in the second case: it
    /// is recorded, never shown.
    NotFoundOrRefused { refused: Option<String> },
    /// 403: the policy refuses, and the caller may know why (a collection, an
    /// export, a table). The reason is shown and recorded.
    Refused { reason: String },
    /// 403: the request is not this partner's to make (another evaluator's
    /// study, an expired agreement), naming the field. Shown and recorded.
    NotYours { field: &'static str, detail: String },
    /// 403: no partner of this kind makes this write. Not a policy decision,
    /// so not recorded as a refusal.
    WrongKind { detail: &'static str },
    /// 403: a differentially private table would spend more than its month has
    /// left (an RFC 9457 extension member says how much is left).
    BudgetExhausted {
        period: String,
        requested: f64,
        remaining: f64,
    },
    /// 409: the request conflicts with the record's state.
    Conflict {
        kind: ProblemType,
        title: &'static str,
        detail: String,
        field: Option<FieldError>,
    },
    /// 415: the body is not of a type the endpoint reads.
    UnsupportedMediaType { accepted: &'static [&'static str] },
    /// 422: a valid request that selects nothing to work on.
    NothingSelected {
        kind: ProblemType,
        title: &'static str,
        detail: &'static str,
        fields: Vec<FieldError>,
    },
    /// 503: the gateway is stopping.
    Unavailable,
    /// 500: logged with its cause, answered bare.
    Internal { what: &'static str, cause: String },
}

/// The refusal reason a response carries to the refusal layer.
#[derive(Debug, Clone)]
pub(crate) struct RefusedBecause(pub(crate) String);

impl ApiError {
    /// 400 naming one field.
    pub(crate) fn invalid(place: Place, field: &str, problem: impl Into<String>) -> Self {
        Self::invalid_fields(
            place,
            vec![FieldError {
                field: field.to_owned(),
                problem: problem.into(),
            }],
        )
    }

    /// 400 naming each field in `errors`.
    pub(crate) fn invalid_fields(place: Place, errors: Vec<FieldError>) -> Self {
        Self::Invalid {
            place,
            detail: place.detail(),
            errors,
        }
    }

    /// 409 for a write that conflicts with what is stored.
    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict {
            kind: ProblemType::Conflict,
            title: "The request conflicts with the record's state",
            detail: detail.into(),
            field: None,
        }
    }

    /// 500 for `what` failing with `cause` (logged only).
    pub(crate) fn internal(what: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Internal {
            what,
            cause: cause.to_string(),
        }
    }

    /// The reason the refusal log records, for a refusal.
    fn refusal(&self) -> Option<String> {
        match self {
            Self::NotFoundOrRefused { refused } => refused.clone(),
            Self::Refused { reason } => Some(reason.clone()),
            Self::NotYours { detail, .. } => Some(detail.clone()),
            Self::BudgetExhausted { .. } => Some("privacy budget exhausted".to_owned()),
            _ => None,
        }
    }

    /// The problem document the partner gets (also the problem of one line of
    /// an NDJSON batch, which answers each line in a 200 stream).
    pub(crate) fn into_problem(self) -> Problem {
        match self {
            Self::Invalid {
                place,
                detail,
                errors,
            } => {
                let (kind, title) = match place {
                    Place::Body => (ProblemType::InvalidRequest, "The request is invalid"),
                    Place::Query => (ProblemType::InvalidQuery, "Invalid query"),
                };
                let mut problem = Problem::new(StatusCode::BAD_REQUEST)
                    .with_type(kind, title)
                    .with_detail(detail);
                problem.errors = errors;
                problem
            }
            // The very body the fallback gives an unknown path or id.
            Self::NotFoundOrRefused { .. } => Problem::new(StatusCode::NOT_FOUND),
            Self::Refused { reason } => Problem::new(StatusCode::FORBIDDEN)
                .with_type(ProblemType::Forbidden, "Refused by the release policy")
                .with_detail(reason),
            Self::NotYours { field, detail } => Problem::new(StatusCode::FORBIDDEN)
                .with_type(ProblemType::ExportForbidden, "This export is not allowed")
                .with_detail(format!("no export was made: {detail}"))
                .with_field(field, detail),
            Self::WrongKind { detail } => Problem::new(StatusCode::FORBIDDEN)
                .with_type(ProblemType::Forbidden, "Not allowed for this partner")
                .with_detail(detail),
            Self::BudgetExhausted {
                period,
                requested,
                remaining,
            } => {
                let mut problem = Problem::new(StatusCode::FORBIDDEN)
                    .with_type(
                        ProblemType::PrivacyBudgetExhausted,
                        "Privacy budget exhausted",
                    )
                    .with_detail(format!(
                        "a new table of {period} would spend epsilon {requested} but {remaining} \
                         is left of that month's budget, which all partners share; nothing was \
                         released or spent"
                    ));
                problem.epsilon_remaining = Some(remaining);
                problem
            }
            Self::Conflict {
                kind,
                title,
                detail,
                field,
            } => {
                let mut problem = Problem::new(StatusCode::CONFLICT)
                    .with_type(kind, title)
                    .with_detail(detail);
                problem.errors.extend(field);
                problem
            }
            Self::UnsupportedMediaType { accepted } => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                    .with_detail(format!("send the body as {}", accepted.join(" or ")))
            }
            Self::NothingSelected {
                kind,
                title,
                detail,
                fields,
            } => {
                let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                    .with_type(kind, title)
                    .with_detail(detail);
                problem.errors = fields;
                problem
            }
            Self::Unavailable => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the gateway is stopping; retry shortly"),
            Self::Internal { what, cause } => {
                // The cause never holds request values (the domain's errors
                // do not quote them); the partner gets a bare 500.
                tracing::error!(error = %cause, "{what} failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl Place {
    fn detail(self) -> &'static str {
        match self {
            Self::Body => "nothing was stored; see errors",
            Self::Query => "a query parameter or header is not valid",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refusal = self.refusal();
        let mut response = self.into_problem().into_response();
        if let Some(reason) = refusal {
            response.extensions_mut().insert(RefusedBecause(reason));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal("a database call", e)
    }
}

impl From<InvalidInput> for ApiError {
    fn from(invalid: InvalidInput) -> Self {
        Self::invalid_fields(
            Place::Body,
            invalid
                .errors
                .into_iter()
                .map(|e| FieldError {
                    field: e.field,
                    problem: e.problem,
                })
                .collect(),
        )
    }
}

impl From<ExchangeError> for ApiError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Invalid(invalid) => invalid.into(),
            ExchangeError::NotFound => Self::NotFoundOrRefused { refused: None },
            ExchangeError::Conflict(detail) => Self::conflict(detail),
            ExchangeError::Unavailable => Self::Unavailable,
            ExchangeError::WrongKind(detail) => Self::WrongKind { detail },
            internal => Self::internal("an exchange write", internal),
        }
    }
}

impl From<crate::domain::ids::NotARecordId> for ApiError {
    fn from(_: crate::domain::ids::NotARecordId) -> Self {
        Self::NotFoundOrRefused { refused: None }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotFound { refused } => Self::NotFoundOrRefused { refused },
            ReadError::Refused { reason } => Self::Refused { reason },
            ReadError::Invalid { parameter, problem } => {
                Self::invalid(Place::Query, parameter, problem)
            }
            internal => Self::internal("a read", internal),
        }
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Invalid(problems) => Self::Invalid {
                place: Place::Body,
                detail: "no export was made; see errors",
                errors: problems
                    .into_iter()
                    .map(|(field, problem)| FieldError { field, problem })
                    .collect(),
            },
            ExportError::Forbidden { field, detail } => Self::NotYours { field, detail },
            ExportError::Refused { reason } => Self::Refused { reason },
            ExportError::PlanChanged { detail } => Self::Conflict {
                kind: ProblemType::StudyPlanChanged,
                title: "The study changed since its exports were planned",
                detail: format!("no export was made: {detail}"),
                field: Some(FieldError {
                    field: "study".to_owned(),
                    problem: detail,
                }),
            },
            ExportError::NoData => Self::NothingSelected {
                kind: ProblemType::NoData,
                title: "Nothing to export",
                detail: "no referral has a contact date in the range; no export was made",
                fields: ["from", "to"]
                    .map(|field| FieldError {
                        field: field.to_owned(),
                        problem: "no referral in the range from..to".to_owned(),
                    })
                    .into(),
            },
            ExportError::NotFound => Self::NotFoundOrRefused { refused: None },
            ExportError::NotReady { state } => Self::Conflict {
                kind: ProblemType::ExportNotReady,
                title: "The export is not ready",
                detail: format!("the export is {state}"),
                field: None,
            },
            internal => Self::internal("an export", internal),
        }
    }
}

impl From<AggregateError> for ApiError {
    fn from(e: AggregateError) -> Self {
        match e {
            AggregateError::Invalid { parameter, problem } => {
                Self::invalid(Place::Query, parameter, problem)
            }
            AggregateError::Refused { reason } => Self::Refused { reason },
            AggregateError::BudgetExhausted {
                period,
                requested,
                remaining,
            } => Self::BudgetExhausted {
                period,
                requested,
                remaining,
            },
            internal => Self::internal("an aggregate", internal),
        }
    }
}
