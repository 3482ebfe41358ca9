//! Settling a month (migration 0019): the copy of a month's referrals, with
//! their groupings as they stood at the month's cut-off, that every table of
//! the month is counted from.
//!
//! "As they stood at the cut-off" is worked out from the history, so the copy
//! is the same whenever it is made after the cut-off:
//! - **status**: a referral's status moves only when an outcome is recorded
//!   (`exchange::outcome`), so with no outcome recorded after the cut-off it is
//!   the current `status`; otherwise the outcomes recorded by then are folded
//!   as the ladder does (an ending outcome, of which there is at most one,
//!   else the furthest rung, else `new`);
//! - **first contact**: likewise the current `first_contact_at`, or the
//!   earliest contact among the outcomes recorded by then;
//! - **assigned CBO**: the latest assignment made by then (the first one if
//!   none was: a referral is assigned when it is received).
//!
//! "Recorded" is the outcome's `created_at` (the gateway's clock when it was
//! written), never the `occurred_at` a CBO reports: a late report of an early
//! contact still arrives after the cut-off.

use super::super::{Backend, Store, StoreError, Tx};

/// The months among `months` (`YYYY-MM`) that are settled.
#[tracing::instrument(name = "db.aggregate_settled_months.select", skip_all)]
pub async fn settled_among(tx: &mut Tx<'_>, months: &[String]) -> Result<Vec<String>, StoreError> {
    let (Some(first), Some(last)) = (months.first(), months.last()) else {
        return Ok(Vec::new());
    };
    // Months sort as text; the caller's list is one contiguous, ordered range.
    Ok(sqlx::query_scalar(
        "SELECT month FROM aggregate_settled_months WHERE month >= $1 AND month <= $2 \
         ORDER BY month",
    )
    .bind(first.clone())
    .bind(last.clone())
    .fetch_all(&mut **tx)
    .await?)
}

/// One month to settle: its name, its bounds and its cut-off (unix microseconds).
#[derive(Debug, Clone)]
pub struct MonthToSettle {
    pub month: String,
    /// The month's first instant.
    pub from: i64,
    /// The next month's first instant.
    pub to: i64,
    /// Nothing recorded after this counts.
    pub cutoff: i64,
}

/// Settles `month` unless it is settled already: claims it in
/// `aggregate_settled_months` first (on PostgreSQL a concurrent settle of the
/// same month waits on that row and then finds it claimed), then copies its
/// referrals. Returns how many were copied, or `None` when another request
/// settled it. Nothing is copied unless the transaction commits.
#[tracing::instrument(name = "db.aggregate_settled_referrals.settle", skip_all)]
pub async fn settle_month(
    tx: &mut Tx<'_>,
    month: &MonthToSettle,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO aggregate_settled_months (month, cutoff, settled_at, referrals) \
         VALUES ($1, $2, $3, 0) ON CONFLICT (month) DO NOTHING",
    )
    .bind(month.month.clone())
    .bind(month.cutoff)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    // One pass over the month's referrals and their outcomes; the fold of
    // the outcomes recorded by the cut-off is used only where something was
    // recorded after it (module docs).
    let copied = sqlx::query(
        "INSERT INTO aggregate_settled_referrals \
             (id, created_at, district, status, assigned_cbo, first_contact_at) \
         SELECT f.id, f.created_at, f.district, \
             CASE WHEN f.later = 0 THEN f.status \
                  ELSE COALESCE(f.ended, CASE f.climbed \
                      WHEN 4 THEN 'service_connected' WHEN 3 THEN 'engaged' \
                      WHEN 2 THEN 'contacted' WHEN 1 THEN 'contact_attempted' \
                      ELSE 'new' END) END, \
             COALESCE( \
                 (SELECT a.to_cbo FROM referral_assignments a \
                  WHERE a.referral_id = f.id AND a.at <= $3 ORDER BY a.at DESC, a.id DESC LIMIT 1), \
                 (SELECT a.to_cbo FROM referral_assignments a \
                  WHERE a.referral_id = f.id ORDER BY a.at, a.id LIMIT 1), \
                 f.assigned_cbo), \
             CASE WHEN f.later = 0 THEN f.first_contact_at ELSE f.contact_by_cutoff END \
         FROM ( \
             SELECT r.id, r.created_at, r.district, r.status, r.assigned_cbo, r.first_contact_at, \
                 MAX(CASE WHEN o.created_at > $3 THEN 1 ELSE 0 END) AS later, \
                 MAX(CASE WHEN o.created_at <= $3 \
                          AND o.kind IN ('declined', 'unable_to_locate', 'closed') \
                     THEN o.kind END) AS ended, \
                 MAX(CASE WHEN o.created_at > $3 THEN 0 \
                          WHEN o.kind = 'service_connected' THEN 4 WHEN o.kind = 'engaged' THEN 3 \
                          WHEN o.kind = 'contacted' THEN 2 WHEN o.kind = 'contact_attempted' THEN 1 \
                          ELSE 0 END) AS climbed, \
                 MIN(CASE WHEN o.created_at <= $3 \
                          AND o.kind IN ('contacted', 'engaged', 'service_connected') \
                     THEN o.occurred_at END) AS contact_by_cutoff \
             FROM referrals r LEFT JOIN outcomes o ON o.referral_id = r.id \
             WHERE r.created_at >= $1 AND r.created_at < $2 \
             GROUP BY r.id, r.created_at, r.district, r.status, r.assigned_cbo, r.first_contact_at \
         ) f \
         ORDER BY f.created_at",
    )
    .bind(month.from)
    .bind(month.to)
    .bind(month.cutoff)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let copied = i64::try_from(copied).unwrap_or(i64::MAX);
    sqlx::query("UPDATE aggregate_settled_months SET referrals = $2 WHERE month = $1")
        .bind(month.month.clone())
        .bind(copied)
        .execute(&mut **tx)
        .await?;
    Ok(Some(copied))
}

/// After months were settled: on PostgreSQL, `VACUUM (ANALYZE)` the copy, so
/// that the first tables counted from it read the index alone. A fresh copy's
/// pages are not yet marked all-visible, and until autovacuum gets to them an
/// index-only scan fetches every row from the table: measured on the bench's
/// 1,000,000 referrals, a 12-month month x district x outcome table took
/// 428 ms instead of ~190 ms. Pages already all-visible are skipped, so this
/// costs little more than the new month's rows; it runs once per settled
/// month, outside any transaction (VACUUM cannot run in one). SQLite needs
/// nothing: its index-only scans do not depend on vacuuming, and the copy is
/// written in `created_at` order (rowid order) already.
#[tracing::instrument(name = "db.aggregate_settled_referrals.vacuum", skip_all)]
pub async fn tidy_after_settling(store: &Store) -> Result<(), StoreError> {
    if store.backend() == Backend::Postgres {
        sqlx::query("VACUUM (ANALYZE) aggregate_settled_referrals")
            .execute(store.pool())
            .await?;
    }
    Ok(())
}
