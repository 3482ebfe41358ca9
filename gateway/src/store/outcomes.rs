//! Repository for `outcomes` (migration 0006): a CBO's follow-up outcomes.

use sqlx::Row as _;

use super::{StoreError, Tx};

/// An outcome row as written; `sealed` holds the notes, if any.
#[derive(Debug)]
pub struct NewOutcome {
    pub id: String,
    pub referral_id: String,
    pub recorded_by: String,
    pub kind: &'static str,
    pub resource: Option<&'static str>,
    /// Unix microseconds.
    pub occurred_at: i64,
    pub created_at: i64,
    pub sealed: Option<Vec<u8>>,
}

#[tracing::instrument(name = "db.outcomes.insert", skip_all)]
pub async fn insert_outcome(tx: &mut Tx<'_>, row: &NewOutcome) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outcomes (id, referral_id, recorded_by, kind, resource, occurred_at, \
         created_at, sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.id.clone())
    .bind(row.referral_id.clone())
    .bind(row.recorded_by.clone())
    .bind(row.kind)
    .bind(row.resource)
    .bind(row.occurred_at)
    .bind(row.created_at)
    .bind(row.sealed.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An outcome as the read side needs it, with the subject of its referral.
pub struct OutcomeRow {
    pub id: String,
    pub referral_id: String,
    pub recorded_by: String,
    pub kind: String,
    pub resource: Option<String>,
    /// Unix microseconds.
    pub occurred_at: i64,
    pub created_at: i64,
    /// The notes, sealed; opened only when a decision discloses them.
    pub sealed: Option<Vec<u8>>,
    /// The referral's subject as written (never leaves the gateway).
    pub subject_id: String,
}

impl std::fmt::Debug for OutcomeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Outcomes of the referrals `submitted_by` made, newest first (by when the
/// gateway received them), after `before` = (`created_at`, `id`) when given.
#[tracing::instrument(name = "db.outcomes.of_submitter", skip_all)]
pub async fn outcomes_of_submitter(
    tx: &mut Tx<'_>,
    submitted_by: &str,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<OutcomeRow>, StoreError> {
    let (at, id) = before.unwrap_or((i64::MAX, ""));
    let rows = sqlx::query(
        "SELECT o.id, o.referral_id, o.recorded_by, o.kind, o.resource, o.occurred_at, \
         o.created_at, o.sealed, r.subject_id FROM outcomes o \
         JOIN referrals r ON r.id = o.referral_id \
         WHERE r.submitted_by = $1 \
         AND (o.created_at < $2 OR (o.created_at = $2 AND o.id < $3) OR $4 = 0) \
         ORDER BY o.created_at DESC, o.id DESC LIMIT $5",
    )
    .bind(submitted_by)
    .bind(at)
    .bind(id)
    .bind(i64::from(before.is_some()))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutcomeRow {
                id: r.try_get(0)?,
                referral_id: r.try_get(1)?,
                recorded_by: r.try_get(2)?,
                kind: r.try_get(3)?,
                resource: r.try_get(4)?,
                occurred_at: r.try_get(5)?,
                created_at: r.try_get(6)?,
                sealed: r.try_get(7)?,
                subject_id: r.try_get(8)?,
            })
        })
        .collect()
}
