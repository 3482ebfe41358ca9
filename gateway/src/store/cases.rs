//! Repository for `cases` (migration 0006): a health partner's case statuses.

use super::{StoreError, Tx};

/// A case status row as written; `sealed` holds the case reference.
#[derive(Debug)]
pub struct NewCase {
    pub id: String,
    pub submitted_by: String,
    pub subject_id: String,
    pub identity_id: String,
    /// Keyed hash of (partner, case reference): one case's reports share it.
    pub case_key: [u8; 32],
    pub program: &'static str,
    pub status: &'static str,
    pub part2: bool,
    /// Unix microseconds.
    pub effective_at: i64,
    pub created_at: i64,
    pub sealed: Vec<u8>,
}

#[tracing::instrument(name = "db.cases.insert", skip_all)]
pub async fn insert_case(tx: &mut Tx<'_>, row: &NewCase) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cases (id, submitted_by, subject_id, identity_id, case_key, program, \
         status, part2, effective_at, created_at, sealed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(row.id.clone())
    .bind(row.submitted_by.clone())
    .bind(row.subject_id.clone())
    .bind(row.identity_id.clone())
    .bind(row.case_key.to_vec())
    .bind(row.program)
    .bind(row.status)
    .bind(i64::from(row.part2))
    .bind(row.effective_at)
    .bind(row.created_at)
    .bind(row.sealed.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
