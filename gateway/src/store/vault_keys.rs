//! Repository for `vault_keys` (migration 0002): the identifier vault's data keys,
//! each stored only as age ciphertext. What the rows mean, and why a key row may be
//! written more than once, is explained in `crate::vault`.

use sqlx::Row as _;

use super::{Store, StoreError, Tx};

/// A data key as a re-wrap needs it.
pub(crate) struct WrappedVaultKey {
    pub id: String,
    pub wrapped: Vec<u8>,
    pub recipient: String,
}

impl Store {
    /// Inserts a data key unless a row with its id exists already; returns whether
    /// this call inserted it. Idempotent on purpose: the vault repeats it in every
    /// sealing transaction until it has seen the row committed.
    #[tracing::instrument(name = "db.vault_keys.insert", skip_all)]
    pub(crate) async fn vault_key_insert(
        tx: &mut Tx<'_>,
        id: &str,
        wrapped: &[u8],
        recipient: &str,
        created_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO vault_keys (id, wrapped, recipient, created_at, wrapped_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(wrapped.to_vec())
        .bind(recipient)
        .bind(created_at)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a data key's row is committed, if that can be asked without waiting:
    /// `None` when the pool has no idle connection. A caller that holds a
    /// transaction must never wait for a second connection (the pool could be
    /// exhausted by callers doing the same), so this never queues.
    #[tracing::instrument(name = "db.vault_keys.committed", skip_all)]
    pub(crate) async fn vault_key_committed(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let Some(mut conn) = self.pool().try_acquire() else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT 1 FROM vault_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(Some(row.is_some()))
    }

    /// The age ciphertext of one data key, read outside any transaction (a key row
    /// never changes meaning once committed).
    #[tracing::instrument(name = "db.vault_keys.get", skip_all)]
    pub(crate) async fn vault_key_wrapped(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT wrapped FROM vault_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("wrapped")).transpose()?)
    }

    /// Up to `limit` data keys not yet wrapped to `recipient`, for a re-wrap.
    #[tracing::instrument(name = "db.vault_keys.list_not_wrapped_to", skip_all)]
    pub(crate) async fn vault_keys_not_wrapped_to(
        tx: &mut Tx<'_>,
        recipient: &str,
        limit: i64,
    ) -> Result<Vec<WrappedVaultKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, wrapped, recipient FROM vault_keys WHERE recipient <> $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(recipient)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(WrappedVaultKey {
                    id: r.try_get("id")?,
                    wrapped: r.try_get("wrapped")?,
                    recipient: r.try_get("recipient")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Replaces a data key's age ciphertext with `wrapped` (to `recipient`), unless
    /// someone else re-wrapped it since it was read (`previous_recipient` no longer
    /// matches); returns whether it did.
    #[tracing::instrument(name = "db.vault_keys.rewrap", skip_all)]
    pub(crate) async fn vault_key_rewrap(
        tx: &mut Tx<'_>,
        id: &str,
        previous_recipient: &str,
        wrapped: &[u8],
        recipient: &str,
        wrapped_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vault_keys SET wrapped = $1, recipient = $2, wrapped_at = $3 \
             WHERE id = $4 AND recipient = $5",
        )
        .bind(wrapped.to_vec())
        .bind(recipient)
        .bind(wrapped_at)
        .bind(id)
        .bind(previous_recipient)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
