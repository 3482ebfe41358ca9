//! Repository for `outcomes` (migration 0006): a CBO's follow-up outcomes.

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
