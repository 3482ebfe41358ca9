//! What an evaluator asks for in `POST /v1/exports`, the checks on its date
//! window, and the [`Job`] a checked request becomes (the rest of the checks need the study and the policy:
//! [`super::Exports::start`]).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::PartnerId;
use crate::store::export_rows::Window;

use super::Exports;
use super::tables::{self, Format, Table};

/// How far ahead of today an export's `to` may be (see [`Exports::window`]).
const MAX_TO_AHEAD_DAYS: u64 = 366;

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The study id (`[studies.ID]` in the configuration).
    #[schema(pattern = r"^[a-z0-9-]{1,64}$", example = "demo-study")]
    pub study: String,
    /// First contact date included (YYYY-MM-DD, UTC), not before the program
    /// start (`exchange.program_start`); default: the program start.
    #[serde(default)]
    pub from: Option<String>,
    /// Last contact date included (YYYY-MM-DD, UTC), at most a year from
    /// today; default: today.
    #[serde(default)]
    pub to: Option<String>,
    /// Any of `referrals`, `outcomes`, `case_status`, each once; default all
    /// three.
    #[serde(default)]
    #[schema(value_type = Option<Vec<tables::Table>>, min_items = 1, max_items = 3)]
    pub tables: Option<Vec<String>>,
    /// `csv` (default) or `ndjson`.
    #[serde(default)]
    #[schema(value_type = Option<tables::Format>)]
    pub format: Option<String>,
}

fn parse_date(field: &str, text: &str, problems: &mut Vec<(String, String)>) -> Option<NaiveDate> {
    let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if parsed.is_none() {
        problems.push((field.to_owned(), "must be a date, YYYY-MM-DD".to_owned()));
    }
    parsed
}

pub(super) fn micros_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp_micros())
}

/// A validated request.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Job {
    pub(super) id: String,
    pub(super) study_id: String,
    pub(super) evaluator: PartnerId,
    pub(super) purpose: String,
    pub(super) from: NaiveDate,
    pub(super) to: NaiveDate,
    pub(super) tables: Vec<Table>,
    pub(super) format: Format,
    #[serde(skip)]
    pub(super) window: WindowSer,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WindowSer {
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) cutoff: i64,
}

impl Job {
    pub(super) fn window(&self) -> Window {
        Window {
            from: self.window.from,
            to: self.window.to,
            cutoff: self.window.cutoff,
        }
    }
}

impl Exports {
    /// The request's contact dates, from..=to: from the program start
    /// (`exchange.program_start`, also the default `from`) to a year from
    /// today (UTC; the default `to` is today). Nothing is recorded before the
    /// program start, and a window reaching further either way is a typing
    /// error (`0202` for `2026`, `20266`). A `to` ahead of today is allowed
    /// because "this year" and "this fiscal year" are natural windows; the
    /// export holds what was recorded when it was asked for, whatever `to` says.
    pub(super) fn window(
        &self,
        request: &ExportRequest,
        today: NaiveDate,
        problems: &mut Vec<(String, String)>,
    ) -> (Option<NaiveDate>, Option<NaiveDate>) {
        let earliest = self.config.exchange.program_start;
        let latest = today
            .checked_add_days(chrono::Days::new(MAX_TO_AHEAD_DAYS))
            .unwrap_or(today);
        let mut date = |field: &str, text: Option<&str>, default: NaiveDate| {
            let Some(text) = text else {
                return Some(default);
            };
            let date = parse_date(field, text, problems)?;
            if date < earliest {
                problems.push((
                    field.to_owned(),
                    format!(
                        "is before the program began: the earliest date is {earliest} \
                         (exchange.program_start)"
                    ),
                ));
                return None;
            }
            if date > latest {
                problems.push((
                    field.to_owned(),
                    format!("is more than a year ahead: the latest date is {latest}"),
                ));
                return None;
            }
            Some(date)
        };
        let from = date("from", request.from.as_deref(), earliest);
        let to = date("to", request.to.as_deref(), today);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            problems.push(("to".to_owned(), "must not be before from".to_owned()));
        }
        (from, to)
    }
}
