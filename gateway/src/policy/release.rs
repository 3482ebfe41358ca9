//! Enforcement, in one place: [`release_view`] turns a decision and a record into
//! what leaves the gateway.
//!
//! Why it cannot be bypassed by accident:
//! - [`ReleasedView`] is the only type a read path may put in a response, and it
//!   has no public constructor, no `Deserialize`, no `From`: the only way to get
//!   one is through [`release_view`].
//! - A [`Decision`] cannot be built outside the policy module (it carries the
//!   bundle's private catalog plan), so `release_view` only ever applies a
//!   decision a loaded, checked bundle made.
//! - It copies *into* an empty object: a field reaches the view only because the
//!   decision names it with an action other than `withhold`. A field of the record
//!   that the decision does not name — a new column, a typo, a nested extra — is
//!   dropped, never copied through.
//! - `aggregate_only` and `deny` produce no view at all.
//!
//! # Field actions
//! - `release`: the value as it is.
//! - `withhold`: omitted.
//! - `generalize`: by the catalog class and the field (see
//!   [`super::resources::Generalization`]): a quasi-identifying date becomes its
//!   year and month (`2026-03`), a date of birth its year (`1987`), a ZIP code its
//!   first three digits (`958`); anything else — another class, or a value not in
//!   the expected form — is withheld. This is the record-level API's coarsening;
//!   a HIPAA Safe Harbor export applies its own stricter rules on top.
//! - `pseudonymize`: a keyed pseudonym under the requester's own key (see
//!   [`FieldShaper`]), so two requesters' values cannot be joined.
//!
//! The record may name nested fields either nested (`{"subject": {"dob": ...}}`)
//! or dotted (`{"subject.dob": ...}`); the view is always nested. When the
//! decision carries notices, the view carries them as `_notices`.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::decision::{Decision, Effect, FieldAction};
use super::resources::{Generalization, PseudonymKind};
use crate::domain::PartnerId;
use crate::domain::ids::SubjectRef;
use crate::pseudonym::Pseudonymizer;

/// The key under which a view carries its decision's notices.
pub const NOTICES_KEY: &str = "_notices";

/// A record as it may leave the gateway. Only [`release_view`] makes one:
///
/// ```compile_fail
/// let view = crosswalk::policy::ReleasedView(serde_json::json!({"ssn": "..."}));
/// ```
///
/// nor can it be read from JSON, converted from a value or defaulted:
///
/// ```compile_fail
/// let view: crosswalk::policy::ReleasedView =
///     serde_json::from_value(serde_json::json!({"ssn": "..."})).unwrap();
/// ```
/// ```compile_fail
/// let view = crosswalk::policy::ReleasedView::from(serde_json::json!({"ssn": "..."}));
/// ```
/// ```compile_fail
/// let view = crosswalk::policy::ReleasedView::default();
/// ```
///
/// and what the read services hand the HTTP layer holds only released views,
/// so a handler cannot answer with a record it shaped itself:
///
/// ```compile_fail
/// let page = crosswalk::reads::ReferralPage {
///     referrals: vec![serde_json::json!({"subject": {"given_name": "..."}})],
///     next_cursor: None,
/// };
/// ```
#[derive(Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ReleasedView(Value);

impl ReleasedView {
    /// The released JSON, read-only.
    pub fn as_json(&self) -> &Value {
        &self.0
    }
}

impl fmt::Debug for ReleasedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Released values may still be identifiers (for a partner allowed them).
        let fields = self.0.as_object().map_or(0, Map::len);
        write!(f, "ReleasedView({fields} top-level fields, [redacted])")
    }
}

/// A decision that allows no record-level view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the decision ({}) allows no record-level view", effect.as_str())]
pub struct NotReleasable {
    pub effect: Effect,
}

/// Who a view is for, and the keys its pseudonyms are computed under.
///
/// Every pseudonym is keyed BLAKE3 under the requester's own key, through
/// [`Pseudonymizer`] (partner keys for partners, study keys for studies):
/// - an internal subject id ([`PseudonymKind::Subject`]) becomes the requester's
///   ordinary pseudonym for that subject (`cwp-…` / `cws-…`);
/// - a partner id ([`PseudonymKind::Partner`]), a record id
///   ([`PseudonymKind::Record`]) and any other value ([`PseudonymKind::Value`])
///   become `cwf-…`, computed from the value with a domain-separating prefix
///   (`\x1fpartner\x1f`, `\x1frecord\x1f<resource>\x1f`,
///   `\x1ffield\x1f<name>\x1f`). Subject ids never contain control characters,
///   so these can never equal a subject pseudonym; the same partner id, or the
///   same referral id, gets the same value in every field that holds it (so a
///   study can still join outcomes to referrals).
pub struct FieldShaper<'a> {
    pseudonyms: &'a Pseudonymizer,
    audience: Audience<'a>,
}

#[derive(Clone, Copy)]
enum Audience<'a> {
    Partner(&'a PartnerId),
    Study(&'a str),
}

impl fmt::Debug for FieldShaper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldShaper([redacted])")
    }
}

impl<'a> FieldShaper<'a> {
    /// Views for the partner `partner_id`.
    pub fn for_partner(pseudonyms: &'a Pseudonymizer, partner_id: &'a PartnerId) -> Self {
        Self {
            pseudonyms,
            audience: Audience::Partner(partner_id),
        }
    }

    /// Views for the evaluator study `study_id`.
    pub fn for_study(pseudonyms: &'a Pseudonymizer, study_id: &'a str) -> Self {
        Self {
            pseudonyms,
            audience: Audience::Study(study_id),
        }
    }

    fn keyed(&self, value: &str) -> String {
        let pseudonym = match self.audience {
            Audience::Partner(id) => self.pseudonyms.for_partner(id, SubjectRef::of(value)),
            Audience::Study(id) => self.pseudonyms.for_study(id, SubjectRef::of(value)),
        };
        let body = pseudonym
            .as_str()
            .split_once('-')
            .map_or(pseudonym.as_str(), |(_, body)| body);
        format!("cwf-{body}")
    }

    pub(super) fn pseudonymize(
        &self,
        kind: PseudonymKind,
        field: &str,
        value: &Value,
    ) -> Option<Value> {
        let text = match (kind, value) {
            (_, Value::Null) => return Some(Value::Null),
            (PseudonymKind::Subject, Value::String(subject)) => {
                let pseudonym = match self.audience {
                    Audience::Partner(id) => {
                        self.pseudonyms.for_partner(id, SubjectRef::of(subject))
                    }
                    Audience::Study(id) => self.pseudonyms.for_study(id, SubjectRef::of(subject)),
                };
                return Some(Value::String(pseudonym.to_string()));
            }
            // A subject reference that is not a string is not one we made.
            (PseudonymKind::Subject, _) => return None,
            (PseudonymKind::Partner, Value::String(id)) => {
                self.keyed(&format!("\u{1f}partner\u{1f}{id}"))
            }
            (PseudonymKind::Record(resource), Value::String(id)) => {
                self.keyed(&format!("\u{1f}record\u{1f}{resource}\u{1f}{id}"))
            }
            (PseudonymKind::Partner | PseudonymKind::Record(_) | PseudonymKind::Value, other) => {
                let canonical = match other {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.keyed(&format!("\u{1f}field\u{1f}{field}\u{1f}{canonical}"))
            }
        };
        Some(Value::String(text))
    }
}

/// The view of `record` that `decision` allows, for the shaper's audience.
pub fn release_view(
    decision: &Decision,
    record: &Value,
    shaper: &FieldShaper<'_>,
) -> Result<ReleasedView, NotReleasable> {
    if decision.effect != Effect::Allow {
        return Err(NotReleasable {
            effect: decision.effect,
        });
    }
    let mut view = Map::new();
    for (name, action) in &decision.fields {
        let Some(entry) = decision.plan.fields.get(name.as_str()) else {
            // Invariant: a parsed decision names only catalog fields; if that
            // ever broke, the field stays behind.
            continue;
        };
        let Some(value) = lookup(record, name) else {
            continue;
        };
        let released_value = match action {
            FieldAction::Withhold => None,
            FieldAction::Release => Some(value.clone()),
            FieldAction::Generalize => generalize(entry.generalization(), value),
            FieldAction::Pseudonymize => shaper.pseudonymize(entry.spec.pseudonym, name, value),
        };
        if let Some(value) = released_value {
            insert_nested(&mut view, name, value);
        }
    }
    if !decision.notices.is_empty() {
        view.insert(
            NOTICES_KEY.to_owned(),
            Value::Array(
                decision
                    .notices
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
    Ok(ReleasedView(Value::Object(view)))
}

/// The value at the dotted `name`, stored flat (`"a.b"`), nested (`a` → `b`), or
/// any mix of the two.
fn lookup<'v>(record: &'v Value, name: &str) -> Option<&'v Value> {
    let object = record.as_object()?;
    if let Some(value) = object.get(name) {
        return Some(value);
    }
    name.match_indices('.').find_map(|(i, _)| {
        object
            .get(&name[..i])
            .and_then(|inner| lookup(inner, &name[i + 1..]))
    })
}

fn insert_nested(view: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        None => {
            view.insert(name.to_owned(), value);
        }
        Some((head, rest)) => {
            if !view.contains_key(head) {
                view.insert(head.to_owned(), Value::Object(Map::new()));
            }
            let Some(inner) = view.get_mut(head) else {
                return;
            };
            // The code's field names never make a leaf a prefix of another field
            // (a test in `resources` holds that), so this is always an object.
            if let Value::Object(inner) = inner {
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// The coarser value, or `None` (withheld) when there is no safe one.
pub(super) fn generalize(generalization: Generalization, value: &Value) -> Option<Value> {
    if value.is_null() {
        return Some(Value::Null);
    }
    let text = value.as_str()?;
    let coarse = match generalization {
        Generalization::Withhold => return None,
        Generalization::YearMonth => {
            let date = leading_date(text)?;
            date.format("%Y-%m").to_string()
        }
        Generalization::Year => {
            let date = leading_date(text)?;
            date.format("%Y").to_string()
        }
        Generalization::Zip3 => {
            let digits = text.trim();
            let (five, rest) = digits.split_at_checked(5)?;
            let plus_four =
                rest.is_empty() || (rest.len() == 5 && rest.starts_with('-')) || rest.len() == 4;
            if !five.bytes().all(|b| b.is_ascii_digit())
                || !rest
                    .bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| b.is_ascii_digit())
                || !plus_four
            {
                return None;
            }
            five[..3].to_owned()
        }
    };
    Some(Value::String(coarse))
}

/// The calendar date an ISO date or RFC 3339 timestamp starts with.
fn leading_date(text: &str) -> Option<chrono::NaiveDate> {
    let date = text.get(..10)?;
    let rest = &text[10..];
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
        return None;
    }
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}
