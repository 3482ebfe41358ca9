//! A study's generalization plan (migration 0015), fixed by its first export
//! and reused by every later one (see `crate::exports::plan`).

use sqlx::Row as _;

use super::{StoreError, Tx};

/// A plan as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyPlanRow {
    pub study_id: String,
    pub mode: String,
    /// The study's quasi-identifiers when it was planned, comma-separated.
    pub quasi_identifiers: String,
    pub k: i64,
    /// JSON object: quasi-identifier → level.
    pub levels: String,
    /// `YYYY-MM-DD`.
    pub reference_date: String,
    pub planned_by: String,
    pub planned_at: i64,
}

#[tracing::instrument(name = "db.study_plans.get", skip_all)]
pub async fn get(tx: &mut Tx<'_>, study_id: &str) -> Result<Option<StudyPlanRow>, StoreError> {
    let row = sqlx::query(
        "SELECT study_id, mode, quasi_identifiers, k, levels, reference_date, planned_by, \
         planned_at FROM study_plans WHERE study_id = $1",
    )
    .bind(study_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(StudyPlanRow {
            study_id: r.try_get(0)?,
            mode: r.try_get(1)?,
            quasi_identifiers: r.try_get(2)?,
            k: r.try_get(3)?,
            levels: r.try_get(4)?,
            reference_date: r.try_get(5)?,
            planned_by: r.try_get(6)?,
            planned_at: r.try_get(7)?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// Stores `plan` unless the study has one already; `true` when this one was
/// stored. Two replicas finishing a study's first exports at once both try:
/// the primary key lets exactly one in (PostgreSQL makes the second wait for
/// the first's commit, then do nothing), and each reads back which plan won.
#[tracing::instrument(name = "db.study_plans.insert", skip_all)]
pub async fn insert_if_absent(tx: &mut Tx<'_>, plan: &StudyPlanRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO study_plans (study_id, mode, quasi_identifiers, k, levels, reference_date, \
         planned_by, planned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (study_id) DO NOTHING",
    )
    .bind(&plan.study_id)
    .bind(&plan.mode)
    .bind(&plan.quasi_identifiers)
    .bind(plan.k)
    .bind(&plan.levels)
    .bind(&plan.reference_date)
    .bind(&plan.planned_by)
    .bind(plan.planned_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
