//! Repository for `cases` (migration 0006): a health partner's case statuses.

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::domain::ids::CaseId;

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

/// A case status as the read side needs it; `sealed` (the case reference) is
/// opened only when a release decision discloses it.
pub struct CaseRow {
    pub id: String,
    pub submitted_by: String,
    pub subject_id: String,
    /// Groups one case's reports (keyed hash of partner and case reference).
    pub case_key: Vec<u8>,
    pub program: String,
    pub status: String,
    pub part2: bool,
    /// Unix microseconds.
    pub effective_at: i64,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for CaseRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRow")
            .field("id", &self.id)
            .field("program", &self.program)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Every case status report about any of `subjects`, oldest first.
#[tracing::instrument(name = "db.cases.of_subjects", skip_all, fields(subjects = subjects.len()))]
pub async fn cases_of_subjects(
    tx: &mut Tx<'_>,
    subjects: &[String],
) -> Result<Vec<CaseRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in subjects.chunks(500) {
        let sql = format!(
            "SELECT id, submitted_by, subject_id, case_key, program, status, part2, \
             effective_at, sealed FROM cases WHERE subject_id IN ({}) \
             ORDER BY effective_at, created_at, id",
            (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            statement = statement.bind(id.as_str());
        }
        for r in statement.fetch_all(&mut **tx).await? {
            let part2: i64 = r.try_get(6)?;
            out.push(CaseRow {
                id: r.try_get(0)?,
                submitted_by: r.try_get(1)?,
                subject_id: r.try_get(2)?,
                case_key: r.try_get(3)?,
                program: r.try_get(4)?,
                status: r.try_get(5)?,
                part2: part2 != 0,
                effective_at: r.try_get(7)?,
                sealed: r.try_get(8)?,
            });
        }
    }
    out.sort_by_key(|case| case.effective_at);
    Ok(out)
}

/// Who submitted case status `id` and about which subject, if it exists.
#[tracing::instrument(name = "db.cases.owner", skip_all)]
pub async fn case_owner(
    tx: &mut Tx<'_>,
    id: &CaseId,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query("SELECT submitted_by, subject_id FROM cases WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}
