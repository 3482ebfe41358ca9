//! Partner clusters outside registration (migration 0017): who holds the
//! identity a record was written with, for the read side's pseudonyms, and the
//! move of a referral's identity to the CBO it is reassigned to.
//!
//! Registration writes clusters with the identity ([`super::bulk`]); see
//! `subjects/clusters.rs` for what a cluster is.

use sqlx::Row as _;

use super::{HOLDING_COLUMNS, Holding, holding_at};
use crate::store::{StoreError, Tx};

/// A stored identity as a new holder's clustering needs it.
pub struct HeldIdentity {
    pub holding: Holding,
    pub subject_id: String,
    pub fingerprint: Vec<u8>,
    pub key_version: i64,
}

/// The record a consent (or anything else) was written on.
#[derive(Debug, Clone, Copy)]
pub enum RecordOf<'a> {
    Referral(&'a str),
    Case(&'a str),
}

/// Who holds the identity record `of` was written with, or `None` if there is
/// no such record.
#[tracing::instrument(name = "db.identities.holding", skip_all)]
pub async fn holding_of(tx: &mut Tx<'_>, of: RecordOf<'_>) -> Result<Option<Holding>, StoreError> {
    let (table, id) = match of {
        RecordOf::Referral(id) => ("referrals", id),
        RecordOf::Case(id) => ("cases", id),
    };
    let sql = format!(
        "SELECT {HOLDING_COLUMNS} FROM {table} r JOIN identities i ON i.id = r.identity_id \
         WHERE r.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| holding_at(&r, 0)).transpose()
}

/// One identity with its fingerprint, or `None`.
#[tracing::instrument(name = "db.identities.get_held", skip_all)]
pub async fn held_identity(
    tx: &mut Tx<'_>,
    identity_id: &str,
) -> Result<Option<HeldIdentity>, StoreError> {
    let sql = format!(
        "SELECT {HOLDING_COLUMNS}, i.subject_id, i.fingerprint, i.key_version \
         FROM identities i WHERE i.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(identity_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| {
        Ok(HeldIdentity {
            holding: holding_at(&r, 0)?,
            subject_id: r.try_get(5)?,
            fingerprint: r.try_get(6)?,
            key_version: r.try_get(7)?,
        })
    })
    .transpose()
}

/// Hands an identity to the CBO `cbo`, in its cluster `cluster_id` (the CBO it
/// leaves no longer holds it).
#[tracing::instrument(name = "db.identities.set_cbo", skip_all)]
pub async fn set_cbo(
    tx: &mut Tx<'_>,
    identity_id: &str,
    cbo: &str,
    cluster_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET assigned_cbo = $1, cbo_cluster_id = $2, \
         home_cbo_cluster_id = NULL WHERE id = $3",
    )
    .bind(cbo)
    .bind(cluster_id)
    .bind(identity_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every identity's holding, by id: what "grouped" means, for checking that
/// key rotation and the backfill keep or compute the right clusters.
#[tracing::instrument(name = "db.identities.holdings", skip_all)]
pub async fn holdings(tx: &mut Tx<'_>) -> Result<Vec<Holding>, StoreError> {
    let sql = format!("SELECT {HOLDING_COLUMNS} FROM identities i ORDER BY i.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(|r| holding_at(r, 0)).collect()
}
