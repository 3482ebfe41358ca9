//! The ids of every row of the audited tables, read in one snapshot together
//! with that snapshot's audit head, for `crosswalk audit verify`'s
//! cross-check of rows against their create entries ([`crate::audit::crosscheck`]).
//!
//! # One snapshot, and its head
//! A row and its create entry commit in one transaction, and appends commit
//! in sequence order (they serialize on the head row until commit). So in one
//! snapshot the rows present are exactly those whose create entries are at or
//! below that snapshot's head. [`start`] opens a read transaction of its own
//! (SQLite: a deferred `BEGIN` on a `rusqlite` connection, whose snapshot
//! starts at its first read; PostgreSQL: `REPEATABLE READ READ ONLY` on a
//! native connection), reads the head in it first and hands that back at once,
//! then reads the tables in the same transaction while the verifier walks the
//! chain. The verifier opens its own snapshot afterwards, so its head is at or
//! above this one, and it compares the rows with the create entries up to
//! this head only.
//!
//! # Compact ids
//! Ids are UUIDs, kept as their 128 bits ([`record_key`]): 16 bytes a row,
//! sorted in place, never `String`s. An id that is not a UUID (none the
//! gateway writes) is kept as 128 bits of its BLAKE3 hash, on both sides alike.
//! Reading goes through the native drivers, like the chain ([`super::chain`]):
//! `rusqlite` on a SQLite file, a binary `COPY` per table on PostgreSQL.

use futures_util::StreamExt as _;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::chain::NativeSource;
use super::copy_binary::{CopyParser, CopySink};
use super::{Store, StoreError};

/// The rows the cross-check accounts for: one set per audited table, with
/// assignments split in two because their create entries differ (the first
/// is written with its referral's `referral.create`; each later one with a
/// `referral.reassign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordSet {
    /// `referrals`, by id.
    Referrals,
    /// First assignments (`from_cbo` NULL), by their referral's id.
    FirstAssignments,
    /// Reassignments, by their referral's id: a multiset, one per row.
    LaterAssignments,
    /// `outcomes`, by id.
    Outcomes,
    /// `cases` (health case statuses), by id.
    Cases,
    /// `consents`, by id.
    Consents,
    /// `exports`, by id.
    Exports,
}

/// How many [`RecordSet`]s there are.
pub const RECORD_SETS: usize = 7;

impl RecordSet {
    pub const ALL: [Self; RECORD_SETS] = [
        Self::Referrals,
        Self::FirstAssignments,
        Self::LaterAssignments,
        Self::Outcomes,
        Self::Cases,
        Self::Consents,
        Self::Exports,
    ];

    /// The table the set's rows are in.
    pub fn table(self) -> &'static str {
        match self {
            Self::Referrals => "referrals",
            Self::FirstAssignments | Self::LaterAssignments => "referral_assignments",
            Self::Outcomes => "outcomes",
            Self::Cases => "cases",
            Self::Consents => "consents",
            Self::Exports => "exports",
        }
    }

    /// What the set's rows are, for people: `referrals`, `first assignments`.
    pub fn label(self) -> &'static str {
        match self {
            Self::FirstAssignments => "first assignments",
            Self::LaterAssignments => "reassignments",
            other => other.table(),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The ids of each set, indexed by [`RecordSet::index`], each sorted.
pub type RowIds = [Vec<u128>; RECORD_SETS];

/// The single-id tables: `SELECT id FROM <table>`.
const ID_TABLES: [(RecordSet, &str); 5] = [
    (RecordSet::Referrals, "SELECT id FROM referrals"),
    (RecordSet::Outcomes, "SELECT id FROM outcomes"),
    (RecordSet::Cases, "SELECT id FROM cases"),
    (RecordSet::Consents, "SELECT id FROM consents"),
    (RecordSet::Exports, "SELECT id FROM exports"),
];

/// Assignments: the referral, and whether this is the first assignment.
const ASSIGNMENTS: &str = "SELECT referral_id, from_cbo IS NULL FROM referral_assignments";

const HEAD: &str = "SELECT seq FROM audit_head WHERE id = 1";

/// The 128 bits a record id is compared by: the UUID's, or for any other text
/// 128 bits of its BLAKE3 hash (domain-separated, so no UUID collides with it
/// except by chance).
pub fn record_key(id: &[u8]) -> u128 {
    if id.len() == 36
        && let Ok(uuid) = uuid::Uuid::try_parse_ascii(id)
    {
        return uuid.as_u128();
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"crosswalk record id\0");
    hasher.update(id);
    let mut key = [0u8; 16];
    key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    u128::from_be_bytes(key)
}

/// A read of the audited tables under way, in a snapshot whose head is
/// [`RowsReading::head`]. Dropping it stops the read (on PostgreSQL; SQLite's
/// thread finishes its current table and ends).
pub struct RowsReading {
    /// The audit head's sequence number in the rows' snapshot.
    pub head: i64,
    task: tokio::task::JoinHandle<Result<RowIds, StoreError>>,
}

impl RowsReading {
    /// Every set's ids, sorted.
    pub async fn finish(mut self) -> Result<RowIds, StoreError> {
        (&mut self.task)
            .await
            .map_err(|_| StoreError::ReaderStopped)?
    }
}

impl Drop for RowsReading {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the snapshot, reads its head, and starts reading the tables in it.
/// Returns once the head is read (so the snapshot is fixed).
#[tracing::instrument(name = "db.audited_rows.read", skip_all)]
pub async fn start(store: &Store) -> Result<RowsReading, StoreError> {
    let (head_sender, head) = tokio::sync::oneshot::channel();
    let task = match store.native() {
        NativeSource::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || sqlite_rows(&path, head_sender))
        }
        NativeSource::SqliteInMemory => return Err(StoreError::InMemory),
        NativeSource::Postgres(options) => {
            let options = (**options).clone();
            tokio::spawn(async move { postgres_rows(&options, head_sender).await })
        }
    };
    match head.await {
        Ok(head) => Ok(RowsReading { head, task }),
        // The reader failed before the head: its error says why.
        Err(_) => Err(task
            .await
            .map_err(|_| StoreError::ReaderStopped)?
            .err()
            .unwrap_or(StoreError::ReaderStopped)),
    }
}

fn sqlite_rows(
    path: &std::path::Path,
    head: tokio::sync::oneshot::Sender<i64>,
) -> Result<RowIds, StoreError> {
    use rusqlite::types::ValueRef;
    fn key(value: ValueRef<'_>) -> u128 {
        match value {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => record_key(bytes),
            ValueRef::Integer(number) => record_key(number.to_string().as_bytes()),
            ValueRef::Real(_) | ValueRef::Null => record_key(b""),
        }
    }
    let conn = super::chain::open_sqlite(path)?;
    conn.execute_batch("BEGIN DEFERRED")?;
    let seq: i64 = conn.query_row(HEAD, [], |row| row.get(0))?;
    if head.send(seq).is_err() {
        return Err(StoreError::ReaderStopped);
    }
    let mut ids = RowIds::default();
    for (set, sql) in ID_TABLES {
        let mut statement = conn.prepare(sql)?;
        let mut rows = statement.query([])?;
        let out = &mut ids[set.index()];
        while let Some(row) = rows.next()? {
            out.push(key(row.get_ref(0)?));
        }
    }
    let mut statement = conn.prepare(ASSIGNMENTS)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let first = matches!(row.get_ref(1)?, ValueRef::Integer(n) if n != 0);
        ids[assignment_set(first).index()].push(key(row.get_ref(0)?));
    }
    // Dropping the connection ends its read transaction.
    sort_all(&mut ids);
    Ok(ids)
}

async fn postgres_rows(
    options: &sqlx::postgres::PgConnectOptions,
    head: tokio::sync::oneshot::Sender<i64>,
) -> Result<RowIds, StoreError> {
    let mut conn = PgConnection::connect_with(options).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await?;
    let seq: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut conn).await?;
    if head.send(seq).is_err() {
        return Err(StoreError::ReaderStopped);
    }
    let mut ids = RowIds::default();
    for (set, sql) in ID_TABLES {
        copy_into(&mut conn, sql, &mut Ids(&mut ids[set.index()])).await?;
    }
    copy_into(&mut conn, ASSIGNMENTS, &mut Assignments(&mut ids)).await?;
    // Read only: closing without COMMIT loses nothing.
    let _ = conn.close().await;
    tokio::task::spawn_blocking(move || {
        sort_all(&mut ids);
        ids
    })
    .await
    .map_err(|_| StoreError::ReaderStopped)
}

async fn copy_into<S: CopySink>(
    conn: &mut PgConnection,
    select: &str,
    sink: &mut S,
) -> Result<(), StoreError> {
    let sql = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
    let mut stream = conn.copy_out_raw(&sql).await?;
    let mut parser = CopyParser::default();
    while let Some(chunk) = stream.next().await {
        parser.feed(&chunk?, sink)?;
    }
    drop(stream);
    parser.finish()
}

/// One id per tuple.
struct Ids<'a>(&'a mut Vec<u128>);

impl CopySink for Ids<'_> {
    const FIELDS: usize = 1;
    fn tuple(&mut self, fields: &[Option<&[u8]>]) -> Result<(), StoreError> {
        self.0.push(record_key(fields[0].unwrap_or_default()));
        Ok(())
    }
}

/// `referral_id` and `from_cbo IS NULL` (a one-byte boolean) per tuple.
struct Assignments<'a>(&'a mut RowIds);

impl CopySink for Assignments<'_> {
    const FIELDS: usize = 2;
    fn tuple(&mut self, fields: &[Option<&[u8]>]) -> Result<(), StoreError> {
        let first = fields[1].is_some_and(|flag| flag.iter().any(|&byte| byte != 0));
        self.0[assignment_set(first).index()].push(record_key(fields[0].unwrap_or_default()));
        Ok(())
    }
}

fn assignment_set(first: bool) -> RecordSet {
    if first {
        RecordSet::FirstAssignments
    } else {
        RecordSet::LaterAssignments
    }
}

fn sort_all(ids: &mut RowIds) {
    for set in ids {
        set.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_their_bits_and_other_ids_a_hash() {
        let uuid = "0190f3a2-7c1e-7d4b-9a4e-0000000000ff";
        assert_eq!(
            record_key(uuid.as_bytes()),
            0x0190_f3a2_7c1e_7d4b_9a4e_0000_0000_00ff
        );
        assert_ne!(record_key(b"r-1"), record_key(b"r-2"));
        assert_eq!(record_key(b"r-1"), record_key(b"r-1"));
        // Other spellings of a UUID are other ids (the gateway writes one).
        assert_ne!(
            record_key(b"0190f3a27c1e7d4b9a4e0000000000ff"),
            record_key(uuid.as_bytes())
        );
    }
}
