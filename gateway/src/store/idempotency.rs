//! Repository for `idempotency_keys` (migration 0006): keyed hashes of
//! submission keys and bodies, and the first response given for each.

use sqlx::Row as _;

use super::referrals::{is_sqlite, placeholders};
use super::{StoreError, Tx};

/// A recorded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key_hash: Vec<u8>,
    pub body_hash: Vec<u8>,
    /// The first response, as JSON.
    pub response: String,
}

/// A key to record.
#[derive(Debug)]
pub struct NewKey {
    pub key_hash: [u8; 32],
    pub partner: String,
    pub body_hash: [u8; 32],
    pub referral_id: String,
    pub response: String,
    pub created_at: i64,
}

const KEYS_PER_STATEMENT: usize = 500;

/// The recorded keys among `key_hashes`.
#[tracing::instrument(name = "db.idempotency_keys.find", skip_all, fields(count = key_hashes.len()))]
pub async fn find(tx: &mut Tx<'_>, key_hashes: &[[u8; 32]]) -> Result<Vec<StoredKey>, StoreError> {
    let mut found = Vec::new();
    for chunk in key_hashes.chunks(KEYS_PER_STATEMENT) {
        let list: Vec<String> = if is_sqlite(tx) {
            vec!["?".to_owned(); chunk.len()]
        } else {
            (1..=chunk.len()).map(|i| format!("${i}")).collect()
        };
        let sql = format!(
            "SELECT key_hash, body_hash, response FROM idempotency_keys WHERE key_hash IN ({})",
            list.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for hash in chunk {
            query = query.bind(hash.to_vec());
        }
        for row in query.fetch_all(&mut **tx).await? {
            found.push(StoredKey {
                key_hash: row.try_get(0)?,
                body_hash: row.try_get(1)?,
                response: row.try_get(2)?,
            });
        }
    }
    Ok(found)
}

/// Records keys. A key recorded meanwhile by another replica fails the statement
/// (unique violation), and with it the transaction: the caller retries, and then
/// finds the key.
#[tracing::instrument(name = "db.idempotency_keys.insert", skip_all, fields(count = rows.len()))]
pub async fn insert(tx: &mut Tx<'_>, rows: &[NewKey]) -> Result<(), StoreError> {
    for chunk in rows.chunks(KEYS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO idempotency_keys (key_hash, partner, body_hash, referral_id, response, \
             created_at) VALUES {}",
            placeholders(tx, chunk.len(), 6)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.key_hash.to_vec())
                .bind(row.partner.clone())
                .bind(row.body_hash.to_vec())
                .bind(row.referral_id.clone())
                .bind(row.response.clone())
                .bind(row.created_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
