//! Exports: their records, the subjects each discloses, and the streams an
//! export reads (migration 0011; the rows come from 0003 and 0006).
//!
//! The streams are read inside one read snapshot (REPEATABLE READ on
//! PostgreSQL; a read transaction on SQLite is one already), so that the two
//! passes over the referrals see the same rows in the same order.

use futures_util::stream::BoxStream;
use sqlx::Row as _;

use super::{StoreError, Tx};

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
pub async fn get(tx: &mut Tx<'_>, id: &str) -> Result<Option<ExportRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, study_id, requested_by, purpose, request, state, requested_at, finished_at, \
         file_name, manifest_jws FROM exports WHERE id = $1",
    )
    .bind(id)
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

/// Makes `tx` (a read transaction) one snapshot on PostgreSQL.
pub async fn snapshot(tx: &mut Tx<'_>, postgres: bool) -> Result<(), StoreError> {
    if postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The export's referrals: contact in `[from, to)`, written by `cutoff`
/// (unix microseconds).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub cutoff: i64,
}

const REFERRALS_IN_WINDOW: &str = "r.contact_at >= $1 AND r.contact_at < $2 AND r.created_at <= $3";

#[tracing::instrument(name = "db.referrals.count_window", skip_all)]
pub async fn count_referrals(tx: &mut Tx<'_>, window: Window) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM referrals r WHERE {REFERRALS_IN_WINDOW}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(window.from)
        .bind(window.to)
        .bind(window.cutoff)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get(0)?)
}

/// First pass: a referral's sealed identity, for its quasi-identifiers.
#[derive(Debug)]
pub struct ReferralIdentity {
    pub referral_id: String,
    pub identity_id: String,
    pub sealed: Vec<u8>,
    pub contact_at: i64,
    pub district: String,
}

pub fn referral_identities<'t>(
    tx: &'t mut Tx<'_>,
    window: Window,
) -> BoxStream<'t, Result<ReferralIdentity, sqlx::Error>> {
    let sql = format!(
        "SELECT r.id, r.identity_id, i.sealed, r.contact_at, r.district FROM referrals r \
         JOIN identities i ON i.id = r.identity_id WHERE {REFERRALS_IN_WINDOW} ORDER BY r.id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(window.from)
        .bind(window.to)
        .bind(window.cutoff)
        .try_map(|r: sqlx::any::AnyRow| {
            Ok(ReferralIdentity {
                referral_id: r.try_get(0)?,
                identity_id: r.try_get(1)?,
                sealed: r.try_get(2)?,
                contact_at: r.try_get(3)?,
                district: r.try_get(4)?,
            })
        })
        .fetch(&mut **tx)
}

/// Second pass: a referral's exportable columns.
#[derive(Debug)]
pub struct ExportReferral {
    pub id: String,
    /// The current subject (merges followed).
    pub subject_id: String,
    pub submitted_by: String,
    pub assigned_cbo: String,
    pub status: String,
    pub workflow_state: String,
    pub contact_at: i64,
    pub resources: String,
    pub follow_up_by: Option<String>,
}

pub fn referrals<'t>(
    tx: &'t mut Tx<'_>,
    window: Window,
) -> BoxStream<'t, Result<ExportReferral, sqlx::Error>> {
    let sql = format!(
        "SELECT r.id, COALESCE(s.merged_into, r.subject_id), r.submitted_by, r.assigned_cbo, \
         r.status, r.workflow_state, r.contact_at, r.resources, r.follow_up_by \
         FROM referrals r JOIN subjects s ON s.id = r.subject_id \
         WHERE {REFERRALS_IN_WINDOW} ORDER BY r.id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(window.from)
        .bind(window.to)
        .bind(window.cutoff)
        .try_map(|r: sqlx::any::AnyRow| {
            Ok(ExportReferral {
                id: r.try_get(0)?,
                subject_id: r.try_get(1)?,
                submitted_by: r.try_get(2)?,
                assigned_cbo: r.try_get(3)?,
                status: r.try_get(4)?,
                workflow_state: r.try_get(5)?,
                contact_at: r.try_get(6)?,
                resources: r.try_get(7)?,
                follow_up_by: r.try_get(8)?,
            })
        })
        .fetch(&mut **tx)
}

/// An outcome of one of the export's referrals.
#[derive(Debug)]
pub struct ExportOutcome {
    pub id: String,
    pub referral_id: String,
    pub subject_id: String,
    pub recorded_by: String,
    pub kind: String,
    pub resource: Option<String>,
    pub occurred_at: i64,
    pub contact_at: i64,
}

pub fn outcomes<'t>(
    tx: &'t mut Tx<'_>,
    window: Window,
) -> BoxStream<'t, Result<ExportOutcome, sqlx::Error>> {
    let sql = format!(
        "SELECT o.id, o.referral_id, COALESCE(s.merged_into, r.subject_id), o.recorded_by, \
         o.kind, o.resource, o.occurred_at, r.contact_at \
         FROM outcomes o JOIN referrals r ON r.id = o.referral_id \
         JOIN subjects s ON s.id = r.subject_id \
         WHERE {REFERRALS_IN_WINDOW} AND o.created_at <= $3 \
         ORDER BY o.referral_id, o.occurred_at, o.id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(window.from)
        .bind(window.to)
        .bind(window.cutoff)
        .try_map(|r: sqlx::any::AnyRow| {
            Ok(ExportOutcome {
                id: r.try_get(0)?,
                referral_id: r.try_get(1)?,
                subject_id: r.try_get(2)?,
                recorded_by: r.try_get(3)?,
                kind: r.try_get(4)?,
                resource: r.try_get(5)?,
                occurred_at: r.try_get(6)?,
                contact_at: r.try_get(7)?,
            })
        })
        .fetch(&mut **tx)
}

/// A health case status (the export keeps those of its people).
#[derive(Debug)]
pub struct ExportCase {
    pub id: String,
    pub subject_id: String,
    pub submitted_by: String,
    pub case_key: Vec<u8>,
    pub program: String,
    pub status: String,
    pub part2: bool,
    pub effective_at: i64,
}

pub fn cases<'t>(
    tx: &'t mut Tx<'_>,
    cutoff: i64,
) -> BoxStream<'t, Result<ExportCase, sqlx::Error>> {
    sqlx::query(
        "SELECT c.id, COALESCE(s.merged_into, c.subject_id), c.submitted_by, c.case_key, \
         c.program, c.status, c.part2, c.effective_at \
         FROM cases c JOIN subjects s ON s.id = c.subject_id \
         WHERE c.created_at <= $1 ORDER BY c.effective_at, c.id",
    )
    .bind(cutoff)
    .try_map(|r: sqlx::any::AnyRow| {
        Ok(ExportCase {
            id: r.try_get(0)?,
            subject_id: r.try_get(1)?,
            submitted_by: r.try_get(2)?,
            case_key: r.try_get(3)?,
            program: r.try_get(4)?,
            status: r.try_get(5)?,
            part2: r.try_get::<i64, _>(6)? != 0,
            effective_at: r.try_get(7)?,
        })
    })
    .fetch(&mut **tx)
}
