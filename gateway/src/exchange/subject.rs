//! The `subject` object partners send (police on a referral, health on a case):
//! a person's identifiers, read, length-checked and normalized.
//!
//! Normalization problems come back under the API's field names
//! (`subject.address.zip`), and never quote the value.

use serde::Deserialize;

use super::input::{FieldError, Invalid, MAX_IDENTIFIER_CHARS};
use crate::normalize::{Identity, IdentityInput, NormalizeOptions, normalize, normalize_tolerant};

/// A person's identifiers as sent. `given_name` and `surname` are required:
/// every referral and case names the person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    /// At most 200 characters, with at least one letter besides a title.
    #[schema(max_length = 200, pattern = r"[^\W\d_]", example = "Sample")]
    pub given_name: String,
    /// Like `given_name`.
    #[schema(max_length = 200, pattern = r"[^\W\d_]", example = "Person-Demo")]
    pub surname: String,
    /// Date of birth as typed: `1984-03-07`, `03/07/1984`, `3/7/84`, ...;
    /// from 1900-01-01 to today. The pattern states the ISO form for whole
    /// months in that range.
    #[serde(default)]
    #[schema(example = "1990-01-01")]
    pub dob: Option<String>,
    /// `F`, `M`, `X` (other) or `U` (unknown), or `female`, `male`, `other`,
    /// `unknown`; the server also reads common spellings in any case
    /// (`woman`, `nonbinary`, `unk`).
    #[serde(default)]
    #[schema(
        pattern = r"^(?:F|M|X|U|female|male|other|unknown)$",
        example = "female"
    )]
    pub sex: Option<String>,
    #[serde(default, deserialize_with = "super::input::optional_object")]
    pub address: Option<AddressRequest>,
    /// A US or Canadian number with an area code, as typed (`(916) 555-0142`,
    /// `+1 916 555 0142`); the pattern states that form, and the server also
    /// reads other countries' numbers in E.164. Numbers that do not exist
    /// (an unassigned area code) are refused.
    #[serde(default)]
    #[schema(
        pattern = r"^(?:\+1 ?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}$",
        example = "(916) 555-0142"
    )]
    pub phone: Option<String>,
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[a-z0-9]+(?:[._+-][a-z0-9]+)*@[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*\.[a-z]{2,12}$",
        example = "sample.person@example.org"
    )]
    pub email: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"[A-Za-z0-9]",
        example = "123 N. Main St., Apt 4"
    )]
    pub street: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"[A-Za-z]", example = "Stockton")]
    pub city: Option<String>,
    /// A US state or territory: its USPS code (the pattern) or its name.
    #[serde(default)]
    #[schema(max_length = 200, example = "CA")]
    pub state: Option<String>,
    /// Five digits, or ZIP+4.
    #[serde(default)]
    #[schema(
        pattern = r"^\s*(?!00000)[0-9]{5}(?:[- ]?[0-9]{4})?\s*$",
        example = "95202"
    )]
    pub zip: Option<String>,
}

impl std::fmt::Debug for SubjectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectRequest([redacted])")
    }
}

impl std::fmt::Debug for AddressRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressRequest([redacted])")
    }
}

/// A person's identifiers, checked: as sent (for the vault) and normalized (for
/// linkage).
#[derive(Debug, Clone)]
pub struct CheckedSubject {
    pub input: IdentityInput,
    pub identity: Identity,
    /// Under [`Tolerance::DropBadFields`], the optional fields that did not
    /// normalize: left out of `identity` (the vault still keeps them as sent).
    pub dropped: Vec<FieldError>,
}

/// What a value that does not normalize costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// The request: it is refused, naming the field (a single referral: the
    /// officer is there to correct it).
    RefuseRequest,
    /// That field only, when it is optional: it is dropped from linkage and
    /// reported (bulk submissions, where nobody is there to correct a typo).
    /// A required name that does not normalize still refuses the request.
    DropBadFields,
}

/// The API path of each identity field.
fn api_path(field: &str) -> String {
    match field {
        "street" | "city" | "state" | "zip" => format!("subject.address.{field}"),
        other => format!("subject.{other}"),
    }
}

impl SubjectRequest {
    /// Checks lengths and normalizes, adding problems to `invalid`.
    pub fn check(
        self,
        invalid: &mut Invalid,
        options: &NormalizeOptions,
        tolerance: Tolerance,
    ) -> Option<CheckedSubject> {
        let address = self.address.unwrap_or(AddressRequest {
            street: None,
            city: None,
            state: None,
            zip: None,
        });
        let input = IdentityInput {
            given_name: Some(self.given_name),
            surname: Some(self.surname),
            dob: self.dob,
            sex: self.sex,
            street: address.street,
            city: address.city,
            state: address.state,
            zip: address.zip,
            phone: self.phone,
            email: self.email,
        };
        let before = invalid.errors.len();
        for (field, value) in [
            ("given_name", &input.given_name),
            ("surname", &input.surname),
            ("dob", &input.dob),
            ("sex", &input.sex),
            ("street", &input.street),
            ("city", &input.city),
            ("state", &input.state),
            ("zip", &input.zip),
            ("phone", &input.phone),
            ("email", &input.email),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.chars().count() > MAX_IDENTIFIER_CHARS)
            {
                invalid.push(
                    api_path(field),
                    format!("is too long: at most {MAX_IDENTIFIER_CHARS} characters"),
                );
            }
        }
        if invalid.errors.len() > before {
            return None;
        }
        if tolerance == Tolerance::DropBadFields {
            let tolerant = normalize_tolerant(&input, options);
            let mut dropped = Vec::new();
            for problem in tolerant.dropped {
                let path = api_path(problem.field);
                if matches!(problem.field, "given_name" | "surname") {
                    invalid.push(path, problem.problem);
                } else {
                    dropped.push(FieldError {
                        field: path,
                        problem: problem.problem,
                    });
                }
            }
            if invalid.errors.len() > before {
                return None;
            }
            return Some(CheckedSubject {
                input,
                identity: tolerant.identity,
                dropped,
            });
        }
        match normalize(&input, options) {
            Ok(identity) => Some(CheckedSubject {
                input,
                identity,
                dropped: Vec::new(),
            }),
            Err(problems) => {
                for problem in problems {
                    invalid.push(api_path(problem.field), problem.problem);
                }
                None
            }
        }
    }
}
