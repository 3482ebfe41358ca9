//! Repository for `consents` (migration 0008): recorded consents, their
//! revocation, and the active ones of a person.

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::domain::PartnerId;
use crate::domain::ids::ConsentId;

/// A consent as stored. Nothing in it is an identifier: codes, partner ids,
/// record ids, times (unix microseconds) and the evidence hash the recorder
/// gave.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub id: String,
    /// The subject it was recorded on (the person's subject at the time; reads
    /// follow merges).
    pub subject_id: String,
    pub referral_id: Option<String>,
    pub case_id: Option<String>,
    pub recorded_by: String,
    /// The partner whose records the consent opens: always its recorder
    /// (migration 0016). Reads use a consent only on records this
    /// partner holds.
    pub discloser: String,
    pub method: String,
    pub recipients: Vec<String>,
    pub purposes: Vec<String>,
    pub classes: Vec<String>,
    pub part2_recipients: Vec<String>,
    pub part2: bool,
    pub period_start: i64,
    pub period_end: i64,
    pub evidence_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

impl std::fmt::Debug for ConsentRow {
    // The shape only: even internal references stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentRow")
            .field("id", &self.id)
            .field("recorded_by", &self.recorded_by)
            .field("discloser", &self.discloser)
            .field("part2", &self.part2)
            .field("revoked", &self.revoked_at.is_some())
            .finish_non_exhaustive()
    }
}

impl ConsentRow {
    /// In its period at `now` and not revoked.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.period_start <= now && now < self.period_end
    }
}

const COLUMNS: &str = "id, subject_id, referral_id, case_id, recorded_by, method, recipients, \
    purposes, classes, part2_recipients, part2, period_start, period_end, evidence_hash, \
    created_at, revoked_at, revoked_by, discloser";

fn list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
        what: "a consent's list column is not a JSON array of strings",
    })
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ConsentRow, StoreError> {
    let part2: i64 = r.try_get(10)?;
    Ok(ConsentRow {
        id: r.try_get(0)?,
        subject_id: r.try_get(1)?,
        referral_id: r.try_get(2)?,
        case_id: r.try_get(3)?,
        recorded_by: r.try_get(4)?,
        method: r.try_get(5)?,
        recipients: list(&r.try_get::<String, _>(6)?)?,
        purposes: list(&r.try_get::<String, _>(7)?)?,
        classes: list(&r.try_get::<String, _>(8)?)?,
        part2_recipients: list(&r.try_get::<String, _>(9)?)?,
        part2: part2 != 0,
        period_start: r.try_get(11)?,
        period_end: r.try_get(12)?,
        evidence_hash: r.try_get(13)?,
        created_at: r.try_get(14)?,
        revoked_at: r.try_get(15)?,
        revoked_by: r.try_get(16)?,
        discloser: r.try_get(17)?,
    })
}

#[tracing::instrument(name = "db.consents.insert", skip_all)]
pub async fn insert_consent(tx: &mut Tx<'_>, row: &ConsentRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consents (id, subject_id, referral_id, case_id, recorded_by, method, \
         recipients, purposes, classes, part2_recipients, part2, period_start, period_end, \
         evidence_hash, created_at, revoked_at, revoked_by, discloser) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, NULL, $16)",
    )
    .bind(row.id.clone())
    .bind(row.subject_id.clone())
    .bind(row.referral_id.clone())
    .bind(row.case_id.clone())
    .bind(row.recorded_by.clone())
    .bind(row.method.clone())
    .bind(json_list(&row.recipients))
    .bind(json_list(&row.purposes))
    .bind(json_list(&row.classes))
    .bind(json_list(&row.part2_recipients))
    .bind(i64::from(row.part2))
    .bind(row.period_start)
    .bind(row.period_end)
    .bind(row.evidence_hash.clone())
    .bind(row.created_at)
    .bind(row.discloser.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One consent by id.
#[tracing::instrument(name = "db.consents.get", skip_all)]
pub async fn get_consent(
    tx: &mut Tx<'_>,
    id: &ConsentId,
) -> Result<Option<ConsentRow>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM consents WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks a consent revoked, if it is not already; whether it was.
#[tracing::instrument(name = "db.consents.revoke", skip_all)]
pub async fn revoke_consent(
    tx: &mut Tx<'_>,
    id: &str,
    revoked_by: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE consents SET revoked_at = $1, revoked_by = $2 \
         WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(revoked_by)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The consents on any of `subjects` (one person's subjects) that are not
/// revoked, oldest first; the caller checks their periods against its clock.
#[tracing::instrument(name = "db.consents.of_subjects", skip_all, fields(subjects = subjects.len()))]
pub async fn unrevoked_of_subjects(
    tx: &mut Tx<'_>,
    subjects: &[String],
) -> Result<Vec<ConsentRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in subjects.chunks(500) {
        let sql = format!(
            "SELECT {COLUMNS} FROM consents WHERE revoked_at IS NULL AND subject_id IN ({}) \
             ORDER BY created_at, id",
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
            out.push(from_row(&r)?);
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// The ids of every consent (revoked or not) `partner` recorded on any of
/// `subjects`.
#[tracing::instrument(name = "db.consents.recorded_by", skip_all)]
pub async fn recorded_on_subjects(
    tx: &mut Tx<'_>,
    partner: &PartnerId,
    subjects: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in subjects.chunks(500) {
        let sql = format!(
            "SELECT id FROM consents WHERE recorded_by = $1 AND subject_id IN ({}) ORDER BY id",
            (2..=chunk.len() + 1)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(partner.as_str());
        for id in chunk {
            statement = statement.bind(id.as_str());
        }
        for r in statement.fetch_all(&mut **tx).await? {
            out.push(r.try_get(0)?);
        }
    }
    Ok(out)
}
