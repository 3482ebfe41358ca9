//! The linkage review queue, the pairs kept apart, and what an unmerge reads
//! and rewrites (migration 0020; `subjects/review.rs` explains the rules).
//!
//! Pairs are stored with the smaller identity id first ([`ordered`]), so a
//! pair has one row whichever side arrived last.

use sqlx::Row as _;

use super::bulk::{MAX_PARAMS, Sql, pieces};
use super::{HOLDING_COLUMNS, Holding, holding_at};
use crate::store::{StoreError, Tx};

/// `(a, b)` with the smaller id first, as the tables keep pairs.
pub fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// A pair to queue. Ids are internal; nothing here identifies a person.
#[derive(Clone)]
pub struct NewReview {
    pub id: String,
    pub identity_a: String,
    pub identity_b: String,
    pub score: f64,
    pub created_at: i64,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for NewReview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewReview")
            .field("score", &self.score)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Queues pairs for review; a pair already queued (open or decided) is left
/// as it is.
#[tracing::instrument(name = "db.link_reviews.insert", skip_all, fields(count = rows.len()))]
pub async fn insert_reviews(tx: &mut Tx<'_>, rows: &[NewReview]) -> Result<(), StoreError> {
    for chunk in pieces(rows, MAX_PARAMS / 5) {
        let mut sql = Sql::new(
            tx,
            "INSERT INTO link_reviews (id, identity_a, identity_b, score, created_at) VALUES ",
        );
        sql.rows(chunk.len(), 5);
        sql.push(" ON CONFLICT (identity_a, identity_b) DO NOTHING");
        let mut query = sqlx::query(sql.into_text());
        for row in chunk {
            let (a, b) = ordered(&row.identity_a, &row.identity_b);
            query = query
                .bind(row.id.as_str())
                .bind(a)
                .bind(b)
                .bind(row.score)
                .bind(row.created_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The pairs of `subjects` that must stay apart: for each pair kept apart
/// whose two identities sit on two of these subjects, those two subjects.
#[tracing::instrument(name = "db.link_apart.subjects", skip_all, fields(count = subjects.len()))]
pub async fn apart_subjects(
    tx: &mut Tx<'_>,
    subjects: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    if subjects.len() < 2 {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    // Both ends in the list: bind it twice (a placeholder is never reused).
    for chunk in pieces(subjects, MAX_PARAMS / 2) {
        let mut sql = Sql::new(
            tx,
            "SELECT xa.subject_id, xb.subject_id FROM link_apart la \
             JOIN identities xa ON xa.id = la.identity_a \
             JOIN identities xb ON xb.id = la.identity_b WHERE xa.subject_id IN (",
        );
        sql.list(chunk.len());
        sql.push(") AND xb.subject_id IN (");
        sql.list(chunk.len());
        sql.push(")");
        let mut query = sqlx::query(sql.into_text());
        for subject in chunk.iter().chain(chunk) {
            query = query.bind(*subject);
        }
        for row in query.fetch_all(&mut **tx).await? {
            found.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(found)
}

/// A queued pair, with the subjects its identities sit on now.
#[derive(Clone, PartialEq)]
pub struct ReviewRow {
    pub id: String,
    pub identity_a: String,
    pub identity_b: String,
    pub score: f64,
    pub created_at: i64,
    pub decision: Option<String>,
    pub subject_a: String,
    pub subject_b: String,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for ReviewRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewRow")
            .field("score", &self.score)
            .field("created_at", &self.created_at)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

const REVIEW_COLUMNS: &str = "r.id, r.identity_a, r.identity_b, r.score, r.created_at, \
     r.decision, xa.subject_id, xb.subject_id FROM link_reviews r \
     JOIN identities xa ON xa.id = r.identity_a JOIN identities xb ON xb.id = r.identity_b";

fn review_at(row: &sqlx::any::AnyRow) -> Result<ReviewRow, StoreError> {
    Ok(ReviewRow {
        id: row.try_get(0)?,
        identity_a: row.try_get(1)?,
        identity_b: row.try_get(2)?,
        score: row.try_get(3)?,
        created_at: row.try_get(4)?,
        decision: row.try_get(5)?,
        subject_a: row.try_get(6)?,
        subject_b: row.try_get(7)?,
    })
}

/// Open reviews, oldest first, after `after` (a review id, the cursor) if given.
#[tracing::instrument(name = "db.link_reviews.open", skip_all)]
pub async fn open_reviews(
    tx: &mut Tx<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ReviewRow>, StoreError> {
    // Ids are UUID v7: their order is the order of creation.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REVIEW_COLUMNS} WHERE r.decision IS NULL AND r.id > $1 ORDER BY r.id LIMIT $2"
    )))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(review_at).collect()
}

/// One review, open or decided.
pub async fn review(tx: &mut Tx<'_>, id: &str) -> Result<Option<ReviewRow>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REVIEW_COLUMNS} WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(review_at).transpose()
}

/// Records the decision on an open review. `false` when it was already
/// decided (by someone else, a moment ago): the caller answers 409. The
/// update takes the row's write lock, so two deciders cannot both win.
pub async fn decide(
    tx: &mut Tx<'_>,
    id: &str,
    decision: &str,
    decided_by: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE link_reviews SET decision = $1, decided_by = $2, decided_at = $3 \
         WHERE id = $4 AND decision IS NULL",
    )
    .bind(decision)
    .bind(decided_by)
    .bind(at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Keeps two identities apart for good (`cause`: `review` or `unmerge`).
pub async fn insert_apart(
    tx: &mut Tx<'_>,
    a: &str,
    b: &str,
    cause: &str,
    at: i64,
) -> Result<(), StoreError> {
    let (a, b) = ordered(a, b);
    sqlx::query(
        "INSERT INTO link_apart (identity_a, identity_b, cause, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (identity_a, identity_b) DO NOTHING",
    )
    .bind(a)
    .bind(b)
    .bind(cause)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An identity of a subject being re-derived, with what the replay needs.
pub struct Member {
    pub holding: Holding,
    /// The clusters it was in before a merge of clusters moved it (its
    /// submitter's, its CBO's); `None` where it never moved.
    pub home_clusters: (Option<String>, Option<String>),
    pub created_at: i64,
    pub linkable: bool,
    pub fingerprint: Vec<u8>,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("holding", &self.holding)
            .field("created_at", &self.created_at)
            .field("linkable", &self.linkable)
            .finish_non_exhaustive()
    }
}

/// The identities on `subject`, oldest first (the order they were resolved in).
#[tracing::instrument(name = "db.identities.members", skip_all)]
pub async fn members(tx: &mut Tx<'_>, subject: &str) -> Result<Vec<Member>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {HOLDING_COLUMNS}, i.created_at, i.linkable, i.fingerprint, \
         i.home_cluster_id, i.home_cbo_cluster_id FROM identities i \
         WHERE i.subject_id = $1 ORDER BY i.created_at, i.id"
    )))
    .bind(subject)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Member {
                holding: holding_at(row, 0)?,
                created_at: row.try_get(5)?,
                linkable: row.try_get::<i64, _>(6)? != 0,
                fingerprint: row.try_get(7)?,
                home_clusters: (row.try_get(8)?, row.try_get(9)?),
            })
        })
        .collect()
}

/// `subject` and the subjects merged into it, with their creation times:
/// the subjects the records of its identities were written under.
pub async fn home_subjects(
    tx: &mut Tx<'_>,
    subject: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, created_at FROM subjects WHERE id = $1 OR merged_into = $2 \
         ORDER BY created_at, id",
    )
    .bind(subject)
    .bind(subject)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// A record (referral or case status) and the subject it was written under.
#[derive(Clone)]
pub struct RecordHome {
    /// `referrals` or `cases`.
    pub table: &'static str,
    pub id: String,
    pub identity_id: String,
    pub subject_id: String,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for RecordHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordHome")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The referrals and case statuses written under any of `homes`.
pub async fn records_under(tx: &mut Tx<'_>, homes: &[&str]) -> Result<Vec<RecordHome>, StoreError> {
    let mut found = Vec::new();
    for table in ["referrals", "cases"] {
        for chunk in pieces(homes, MAX_PARAMS) {
            let mut sql = Sql::new(tx, "");
            sql.push(&format!(
                "SELECT id, identity_id, subject_id FROM {table} WHERE subject_id IN ("
            ));
            sql.list(chunk.len());
            sql.push(")");
            let mut query = sqlx::query(sql.into_text());
            for home in chunk {
                query = query.bind(*home);
            }
            for row in query.fetch_all(&mut **tx).await? {
                found.push(RecordHome {
                    table,
                    id: row.try_get(0)?,
                    identity_id: row.try_get(1)?,
                    subject_id: row.try_get(2)?,
                });
            }
        }
    }
    Ok(found)
}

/// Identity pairs of one kind (`link_apart`, or accepted `link_reviews`)
/// whose both identities are on `subject`.
pub async fn pairs_within(
    tx: &mut Tx<'_>,
    subject: &str,
    accepted: bool,
) -> Result<Vec<(String, String)>, StoreError> {
    let from = if accepted {
        "link_reviews p JOIN identities xa ON xa.id = p.identity_a \
         JOIN identities xb ON xb.id = p.identity_b WHERE p.decision = 'accepted' AND"
    } else {
        "link_apart p JOIN identities xa ON xa.id = p.identity_a \
         JOIN identities xb ON xb.id = p.identity_b WHERE"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT p.identity_a, p.identity_b FROM {from} xa.subject_id = $1 AND xb.subject_id = $2"
    )))
    .bind(subject)
    .bind(subject)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The identity of a referral or case status and the subject it is on now.
pub async fn record_identity(
    tx: &mut Tx<'_>,
    table: &'static str,
    id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let table = if table == "cases" {
        "cases"
    } else {
        "referrals"
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT i.id, i.subject_id FROM {table} r JOIN identities i ON i.id = r.identity_id \
         WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Puts an identity on `subject`, in `clusters` (its submitter's, its CBO's).
pub async fn place_identity(
    tx: &mut Tx<'_>,
    identity: &str,
    subject: &str,
    (cluster, cbo_cluster): (Option<&str>, Option<&str>),
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET subject_id = $1, cluster_id = $2, cbo_cluster_id = $3 \
         WHERE id = $4",
    )
    .bind(subject)
    .bind(cluster)
    .bind(cbo_cluster)
    .bind(identity)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Where records written under `subject` resolve: `None` to itself.
pub async fn set_merged_into(
    tx: &mut Tx<'_>,
    subject: &str,
    into: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE subjects SET merged_into = $1 WHERE id = $2")
        .bind(into)
        .bind(subject)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves one record, and the consents recorded on it, to `subject`.
pub async fn move_record(
    tx: &mut Tx<'_>,
    record: &RecordHome,
    subject: &str,
) -> Result<(), StoreError> {
    let (table, consent_column) = if record.table == "cases" {
        ("cases", "case_id")
    } else {
        ("referrals", "referral_id")
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET subject_id = $1 WHERE id = $2"
    )))
    .bind(subject)
    .bind(record.id.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE consents SET subject_id = $1 WHERE {consent_column} = $2"
    )))
    .bind(subject)
    .bind(record.id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The sealed bytes of an identity (for the vault to open in memory).
pub async fn sealed_of(tx: &mut Tx<'_>, identity: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let row = sqlx::query("SELECT sealed FROM identities WHERE id = $1")
        .bind(identity)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
