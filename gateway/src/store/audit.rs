//! Repository for the audit log: `audit_log` and `audit_head` (migration 0004),
//! `audit_checkpoints` (0005). The chain rules live in [`crate::audit`]; this
//! module only moves rows.

use sqlx::Row as _;

use super::{Backend, Store, StoreError, Tx};

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

/// The chain head this process last appended, as a guess for the next append
/// on PostgreSQL ([`insert_after_head`]): one round trip instead of two.
///
/// Only a hint, never trusted: the append that uses it moves the head only if
/// the head still is exactly this `(seq, hash)`, so a stale hint (another
/// replica or connection appended, a transaction rolled back, another database
/// in the same process) costs the normal two-statement path, never a fork.
/// A std `Mutex`: it is held only to copy 40 bytes, never across an await.
static HEAD_HINT: std::sync::Mutex<Option<(i64, [u8; 32])>> = std::sync::Mutex::new(None);

/// The last head this process appended, if any, where `tx` can use it:
/// never on SQLite, whose statements are no network round trips (and which
/// cannot update inside a `WITH`).
pub fn head_hint(tx: &Tx<'_>) -> Option<(i64, [u8; 32])> {
    if super::referrals::is_sqlite(tx) {
        return None;
    }
    *HEAD_HINT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers the head an append in `tx` just wrote, for the next
/// [`insert_after_head`] (PostgreSQL only, see [`head_hint`]).
pub fn set_head_hint(tx: &Tx<'_>, seq: i64, hash: [u8; 32]) {
    if super::referrals::is_sqlite(tx) {
        return;
    }
    *HEAD_HINT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((seq, hash));
}

/// Entries that [`insert_after_head`] takes in its one statement.
pub const ENTRIES_AFTER_HEAD: usize = ENTRIES_PER_STATEMENT;

/// PostgreSQL only: in one statement, moves the head from exactly
/// `(head_seq, head_hash)` to the last of `rows` and inserts `rows`, which were
/// hashed on that head. Returns `false`, having changed nothing, when the head
/// is elsewhere: the caller then reserves as usual. The conditional update
/// takes the head row's lock like [`reserve`] (waiting for another appender,
/// then re-checking the condition against what it committed).
#[tracing::instrument(name = "db.audit_log.insert_after_head", skip_all, fields(count = rows.len()))]
pub async fn insert_after_head(
    tx: &mut Tx<'_>,
    head_seq: i64,
    head_hash: &[u8; 32],
    rows: &[(StoredEntry, [u8; 32])],
) -> Result<bool, StoreError> {
    let Some(last) = rows.last() else {
        return Ok(true);
    };
    debug_assert!(rows.len() <= ENTRIES_AFTER_HEAD && !super::referrals::is_sqlite(tx));
    let n = rows.len() * 14;
    let sql = format!(
        "WITH head AS (UPDATE audit_head SET seq = ${}, hash = ${} \
         WHERE id = 1 AND seq = ${} AND hash = ${} RETURNING seq) \
         INSERT INTO audit_log ({COLUMNS}) SELECT entry.* FROM head, (VALUES {}) AS entry",
        n + 1,
        n + 2,
        n + 3,
        n + 4,
        super::referrals::placeholders(tx, rows.len(), 14)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (entry, hash) in rows {
        query = bind_entry(query, entry, hash);
    }
    let done = query
        .bind(last.0.seq)
        .bind(last.1.to_vec())
        .bind(head_seq)
        .bind(head_hash.to_vec())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Inserts entries with their hashes, many rows per statement, after a
/// [`reserve`] that moved the head's `seq` to the last of them; the statement
/// holding that last entry also sets the head's `hash` to its hash (SQLite: a
/// row trigger, migration 0005; PostgreSQL: the statement itself, 0012).
#[tracing::instrument(name = "db.audit_log.insert", skip_all, fields(count = rows.len()))]
pub async fn insert(tx: &mut Tx<'_>, rows: &[(StoredEntry, [u8; 32])]) -> Result<(), StoreError> {
    let sqlite = super::referrals::is_sqlite(tx);
    for chunk in rows.chunks(ENTRIES_PER_STATEMENT) {
        // Anonymous `?` placeholders on SQLite: with `$n` its parser looks each
        // one up in a linear list, quadratic in the row count (a 500-entry
        // append took ~200 ms; see `store::referrals`).
        let values = super::referrals::placeholders(tx, chunk.len(), 14);
        let sql = if sqlite {
            format!("INSERT INTO audit_log ({COLUMNS}) VALUES {values}")
        } else {
            let n = chunk.len() * 14;
            format!(
                "WITH head AS (UPDATE audit_head SET hash = ${} WHERE id = 1 AND seq = ${}) \
                 INSERT INTO audit_log ({COLUMNS}) VALUES {values}",
                n + 1,
                n + 2
            )
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (entry, hash) in chunk {
            query = bind_entry(query, entry, hash);
        }
        if let (false, Some((last, hash))) = (sqlite, chunk.last()) {
            query = query.bind(hash.to_vec()).bind(last.seq);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds one entry's 14 columns in [`COLUMNS`] order.
fn bind_entry<'q>(query: AnyQuery<'q>, entry: &StoredEntry, hash: &[u8; 32]) -> AnyQuery<'q> {
    query
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
        .bind(hash.to_vec())
}

/// Takes the head row's lock without moving the head, for a read-modify-write
/// that must not race another replica's (e.g. the partner registry comparison)
/// and that appends afterwards. On SQLite the write transaction already
/// serializes it.
#[tracing::instrument(name = "db.audit_head.lock", skip_all)]
pub async fn lock_head(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A read-only transaction that sees one snapshot from its first read to its
/// end, so that a verification walking the whole log in pages is not confused
/// by appends committed meanwhile: `REPEATABLE READ` on PostgreSQL; on SQLite
/// (WAL) every read transaction already holds its snapshot.
pub async fn begin_snapshot(store: &Store) -> Result<Tx<'static>, StoreError> {
    Ok(match store.backend() {
        Backend::Sqlite => store.pool().begin().await?,
        Backend::Postgres => {
            store
                .pool()
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?
        }
    })
}

/// The lowest sequence number below `seq`, if any entry lies there.
#[tracing::instrument(name = "db.audit_log.first_below", skip(tx))]
pub async fn first_below(tx: &mut Tx<'_>, seq: i64) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT seq FROM audit_log WHERE seq < $1 ORDER BY seq LIMIT 1")
        .bind(seq)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get("seq")).transpose()?)
}

/// The lowest sequence number above `seq`, if any entry lies there.
#[tracing::instrument(name = "db.audit_log.first_after", skip(tx))]
pub async fn first_after(tx: &mut Tx<'_>, seq: i64) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT seq FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1")
        .bind(seq)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get("seq")).transpose()?)
}

/// Which entries `GET /v1/audit/entries` lists. Every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Unix microseconds, inclusive.
    pub from: Option<i64>,
    /// Unix microseconds, exclusive.
    pub to: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// Up to `limit` entries with `seq > after` that pass `filter`, in order.
#[tracing::instrument(name = "db.audit_log.list", skip(tx))]
pub async fn list(
    tx: &mut Tx<'_>,
    filter: &EntryFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<(StoredEntry, Vec<u8>)>, StoreError> {
    let mut conditions = vec!["seq > $1".to_owned()];
    let mut n = 1;
    let mut next = |column: &str, op: &str| {
        n += 1;
        conditions.push(format!("{column} {op} ${n}"));
    };
    if filter.from.is_some() {
        next("at", ">=");
    }
    if filter.to.is_some() {
        next("at", "<");
    }
    if filter.actor.is_some() {
        next("actor", "=");
    }
    if filter.action.is_some() {
        next("action", "=");
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT ${}",
        conditions.join(" AND "),
        conditions.len() + 1
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after);
    if let Some(from) = filter.from {
        query = query.bind(from);
    }
    if let Some(to) = filter.to {
        query = query.bind(to);
    }
    if let Some(actor) = &filter.actor {
        query = query.bind(actor.clone());
    }
    if let Some(action) = &filter.action {
        query = query.bind(action.clone());
    }
    let rows = query.bind(limit).fetch_all(&mut **tx).await?;
    rows.iter().map(StoredEntry::from_row).collect()
}

/// Up to `limit` entries with `seq > after` about any of `subject_refs` that
/// released fields (`fields` is not the empty list), in sequence order. Reads
/// through the `audit_log_subject (subject_ref, seq)` index.
#[tracing::instrument(name = "db.audit_log.disclosures", skip_all, fields(subjects = subject_refs.len()))]
pub async fn disclosures(
    tx: &mut Tx<'_>,
    subject_refs: &[String],
    consents: Option<&[String]>,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEntry>, StoreError> {
    if subject_refs.is_empty() || consents.is_some_and(<[String]>::is_empty) {
        return Ok(Vec::new());
    }
    let n = subject_refs.len();
    let placeholders = |first: usize, count: usize| -> String {
        (first..first + count)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Consent recorders see only what was disclosed under their consents
    // (exports are never under a consent, so they drop out too).
    let consent_filter = consents.map_or_else(String::new, |ids| {
        format!(
            " AND consent_id IN ({})",
            placeholders(3 + 2 * n, ids.len())
        )
    });
    let limit_at = 3 + 2 * n + consents.map_or(0, <[String]>::len);
    // An export discloses many people in one entry (no `subject_ref`); the
    // people it contains are listed in `export_subjects` (migration 0011).
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND fields <> $2 \
         AND (subject_ref IN ({}) OR (resource = 'export' AND subject_ref IS NULL AND record_id IN \
         (SELECT export_id FROM export_subjects WHERE subject_id IN ({})))){consent_filter} \
         ORDER BY seq LIMIT ${limit_at}",
        placeholders(3, n),
        placeholders(3 + n, n),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(NO_FIELDS);
    for _ in 0..2 {
        for subject in subject_refs {
            query = query.bind(subject.clone());
        }
    }
    for consent in consents.unwrap_or_default() {
        query = query.bind(consent.clone());
    }
    let rows = query.bind(limit).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| StoredEntry::from_row(row).map(|(entry, _)| entry))
        .collect()
}

/// The `fields` column of an entry that released nothing.
pub const NO_FIELDS: &str = "[]";

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub seq: i64,
    pub hash: [u8; 32],
    /// Unix microseconds.
    pub at: i64,
    /// The compact JWS; only its signed contents are trusted.
    pub jws: String,
}

#[tracing::instrument(name = "db.audit_checkpoints.insert", skip_all, fields(seq = checkpoint.seq))]
pub async fn insert_checkpoint(
    tx: &mut Tx<'_>,
    checkpoint: &StoredCheckpoint,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at, jws) VALUES ($1, $2, $3, $4)")
        .bind(checkpoint.seq)
        .bind(checkpoint.hash.to_vec())
        .bind(checkpoint.at)
        .bind(checkpoint.jws.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The checkpoint of the highest sequence number (the most recent of those).
#[tracing::instrument(name = "db.audit_checkpoints.latest", skip_all)]
pub async fn latest_checkpoint(tx: &mut Tx<'_>) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, hash, at, jws FROM audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        let hash: Vec<u8> = row.try_get("hash")?;
        Ok(StoredCheckpoint {
            seq: row.try_get("seq")?,
            hash: to_hash(&hash)?,
            at: row.try_get("at")?,
            jws: row.try_get("jws")?,
        })
    })
    .transpose()
}

fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        what: "an audit hash is not 32 bytes",
    })
}

/// Every hashed column of an entry, borrowed: `seq`, `at` and the eleven text
/// columns in table order.
pub struct EntryColumns<'a> {
    pub seq: i64,
    pub at: i64,
    pub texts: [Option<&'a str>; 11],
}

impl<'a> EntryColumns<'a> {
    pub fn of(entry: &'a StoredEntry) -> Self {
        Self {
            seq: entry.seq,
            at: entry.at,
            texts: [
                Some(&entry.actor),
                Some(&entry.action),
                entry.purpose.as_deref(),
                entry.resource.as_deref(),
                entry.record_id.as_deref(),
                entry.subject_ref.as_deref(),
                Some(&entry.fields),
                entry.policy_version.as_deref(),
                entry.reason.as_deref(),
                entry.consent_id.as_deref(),
                entry.detail.as_deref(),
            ],
        }
    }
}
