//! Turning partner JSON into checked values, with errors that name the field and
//! never quote what was sent.
//!
//! Request bodies are read in two steps. First serde reads the JSON into a request
//! struct that denies unknown fields and types every field loosely (codes and
//! dates are plain strings there), so that serde's own errors are only about the
//! *shape*: syntax, unknown or missing fields, wrong JSON types. Those errors are
//! rewritten by [`parse_json`] into a field path (`subject.address.zip`,
//! `resources[1]`) and a message with the offending value cut out — serde's
//! messages quote values (`invalid type: string "Jane", expected a boolean`), and
//! a value may be an identifier. Then the domain checks the *content* field by
//! field (codes, dates, lengths), collecting every problem, not just the first.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use super::vocabulary::Code;

/// How long free text may be, in characters: a brief description, not a file.
pub const MAX_FREE_TEXT_CHARS: usize = 2_000;
/// How long a reference (CAD number, officer id, case reference) may be.
pub const MAX_REFERENCE_CHARS: usize = 64;
/// How long one identifier field may be before it is even normalized.
pub const MAX_IDENTIFIER_CHARS: usize = 200;
/// How long a district code may be.
pub const MAX_DISTRICT_CHARS: usize = 32;
/// How many resource categories one referral may request (there are 20).
pub const MAX_RESOURCES: usize = 20;

/// The form of a partner id in the OpenAPI document, for lists of them
/// (`crate::config::is_valid_partner_id`). Which partners exist is not
/// published.
pub struct PartnerIdText;

/// What a partner id looks like.
pub const PARTNER_ID_PATTERN: &str = "^[a-z0-9-]{1,64}$";

impl utoipa::PartialSchema for PartnerIdText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(PARTNER_ID_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for PartnerIdText {}

/// One field that is wrong, and why. The message never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the request: `subject.dob`, `resources[2]`, or
    /// `(body)` for the document as a whole.
    pub field: String,
    pub problem: String,
}

/// A request (or batch line) that was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invalid {
    pub errors: Vec<FieldError>,
}

impl Invalid {
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        let mut invalid = Self::default();
        invalid.push(field, problem);
        invalid
    }

    pub fn push(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(value)` when nothing was pushed.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, Self> {
        if self.errors.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.errors.iter().map(|e| e.field.as_str()).collect();
        write!(f, "invalid fields: {}", fields.join(", "))
    }
}

/// The path used for a problem with the document as a whole.
pub const BODY: &str = "(body)";

/// Reads `bytes` as `T`, or names the first field serde could not read. The
/// body must be a JSON object (see [`object`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Invalid> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Object(value) = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = sanitize_path(&e.path().to_string());
        let (field, problem) = describe(&path, e.inner());
        Invalid::field(field, problem)
    })?;
    deserializer
        .end()
        .map_err(|e| Invalid::field(BODY, format!("not valid JSON ({})", position(&e))))?;
    Ok(value)
}

/// A `T` read from a JSON object only.
///
/// serde's derived structs also accept a JSON array of the field values in
/// order (`"address": [null, null]`), which the OpenAPI document does not allow
/// and no client means. Request bodies and their nested objects are read
/// through this (the body by [`parse_json`], nested fields with
/// `#[serde(deserialize_with = "input::object")]` or [`optional_object`]).
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Object)
    }
}

/// `deserialize_with` for a field holding an object: see [`Object`].
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}

/// `deserialize_with` for an optional field holding an object or `null`.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|Object(value)| value))
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// serde's message turned into (field, problem) without the value it may quote.
fn describe(path: &str, error: &serde_json::Error) -> (String, String) {
    use serde_json::error::Category;
    let message = message_without_position(error);
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            return (
                BODY.to_owned(),
                format!("not valid JSON ({})", position(error)),
            );
        }
        Category::Data => {}
    }
    if let Some(name) = quoted_name(&message, "unknown field `") {
        return (join(path, &name), "unknown field".to_owned());
    }
    if let Some(name) = quoted_name(&message, "missing field `") {
        return (join(path, &name), "is required".to_owned());
    }
    if let Some(name) = quoted_name(&message, "duplicate field `") {
        return (join(path, &name), "is given more than once".to_owned());
    }
    let field = if path.is_empty() { BODY } else { path }.to_owned();
    // "invalid type: string \"...\", expected a boolean" and the like: keep only
    // what was expected.
    if let Some((_, expected)) = message.rsplit_once(", expected ") {
        let kind = if message.starts_with("invalid type") {
            "wrong type"
        } else {
            "invalid value"
        };
        // serde names our types ("struct SubjectRequest"); the partner sent JSON.
        let expected = if expected.starts_with("struct ") {
            "an object"
        } else {
            expected
        };
        return (field, format!("{kind}: expected {expected}"));
    }
    (field, "invalid value".to_owned())
}

/// `name` from a message starting with `prefix` and the name in backquotes, if
/// the name looks like a field name (anything else is not echoed).
fn quoted_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let name = rest.split('`').next()?;
    Some(if is_plain_segment(name) {
        name.to_owned()
    } else {
        "?".to_owned()
    })
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else if path == name || path.ends_with(&format!(".{name}")) {
        // The path already ends at the key serde complained about.
        path.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// `serde_path_to_error`'s path with any segment that is not a plain field name
/// or index replaced by `?`: keys are chosen by the sender and echoed back.
fn sanitize_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .map(|segment| {
            let name = segment.split('[').next().unwrap_or_default();
            let indices_ok = segment[name.len()..].split('[').skip(1).all(|index| {
                index
                    .strip_suffix(']')
                    .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
            });
            if is_plain_segment(name) && indices_ok {
                segment
            } else {
                "?"
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Field names in this API are lower-case snake case; a key that is not (`Jane`,
/// `555-0142`) may be a value typed where a key belongs, and is not echoed.
fn is_plain_segment(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn message_without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => text[..at].to_owned(),
        _ => text,
    }
}

fn position(error: &serde_json::Error) -> String {
    // serde_json's syntax messages ("expected value", "trailing characters",
    // "EOF while parsing a string") describe the grammar, never the input.
    format!(
        "{} at line {} column {}",
        message_without_position(error),
        error.line(),
        error.column()
    )
}

/// Parses a vocabulary code, or records why not.
pub fn code<C: Code>(invalid: &mut Invalid, field: &str, value: &str) -> Option<C> {
    let parsed = C::parse(value);
    if parsed.is_none() {
        invalid.push(
            field,
            format!("unknown value; expected one of: {}", C::expected()),
        );
    }
    parsed
}

/// Parses an RFC 3339 date-time, or records why not.
pub fn timestamp(invalid: &mut Invalid, field: &str, value: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(value.trim()).ok();
    if parsed.is_none() {
        invalid.push(
            field,
            "must be an RFC 3339 date-time with an offset, e.g. 2026-03-14T09:30:00-07:00",
        );
    }
    parsed.map(|at| at.with_timezone(&Utc))
}

/// The range a time about something that happened in the program may take: on
/// or after the program start (`exchange.program_start`), and not after the
/// gateway's clock plus the tolerated skew. A contact, outcome or case time
/// outside it is a typing error (`0000-01-01`, `2062` for `2026`).
#[derive(Debug, Clone, Copy)]
pub struct EventWindow {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

/// Parses an RFC 3339 date-time inside `window`, or records why not.
pub fn event_time(
    invalid: &mut Invalid,
    field: &str,
    value: &str,
    window: EventWindow,
) -> Option<DateTime<Utc>> {
    let at = timestamp(invalid, field, value)?;
    if at < window.earliest {
        invalid.push(field, before_program_start(window.earliest));
        return None;
    }
    if at > window.latest {
        invalid.push(field, "is in the future");
        return None;
    }
    Some(at)
}

/// The problem with a date before the program began, naming the first day.
pub fn before_program_start(earliest: DateTime<Utc>) -> String {
    format!(
        "is before the program began: the earliest date accepted is {} \
         (exchange.program_start)",
        earliest.date_naive()
    )
}

/// A reference (CAD number, officer id, case reference): trimmed, not empty, at
/// most [`MAX_REFERENCE_CHARS`], no control characters.
pub fn reference(invalid: &mut Invalid, field: &str, value: &str) -> Option<String> {
    bounded_text(invalid, field, value, MAX_REFERENCE_CHARS, false)
}

/// Free text: trimmed, not empty, at most [`MAX_FREE_TEXT_CHARS`]; line breaks
/// and tabs allowed, other control characters not.
pub fn free_text(invalid: &mut Invalid, field: &str, value: &str) -> Option<String> {
    bounded_text(invalid, field, value, MAX_FREE_TEXT_CHARS, true)
}

fn bounded_text(
    invalid: &mut Invalid,
    field: &str,
    value: &str,
    max_chars: usize,
    multiline: bool,
) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        invalid.push(field, "must not be empty (leave the field out instead)");
        return None;
    }
    let chars = trimmed.chars().count();
    if chars > max_chars {
        invalid.push(
            field,
            format!("is too long: at most {max_chars} characters, got {chars}"),
        );
        return None;
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        invalid.push(field, "must not contain control characters");
        return None;
    }
    Some(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Outer {
        name: String,
        flag: Option<bool>,
        inner: Option<Inner>,
        list: Option<Vec<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Inner {
        zip: Option<String>,
    }

    fn error_of(json: &str) -> FieldError {
        parse_json::<Outer>(json.as_bytes())
            .expect_err("invalid")
            .errors
            .remove(0)
    }

    #[test]
    fn shape_errors_name_the_field_and_never_quote_the_value() {
        let e = error_of(r#"{"name": "x", "inner": {"zipcode": "95814"}}"#);
        assert_eq!(e.field, "inner.zipcode");
        assert_eq!(e.problem, "unknown field");

        let e = error_of(r#"{"name": "x", "flag": "Jane Doe"}"#);
        assert_eq!(e.field, "flag");
        assert!(e.problem.starts_with("wrong type: expected"), "{e:?}");
        assert!(!e.problem.contains("Jane"), "{e:?}");

        let e = error_of(r#"{"name": "x", "list": ["a", 5]}"#);
        assert_eq!(e.field, "list[1]");

        let e = error_of(r#"{"name": "x", "inner": "95817"}"#);
        assert_eq!(
            (e.field.as_str(), e.problem.as_str()),
            ("inner", "wrong type: expected an object")
        );

        let e = error_of(r#"{"flag": true}"#);
        assert_eq!(
            (e.field.as_str(), e.problem.as_str()),
            ("name", "is required")
        );

        let e = error_of(r#"{"name": "x", "inner": {"zip": "1", "zip": "2"}}"#);
        assert_eq!(e.field, "inner.zip");

        let e = error_of(r#"{"name": "Jane Doe""#);
        assert_eq!(e.field, BODY);
        assert!(!e.problem.contains("Jane"), "{e:?}");

        let e = error_of(r#"{"name": "x"} trailing"#);
        assert_eq!(e.field, BODY);

        let e = error_of(r#"{"name": "x", "Jane Doe, 555-0142": 1}"#);
        assert_eq!(e.field, "?", "an odd key is not echoed");
        let e = error_of(r#"{"name": "x", "inner": {"Jane": 1}}"#);
        assert_eq!(e.field, "inner.?");
    }

    #[test]
    fn content_checks_collect_every_problem() {
        let mut invalid = Invalid::default();
        assert!(timestamp(&mut invalid, "contact_at", "2026-03-14").is_none());
        assert!(reference(&mut invalid, "cad_number", &"9".repeat(65)).is_none());
        assert!(free_text(&mut invalid, "notes", "  ").is_none());
        assert!(free_text(&mut invalid, "notes", "line one\nline two").is_some());
        let fields: Vec<&str> = invalid.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["contact_at", "cad_number", "notes"]);
    }

    #[test]
    fn event_times_fall_between_the_program_start_and_now() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .expect("a date-time")
                .with_timezone(&Utc)
        };
        let window = EventWindow {
            earliest: at("2024-07-01T00:00:00Z"),
            latest: at("2026-03-14T09:30:30Z"),
        };
        let mut invalid = Invalid::default();
        for inside in [
            "2024-07-01T00:00:00Z",
            "2024-06-30T17:00:00-07:00",
            "2026-03-14T09:30:30Z",
        ] {
            assert!(
                event_time(&mut invalid, "t", inside, window).is_some(),
                "{inside}"
            );
        }
        assert!(invalid.is_empty(), "{invalid:?}");
        for outside in [
            "0000-01-01T00:00:00Z",
            "2024-06-30T23:59:59Z",
            "2026-03-14T09:30:31Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(
                event_time(&mut invalid, "t", outside, window).is_none(),
                "{outside}"
            );
        }
        let problems: Vec<&str> = invalid.errors.iter().map(|e| e.problem.as_str()).collect();
        assert!(problems[0].contains("2024-07-01"), "{problems:?}");
        assert!(problems[1].contains("2024-07-01"), "{problems:?}");
        assert_eq!(problems[2..], ["is in the future", "is in the future"]);
    }
}
