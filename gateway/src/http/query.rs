//! Query strings, read one way for every endpoint: each parameter at most once
//! and each one the endpoint knows, every problem named (never the value).

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::error::{ApiError, Place};
use super::problem::FieldError;

/// The query's name/value pairs, or `None` when it is not a URL query string
/// (answered as a 400 by [`Params::known`], not by the extractor, so that the
/// handler's other checks name their fields too).
pub(crate) struct Params(Option<Vec<(String, String)>>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self(
            Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .ok()
                .map(|Query(pairs)| pairs),
        ))
    }
}

impl Params {
    /// The parameters, each named as one of `known`, in the order given.
    /// An unknown or repeated parameter is a 400 naming it (all of them).
    pub(crate) fn known(
        &self,
        known: &[&'static str],
    ) -> Result<Vec<(&'static str, &str)>, ApiError> {
        let mut errors = Vec::new();
        let pairs = self.known_collecting(known, &mut errors)?;
        if errors.is_empty() {
            Ok(pairs)
        } else {
            Err(invalid(errors))
        }
    }

    /// Like [`Self::known`], but adds each unknown or repeated parameter to
    /// `errors` and goes on, for an endpoint that also names every bad value
    /// in the same answer. Fails only for a query that is not a URL query
    /// string.
    pub(crate) fn known_collecting(
        &self,
        known: &[&'static str],
        errors: &mut Vec<FieldError>,
    ) -> Result<Vec<(&'static str, &str)>, ApiError> {
        let Some(pairs) = &self.0 else {
            return Err(ApiError::invalid(
                Place::Query,
                "query",
                "is not a valid URL query string",
            ));
        };
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        for (name, value) in pairs {
            match known.iter().find(|k| **k == name) {
                Some(k) if out.iter().any(|(seen, _)| seen == k) => {
                    errors.push(field(k, "is given more than once"));
                }
                Some(k) => out.push((k, value.as_str())),
                None => errors.push(field(
                    shown_name(name),
                    &format!("is not a parameter of this endpoint ({})", known.join(", ")),
                )),
            }
        }
        Ok(out)
    }

    /// Where `field` first appears in the query (a parameter's name, or
    /// `query` for one not shown by name), so that a handler that names
    /// several problems can list them in the order the caller wrote them.
    pub(crate) fn position(&self, field: &str) -> usize {
        self.0
            .iter()
            .flatten()
            .position(|(name, _)| shown_name(name) == field)
            .unwrap_or(usize::MAX)
    }

    /// The parameters of a query string already split, for tests.
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
    }
}

/// A parameter's name when it looks like one; never echo junk.
fn shown_name(name: &str) -> &str {
    if name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name
    } else {
        "query"
    }
}

pub(crate) fn field(name: &str, problem: &str) -> FieldError {
    FieldError {
        field: name.to_owned(),
        problem: problem.to_owned(),
    }
}

/// A 400 naming each parameter in `errors`.
pub(crate) fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid_fields(Place::Query, errors)
}

/// A 400 naming one parameter.
pub(crate) fn invalid_parameter(name: &str, problem: &str) -> ApiError {
    ApiError::invalid(Place::Query, name, problem)
}

/// `limit`: a whole number from 1 to `max`.
pub(crate) fn limit(value: &str, max: u32) -> Result<u32, ApiError> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(invalid_parameter(
            "limit",
            &format!("must be a whole number from 1 to {max}"),
        )),
    }
}

/// A record id from the path (`/v1/referrals/{id}`), parsed at the boundary:
/// anything that is not a record id is the 404 an unknown id gets, before any
/// body is read or database touched.
pub(crate) struct RecordPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for RecordPath<T>
where
    S: Send + Sync,
    T: std::str::FromStr<Err = crate::domain::ids::NotARecordId> + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFoundOrRefused { refused: None })?;
        Ok(Self(text.parse()?))
    }
}
