//! Repository for the audit log: `audit_log` and `audit_head` (migration 0004).
//! The chain rules live in [`crate::audit`]; this module only moves rows.

use sqlx::Row as _;

use super::{StoreError, Tx};
use crate::audit::Event;

/// An audit entry as stored (and hashed): every column but the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    /// Unix microseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub resource: Option<String>,
    pub record_id: Option<String>,
    pub subject_ref: Option<String>,
    /// JSON `[[field, how], ...]`.
    pub fields: String,
    pub policy_version: Option<String>,
    pub reason: Option<String>,
    pub consent_id: Option<String>,
    /// JSON object of codes and counts.
    pub detail: Option<String>,
}

impl std::fmt::Debug for StoredEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEntry")
            .field("seq", &self.seq)
            .field("actor", &self.actor)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl StoredEntry {
    /// The row an event becomes at `seq`, stamped `at`.
    pub fn from_event(seq: i64, at: i64, event: &Event) -> Self {
        let fields: Vec<[&str; 2]> = event
            .fields
            .iter()
            .map(|(name, how)| [name.as_str(), how.as_str()])
            .collect();
        Self {
            seq,
            at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            purpose: event.purpose.clone(),
            resource: event.resource.clone(),
            record_id: event.record_id.clone(),
            subject_ref: event.subject_ref.clone(),
            fields: serde_json::to_string(&fields).unwrap_or_else(|_| "[]".to_owned()),
            policy_version: event.policy_version.clone(),
            reason: event.reason.clone(),
            consent_id: event.consent_id.clone(),
            detail: event.detail.as_ref().map(ToString::to_string),
        }
    }

    /// Reads a row selected with [`COLUMNS`].
    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<(Self, Vec<u8>), StoreError> {
        Ok((
            Self {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                purpose: row.try_get("purpose")?,
                resource: row.try_get("resource")?,
                record_id: row.try_get("record_id")?,
                subject_ref: row.try_get("subject_ref")?,
                fields: row.try_get("fields")?,
                policy_version: row.try_get("policy_version")?,
                reason: row.try_get("reason")?,
                consent_id: row.try_get("consent_id")?,
                detail: row.try_get("detail")?,
            },
            row.try_get("hash")?,
        ))
    }
}

/// The columns of `audit_log`, in table order, for `SELECT`s.
pub const COLUMNS: &str = "seq, at, actor, action, purpose, resource, record_id, subject_ref, \
                           fields, policy_version, reason, consent_id, detail, hash";

/// Entries per multi-row insert (14 parameters each; SQLite allows 32,766).
const ENTRIES_PER_STATEMENT: usize = 500;

/// Reserves `count` sequence numbers by advancing the head; returns the last
/// reserved number and the hash of the entry before the first. On PostgreSQL
/// this takes the head row's lock until the transaction ends.
#[tracing::instrument(name = "db.audit_head.reserve", skip(tx))]
pub async fn reserve(tx: &mut Tx<'_>, count: i64) -> Result<(i64, [u8; 32]), StoreError> {
    let row = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(count)
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = row.try_get("seq")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok((seq, to_hash(&hash)?))
}

/// Writes the new head hash after an append.
#[tracing::instrument(name = "db.audit_head.set_hash", skip_all)]
pub async fn set_head_hash(tx: &mut Tx<'_>, hash: &[u8; 32]) -> Result<(), StoreError> {
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(hash.to_vec())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The head as committed: the last sequence number and its hash.
#[tracing::instrument(name = "db.audit_head.get", skip_all)]
pub async fn head(tx: &mut Tx<'_>) -> Result<(i64, [u8; 32]), StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = row.try_get("seq")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok((seq, to_hash(&hash)?))
}

/// Inserts entries with their hashes, many rows per statement.
#[tracing::instrument(name = "db.audit_log.insert", skip_all, fields(count = rows.len()))]
pub async fn insert(tx: &mut Tx<'_>, rows: &[(StoredEntry, [u8; 32])]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ENTRIES_PER_STATEMENT) {
        let placeholders: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=14).map(|c| format!("${}", i * 14 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES {}",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (entry, hash) in chunk {
            query = query
                .bind(entry.seq)
                .bind(entry.at)
                .bind(entry.actor.clone())
                .bind(entry.action.clone())
                .bind(entry.purpose.clone())
                .bind(entry.resource.clone())
                .bind(entry.record_id.clone())
                .bind(entry.subject_ref.clone())
                .bind(entry.fields.clone())
                .bind(entry.policy_version.clone())
                .bind(entry.reason.clone())
                .bind(entry.consent_id.clone())
                .bind(entry.detail.clone())
                .bind(hash.to_vec());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        what: "audit_head.hash is not 32 bytes",
    })
}
