//! Normalization of identifiers: the same person, typed by different people, must
//! come out the same before anything is hashed.
//!
//! [`normalize`] turns an [`IdentityInput`] (strings as partners send them) into an
//! [`Identity`] (canonical values), or reports every field it could not parse.
//! Normalization is idempotent: normalizing the canonical text of a value gives
//! the same value.
//!
//! Every type here holds raw identifiers, so none of them prints its contents:
//! `Debug` shows which fields are present, never their values.

use std::fmt;

use chrono::NaiveDate;

/// An identity as a partner sent it. `None` means the field was not given;
/// `Some("")` is an error (an empty identifier is a mistake, not an absence).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IdentityInput {
    pub given_name: Option<String>,
    pub surname: Option<String>,
    /// Date of birth as typed: `1984-03-07`, `03/07/1984`, `3/7/84`, `19840307`, ...
    pub dob: Option<String>,
    pub sex: Option<String>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// Administrative sex as recorded; `Unknown` when the partner said so explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// Canonical identifiers. Names are lower-case ASCII words separated by single
/// spaces (diacritics folded, punctuation removed, hyphens split, suffixes such as
/// Jr/III moved to `name_suffix`); ZIP is five digits; phone is E.164; email is
/// lower-case; street is lower-case words with common abbreviations expanded.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub name_suffix: Option<String>,
    pub dob: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// One field that could not be normalized. The message never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's name as in the API: `given_name`, `dob`, `phone`, ...
    pub field: &'static str,
    pub problem: String,
}

macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* }) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = f.debug_struct(stringify!($ty));
                $( if self.$field.is_some() { s.field(stringify!($field), &"[redacted]"); } )*
                s.finish()
            }
        }
    };
}
redacted_debug!(IdentityInput {
    given_name,
    surname,
    dob,
    sex,
    street,
    city,
    state,
    zip,
    phone,
    email
});
redacted_debug!(Identity {
    given_name,
    surname,
    name_suffix,
    dob,
    sex,
    street,
    city,
    state,
    zip,
    phone,
    email
});
