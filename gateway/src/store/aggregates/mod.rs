//! Repository for the aggregate counts (migrations 0009, 0019): GROUP BYs over
//! one settled calendar month of referrals at a time (with the delays to first
//! contact whose medians are selected in Rust); settling a month ([`settled`]);
//! and the differential-privacy budget and stored noisy tables ([`budget`]).
//!
//! Counts are read from `aggregate_settled_referrals`, the copy made when a
//! month settles, never from the live `referrals`: a published month must not
//! move when a later outcome is recorded.
//!
//! Month boundaries come in as unix-microsecond parameters (computed in Rust),
//! so the same SQL runs on both backends and the `aggregate_settled_referrals_month` index
//! serves the range. The grouped columns come from [`Column`], a closed list:
//! the only text spliced into a statement is one of its constant expressions.

use std::collections::HashMap;

use sqlx::Row as _;

use super::chain::NativeSource;
use super::{Store, StoreError, Tx};

pub mod budget;
pub mod settled;

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

/// The settled copy of the months' referrals ([`settled`]): tables are never
/// counted from the live `referrals`, whose status and assignment move.
fn source(columns: &[Column]) -> &'static str {
    if columns.contains(&Column::Resource) {
        "aggregate_settled_referrals r JOIN referral_resources rr ON rr.referral_id = r.id"
    } else {
        "aggregate_settled_referrals r"
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

/// `SELECT <columns>, <aggregates>` over the referrals received in
/// `[from, to)`, grouped by `columns` (one row without any). Only constant
/// fragments of this module are spliced in (see module docs).
async fn grouped_month(
    tx: &mut Tx<'_>,
    columns: &[Column],
    aggregates: &str,
    from: i64,
    to: i64,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let range = "r.created_at >= $1 AND r.created_at < $2";
    let sql = if columns.is_empty() {
        format!("SELECT {aggregates} FROM {} WHERE {range}", source(columns))
    } else {
        format!(
            "SELECT {}, {aggregates} FROM {} WHERE {range} GROUP BY {}",
            select_list(columns),
            source(columns),
            aliases(columns)
        )
    };
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?)
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
    let rows = grouped_month(tx, columns, "COUNT(*)", from, to).await?;
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

/// The referrals received in `[from, to)`, counted by `columns` as
/// [`count_month`] does, with each group's median time from receipt to first
/// contact — one scan for both. The first contact is the referral's
/// `first_contact_at`, which triggers keep from its outcomes (migration 0010).
///
/// The database does not rank the delays: each group's delays come back as one
/// comma-separated text value (`group_concat` / `string_agg`, which skip the
/// referrals not yet contacted) and the middle one or two are selected here in
/// linear time. Ranking in SQL (window functions on SQLite, `percentile_cont`
/// on PostgreSQL) sorted every group and made a 12-month month x district x
/// outcome table two to five times slower than its counts; one text value per
/// group keeps the rows few (sqlx's per-row cost is what reading each delay as
/// a row would pay). A month holds tens of thousands of referrals, so the text
/// is a few hundred kilobytes.
#[tracing::instrument(name = "db.referrals.aggregate_with_medians", skip_all)]
pub async fn count_and_median_month(
    tx: &mut Tx<'_>,
    columns: &[Column],
    from: i64,
    to: i64,
) -> Result<(Vec<GroupCount>, Vec<GroupMedian>), StoreError> {
    let delays = if super::referrals::is_sqlite(tx) {
        "group_concat(r.first_contact_at - r.created_at)"
    } else {
        "string_agg(CAST(r.first_contact_at - r.created_at AS TEXT), ',')"
    };
    let rows = grouped_month(tx, columns, &format!("COUNT(*), {delays}"), from, to).await?;
    let n = columns.len();
    let mut counts = Vec::with_capacity(rows.len());
    let mut medians = Vec::with_capacity(rows.len());
    let mut scratch = Vec::new();
    for row in rows {
        let values = values(&row, n)?;
        let listed: Option<String> = row.try_get(n + 1)?;
        if let Some(listed) = listed
            && let Some(median) = middle_of(&listed, &mut scratch)?
        {
            medians.push(GroupMedian {
                values: values.clone(),
                contacted: median.0,
                middle_sum: median.1,
                middle_count: median.2,
            });
        }
        counts.push(GroupCount {
            values,
            count: row.try_get(n)?,
        });
    }
    Ok((counts, medians))
}

/// The number of delays in `listed` (comma-separated integers), and the sum
/// and number of the middle one or two; `None` for an empty list.
fn middle_of(listed: &str, delays: &mut Vec<i64>) -> Result<Option<(i64, i64, i64)>, StoreError> {
    delays.clear();
    for delay in listed.split(',').filter(|d| !d.is_empty()) {
        delays.push(delay.trim().parse().map_err(|_| StoreError::Corrupt {
            what: "a first-contact delay is not an integer",
        })?);
    }
    Ok(middle_of_delays(delays))
}

/// The number of `delays`, and the sum and number of the middle one or two
/// (in linear time; reorders `delays`); `None` when there are none.
fn middle_of_delays(delays: &mut [i64]) -> Option<(i64, i64, i64)> {
    let n = delays.len();
    if n == 0 {
        return None;
    }
    let contacted = i64::try_from(n).unwrap_or(i64::MAX);
    let half = n / 2;
    let (lower, &mut upper, _) = delays.select_nth_unstable(half);
    Some(if n % 2 == 1 {
        (contacted, upper, 1)
    } else {
        // `lower` holds the `half` smallest delays: its largest is the other middle one.
        let other = lower.iter().copied().max().unwrap_or(upper);
        (contacted, other + upper, 2)
    })
}

/// One month's groups: their counts and, where asked, their medians.
#[derive(Debug, Default)]
pub struct MonthGroups {
    pub counts: Vec<GroupCount>,
    pub medians: Vec<GroupMedian>,
}

/// Reads the groups of each `[from, to)` range of `months` (unix
/// microseconds), all in one read snapshot, with medians if `medians`.
///
/// On a SQLite file the rows are read through `rusqlite` on a blocking thread
/// and grouped here (see [`sqlite_months`]); elsewhere by
/// [`count_month`]/[`count_and_median_month`] through the pool.
#[tracing::instrument(name = "db.referrals.aggregate_months", skip_all, fields(months = months.len()))]
pub async fn read_months(
    store: &Store,
    columns: &[Column],
    months: &[(i64, i64)],
    medians: bool,
) -> Result<Vec<MonthGroups>, StoreError> {
    if let NativeSource::Sqlite(path) = store.native() {
        let (path, columns, months) = (path.clone(), columns.to_vec(), months.to_vec());
        return tokio::task::spawn_blocking(move || {
            sqlite_months(&path, &columns, &months, medians)
        })
        .await
        .map_err(|_| StoreError::ReaderStopped)?;
    }
    let mut snapshot = store.begin_read().await?;
    let mut out = Vec::with_capacity(months.len());
    for &(from, to) in months {
        out.push(if medians {
            let (counts, medians) =
                count_and_median_month(&mut snapshot, columns, from, to).await?;
            MonthGroups { counts, medians }
        } else {
            MonthGroups {
                counts: count_month(&mut snapshot, columns, from, to).await?,
                medians: Vec::new(),
            }
        });
    }
    snapshot.commit().await?;
    Ok(out)
}

/// SQLite groups by sorting (a temporary B-tree per GROUP BY), which was nine
/// tenths of a month's query: scanning the covering `aggregate_settled_referrals_month`
/// index for a month of 42,000 referrals takes ~5 ms, grouping it ~40 ms. So
/// on a SQLite file each month's rows are read in index order through a
/// connection of this reader's own, in one read transaction for all months,
/// and grouped in a hash map here.
fn sqlite_months(
    path: &std::path::Path,
    columns: &[Column],
    months: &[(i64, i64)],
    medians: bool,
) -> Result<Vec<MonthGroups>, StoreError> {
    use rusqlite::types::ValueRef;

    let conn = super::chain::open_sqlite(path)?;
    // One snapshot for every month: a read transaction, begun by the first read.
    conn.execute_batch("BEGIN DEFERRED")?;
    let mut select: Vec<String> = columns.iter().map(|c| c.expression().to_owned()).collect();
    select.push("r.first_contact_at - r.created_at".to_owned());
    // Only constant fragments of this module are spliced in (see module docs).
    let sql = format!(
        "SELECT {} FROM {} WHERE r.created_at >= ?1 AND r.created_at < ?2",
        select.join(", "),
        source(columns)
    );
    let mut statement = conn.prepare(&sql)?;
    let n = columns.len();
    let mut out = Vec::with_capacity(months.len());
    let mut key = Vec::new();
    for &(from, to) in months {
        // Groups by the bytes of their values, each prefixed by its length.
        let mut slots: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Vec<String>, i64, Vec<i64>)> = Vec::new();
        let mut rows = statement.query([from, to])?;
        while let Some(row) = rows.next()? {
            key.clear();
            for i in 0..n {
                let ValueRef::Text(text) = row.get_ref(i)? else {
                    return Err(StoreError::Corrupt {
                        what: "a grouped referral column is not text",
                    });
                };
                key.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
                key.extend_from_slice(text);
            }
            let slot = if let Some(&slot) = slots.get(key.as_slice()) {
                slot
            } else {
                let values = (0..n)
                    .map(|i| row.get::<_, String>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                groups.push((values, 0, Vec::new()));
                slots.insert(key.clone(), groups.len() - 1);
                groups.len() - 1
            };
            let group = &mut groups[slot];
            group.1 += 1;
            if medians && let ValueRef::Integer(delay) = row.get_ref(n)? {
                group.2.push(delay);
            }
        }
        if n == 0 && groups.is_empty() {
            // As `SELECT COUNT(*)` without GROUP BY: one row, even of zero.
            groups.push((Vec::new(), 0, Vec::new()));
        }
        let mut month = MonthGroups::default();
        for (values, count, mut delays) in groups {
            if let Some((contacted, middle_sum, middle_count)) = middle_of_delays(&mut delays) {
                month.medians.push(GroupMedian {
                    values: values.clone(),
                    contacted,
                    middle_sum,
                    middle_count,
                });
            }
            month.counts.push(GroupCount { values, count });
        }
        out.push(month);
    }
    drop(statement);
    conn.execute_batch("COMMIT")?;
    Ok(out)
}

#[cfg(test)]
mod tests;
