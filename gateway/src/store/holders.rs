//! Which records a partner holds: the police partner that submitted a
//! referral, the CBO that recorded an outcome, the health partner that
//! submitted a case status, the recorder of a consent. A consent opens only its
//! recorder's records, and a recorder's accounting of disclosures lists only
//! disclosures of records it holds.

use std::collections::HashSet;

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::domain::PartnerId;

/// The table and holder column of a resource that has a holder.
fn holder_column(resource: &str) -> Option<(&'static str, &'static str)> {
    match resource {
        "referral" => Some(("referrals", "submitted_by")),
        "outcome" => Some(("outcomes", "recorded_by")),
        "case_status" => Some(("cases", "submitted_by")),
        "consent" => Some(("consents", "recorded_by")),
        _ => None,
    }
}

/// Those of `ids` (records of `resource`) that `partner` holds. A resource
/// no partner holds (an audit entry, an export) gives the empty set.
#[tracing::instrument(name = "db.holders.held_by", skip_all, fields(ids = ids.len()))]
pub async fn held_by(
    tx: &mut Tx<'_>,
    resource: &str,
    ids: &[&str],
    partner: &PartnerId,
) -> Result<HashSet<String>, StoreError> {
    let mut held = HashSet::new();
    let Some((table, column)) = holder_column(resource) else {
        return Ok(held);
    };
    for chunk in ids.chunks(500) {
        let placeholders = (2..=chunk.len() + 1)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id FROM {table} WHERE {column} = $1 AND id IN ({placeholders})");
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(partner.as_str());
        for id in chunk {
            statement = statement.bind(*id);
        }
        for row in statement.fetch_all(&mut **tx).await? {
            held.insert(row.try_get(0)?);
        }
    }
    Ok(held)
}
