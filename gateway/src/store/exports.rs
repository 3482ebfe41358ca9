//! Exports: their records and the subjects each discloses (migration 0011).
//! The rows an export reads come through [`super::export_rows`].

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::domain::ids::ExportId;

/// An export as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub id: String,
    pub study_id: String,
    pub requested_by: String,
    pub purpose: String,
    pub request: String,
    pub state: String,
    pub requested_at: i64,
    pub finished_at: Option<i64>,
    pub file_name: Option<String>,
    pub manifest_jws: Option<String>,
}

#[tracing::instrument(name = "db.exports.insert", skip_all)]
pub async fn insert(tx: &mut Tx<'_>, row: &ExportRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO exports (id, study_id, requested_by, purpose, request, state, requested_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.study_id)
    .bind(&row.requested_by)
    .bind(&row.purpose)
    .bind(&row.request)
    .bind(&row.state)
    .bind(row.requested_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.exports.finish", skip_all)]
pub async fn finish(
    tx: &mut Tx<'_>,
    id: &str,
    state: &str,
    finished_at: i64,
    file_name: Option<&str>,
    manifest_jws: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE exports SET state = $1, finished_at = $2, file_name = $3, manifest_jws = $4 \
         WHERE id = $5",
    )
    .bind(state)
    .bind(finished_at)
    .bind(file_name)
    .bind(manifest_jws)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.exports.get", skip_all)]
pub async fn get(tx: &mut Tx<'_>, id: &ExportId) -> Result<Option<ExportRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, study_id, requested_by, purpose, request, state, requested_at, finished_at, \
         file_name, manifest_jws FROM exports WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(ExportRow {
            id: r.try_get(0)?,
            study_id: r.try_get(1)?,
            requested_by: r.try_get(2)?,
            purpose: r.try_get(3)?,
            request: r.try_get(4)?,
            state: r.try_get(5)?,
            requested_at: r.try_get(6)?,
            finished_at: r.try_get(7)?,
            file_name: r.try_get(8)?,
            manifest_jws: r.try_get(9)?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// Records that export `id` discloses `subjects` (in statements of 500).
#[tracing::instrument(name = "db.export_subjects.insert", skip_all, fields(subjects = subjects.len()))]
pub async fn insert_subjects(
    tx: &mut Tx<'_>,
    id: &str,
    subjects: &[String],
) -> Result<(), StoreError> {
    for chunk in subjects.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO export_subjects (export_id, subject_id) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        for subject in chunk {
            query = query.bind(subject.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
