//! Repository for referrals: `referrals`, `referral_resources` and
//! `referral_assignments` (migration 0006).
//!
//! Writes are multi-row: the intake writes a whole chunk of referrals with a few
//! statements (on SQLite every statement costs a round trip to sqlx's worker
//! thread, whatever its size). Everything takes the caller's transaction, so that
//! referrals, their assignments, the identities they link and the audit entries
//! commit together.
//!
//! # Placeholders
//! Multi-row statements use `?` on SQLite and `$N` on PostgreSQL
//! ([`placeholders`]). SQLite looks a *named* parameter (`$N`, `?N`) up by a
//! linear search each time it is bound, so a statement of 7,500 `$N` parameters
//! costs ~30 million comparisons to bind — measured at 100-300 ms for 500
//! referrals, against a few ms with anonymous `?` parameters, which sqlx binds by
//! position.

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::domain::ids::{ReferralId, SubjectRef};

/// A referral row as written. `sealed` is the vault's output; nothing here is an
/// identifier.
#[derive(Debug)]
pub struct NewReferral {
    pub id: String,
    pub submitted_by: String,
    pub subject_id: String,
    pub identity_id: String,
    pub assigned_cbo: String,
    pub status: &'static str,
    pub workflow_state: &'static str,
    /// Unix microseconds, like every time in these tables.
    pub contact_at: i64,
    pub district: String,
    pub arrested: Option<bool>,
    /// The category codes in request order.
    pub resources: Vec<&'static str>,
    pub follow_up_by: Option<&'static str>,
    pub created_at: i64,
    pub sealed: Option<Vec<u8>>,
}

/// One row of the assignment history.
#[derive(Debug)]
pub struct NewAssignment {
    pub id: String,
    pub referral_id: String,
    pub from_cbo: Option<String>,
    pub to_cbo: String,
    /// `submitted`, `declined` or `admin`.
    pub cause: &'static str,
    /// `explicit`, `rule` or `default`.
    pub route: &'static str,
    pub rule_index: Option<i64>,
    pub reason: Option<&'static str>,
    pub assigned_by: String,
    pub at: i64,
}

/// What a write to an existing referral needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralHead {
    pub id: String,
    pub submitted_by: String,
    pub subject_id: String,
    /// The identity the referral was written with (its person, as sent).
    pub identity_id: String,
    pub assigned_cbo: String,
    pub status: String,
    pub created_at: i64,
    pub district: String,
    /// JSON array of category codes.
    pub resources: String,
}

/// Rows per multi-row statement: 500 referrals × 15 parameters stays well under
/// SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2, ...), ($n+1, ...)` (PostgreSQL) or `(?, ?, ...), (?, ...)` (SQLite)
/// for `rows` rows of `columns` placeholders; see the module docs for why.
pub(super) fn placeholders(tx: &Tx<'_>, rows: usize, columns: usize) -> String {
    list_of_rows(is_sqlite(tx), rows, columns)
}

/// Whether `tx` runs on SQLite.
pub(super) fn is_sqlite(tx: &Tx<'_>) -> bool {
    tx.backend_name() == "SQLite"
}

fn list_of_rows(anonymous: bool, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            if anonymous {
                out.push('?');
            } else {
                out.push('$');
                out.push_str(&(row * columns + column + 1).to_string());
            }
        }
        out.push(')');
    }
    out
}

/// Inserts referrals with their resource rows.
#[tracing::instrument(name = "db.referrals.insert", skip_all, fields(count = rows.len()))]
pub async fn insert_referrals(tx: &mut Tx<'_>, rows: &[NewReferral]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
             status, workflow_state, contact_at, district, arrested, resources, follow_up_by, \
             created_at, updated_at, sealed) VALUES {}",
            placeholders(tx, chunk.len(), 15)
        );
        // Only placeholders are spliced into the text; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            let resources =
                serde_json::to_string(&row.resources).unwrap_or_else(|_| "[]".to_owned());
            query = query
                .bind(row.id.clone())
                .bind(row.submitted_by.clone())
                .bind(row.subject_id.clone())
                .bind(row.identity_id.clone())
                .bind(row.assigned_cbo.clone())
                .bind(row.status)
                .bind(row.workflow_state)
                .bind(row.contact_at)
                .bind(row.district.clone())
                .bind(row.arrested.map(i64::from))
                .bind(resources)
                .bind(row.follow_up_by)
                .bind(row.created_at)
                .bind(row.created_at)
                .bind(row.sealed.clone());
        }
        query.execute(&mut **tx).await?;
    }
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|r| r.resources.iter().map(|res| (r.id.as_str(), *res)))
        .collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT * 2) {
        let sql = format!(
            "INSERT INTO referral_resources (referral_id, resource) VALUES {}",
            placeholders(tx, chunk.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, resource) in chunk {
            query = query.bind(*id).bind(*resource);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends rows to the assignment history.
#[tracing::instrument(name = "db.referral_assignments.insert", skip_all, fields(count = rows.len()))]
pub async fn insert_assignments(tx: &mut Tx<'_>, rows: &[NewAssignment]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO referral_assignments (id, referral_id, from_cbo, to_cbo, cause, route, \
             rule_index, reason, assigned_by, at) VALUES {}",
            placeholders(tx, chunk.len(), 10)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.id.clone())
                .bind(row.referral_id.clone())
                .bind(row.from_cbo.clone())
                .bind(row.to_cbo.clone())
                .bind(row.cause)
                .bind(row.route)
                .bind(row.rule_index)
                .bind(row.reason)
                .bind(row.assigned_by.clone())
                .bind(row.at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Reads a referral for a write to it, locking its row until the transaction
/// ends: the statement is a no-op `UPDATE ... RETURNING`, which takes the row lock
/// on PostgreSQL (where `SELECT ... FOR UPDATE` would do, but SQLite does not
/// parse it); on SQLite the write transaction already holds the database lock.
#[tracing::instrument(name = "db.referrals.lock", skip_all)]
pub async fn lock_referral(
    tx: &mut Tx<'_>,
    id: &ReferralId,
) -> Result<Option<ReferralHead>, StoreError> {
    let row = sqlx::query(
        "UPDATE referrals SET updated_at = updated_at WHERE id = $1 \
         RETURNING id, submitted_by, subject_id, assigned_cbo, status, created_at, district, \
         resources, identity_id",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(ReferralHead {
            id: r.try_get(0)?,
            submitted_by: r.try_get(1)?,
            subject_id: r.try_get(2)?,
            assigned_cbo: r.try_get(3)?,
            status: r.try_get(4)?,
            created_at: r.try_get(5)?,
            district: r.try_get(6)?,
            resources: r.try_get(7)?,
            identity_id: r.try_get(8)?,
        })
    })
    .transpose()
}

/// Sets a referral's status (and with it its workflow state).
#[tracing::instrument(name = "db.referrals.set_status", skip_all)]
pub async fn set_status(
    tx: &mut Tx<'_>,
    id: &str,
    status: &str,
    workflow_state: &str,
    updated_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE referrals SET status = $1, workflow_state = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(workflow_state)
    .bind(updated_at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves a referral to another CBO (the history row is written separately).
#[tracing::instrument(name = "db.referrals.set_assigned_cbo", skip_all)]
pub async fn set_assigned_cbo(
    tx: &mut Tx<'_>,
    id: &str,
    cbo: &str,
    updated_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE referrals SET assigned_cbo = $1, updated_at = $2 WHERE id = $3")
        .bind(cbo)
        .bind(updated_at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A referral as the read side needs it: its columns, its sealed fields and the
/// sealed identity of its person (both vault output, opened only when a release
/// decision discloses them).
pub struct ReferralRow {
    pub id: String,
    pub submitted_by: String,
    /// The internal subject as written (never leaves the gateway).
    pub subject_id: String,
    pub assigned_cbo: String,
    pub status: String,
    pub workflow_state: String,
    /// Unix microseconds.
    pub contact_at: i64,
    pub district: String,
    pub arrested: Option<bool>,
    /// JSON array of category codes.
    pub resources: String,
    pub follow_up_by: Option<String>,
    /// Unix microseconds.
    pub created_at: i64,
    /// `referrals.sealed` (CAD number, officer id, circumstances), if any.
    pub sealed: Option<Vec<u8>>,
    pub identity_id: String,
    /// `identities.sealed`: the person's identifiers as the police sent them.
    pub identity_sealed: Vec<u8>,
    /// Who holds that identity in which cluster: what each partner's
    /// pseudonym of the person is computed from.
    pub holding: super::subjects::Holding,
}

impl std::fmt::Debug for ReferralRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferralRow")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Whose referrals a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralOwner<'a> {
    /// A police partner's own submissions.
    SubmittedBy(&'a str),
    /// A CBO's assigned queue.
    AssignedTo(&'a str),
    /// Every referral (a requester the policy lets see them all, e.g. an admin).
    Everyone,
}

/// One page of a referral list, newest first.
#[derive(Debug, Clone)]
pub struct ReferralListQuery<'a> {
    pub owner: ReferralOwner<'a>,
    pub status: Option<&'a str>,
    /// Only referrals strictly older than this `(created_at, id)`: the last one
    /// of the previous page.
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
}

const REFERRAL_COLUMNS: &str = "r.id, r.submitted_by, r.subject_id, r.assigned_cbo, r.status, \
     r.workflow_state, r.contact_at, r.district, r.arrested, r.resources, r.follow_up_by, \
     r.created_at, r.sealed, r.identity_id, i.sealed, \
     i.id, i.source_partner, i.cluster_id, i.assigned_cbo, i.cbo_cluster_id";

fn referral_row(r: &sqlx::any::AnyRow) -> Result<ReferralRow, StoreError> {
    let arrested: Option<i64> = r.try_get(8)?;
    Ok(ReferralRow {
        id: r.try_get(0)?,
        submitted_by: r.try_get(1)?,
        subject_id: r.try_get(2)?,
        assigned_cbo: r.try_get(3)?,
        status: r.try_get(4)?,
        workflow_state: r.try_get(5)?,
        contact_at: r.try_get(6)?,
        district: r.try_get(7)?,
        arrested: arrested.map(|a| a != 0),
        resources: r.try_get(9)?,
        follow_up_by: r.try_get(10)?,
        created_at: r.try_get(11)?,
        sealed: r.try_get(12)?,
        identity_id: r.try_get(13)?,
        identity_sealed: r.try_get(14)?,
        holding: super::subjects::holding_at(r, 15)?,
    })
}

/// One referral with its person's sealed identity, or `None`.
#[tracing::instrument(name = "db.referrals.get", skip_all)]
pub async fn get_referral(
    tx: &mut Tx<'_>,
    id: &ReferralId,
) -> Result<Option<ReferralRow>, StoreError> {
    let sql = format!(
        "SELECT {REFERRAL_COLUMNS} FROM referrals r JOIN identities i ON i.id = r.identity_id \
         WHERE r.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(referral_row).transpose()
}

/// A page of referrals, newest first (`created_at`, then `id`, descending).
#[tracing::instrument(name = "db.referrals.list", skip_all)]
pub async fn list_referrals(
    tx: &mut Tx<'_>,
    query: &ReferralListQuery<'_>,
) -> Result<Vec<ReferralRow>, StoreError> {
    // Only placeholders and fixed column names are spliced in; values are bound.
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let next = |value: String, binds: &mut Vec<String>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    match query.owner {
        ReferralOwner::SubmittedBy(partner) => {
            let p = next(partner.to_owned(), &mut binds);
            conditions.push(format!("r.submitted_by = {p}"));
        }
        ReferralOwner::AssignedTo(partner) => {
            let p = next(partner.to_owned(), &mut binds);
            conditions.push(format!("r.assigned_cbo = {p}"));
        }
        ReferralOwner::Everyone => {}
    }
    if let Some(status) = query.status {
        let p = next(status.to_owned(), &mut binds);
        conditions.push(format!("r.status = {p}"));
    }
    let before = query.before.map(|(at, id)| (at, id.to_owned()));
    let mut sql = format!(
        "SELECT {REFERRAL_COLUMNS} FROM referrals r JOIN identities i ON i.id = r.identity_id"
    );
    let at_index = binds.len() + 1;
    if before.is_some() {
        conditions.push(format!(
            "(r.created_at < ${at_index} OR (r.created_at = ${at_index} AND r.id < ${}))",
            at_index + 1
        ));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    let limit_index = at_index + if before.is_some() { 2 } else { 0 };
    sql.push_str(" ORDER BY r.created_at DESC, r.id DESC LIMIT $");
    sql.push_str(&limit_index.to_string());
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        statement = statement.bind(value);
    }
    if let Some((at, id)) = before {
        statement = statement.bind(at).bind(id);
    }
    let rows = statement.bind(query.limit).fetch_all(&mut **tx).await?;
    rows.iter().map(referral_row).collect()
}

/// Every internal subject that is the same person as `subject_id`: the subject
/// it was merged into (if any) and every subject merged into that one,
/// following `subjects.merged_into` transitively. Empty for an unknown subject.
#[tracing::instrument(name = "db.subjects.family", skip_all)]
pub async fn same_person_subjects(
    tx: &mut Tx<'_>,
    subject_id: &SubjectRef,
) -> Result<Vec<String>, StoreError> {
    let subject_id = subject_id.as_str();
    // The survivor: follow merged_into to its end (bounded, in case a cycle
    // ever crept in).
    let mut root = subject_id.to_owned();
    for _ in 0..64 {
        let row = sqlx::query("SELECT merged_into FROM subjects WHERE id = $1")
            .bind(root.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            None if root == subject_id => return Ok(Vec::new()),
            Some(row) => match row.try_get::<Option<String>, _>(0)? {
                Some(next) if next != root => root = next,
                _ => break,
            },
            None => break,
        }
    }
    // Everything merged into it, level by level (merges normally point at the
    // survivor directly, so this is one round).
    let mut family = vec![root.clone()];
    let mut frontier = vec![root];
    while !frontier.is_empty() && family.len() < 10_000 {
        let sql = format!(
            "SELECT id FROM subjects WHERE merged_into IN ({})",
            (1..=frontier.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &frontier {
            statement = statement.bind(id.as_str());
        }
        let rows = statement.fetch_all(&mut **tx).await?;
        frontier = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            if !family.contains(&id) {
                family.push(id.clone());
                frontier.push(id);
            }
        }
    }
    Ok(family)
}

#[cfg(test)]
mod tests {
    use super::list_of_rows;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(list_of_rows(false, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(list_of_rows(true, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(list_of_rows(false, 1, 1), "($1)");
    }
}
