//! `GET /v1/aggregates/outcomes`'s request: which months, grouped by what, at
//! which epsilon — parsed and checked against the program start, the settled
//! months and the differential-privacy settings before anything is read.

use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use serde_json::{Value, json};

use super::AggregateError;
use crate::config::AggregatesConfig;
use crate::exchange::vocabulary::{Code as _, ReferralStatus, ResourceCategory};
use crate::store::aggregates::Column;

pub(super) fn invalid(parameter: &'static str, problem: impl Into<String>) -> AggregateError {
    AggregateError::Invalid {
        parameter,
        problem: problem.into(),
    }
}

/// What a table may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    Month,
    District,
    Resource,
    Outcome,
    AssignedCbo,
}

impl Dimension {
    pub const ALL: [Self; 5] = [
        Self::Month,
        Self::District,
        Self::Resource,
        Self::Outcome,
        Self::AssignedCbo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::District => "district",
            Self::Resource => "resource",
            Self::Outcome => "outcome",
            Self::AssignedCbo => "assigned_cbo",
        }
    }

    pub(super) fn column(self) -> Option<Column> {
        match self {
            Self::Month => None,
            Self::District => Some(Column::District),
            Self::Resource => Some(Column::Resource),
            Self::Outcome => Some(Column::Status),
            Self::AssignedCbo => Some(Column::AssignedCbo),
        }
    }

    /// The fixed categories, for the dimensions that have them.
    pub(super) fn fixed_categories(self) -> Option<Vec<String>> {
        match self {
            Self::Resource => Some(
                ResourceCategory::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
            Self::Outcome => Some(
                ReferralStatus::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
            Self::Month | Self::District | Self::AssignedCbo => None,
        }
    }
}

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// `YYYY-MM`, nothing else.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let shaped = bytes.len() == 7
            && bytes[4] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || b.is_ascii_digit());
        if !shaped {
            return None;
        }
        let year: i32 = text[..4].parse().ok()?;
        let month: u32 = text[5..].parse().ok()?;
        ((2000..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// `Ok` unless this month (as `from`) is before the month the program
    /// started in: no referral can be counted earlier.
    pub(super) fn not_before(self, program_start: NaiveDate) -> Result<(), AggregateError> {
        let first = Self {
            year: program_start.year(),
            month: program_start.month(),
        };
        if self < first {
            return Err(invalid(
                "from",
                format!(
                    "is before the program began: the earliest month is {first} \
                     (exchange.program_start)"
                ),
            ));
        }
        Ok(())
    }

    /// The latest month whose table may be asked for at `now`: the one whose
    /// settling cut-off (`settle_days` after it ends) has passed.
    pub fn latest_settled(now: DateTime<Utc>, settle_days: u32) -> Self {
        let mut month = Self::of(now);
        while now.timestamp_micros() < month.cutoff_micros(settle_days) {
            month = month.previous();
        }
        month
    }

    pub fn year(self) -> i32 {
        self.year
    }

    /// 1 to 12.
    pub fn month(self) -> u32 {
        self.month
    }

    #[must_use]
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    #[must_use]
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant of the month, in unix microseconds.
    pub fn start_micros(self) -> i64 {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| Utc.from_utc_datetime(&t).timestamp_micros())
    }

    pub(super) fn months_until(self, to: Self) -> i64 {
        i64::from(to.year - self.year) * 12 + i64::from(to.month) - i64::from(self.month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct AggregateRequest {
    pub from: Month,
    pub to: Month,
    /// The groupings besides `month` (always first), in the order asked.
    pub group_by: Vec<Dimension>,
    /// The epsilon to spend, with DP on.
    pub epsilon: Option<f64>,
}

impl AggregateRequest {
    /// Reads the query parameters (`from`, `to`, `group_by`, `epsilon`; each at
    /// most once, checked by the caller) against the configuration and `now`.
    /// `from` is not before the month of `program_start`
    /// (`exchange.program_start`): no referral can be counted earlier.
    pub fn parse(
        params: &[(&str, &str)],
        config: &AggregatesConfig,
        program_start: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Self, AggregateError> {
        let get = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let month = |name: &'static str| -> Result<Month, AggregateError> {
            let text =
                get(name).ok_or_else(|| invalid(name, "is required: a calendar month, YYYY-MM"))?;
            Month::parse(text).ok_or_else(|| {
                invalid(
                    name,
                    "must be a calendar month, YYYY-MM (whole months only: no days, no times)",
                )
            })
        };
        let from = month("from")?;
        let to = month("to")?;
        from.not_before(program_start)?;
        if to < from {
            return Err(invalid("to", "must not be before from"));
        }
        let settles = to.cutoff_micros(config.settle_days);
        if now.timestamp_micros() < settles {
            let on = DateTime::from_timestamp_micros(settles)
                .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            return Err(invalid(
                "to",
                format!(
                    "{to} is not settled yet: a month is published once, {} days after it ends \
                     (aggregates.settle_days), and {to} settles at {on}",
                    config.settle_days
                ),
            ));
        }
        if from.months_until(to) >= i64::from(config.max_months) {
            return Err(invalid(
                "to",
                format!("the range may cover at most {} months", config.max_months),
            ));
        }
        let mut group_by = Vec::new();
        if let Some(text) = get("group_by").filter(|t| !t.is_empty()) {
            for name in text.split(',') {
                let dimension = Dimension::ALL
                    .into_iter()
                    .find(|d| d.as_str() == name)
                    .ok_or_else(|| {
                        invalid(
                            "group_by",
                            "must be a comma-separated list of month, district, resource, \
                             outcome, assigned_cbo",
                        )
                    })?;
                if dimension == Dimension::Month {
                    continue;
                }
                if group_by.contains(&dimension) {
                    return Err(invalid("group_by", "names a grouping more than once"));
                }
                group_by.push(dimension);
            }
        }
        let epsilon = match get("epsilon") {
            None => None,
            Some(_) if !config.dp.enabled => {
                return Err(invalid(
                    "epsilon",
                    "differential privacy is not enabled on this gateway",
                ));
            }
            Some(text) => {
                let value: f64 = text
                    .parse()
                    .ok()
                    .filter(|v: &f64| {
                        v.is_finite() && (1e-6..=config.dp.epsilon_per_month).contains(v)
                    })
                    .ok_or_else(|| {
                        invalid(
                            "epsilon",
                            format!(
                                "must be a number from 0.000001 to {}",
                                config.dp.epsilon_per_month
                            ),
                        )
                    })?;
                Some(value)
            }
        };
        Ok(Self {
            from,
            to,
            group_by,
            epsilon,
        })
    }

    pub(super) fn months(&self) -> Vec<Month> {
        let mut months = vec![self.from];
        while let Some(&last) = months.last()
            && last < self.to
        {
            months.push(last.next());
        }
        months
    }

    pub(super) fn columns(&self) -> Vec<Column> {
        self.group_by.iter().filter_map(|d| d.column()).collect()
    }

    /// The query's shape, for the audit entry and the ledger: never a count.
    pub(super) fn shape(&self) -> Value {
        json!({
            "from": self.from.to_string(),
            "to": self.to.to_string(),
            "group_by": self.group_by.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        })
    }
}
