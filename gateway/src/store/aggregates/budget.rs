//! The differential-privacy budget of each data month (one cap across all
//! partners), its ledger, and the noisy tables made once per month, grouping
//! and epsilon (migrations 0009, 0019).

use sqlx::Row as _;

use super::super::{StoreError, Tx};

/// Spends `epsilon_micro` of `month`'s budget if that keeps it within
/// `cap_micro`; returns what is spent afterwards, or `Err(spent)` (what was
/// already spent) when it would not fit. One conditional UPDATE, so
/// concurrent spends on any number of replicas never overshoot.
#[tracing::instrument(name = "db.aggregate_month_budgets.spend", skip_all)]
pub async fn spend(
    tx: &mut Tx<'_>,
    month: &str,
    epsilon_micro: i64,
    cap_micro: i64,
) -> Result<Result<i64, i64>, StoreError> {
    sqlx::query(
        "INSERT INTO aggregate_month_budgets (month, spent_micro) VALUES ($1, 0) \
         ON CONFLICT (month) DO NOTHING",
    )
    .bind(month.to_owned())
    .execute(&mut **tx)
    .await?;
    let updated = sqlx::query(
        "UPDATE aggregate_month_budgets SET spent_micro = spent_micro + $2 \
         WHERE month = $1 AND spent_micro + $2 <= $3",
    )
    .bind(month.to_owned())
    .bind(epsilon_micro)
    .bind(cap_micro)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let spent = spent(tx, month).await?;
    Ok(if updated == 1 { Ok(spent) } else { Err(spent) })
}

/// What has been spent of `month`'s budget (0 when nothing has).
#[tracing::instrument(name = "db.aggregate_month_budgets.select", skip_all)]
pub async fn spent(tx: &mut Tx<'_>, month: &str) -> Result<i64, StoreError> {
    let spent: Option<i64> =
        sqlx::query_scalar("SELECT spent_micro FROM aggregate_month_budgets WHERE month = $1")
            .bind(month.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(spent.unwrap_or(0))
}

/// One spend, as the ledger keeps it.
#[derive(Debug)]
pub struct LedgerEntry<'a> {
    pub id: &'a str,
    /// Who asked first for the table the spend made.
    pub partner: &'a str,
    /// The data month whose budget was spent.
    pub period: &'a str,
    pub epsilon_micro: i64,
    /// The query's shape as JSON (months and groupings; never a count).
    pub query: &'a str,
    pub at: i64,
}

#[tracing::instrument(name = "db.aggregate_budget_ledger.insert", skip_all)]
pub async fn record_spend(tx: &mut Tx<'_>, entry: &LedgerEntry<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO aggregate_budget_ledger (id, partner, period, epsilon_micro, query, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.id.to_owned())
    .bind(entry.partner.to_owned())
    .bind(entry.period.to_owned())
    .bind(entry.epsilon_micro)
    .bind(entry.query.to_owned())
    .bind(entry.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A month's noisy table as stored: each grouping's categories and the noised
/// interior counts, both JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisyTable {
    pub categories: String,
    pub counts: String,
}

/// The noisy table of `month` for `grouping` at `epsilon_micro`, if made.
#[tracing::instrument(name = "db.aggregate_noisy_tables.select", skip_all)]
pub async fn noisy_table(
    tx: &mut Tx<'_>,
    month: &str,
    grouping: &str,
    epsilon_micro: i64,
) -> Result<Option<NoisyTable>, StoreError> {
    let row = sqlx::query(
        "SELECT categories, counts FROM aggregate_noisy_tables \
         WHERE month = $1 AND grouping = $2 AND epsilon_micro = $3",
    )
    .bind(month.to_owned())
    .bind(grouping.to_owned())
    .bind(epsilon_micro)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok(NoisyTable {
            categories: row.try_get(0)?,
            counts: row.try_get(1)?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// Keeps a freshly noised table; `false` when one was kept for the same key
/// meanwhile (another request made it first: that one is served).
#[tracing::instrument(name = "db.aggregate_noisy_tables.insert", skip_all)]
pub async fn keep_noisy_table(
    tx: &mut Tx<'_>,
    month: &str,
    grouping: &str,
    epsilon_micro: i64,
    table: &NoisyTable,
    now: i64,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO aggregate_noisy_tables \
             (month, grouping, epsilon_micro, categories, counts, made_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (month, grouping, epsilon_micro) DO NOTHING",
    )
    .bind(month.to_owned())
    .bind(grouping.to_owned())
    .bind(epsilon_micro)
    .bind(table.categories.clone())
    .bind(table.counts.clone())
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
