//! Repository for delivering checkpoints to outside witnesses:
//! `audit_witness_cursors` (migration 0018) and the checkpoints after a
//! cursor. The delivery rules live in [`crate::audit::witness`].

use sqlx::Row as _;

use super::audit::StoredCheckpoint;
use super::{Store, StoreError};

/// A checkpoint with its row id, the order witnesses receive them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCheckpoint {
    pub id: i64,
    pub checkpoint: StoredCheckpoint,
}

/// The witness's cursor, creating it if it has none: just before the latest
/// checkpoint, so that a witness added to a running deployment starts with
/// the current head rather than the whole history. Returns the cursor as
/// stored (another replica may have created it first).
#[tracing::instrument(name = "db.audit_witness_cursors.start", skip(store))]
pub async fn start_cursor(store: &Store, witness: &str, at: i64) -> Result<i64, StoreError> {
    let mut tx = store.begin().await?;
    // `WHERE 1 = 1`: SQLite needs it to read `ON CONFLICT` after a SELECT.
    sqlx::query(
        "INSERT INTO audit_witness_cursors (witness, delivered_id, at) \
         SELECT $1, COALESCE((SELECT id FROM audit_checkpoints ORDER BY id DESC LIMIT 1 OFFSET 1), 0), $2 \
         WHERE 1 = 1 ON CONFLICT (witness) DO NOTHING",
    )
    .bind(witness)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    let cursor = cursor_in(&mut tx, witness).await?.unwrap_or(0);
    tx.commit().await?;
    Ok(cursor)
}

/// The witness's cursor: the id of the last checkpoint it accepted.
#[tracing::instrument(name = "db.audit_witness_cursors.get", skip(store))]
pub async fn cursor(store: &Store, witness: &str) -> Result<Option<i64>, StoreError> {
    let mut tx = store.begin_read().await?;
    let cursor = cursor_in(&mut tx, witness).await?;
    tx.rollback().await?;
    Ok(cursor)
}

async fn cursor_in(tx: &mut super::Tx<'_>, witness: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT delivered_id FROM audit_witness_cursors WHERE witness = $1")
        .bind(witness)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|row| row.try_get("delivered_id")).transpose()?)
}

/// Moves the witness's cursor to `id`, never back (replicas deliver too).
#[tracing::instrument(name = "db.audit_witness_cursors.advance", skip(store))]
pub async fn advance_cursor(
    store: &Store,
    witness: &str,
    id: i64,
    at: i64,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "UPDATE audit_witness_cursors SET delivered_id = $1, at = $2 \
         WHERE witness = $3 AND delivered_id < $1",
    )
    .bind(id)
    .bind(at)
    .bind(witness)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Up to `limit` checkpoints after `after` in id order, and how many there
/// are in all.
#[tracing::instrument(name = "db.audit_checkpoints.after", skip(store))]
pub async fn checkpoints_after(
    store: &Store,
    after: i64,
    limit: i64,
) -> Result<(Vec<QueuedCheckpoint>, i64), StoreError> {
    let mut tx = store.begin_read().await?;
    let rows = sqlx::query(
        "SELECT id, seq, hash, at, jws FROM audit_checkpoints WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_checkpoints WHERE id > $1")
        .bind(after)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    tx.rollback().await?;
    let queued = rows
        .iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get("hash")?;
            Ok(QueuedCheckpoint {
                id: row.try_get("id")?,
                checkpoint: StoredCheckpoint {
                    seq: row.try_get("seq")?,
                    hash: <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                        StoreError::Corrupt {
                            what: "an audit checkpoint's hash is not 32 bytes",
                        }
                    })?,
                    at: row.try_get("at")?,
                    jws: row.try_get("jws")?,
                },
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((queued, total))
}
