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
pub async fn lock_referral(tx: &mut Tx<'_>, id: &str) -> Result<Option<ReferralHead>, StoreError> {
    let row = sqlx::query(
        "UPDATE referrals SET updated_at = updated_at WHERE id = $1 \
         RETURNING id, submitted_by, subject_id, assigned_cbo, status, created_at, district, \
         resources",
    )
    .bind(id)
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
