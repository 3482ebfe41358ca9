//! The parts of the OpenAPI document that depend on this gateway's
//! configuration and today's date, filled in each time `/openapi.json` is
//! served.
//!
//! Dates are bounded by the program start (`exchange.program_start`), by today
//! and, for aggregates, by the settled months (`aggregates.settle_days`);
//! `epsilon` by the differential-privacy settings. JSON Schema has no date
//! ranges, so each bound becomes a `pattern` that admits only dates inside it.
//!
//! # Decisions
//! - **A pattern states a safe subset, in whole months.** A pattern admits the
//!   whole months strictly inside a range and days 01-28, with offsets up to
//!   ±13:59, so that any time it admits is inside the range whatever the
//!   offset and whatever month it is. The server accepts more (the 29th to
//!   the 31st, the first and last months, `t`/`z`, and for dates of birth the
//!   US forms the descriptions list): a client that keeps to the pattern is
//!   never refused for the range, and a generated client cannot produce a date
//!   the server refuses for its range.
//! - **No partner or study ids.** Which partners and studies exist is not
//!   published (the document is served without a token; see the "auth without
//!   oracles" rule in `auth.rs`): such fields carry the id's form only.
//! - **What utoipa's attributes cannot say** is set here too: `uniqueItems`.
//! - **Rules between fields stay in descriptions**: `to` after `from`, an
//!   outcome after its referral was received, a CBO registered in the routing.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Array, Object, Schema};
use utoipa::openapi::{OpenApi, RefOr};

use crate::aggregates::Month;
use crate::config::Config;

/// `doc` (the document generated from the code) completed for this gateway,
/// today.
pub(crate) fn complete(mut doc: OpenApi, config: &Config, now: DateTime<Utc>) -> OpenApi {
    let today = Month::of(now);
    let program_start = config.exchange.program_start;
    let started = Month::of(program_start.and_time(NaiveTime::MIN).and_utc());

    // Events happened between the program start and now.
    let events = Months::new(started.next(), today.previous());
    for (component, field) in [
        ("ReferralRequest", "contact_at"),
        ("OutcomeRequest", "occurred_at"),
        ("CaseRequest", "effective_at"),
        ("PeriodRequest", "start"),
    ] {
        property(&mut doc, component, field).pattern = events.date_time_pattern();
    }
    // A consent ends after today, at most 100 years ahead.
    let ahead = Months::new(today.next(), months_after(today, 1_199));
    property(&mut doc, "PeriodRequest", "end").pattern = ahead.date_time_pattern();
    // Dates of birth from 1900 to today.
    let born = Months::new(
        Month::of(DateTime::<Utc>::from_naive_utc_and_offset(
            NaiveDate::from_ymd_opt(1900, 1, 1)
                .unwrap_or(NaiveDate::MIN)
                .and_time(NaiveTime::MIN),
            Utc,
        )),
        today.previous(),
    );
    property(&mut doc, "SubjectRequest", "dob").pattern = born.date_pattern();
    // US states by their USPS codes (the server also reads their names).
    property(&mut doc, "AddressRequest", "state").pattern =
        Some(format!("^(?:{})$", crate::normalize::STATE_CODES.join("|")));
    // Export windows are contact dates since the program start.
    for field in ["from", "to"] {
        property(&mut doc, "ExportRequest", field).pattern = events.date_pattern();
    }

    // Lists whose items may each appear once (utoipa has no attribute for it).
    for (component, field) in [
        ("ReferralRequest", "resources"),
        ("ExportRequest", "tables"),
    ] {
        array_property(&mut doc, component, field).unique_items = true;
    }

    // Audit log bounds: 2000 to 2099 (`http/audit.rs`).
    // Whole months strictly inside, like the event times: an offset on the
    // first day of the first month could reach back into 1999.
    let century = Months::new(
        Month::of(
            DateTime::<Utc>::from_timestamp_micros(super::audit::AUDIT_TIME_RANGE.start)
                .unwrap_or_default(),
        )
        .next(),
        Month::of(
            DateTime::<Utc>::from_timestamp_micros(super::audit::AUDIT_TIME_RANGE.end)
                .unwrap_or_default(),
        )
        .previous(),
    );
    let entries = operation(&mut doc, "/v1/audit/entries");
    for name in ["from", "to"] {
        query_schema(entries, name).pattern = century.date_time_pattern();
    }

    // Aggregates: whole months from the program start to the latest settled.
    let aggregates = &config.aggregates;
    let settled = Months::new(started, Month::latest_settled(now, aggregates.settle_days));
    let outcomes = operation(&mut doc, "/v1/aggregates/outcomes");
    for name in ["from", "to"] {
        query_schema(outcomes, name).pattern = settled.month_pattern();
    }
    if aggregates.dp.enabled {
        let epsilon = query_schema(outcomes, "epsilon");
        epsilon.minimum = Some(1e-6.into());
        epsilon.maximum = Some(aggregates.dp.epsilon_per_month.into());
    } else if let Some(parameters) = &mut outcomes.parameters {
        // Refused unless differential privacy is on: not part of this API here.
        parameters.retain(|p| p.name != "epsilon");
    }
    doc
}

/// `month` plus `count` months.
fn months_after(month: Month, count: u32) -> Month {
    (0..count).fold(month, |m, _| m.next())
}

/// A run of whole months, first to last; empty when `last` is before `first`.
#[derive(Debug, Clone, Copy)]
struct Months {
    first: Month,
    last: Month,
}

impl Months {
    fn new(first: Month, last: Month) -> Self {
        Self { first, last }
    }

    /// `(?:YYYY-MM|...)` for the run, grouped by year, or `None` when empty.
    fn alternation(self) -> Option<String> {
        if self.last < self.first {
            return None;
        }
        let mut whole_years = Vec::new();
        let mut parts = Vec::new();
        for year in self.first.year()..=self.last.year() {
            let from = if year == self.first.year() {
                self.first.month()
            } else {
                1
            };
            let to = if year == self.last.year() {
                self.last.month()
            } else {
                12
            };
            if from == 1 && to == 12 {
                whole_years.push(format!("{year:04}"));
            } else {
                let months: Vec<String> = (from..=to).map(|m| format!("{m:02}")).collect();
                parts.push(format!("{year:04}-(?:{})", months.join("|")));
            }
        }
        if !whole_years.is_empty() {
            parts.push(format!("(?:{})-(?:0[1-9]|1[0-2])", whole_years.join("|")));
        }
        Some(format!("(?:{})", parts.join("|")))
    }

    /// `YYYY-MM` inside the run.
    fn month_pattern(self) -> Option<String> {
        self.alternation().map(|months| format!("^{months}$"))
    }

    /// `YYYY-MM-DD` inside the run (days 01-28).
    fn date_pattern(self) -> Option<String> {
        self.alternation().map(|months| format!("^{months}-{DAY}$"))
    }

    /// An RFC 3339 date-time inside the run, with an offset.
    fn date_time_pattern(self) -> Option<String> {
        self.alternation().map(|months| {
            format!(
                "^{months}-{DAY}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{{1,6}})?\
                 (?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9])$"
            )
        })
    }
}

/// A day every month has.
const DAY: &str = "(?:0[1-9]|1[0-9]|2[0-8])";

/// The object schema of `component`'s property `field`. Panics when either is
/// missing: the names are this crate's own types, checked by the tests.
fn property<'a>(doc: &'a mut OpenApi, component: &str, field: &str) -> &'a mut Object {
    match component_schema(doc, component).properties.get_mut(field) {
        Some(RefOr::T(Schema::Object(property))) => property,
        _ => panic!("{component}.{field} is not an inline object schema"),
    }
}

/// The array schema of `component`'s property `field`.
fn array_property<'a>(doc: &'a mut OpenApi, component: &str, field: &str) -> &'a mut Array {
    match component_schema(doc, component).properties.get_mut(field) {
        Some(RefOr::T(Schema::Array(array))) => array,
        _ => panic!("{component}.{field} is not an inline array schema"),
    }
}

/// The object schema `component`.
fn component_schema<'a>(doc: &'a mut OpenApi, component: &str) -> &'a mut Object {
    let schema = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(component))
        .unwrap_or_else(|| panic!("no component {component}"));
    let RefOr::T(Schema::Object(object)) = schema else {
        panic!("component {component} is not an object schema");
    };
    object
}

/// The GET operation at `path`.
fn operation<'a>(doc: &'a mut OpenApi, path: &str) -> &'a mut Operation {
    doc.paths
        .paths
        .get_mut(path)
        .and_then(|item| item.get.as_mut())
        .unwrap_or_else(|| panic!("no GET {path}"))
}

/// The schema of `operation`'s query parameter `name`.
fn query_schema<'a>(operation: &'a mut Operation, name: &str) -> &'a mut Object {
    let parameter = operation
        .parameters
        .iter_mut()
        .flatten()
        .find(|p| p.parameter_in == ParameterIn::Query && p.name == name)
        .unwrap_or_else(|| panic!("no query parameter {name}"));
    match &mut parameter.schema {
        Some(RefOr::T(Schema::Object(object))) => object,
        _ => panic!("query parameter {name} has no inline object schema"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(text: &str) -> Month {
        Month::parse(text).expect("a month")
    }

    #[test]
    fn a_run_of_months_is_one_pattern_grouped_by_year() {
        let run = Months::new(month("2024-11"), month("2026-02"));
        assert_eq!(
            run.month_pattern().as_deref(),
            Some("^(?:2024-(?:11|12)|2026-(?:01|02)|(?:2025)-(?:0[1-9]|1[0-2]))$")
        );
        assert_eq!(
            Months::new(month("2026-02"), month("2026-01")).month_pattern(),
            None
        );
    }

    #[test]
    fn patterns_admit_the_run_and_nothing_outside() {
        let run = Months::new(month("2024-11"), month("2026-02"));
        let dates = regex_lite(&run.date_pattern().expect("a pattern"));
        for inside in ["2024-11-01", "2025-07-28", "2026-02-15"] {
            assert!(dates.is_match(inside), "{inside}");
        }
        for outside in [
            "2024-10-28",
            "2026-03-01",
            "2025-07-29",
            "2025-13-01",
            "25-07-01",
        ] {
            assert!(!dates.is_match(outside), "{outside}");
        }
        let times = regex_lite(&run.date_time_pattern().expect("a pattern"));
        assert!(times.is_match("2025-07-04T09:30:00-07:00"));
        assert!(times.is_match("2025-07-04T09:30:00.123Z"));
        assert!(
            !times.is_match("2025-07-04T09:30:00"),
            "an offset is required"
        );
        assert!(!times.is_match("2025-07-04T24:00:00Z"));
    }

    /// The patterns use only what ECMA 262, Python's `re` and Rust's `regex`
    /// share; the `regex` crate stands in for a client here.
    fn regex_lite(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).expect("a valid pattern")
    }
}
