//! Differential privacy over settled months: each month's noisy table (per
//! grouping and epsilon) is made once, kept, and served as made to every
//! later asker; making it spends epsilon from the month's one cap
//! (`aggregates.dp.epsilon_per_month`), shared by all partners.
//!
//! So asking a month again, next month or as another partner, returns the
//! same noise and spends nothing: noise cannot be averaged away, and what all
//! answers about a month reveal together is bounded by its cap (sequential
//! composition over the distinct tables made of it). The key is the grouping
//! as asked (`outcome,district` and `district,outcome` are two tables, each
//! paid for), which only costs budget, never privacy.
//!
//! One write transaction keeps the new tables, spends for them, writes the
//! ledger rows and, in the caller, the `aggregate.read` entry. A table is kept
//! before it is paid for: when another request kept the same one meanwhile
//! (`ON CONFLICT DO NOTHING`), that one is served and nothing is spent.

use serde_json::json;

use super::noise::DiscreteLaplace;
use super::{
    AggregateError, AggregateRequest, Asker, Dimension, MonthBudget, MonthData, PrivacySpend,
    from_micro, table, to_micro,
};
use crate::audit;
use crate::clock::Clock;
use crate::config::AggregatesConfig;
use crate::exchange::vocabulary::{Code as _, ResourceCategory};
use crate::store::aggregates::budget::{self, LedgerEntry, NoisyTable};
use crate::store::{Store, StoreError, Tx};

/// A month's noisy table, ready to be suppressed and shaped.
pub(super) struct MonthTable {
    pub categories: Vec<Vec<String>>,
    pub counts: Vec<u64>,
}

/// The noisy tables of a request, with the open transaction that kept and
/// paid for the new ones (the caller appends its audit entry and commits).
pub(super) struct Noisy {
    pub tx: Tx<'static>,
    pub tables: Vec<MonthTable>,
    pub privacy: PrivacySpend,
    pub ledger_ids: Vec<String>,
}

pub(super) struct NoisyMonths<'a> {
    pub store: &'a Store,
    pub config: &'a AggregatesConfig,
    pub clock: &'a dyn Clock,
    pub randomness: &'a dyn crate::randomness::Randomness,
    pub ids: &'a crate::randomness::RecordIds,
}

fn corrupt(_: serde_json::Error) -> AggregateError {
    AggregateError::Store(StoreError::Corrupt {
        what: "a stored noisy table is not valid JSON",
    })
}

/// The table this request made, if it is the one kept for the key (`None`
/// when it made none, or another request kept one first).
async fn keep_if_first(
    tx: &mut Tx<'static>,
    month: &str,
    grouping: &str,
    epsilon_micro: i64,
    made: Option<NoisyTable>,
    now: i64,
) -> Result<Option<NoisyTable>, StoreError> {
    let Some(made) = made else {
        return Ok(None);
    };
    let kept = budget::keep_noisy_table(tx, month, grouping, epsilon_micro, &made, now).await?;
    Ok(kept.then_some(made))
}

fn parse(stored: &NoisyTable) -> Result<MonthTable, AggregateError> {
    Ok(MonthTable {
        categories: serde_json::from_str(&stored.categories).map_err(corrupt)?,
        counts: serde_json::from_str(&stored.counts).map_err(corrupt)?,
    })
}

impl NoisyMonths<'_> {
    /// The noisy table of each month of `months` (in order): the stored one,
    /// or one made now and paid for. Refuses the whole request, spending
    /// nothing, when a month's cap cannot pay for its new table.
    pub(super) async fn tables(
        &self,
        asker: &Asker<'_>,
        request: &AggregateRequest,
        months: &[MonthData],
    ) -> Result<Noisy, AggregateError> {
        let epsilon = request.epsilon.unwrap_or(self.config.dp.default_epsilon);
        let epsilon_micro = to_micro(epsilon);
        let cap = to_micro(self.config.dp.epsilon_per_month);
        let sensitivity = if request.group_by.contains(&Dimension::Resource) {
            u32::try_from(ResourceCategory::ALL.len()).unwrap_or(u32::MAX)
        } else {
            1
        };
        let grouping = request
            .group_by
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(",");

        let fresh = self
            .draw(request, months, &grouping, epsilon, sensitivity)
            .await?;

        let now = audit::micros(self.clock.now());
        let mut tx = self.store.begin().await?;
        let mut tables = Vec::with_capacity(months.len());
        let mut budgets = Vec::with_capacity(months.len());
        let mut ledger_ids = Vec::new();
        let mut spent_micro = 0;
        for (data, made) in months.iter().zip(fresh) {
            let name = data.month.to_string();
            let kept = keep_if_first(&mut tx, &name, &grouping, epsilon_micro, made, now).await?;
            if let Some(made) = kept {
                let spent = match budget::spend(&mut tx, &name, epsilon_micro, cap).await? {
                    Ok(spent) => spent,
                    Err(spent) => {
                        tx.rollback().await?;
                        return Err(AggregateError::BudgetExhausted {
                            period: name,
                            requested: epsilon,
                            remaining: from_micro(cap - spent),
                        });
                    }
                };
                let id = self.ids.next(self.clock.now());
                budget::record_spend(
                    &mut tx,
                    &LedgerEntry {
                        id: &id,
                        partner: asker.partner,
                        period: &name,
                        epsilon_micro,
                        query: &request.shape().to_string(),
                        at: now,
                    },
                )
                .await?;
                ledger_ids.push(id);
                spent_micro += epsilon_micro;
                budgets.push(MonthBudget {
                    month: name,
                    table: "made",
                    epsilon_remaining: from_micro(cap - spent),
                });
                tables.push(parse(&made)?);
            } else {
                let stored = budget::noisy_table(&mut tx, &name, &grouping, epsilon_micro)
                    .await?
                    .ok_or(AggregateError::Store(StoreError::Corrupt {
                        what: "a noisy table vanished",
                    }))?;
                let spent = budget::spent(&mut tx, &name).await?;
                budgets.push(MonthBudget {
                    month: name,
                    table: "stored",
                    epsilon_remaining: from_micro(cap - spent),
                });
                tables.push(parse(&stored)?);
            }
        }
        Ok(Noisy {
            tx,
            tables,
            privacy: PrivacySpend {
                mechanism: "discrete_laplace",
                epsilon,
                epsilon_spent: from_micro(spent_micro),
                sensitivity,
                months: budgets,
            },
            ledger_ids,
        })
    }

    /// A freshly noised table for each month that has none kept for
    /// `grouping` at `epsilon` (`None` for the others). The noise is drawn
    /// before the write transaction opens, so that it holds no lock while
    /// sampling; a table found kept meanwhile wins.
    async fn draw(
        &self,
        request: &AggregateRequest,
        months: &[MonthData],
        grouping: &str,
        epsilon: f64,
        sensitivity: u32,
    ) -> Result<Vec<Option<NoisyTable>>, AggregateError> {
        let epsilon_micro = to_micro(epsilon);
        let mut fresh: Vec<Option<NoisyTable>> = Vec::with_capacity(months.len());
        let mut tx = self.store.begin_read().await?;
        for data in months {
            let name = data.month.to_string();
            if budget::noisy_table(&mut tx, &name, grouping, epsilon_micro)
                .await?
                .is_some()
            {
                fresh.push(None);
                continue;
            }
            let categories = table::categories(request, data)?;
            let mut counts = table::interior_counts(&categories, &data.counts);
            let mut noise = DiscreteLaplace::new(epsilon, sensitivity, self.randomness)?;
            for count in &mut counts {
                *count = noise.noisy(*count);
            }
            fresh.push(Some(NoisyTable {
                categories: json!(categories).to_string(),
                counts: json!(counts).to_string(),
            }));
        }
        tx.commit().await?;

        Ok(fresh)
    }
}
