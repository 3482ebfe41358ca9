//! Repository for the aggregate counts (migration 0009): GROUP BYs over one
//! calendar month of referrals at a time, and the differential-privacy budget.
//!
//! Month boundaries come in as unix-microsecond parameters (computed in Rust),
//! so the same SQL runs on both backends and the `referrals_aggregate` index
//! serves the range. The grouped columns come from [`Column`], a closed list:
//! the only text spliced into a statement is one of its constant expressions.

use sqlx::Row as _;

use super::{StoreError, Tx};

/// A column a table may group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    District,
    /// The referral's status: its furthest outcome (the ladder only climbs).
    Status,
    AssignedCbo,
    /// One row per requested resource category (`referral_resources`).
    Resource,
}

impl Column {
    fn expression(self) -> &'static str {
        match self {
            Self::District => "r.district",
            Self::Status => "r.status",
            Self::AssignedCbo => "r.assigned_cbo",
            Self::Resource => "rr.resource",
        }
    }
}

/// One group's values (in the order of the columns asked) and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCount {
    pub values: Vec<String>,
    pub count: i64,
}

/// One group's median time to first contact, in microseconds: `n` referrals
/// with a first contact, and the sum and number of the middle one or two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMedian {
    pub values: Vec<String>,
    pub contacted: i64,
    pub middle_sum: i64,
    pub middle_count: i64,
}

fn source(columns: &[Column]) -> &'static str {
    if columns.contains(&Column::Resource) {
        "referrals r JOIN referral_resources rr ON rr.referral_id = r.id"
    } else {
        "referrals r"
    }
}

fn select_list(columns: &[Column]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} AS g{i}", c.expression()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn aliases(columns: &[Column]) -> String {
    (0..columns.len())
        .map(|i| format!("g{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn values(row: &sqlx::any::AnyRow, n: usize) -> Result<Vec<String>, sqlx::Error> {
    (0..n).map(|i| row.try_get::<String, _>(i)).collect()
}

/// The referrals received in `[from, to)` (unix microseconds), counted by
/// `columns`.
#[tracing::instrument(name = "db.referrals.aggregate", skip_all)]
pub async fn count_month(
    tx: &mut Tx<'_>,
    columns: &[Column],
    from: i64,
    to: i64,
) -> Result<Vec<GroupCount>, StoreError> {
    let sql = if columns.is_empty() {
        format!(
            "SELECT COUNT(*) FROM {} WHERE r.created_at >= $1 AND r.created_at < $2",
            source(columns)
        )
    } else {
        format!(
            "SELECT {}, COUNT(*) FROM {} WHERE r.created_at >= $1 AND r.created_at < $2 \
             GROUP BY {}",
            select_list(columns),
            source(columns),
            aliases(columns)
        )
    };
    // Only constant fragments of this module are spliced in (see module docs).
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?;
    let n = columns.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(GroupCount {
            values: values(&row, n)?,
            count: row.try_get(n)?,
        });
    }
    Ok(out)
}

/// The median time from receipt to first contact of the referrals received
/// in `[from, to)`, by `columns`, computed in SQL: the middle one or two
/// delays of each group (window functions on SQLite, an ordered-set aggregate
/// on PostgreSQL; both give the sum and number of the middle delays). The first
/// contact is the referral's `first_contact_at`, which triggers keep from its
/// outcomes (migration 0010).
#[tracing::instrument(name = "db.referrals.median_first_contact", skip_all)]
pub async fn median_first_contact_month(
    tx: &mut Tx<'_>,
    columns: &[Column],
    from: i64,
    to: i64,
) -> Result<Vec<GroupMedian>, StoreError> {
    let (group_select, partition, group_by, keys) = if columns.is_empty() {
        (String::new(), String::new(), String::new(), String::new())
    } else {
        let a = aliases(columns);
        (
            format!("{}, ", select_list(columns)),
            format!("PARTITION BY {a} "),
            format!(" GROUP BY {a}"),
            format!("{a}, "),
        )
    };
    let sql = if super::referrals::is_sqlite(tx) {
        format!(
            "WITH firsts AS (\
           SELECT {group_select}\
             r.first_contact_at - r.created_at AS delay \
           FROM {source} WHERE r.created_at >= $1 AND r.created_at < $2), \
         ranked AS (\
           SELECT {keys}delay, \
             ROW_NUMBER() OVER ({partition}ORDER BY delay) AS rn, \
             COUNT(*) OVER ({partition}) AS n \
           FROM firsts WHERE delay IS NOT NULL) \
         SELECT {keys}MIN(n), CAST(SUM(delay) AS BIGINT), COUNT(*) FROM ranked \
         WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2{group_by}",
            source = source(columns),
        )
    } else {
        // PostgreSQL's ordered-set aggregate sorts each group once, where the
        // window functions above sort and then count in a second pass (about
        // three quarters of a month x district x outcome table's time).
        // `percentile_cont(0.5)` is the mean of the middle one or two values,
        // so twice it is their sum: exact in a double for delays below 2^52 µs.
        format!(
            "SELECT {keys}COUNT(*), \
               CAST(ROUND(2 * percentile_cont(0.5) WITHIN GROUP (ORDER BY delay)) AS BIGINT), \
               CAST(2 AS BIGINT) \
             FROM (SELECT {group_select}r.first_contact_at - r.created_at AS delay \
               FROM {source} WHERE r.created_at >= $1 AND r.created_at < $2) AS firsts \
             WHERE delay IS NOT NULL{group_by} HAVING COUNT(*) > 0",
            source = source(columns),
        )
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?;
    let n = columns.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // An empty month without groups still yields one row of NULLs.
        let Some(contacted) = row.try_get::<Option<i64>, _>(n)? else {
            continue;
        };
        out.push(GroupMedian {
            values: values(&row, n)?,
            contacted,
            middle_sum: row.try_get(n + 1)?,
            middle_count: row.try_get(n + 2)?,
        });
    }
    Ok(out)
}

/// Spends `epsilon_micro` of `partner`'s budget for `period` if that keeps it
/// within `budget_micro`; returns what is spent afterwards, or `Err(spent)`
/// (what was already spent) when it would not fit. One conditional UPDATE, so
/// concurrent spends on any number of replicas never overshoot.
#[tracing::instrument(name = "db.aggregate_budgets.spend", skip_all)]
pub async fn spend(
    tx: &mut Tx<'_>,
    partner: &str,
    period: &str,
    epsilon_micro: i64,
    budget_micro: i64,
) -> Result<Result<i64, i64>, StoreError> {
    sqlx::query(
        "INSERT INTO aggregate_budgets (partner, period, spent_micro) VALUES ($1, $2, 0) \
         ON CONFLICT (partner, period) DO NOTHING",
    )
    .bind(partner)
    .bind(period)
    .execute(&mut **tx)
    .await?;
    let updated = sqlx::query(
        "UPDATE aggregate_budgets SET spent_micro = spent_micro + $3 \
         WHERE partner = $1 AND period = $2 AND spent_micro + $3 <= $4",
    )
    .bind(partner)
    .bind(period)
    .bind(epsilon_micro)
    .bind(budget_micro)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let spent: i64 = sqlx::query_scalar(
        "SELECT spent_micro FROM aggregate_budgets WHERE partner = $1 AND period = $2",
    )
    .bind(partner)
    .bind(period)
    .fetch_one(&mut **tx)
    .await?;
    Ok(if updated == 1 { Ok(spent) } else { Err(spent) })
}

/// One spend, as the ledger keeps it.
#[derive(Debug)]
pub struct LedgerEntry<'a> {
    pub id: &'a str,
    pub partner: &'a str,
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
    .bind(entry.id)
    .bind(entry.partner)
    .bind(entry.period)
    .bind(entry.epsilon_micro)
    .bind(entry.query)
    .bind(entry.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
