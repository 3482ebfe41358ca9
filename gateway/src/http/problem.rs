//! RFC 9457 problem details: the one shape every error response takes.
//!
//! Handlers return [`super::error::ApiError`], which alone decides each
//! error's status, type and wording and turns it into a [`Problem`]; its
//! `Internal` case logs the cause and returns a bare 500 problem, so no
//! database message or stack ever reaches a partner.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the gateway's problem type URIs live (`.invalid`: they name kinds of
/// problem, nothing is served there).
const PROBLEM_TYPE_BASE: &str = "https://crosswalk.invalid/problems/";

/// The kinds of problem the gateway names with a `type` URI; every other
/// problem is `about:blank`, its status saying it all. Listed in the OpenAPI
/// document from [`ProblemType::ALL`], so a client can match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// A body or a field of it is not valid (`errors` names each field).
    InvalidRequest,
    /// A query parameter is not valid (`errors` names it).
    InvalidQuery,
    /// No valid partner token.
    Unauthorized,
    /// The policy or the partner's kind refuses the request.
    Forbidden,
    /// The request conflicts with the record's state.
    Conflict,
    /// An aggregate request that matches no data.
    NoData,
    /// The month's differential-privacy budget cannot pay for a new table.
    PrivacyBudgetExhausted,
    /// The export's study or data-use agreement does not allow it.
    ExportForbidden,
    /// The export file is not built yet.
    ExportNotReady,
    /// The study's release plan changed since the export was started.
    StudyPlanChanged,
}

impl ProblemType {
    pub const ALL: [Self; 10] = [
        Self::InvalidRequest,
        Self::InvalidQuery,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Conflict,
        Self::NoData,
        Self::PrivacyBudgetExhausted,
        Self::ExportForbidden,
        Self::ExportNotReady,
        Self::StudyPlanChanged,
    ];

    fn slug(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid-request",
            Self::InvalidQuery => "invalid-query",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::NoData => "no-data",
            Self::PrivacyBudgetExhausted => "privacy-budget-exhausted",
            Self::ExportForbidden => "export-forbidden",
            Self::ExportNotReady => "export-not-ready",
            Self::StudyPlanChanged => "study-plan-changed",
        }
    }

    /// The `type` URI.
    pub fn uri(self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.slug())
    }
}

/// The `type` member's schema: `about:blank` or one of [`ProblemType::ALL`].
fn problem_type_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            std::iter::once("about:blank".to_owned()).chain(ProblemType::ALL.map(ProblemType::uri)),
        ))
        .build()
}

/// One problem+json document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    #[schema(schema_with = problem_type_schema)]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For validation failures: each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For a refused aggregate request under differential privacy: what is
    /// left of the budget of the month that could not pay for its new table
    /// (shared by all partners; an RFC 9457 extension member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon_remaining: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer-like path of the field, e.g. `subject.dob`.
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            epsilon_remaining: None,
        }
    }

    #[must_use]
    pub fn with_type(mut self, kind: ProblemType, title: &str) -> Self {
        self.kind = kind.uri();
        title.clone_into(&mut self.title);
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>, problem: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
        self
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// Middleware: turns any error response that is not already problem+json (a 404
/// for an unknown route, a 405, a 408 from the timeout, a 413 from the body limit)
/// into one, so that partners only ever parse one error shape.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let mut problem = Problem::new(status).into_response();
        for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
            if let Some(value) = response.headers().get(&name) {
                problem.headers_mut().insert(name, value.clone());
            }
        }
        return problem;
    }
    response
}
