//! Aggregate releases: `GET /v1/aggregates/outcomes`, over settled months.
//!
//! Counts of referrals by calendar month and any of `district`, `resource`,
//! `outcome` and `assigned_cbo`, with the median time to first contact per
//! cell, safe by construction: small counts are withheld with complementary
//! suppression ([`suppression`]), and optionally noised under a per-data-month
//! differential-privacy budget ([`noise`]).
//!
//! A request flows: parse ([`AggregateRequest::parse`], every problem naming
//! its parameter; `to` must be settled) → decide (the policy's `aggregate`
//! action on `referral` and `outcome`; anything but `aggregate_only`/`allow`
//! refuses) → settle the months not settled yet ([`settle`], each in its own
//! write transaction with its `aggregate.settle` entry) → count one settled
//! month at a time, all months in one read snapshot
//! ([`crate::store::aggregates`]) → noise (DP on: each month's table made once
//! and kept, [`dp`]) → suppress → one write transaction: with DP on, the tables
//! made, their spends and ledger rows, and always the `aggregate.read` audit
//! entry, committed before the response leaves.
//!
//! # Published months are fixed
//! A month's tables are counted from the copy of its referrals made when it
//! settles, `aggregates.settle_days` (14) after it ends, with each referral's
//! status, first contact and CBO as they stood at that cut-off ([`settle`]).
//! An outcome recorded later changes the live referral, never the month's
//! tables: every asker, at any time, gets the same table for the same month
//! and grouping. Before its cut-off a month is refused (400 naming `to`, with
//! the instant it settles).
//!
//! # What is counted
//! - **The unit is a referral**, placed in the month (UTC) it was received
//!   (`created_at`: when the CBO was notified; it never changes). Grouped by
//!   `resource`, the unit is a requested resource of a referral (a referral
//!   asking for two counts once under each), and the response says
//!   `"unit": "referral_resource"`.
//! - **`outcome` is the referral's status**: its furthest outcome on the
//!   ladder `new` → `contact_attempted` → `contacted` → `engaged` →
//!   `service_connected`, or the ending one (`declined`, `unable_to_locate`,
//!   `closed`). Each referral therefore counts once, and every row and column
//!   adds up to its total.
//! - **Time to first contact**: from receipt to the earliest `contacted`,
//!   `engaged` or `service_connected` outcome, as a median in minutes, given
//!   only for a published interior cell with at least `threshold` contacted
//!   referrals (a median of a small group leaks), and never with DP on (it is
//!   not noised).
//! - **Scope**: the whole program, for every partner the policy lets ask. A
//!   police department asking about "only its own" referrals would give it two
//!   views to subtract from each other; performance measurement is about the
//!   program.
//!
//! # Differencing attacks considered, and how each is blocked
//! 1. **Small cells**: no count from 1 to `threshold - 1` is ever published,
//!    margins included (tests: `no_published_count_is_small`, and over HTTP).
//! 2. **Subtracting published cells from published totals** within a table:
//!    complementary suppression over every line of the table, margins and the
//!    grand total included, to a fixed point; tested by an attacker that solves
//!    every linear combination of the published lines and tightens bounds.
//! 3. **Overlapping time ranges** (Jan-Mar minus Jan-Feb = March): there are
//!    no totals across months. Every table is broken down by calendar month
//!    (`month` is always a grouping), each month is suppressed on its own, and
//!    a month's cells do not depend on the range asked, so asking two ranges
//!    gives the same month twice, not a difference. Boundaries are whole
//!    calendar months: a partial month or a date is refused.
//! 4. **The month still filling up** (asking today and tomorrow, subtracting),
//!    and **a month that moves after it ends** (asking before and after one
//!    outcome is recorded shows which withheld cell moved): `to` must be
//!    settled, and a settled month is counted from its fixed copy.
//! 5. **Coarser and finer tables of one month** (month x district vs month x
//!    district x outcome): the coarser table is a margin of the finer one, and
//!    the finer one protects it as such. Residual risk: the two tables choose
//!    their complementary cells independently, and a pattern exists in which
//!    cells published by one pin a cell withheld by the other. Exact counts
//!    cannot rule this out for arbitrary sets of tables; with DP on, every
//!    answer is noised and the budget bounds what all answers together reveal.
//!    Every query's shape is audited, so such probing is visible.
//! 6. **Own-scope vs program-scope** subtraction: there is only one scope.
//! 7. **Category boundaries**: resources and outcomes are the catalog's fixed
//!    lists (every category appears, zeros included); districts and CBOs are
//!    the codes present in the month's settled referrals, so a month's table
//!    is the same whatever range it is asked in.
//!
//! # Differential privacy (`aggregates.dp.enabled`)
//! Each interior cell, zeros included, gets discrete Laplace noise of scale
//! `Δ/ε` (Δ = 1: a referral is in one cell; 20 grouped by resource, the most
//! categories one referral can request); margins are sums of the noisy cells
//! and suppression runs on the noisy values — both post-processing, so the
//! guarantee holds and the table still adds up. The budget is charged to the
//! month of *data*: each month has one cap (`epsilon_per_month`) shared by all
//! partners, and a month's noisy table for a grouping and epsilon is made
//! once, paid for once (the request's `epsilon`, default
//! `aggregates.dp.default_epsilon`) and served as made to every later asker
//! ([`dp`]). So no month can be re-asked for fresh noise, by the same partner
//! next month or by another. A table its month cannot pay for is refused (403
//! problem with `epsilon_remaining`), and the request spends nothing. The
//! tables (`aggregate_noisy_tables`), the month budgets
//! (`aggregate_month_budgets`, one conditional UPDATE so replicas cannot
//! overspend) and every spend (`aggregate_budget_ledger`) are durable and
//! commit with the audit entry.
//! District codes and CBO ids are treated as public labels (beats and partners
//! the program publishes): the list of them is not noised.

mod dp;
pub(crate) mod noise;
mod request;
mod settle;
pub(crate) mod suppression;
mod table;

pub use request::{AggregateRequest, Dimension, Month};
pub use settle::SETTLE_ACTION;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::audit::{self, Event};
use crate::clock::Clock;
use crate::config::AggregatesConfig;
use crate::policy::{
    Action, DecisionInput, Effect, Policy, RecordFacts, Relationship, Requester, Resource,
};
use crate::reads::Asker;
use crate::store::aggregates::{self as repo, GroupCount, GroupMedian};
use crate::store::{Store, StoreError, Tx};

/// The action of an aggregate release's audit entry.
pub const AGGREGATE_ACTION: &str = "aggregate.read";

/// The purpose an aggregate request declares when it gives none: program
/// performance measurement.
pub const DEFAULT_PURPOSE: &str = "PERFMSR";

/// The most cells (margins included) one month's table may have: bounds the
/// time the suppression audit (a dense elimination over the withheld cells)
/// can take. 41 districts x 9 outcome columns is 369; districts x resources x
/// outcomes needs fewer than ~12 districts.
pub const MAX_CELLS: usize = 2_500;

/// Why an aggregate request returned nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    #[error("invalid parameter {parameter}")]
    Invalid {
        parameter: &'static str,
        problem: String,
    },
    /// The policy does not let this partner have aggregates for this purpose.
    #[error("refused by the policy")]
    Refused { reason: String },
    /// The request would spend more than is left of the partner's budget.
    #[error("privacy budget exhausted")]
    BudgetExhausted {
        period: String,
        requested: f64,
        remaining: f64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] crate::randomness::RandomnessFailed),
}

impl From<sqlx::Error> for AggregateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// With DP on: what this request spent, and what is left, of each data
/// month's budget.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PrivacySpend {
    /// `discrete_laplace`.
    pub mechanism: &'static str,
    /// The epsilon each month's table is noised at.
    pub epsilon: f64,
    /// What this request spent in all: `epsilon` for each month whose table
    /// it made; nothing for the tables made before (they are served as made).
    pub epsilon_spent: f64,
    /// The L1 sensitivity the noise is scaled to (1; 20 grouped by resource).
    pub sensitivity: u32,
    /// Each month asked, in order.
    pub months: Vec<MonthBudget>,
}

/// One data month's budget after the request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonthBudget {
    pub month: String,
    /// `made` (this request noised the month's table and spent `epsilon`) or
    /// `stored` (served as made before, spending nothing).
    pub table: &'static str,
    /// What is left of the month's cap, shared by every partner.
    pub epsilon_remaining: f64,
}

/// The released table.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AggregateTable {
    pub from: String,
    pub to: String,
    /// `month` first, then the groupings asked.
    pub group_by: Vec<&'static str>,
    /// `referral`, or `referral_resource` when grouped by resource.
    pub unit: &'static str,
    pub suppression_threshold: u32,
    /// One row per cell and per margin of each month. A grouping whose value is
    /// `null` is the total over it. `count` is `null` exactly when
    /// `suppressed` is true; `median_minutes_to_first_contact` appears on
    /// published cells with enough contacted referrals (never with DP on).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// With differential privacy on: what this request spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpend>,
}

/// The aggregate side's services, built once with the gateway and shared by
/// every request (cheap to clone: handles and `Arc`s).
#[derive(Clone)]
pub struct Aggregates {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub config: AggregatesConfig,
    pub clock: Arc<dyn Clock>,
    /// Seeds the noise of differentially private tables.
    pub randomness: Arc<dyn crate::randomness::Randomness>,
    /// Names budget spends.
    pub ids: Arc<crate::randomness::RecordIds>,
}

impl std::fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates").finish_non_exhaustive()
    }
}

/// One month's counts and medians as read.
struct MonthData {
    month: Month,
    counts: Vec<GroupCount>,
    medians: Vec<GroupMedian>,
}

const MICRO: f64 = 1_000_000.0;

#[expect(
    clippy::cast_possible_truncation,
    reason = "epsilon is checked to lie in 1e-6..=1e3 before it gets here"
)]
fn to_micro(epsilon: f64) -> i64 {
    (epsilon * MICRO).round() as i64
}

#[expect(
    clippy::cast_precision_loss,
    reason = "budgets are far below 2^52 millionths"
)]
fn from_micro(micro: i64) -> f64 {
    micro as f64 / MICRO
}

impl Aggregates {
    /// Asks the policy whether `asker` may have aggregates of referrals and
    /// their outcomes; returns the decision to record.
    fn decide(
        &self,
        asker: &Asker<'_>,
    ) -> Result<std::sync::Arc<crate::policy::Decision>, AggregateError> {
        let mut last = None;
        for resource in [Resource::Referral, Resource::Outcome] {
            let decision = self.policy.decide(&DecisionInput {
                requester: Requester {
                    id: asker.partner.to_string(),
                    kind: asker.kind,
                },
                purpose: asker.purpose.clone(),
                action: Action::Aggregate,
                resource,
                relationship: Relationship::None,
                record: RecordFacts::default(),
                consent: None,
                study: None,
            });
            if decision.effect == Effect::Deny {
                return Err(AggregateError::Refused {
                    reason: decision.reason.clone(),
                });
            }
            last = Some(decision);
        }
        last.ok_or_else(|| AggregateError::Refused {
            reason: "no decision".to_owned(),
        })
    }

    /// `GET /v1/aggregates/outcomes`.
    pub async fn outcomes(
        &self,
        asker: &Asker<'_>,
        request: &AggregateRequest,
    ) -> Result<AggregateTable, AggregateError> {
        let decision = self.decide(asker)?;
        let wanted = request.months();
        settle::settle_months(
            &self.store,
            self.clock.as_ref(),
            self.config.settle_days,
            &wanted,
        )
        .await?;
        let dp = self.config.dp.enabled;
        let columns = request.columns();
        let bounds: Vec<(i64, i64)> = wanted
            .iter()
            .map(|m| (m.start_micros(), m.next().start_micros()))
            .collect();
        let read = repo::read_months(&self.store, &columns, &bounds, !dp).await?;
        let months: Vec<MonthData> = wanted
            .into_iter()
            .zip(read)
            .map(|(month, groups)| MonthData {
                month,
                counts: groups.counts,
                medians: groups.medians,
            })
            .collect();

        let threshold = u64::from(self.config.suppression_threshold);
        let mut rows = Vec::new();
        let mut withheld = 0;
        let mut detail = request.shape();
        let (tx, privacy) = if dp {
            let noisy = dp::NoisyMonths {
                store: &self.store,
                config: &self.config,
                clock: self.clock.as_ref(),
                randomness: self.randomness.as_ref(),
                ids: &self.ids,
            }
            .tables(asker, request, &months)
            .await?;
            for (data, month) in months.iter().zip(&noisy.tables) {
                let cube = table::cube(&month.categories, &month.counts, threshold);
                let medians = std::collections::HashMap::new();
                withheld += table::rows_of(
                    request,
                    &month.categories,
                    data.month,
                    &cube,
                    &medians,
                    &mut rows,
                );
            }
            detail["epsilon_micro"] = json!(to_micro(noisy.privacy.epsilon));
            detail["epsilon_spent_micro"] = json!(to_micro(noisy.privacy.epsilon_spent));
            detail["ledger_ids"] = json!(noisy.ledger_ids);
            (noisy.tx, Some(noisy.privacy))
        } else {
            for data in &months {
                let categories = table::categories(request, data)?;
                let counts = table::interior_counts(&categories, &data.counts);
                let cube = table::cube(&categories, &counts, threshold);
                let medians = table::medians(&categories, &cube, &data.medians, threshold);
                withheld +=
                    table::rows_of(request, &categories, data.month, &cube, &medians, &mut rows);
            }
            (self.store.begin().await?, None)
        };

        detail["cells"] = json!(rows.len());
        detail["withheld"] = json!(withheld);
        self.record(tx, asker, &decision, detail).await?;

        let mut group_by = vec![Dimension::Month.as_str()];
        group_by.extend(request.group_by.iter().map(|d| d.as_str()));
        Ok(AggregateTable {
            from: request.from.to_string(),
            to: request.to.to_string(),
            group_by,
            unit: if request.group_by.contains(&Dimension::Resource) {
                "referral_resource"
            } else {
                "referral"
            },
            suppression_threshold: self.config.suppression_threshold,
            rows,
            privacy,
        })
    }

    /// The `aggregate.read` entry, committed (with DP on, together with the
    /// spends and the tables made) before the response leaves.
    async fn record(
        &self,
        mut tx: Tx<'static>,
        asker: &Asker<'_>,
        decision: &crate::policy::Decision,
        detail: Value,
    ) -> Result<(), AggregateError> {
        let entry = Event::new(asker.partner, AGGREGATE_ACTION)
            .with_purpose(asker.purpose.as_str())
            .with_resource(Resource::Outcome.as_str())
            .with_decision(&*decision.policy_version, &decision.reason)
            .with_detail(detail);
        audit::append(&mut tx, &[entry], self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }
}
