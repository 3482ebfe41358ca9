//! Normalization of identifiers: the same person, typed by different people, must
//! come out the same before anything is hashed.
//!
//! [`normalize`] turns an [`IdentityInput`] (strings as partners send them) into an
//! [`Identity`] (canonical values), or reports every field it could not parse.
//! Normalization is idempotent: normalizing the canonical text of a value gives
//! the same value.
//!
//! Every type here holds raw identifiers, so none of them prints its contents:
//! `Debug` shows which fields are present, never their values; and no error
//! message quotes the value it rejects.
//!
//! # Layout
//! - `text`: folding free text to lower-case ASCII words (NFKC,
//!   transliteration, punctuation), shared by names, cities and streets;
//! - [`normalize_name`], [`normalize_city`]; [`canonical_given_name`] (the
//!   nickname table, for the linkage engine);
//! - [`normalize_dob`]; [`normalize_phone`] (with a fast path for NANP numbers
//!   whose equivalence to the library is property-tested);
//! - [`normalize_street`], [`normalize_state`], [`normalize_zip`],
//!   [`normalize_email`], [`normalize_sex`].
//!
//! # Adding a field
//! 1. Add it to [`IdentityInput`] and [`Identity`] and to their
//!    `redacted_debug!` lists.
//! 2. Write `normalize_<field>(&str) -> Result<T, String>` in its own file:
//!    idempotent, never quoting its input in the error, with unit tests.
//! 3. Call it from [`normalize`] through `check(...)`, and add it to the
//!    property tests in `proptests.rs` (idempotence, no panic, no quoting).

use std::fmt;

use chrono::NaiveDate;

mod address;
mod dob;
mod email;
mod name;
mod nicknames;
mod phone;
mod sex;
mod text;

#[cfg(test)]
mod proptests;

pub(crate) use address::STATE_CODES;
pub use address::{normalize_state, normalize_street, normalize_zip};
pub use dob::normalize_dob;
pub use email::normalize_email;
pub use name::{NameParts, normalize_city, normalize_name};
pub use nicknames::canonical_given_name;
pub use phone::normalize_phone;
pub use sex::normalize_sex;

/// An identity as a partner sent it. `None` means the field was not given;
/// `Some("")` is an error (an empty identifier is a mistake, not an absence).
/// Serializable so that the vault can seal it as sent; never serialized anywhere
/// else.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// What normalization needs from its caller: nothing here reads a clock or a
/// config file.
#[derive(Debug, Clone, Copy)]
pub struct NormalizeOptions {
    /// Region in which a phone number typed without a country code is read:
    /// `(916) 555-0142` is `+19165550142` under `US`.
    pub default_region: phonenumber::country::Id,
    /// The caller's today, from its clock: a date of birth after it is an
    /// error, and two-digit years resolve to the latest year not after it.
    pub today: NaiveDate,
}

impl NormalizeOptions {
    pub fn new(default_region: phonenumber::country::Id, today: NaiveDate) -> Self {
        Self {
            default_region,
            today,
        }
    }
}

/// Normalizes every field of `input`, or reports every field that could not
/// be normalized (not just the first), in field order.
///
/// A suffix found in the surname (`Smith Jr`) wins over one found in the given
/// name (`John Jr`); either lands in [`Identity::name_suffix`].
pub fn normalize(
    input: &IdentityInput,
    options: &NormalizeOptions,
) -> Result<Identity, Vec<FieldProblem>> {
    // No allocation unless a field is bad.
    let mut problems = Vec::new();
    let given = check(
        &mut problems,
        "given_name",
        input.given_name.as_deref(),
        normalize_name,
    );
    let surname = check(
        &mut problems,
        "surname",
        input.surname.as_deref(),
        normalize_name,
    );
    let dob = check(&mut problems, "dob", input.dob.as_deref(), |dob| {
        normalize_dob(dob, options.today)
    });
    let sex = check(&mut problems, "sex", input.sex.as_deref(), normalize_sex);
    let street = check(
        &mut problems,
        "street",
        input.street.as_deref(),
        normalize_street,
    );
    let city = check(&mut problems, "city", input.city.as_deref(), normalize_city);
    let state = check(
        &mut problems,
        "state",
        input.state.as_deref(),
        normalize_state,
    );
    let zip = check(&mut problems, "zip", input.zip.as_deref(), normalize_zip);
    let phone = check(&mut problems, "phone", input.phone.as_deref(), |phone| {
        normalize_phone(phone, options.default_region)
    });
    let email = check(
        &mut problems,
        "email",
        input.email.as_deref(),
        normalize_email,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let name_suffix = surname
        .as_ref()
        .and_then(|parts| parts.suffix)
        .or_else(|| given.as_ref().and_then(|parts| parts.suffix))
        .map(str::to_owned);
    Ok(Identity {
        given_name: given.map(|parts| parts.words),
        surname: surname.map(|parts| parts.words),
        name_suffix,
        dob,
        sex,
        street,
        city,
        state,
        zip,
        phone,
        email,
    })
}

/// What survives of a field that did not normalize: the characters a fuzzy
/// comparison can still use. For a date of birth, a ZIP or a phone number,
/// its digits (an impossible `1984-13-07` still shares most of its digits with
/// `1984-03-07`); for anything else, its folded words. Never compared exactly,
/// never released, never printed: it is as identifying as the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Remnant {
    /// The field's name as in the API: `dob`, `zip`, `phone`, ...
    pub field: &'static str,
    pub text: String,
}

impl fmt::Debug for Remnant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remnant({}: [redacted])", self.field)
    }
}

/// [`normalize_tolerant`]'s answer: the identity with every field that
/// normalized, the fields that did not (each named, the value never quoted),
/// and what is left of those for fuzzy comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tolerant {
    pub identity: Identity,
    pub dropped: Vec<FieldProblem>,
    pub remnants: Vec<Remnant>,
}

/// Normalizes `input` as [`normalize`] does, except that a field that does not
/// normalize costs that field, not the identity: it is left out of the
/// identity (so no exact comparison uses it), reported in
/// [`Tolerant::dropped`], and its digits or words kept in
/// [`Tolerant::remnants`]. For bulk data (`crosswalk link`, batch imports),
/// where nobody is there to correct a typo; a single referral keeps the strict
/// [`normalize`], because the officer can.
pub fn normalize_tolerant(input: &IdentityInput, options: &NormalizeOptions) -> Tolerant {
    let problems = match normalize(input, options) {
        Ok(identity) => {
            return Tolerant {
                identity,
                ..Tolerant::default()
            };
        }
        Err(problems) => problems,
    };
    let mut kept = input.clone();
    let mut remnants = Vec::with_capacity(problems.len());
    for problem in &problems {
        let slot = match problem.field {
            "given_name" => &mut kept.given_name,
            "surname" => &mut kept.surname,
            "dob" => &mut kept.dob,
            "sex" => &mut kept.sex,
            "street" => &mut kept.street,
            "city" => &mut kept.city,
            "state" => &mut kept.state,
            "zip" => &mut kept.zip,
            "phone" => &mut kept.phone,
            "email" => &mut kept.email,
            // Not a field of IdentityInput: the strict pass below then fails
            // and nothing is kept (see there).
            _ => continue,
        };
        if let Some(value) = slot.take() {
            let text = match problem.field {
                "dob" | "zip" | "phone" => value.chars().filter(char::is_ascii_digit).collect(),
                _ => text::fold_words(&value, text::Hash::Punctuation),
            };
            if !text.is_empty() {
                remnants.push(Remnant {
                    field: problem.field,
                    text,
                });
            }
        }
    }
    // Every bad field is gone, so this cannot fail; if it ever did, nothing
    // is kept rather than something half-checked.
    let identity = normalize(&kept, options).unwrap_or_default();
    Tolerant {
        identity,
        dropped: problems,
        remnants,
    }
}

/// Runs one field's normalizer when the field was given, recording its problem.
fn check<T>(
    problems: &mut Vec<FieldProblem>,
    field: &'static str,
    value: Option<&str>,
    normalize_field: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match normalize_field(value?) {
        Ok(normalized) => Some(normalized),
        Err(problem) => {
            problems.push(FieldProblem { field, problem });
            None
        }
    }
}

#[cfg(test)]
mod tolerant_tests {
    use super::*;

    fn options() -> NormalizeOptions {
        NormalizeOptions::new(
            phonenumber::country::Id::US,
            NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date"),
        )
    }

    #[test]
    fn a_bad_field_costs_that_field_and_leaves_its_digits() {
        let input = IdentityInput {
            given_name: Some("Michaela".to_owned()),
            surname: Some("Neumann".to_owned()),
            dob: Some("1915-13-11".to_owned()),
            zip: Some("4223".to_owned()),
            city: Some("Winston Hills".to_owned()),
            ..IdentityInput::default()
        };
        assert!(normalize(&input, &options()).is_err(), "strict refuses it");
        let tolerant = normalize_tolerant(&input, &options());
        assert_eq!(tolerant.identity.given_name.as_deref(), Some("michaela"));
        assert_eq!(tolerant.identity.city.as_deref(), Some("winston hills"));
        assert_eq!(tolerant.identity.dob, None);
        assert_eq!(tolerant.identity.zip, None);
        let dropped: Vec<_> = tolerant.dropped.iter().map(|p| p.field).collect();
        assert_eq!(dropped, ["dob", "zip"]);
        assert_eq!(
            tolerant.remnants,
            [
                Remnant {
                    field: "dob",
                    text: "19151311".to_owned()
                },
                Remnant {
                    field: "zip",
                    text: "4223".to_owned()
                },
            ]
        );
        for problem in &tolerant.dropped {
            assert!(!problem.problem.contains("1915"), "never quotes the value");
        }
        assert!(
            !format!("{tolerant:?}").contains("1915"),
            "Debug hides values"
        );
    }

    #[test]
    fn a_clean_identity_is_what_strict_normalization_gives() {
        let input = IdentityInput {
            given_name: Some("Bill".to_owned()),
            surname: Some("O'Brien".to_owned()),
            dob: Some("03/07/1984".to_owned()),
            ..IdentityInput::default()
        };
        let tolerant = normalize_tolerant(&input, &options());
        assert_eq!(Some(tolerant.identity), normalize(&input, &options()).ok());
        assert!(tolerant.dropped.is_empty() && tolerant.remnants.is_empty());
    }
}
