//! The `subject` object partners send (police on a referral, health on a case):
//! a person's identifiers, read, length-checked and normalized.
//!
//! Normalization problems come back under the API's field names
//! (`subject.address.zip`), and never quote the value.

use serde::Deserialize;

use super::input::{Invalid, MAX_IDENTIFIER_CHARS};
use crate::normalize::{Identity, IdentityInput, NormalizeOptions, normalize};

/// A person's identifiers as sent. `given_name` and `surname` are required:
/// every referral and case names the person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    pub given_name: String,
    pub surname: String,
    /// Date of birth as typed: `1984-03-07`, `03/07/1984`, `3/7/84`, ...;
    /// from 1900-01-01 to today.
    #[serde(default)]
    pub dob: Option<String>,
    #[serde(default)]
    pub sex: Option<String>,
    #[serde(default)]
    pub address: Option<AddressRequest>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[serde(default)]
    pub street: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
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
        match normalize(&input, options) {
            Ok(identity) => Some(CheckedSubject { input, identity }),
            Err(problems) => {
                for problem in problems {
                    invalid.push(api_path(problem.field), problem.problem);
                }
                None
            }
        }
    }
}
