//! Reading the audit chain for `crosswalk audit verify`, as fast as the
//! databases hand rows out: the one read in the store that does not go through
//! sqlx's `Any` driver.
//!
//! Verification reads every entry once, and at a million entries the `Any`
//! driver's cost per row (SQLite's rows handed one by one from its worker
//! thread; PostgreSQL rows converted into owned `Any` values) was most of the
//! time. So [`ChainReader`] reads through the native drivers and lends each
//! row's columns, borrowed from the driver's buffer, to a [`ChainVisitor`]:
//! - **SQLite**: `rusqlite` (linking the same `libsqlite3-sys` as sqlx),
//!   read-only connections of its own on blocking threads, stepping one
//!   prepared statement per range.
//! - **PostgreSQL**: sqlx's native driver (not `Any`), one
//!   `COPY (SELECT ...) TO STDOUT (FORMAT binary)` per range, whose tuples are
//!   parsed straight from the received bytes ([`super::copy_binary`]).
//!
//! Ranges are read by sequence number on connections of their own, outside the
//! caller's snapshot: the verifier only asks for entries at or below a head it
//! read in one, and committed entries never change (if they did, that is what
//! verification is there to find).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::audit::COLUMNS;
use super::audit::EntryColumns;
use super::copy_binary::{CopyParser, CopySink, MALFORMED};
use super::{Store, StoreError};

/// Where the native readers connect, kept by [`Store::connect`] from the URL it
/// was given (never printed: it may hold a password).
pub(crate) enum NativeSource {
    /// The database file, as sqlx parsed it from the URL (`mode=` aside: the
    /// chain reader always opens it read-only).
    Sqlite(PathBuf),
    /// An in-memory SQLite database lives in sqlx's connections only.
    SqliteInMemory,
    Postgres(Box<PgConnectOptions>),
}

/// One entry as read for verification, borrowed from the driver's buffer.
pub struct ChainRow<'a> {
    pub seq: i64,
    /// The hashed columns; `None` when one of them holds a value the entry
    /// cannot have (SQLite columns are not typed: a blob where text belongs, or
    /// text that is not UTF-8), which breaks the entry's link.
    pub columns: Option<EntryColumns<'a>>,
    /// The stored hash, unless it is not 32 bytes.
    pub hash: Option<[u8; 32]>,
}

/// What receives the rows of a range, in sequence order.
pub trait ChainVisitor: Send + 'static {
    fn visit(&mut self, row: ChainRow<'_>);
}

/// Reads ranges of the audit log through the native drivers. Cheap to clone;
/// [`ChainReader::close`] it when done.
#[derive(Clone)]
pub struct ChainReader {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Sqlite {
        path: Arc<PathBuf>,
        /// Connections between ranges, so that each keeps its page cache and
        /// parsed schema.
        idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
    },
    Postgres(PgPool),
}

/// Selects the entries `?1 ..= ?2` in order (the range is on the primary key).
const SQLITE_RANGE: &str = "SELECT seq, at, actor, action, purpose, resource, record_id, \
                            subject_ref, fields, policy_version, reason, consent_id, detail, \
                            hash FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq";

/// Columns per row: `seq`, `at`, the eleven texts, `hash`.
const ROW_COLUMNS: usize = 14;

impl ChainReader {
    /// A reader for `store`'s database that reads up to `connections` ranges
    /// at once.
    pub async fn open(store: &Store, connections: u32) -> Result<Self, StoreError> {
        let inner = match store.native() {
            NativeSource::Sqlite(path) => Inner::Sqlite {
                path: Arc::new(path.clone()),
                idle: Arc::default(),
            },
            NativeSource::SqliteInMemory => return Err(StoreError::InMemory),
            NativeSource::Postgres(options) => Inner::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections.max(1))
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with((**options).clone())
                    .await?,
            ),
        };
        Ok(Self { inner })
    }

    /// Hands every entry with `lo <= seq <= hi` to `visitor`, in sequence
    /// order, and gives the visitor back.
    #[tracing::instrument(name = "db.audit_log.read_chain", skip(self, visitor))]
    pub async fn read<V: ChainVisitor>(
        &self,
        lo: i64,
        hi: i64,
        visitor: V,
    ) -> Result<V, StoreError> {
        match &self.inner {
            Inner::Sqlite { path, idle } => {
                let (path, idle) = (Arc::clone(path), Arc::clone(idle));
                tokio::task::spawn_blocking(move || sqlite_range(&path, &idle, lo, hi, visitor))
                    .await
                    .map_err(|_| StoreError::ReaderStopped)?
            }
            Inner::Postgres(pool) => postgres_range(pool, lo, hi, visitor).await,
        }
    }

    pub async fn close(self) {
        match self.inner {
            Inner::Sqlite { idle, .. } => {
                if let Ok(mut idle) = idle.lock() {
                    idle.clear();
                }
            }
            Inner::Postgres(pool) => pool.close().await,
        }
    }
}

fn sqlite_range<V: ChainVisitor>(
    path: &std::path::Path,
    idle: &Mutex<Vec<rusqlite::Connection>>,
    lo: i64,
    hi: i64,
    mut visitor: V,
) -> Result<V, StoreError> {
    // A poisoned list only means another range panicked: open a new connection.
    let reused = idle.lock().ok().and_then(|mut idle| idle.pop());
    let conn = match reused {
        Some(conn) => conn,
        None => open_sqlite(path)?,
    };
    {
        let mut statement = conn.prepare(SQLITE_RANGE)?;
        let mut rows = statement.query([lo, hi])?;
        while let Some(row) = rows.next()? {
            visitor.visit(sqlite_row(row)?);
        }
    }
    if let Ok(mut idle) = idle.lock() {
        idle.push(conn);
    }
    Ok(visitor)
}

pub(super) fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    // URI filenames as sqlx opens them; never a write, never a new file.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

fn sqlite_row<'r>(row: &'r rusqlite::Row<'_>) -> Result<ChainRow<'r>, rusqlite::Error> {
    use rusqlite::types::ValueRef;
    // `seq` is the table's INTEGER PRIMARY KEY (the rowid): always an integer.
    let seq = row.get_ref(0)?.as_i64()?;
    let hash = match row.get_ref(ROW_COLUMNS - 1)? {
        ValueRef::Blob(hash) => <[u8; 32]>::try_from(hash).ok(),
        _ => None,
    };
    let mut texts = [None; 11];
    let mut typed = matches!(row.get_ref(1)?, ValueRef::Integer(_));
    for (index, text) in (2..).zip(texts.iter_mut()) {
        match row.get_ref(index)? {
            ValueRef::Null => {}
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(value) => *text = Some(value),
                Err(_) => typed = false,
            },
            _ => typed = false,
        }
    }
    let columns = match row.get_ref(1)? {
        ValueRef::Integer(at) if typed => Some(EntryColumns { seq, at, texts }),
        _ => None,
    };
    Ok(ChainRow { seq, columns, hash })
}

async fn postgres_range<V: ChainVisitor>(
    pool: &PgPool,
    lo: i64,
    hi: i64,
    mut visitor: V,
) -> Result<V, StoreError> {
    // COPY takes no parameters; `lo` and `hi` are integers.
    let sql = format!(
        "COPY (SELECT {COLUMNS} FROM audit_log WHERE seq >= {lo} AND seq <= {hi} ORDER BY seq) \
         TO STDOUT (FORMAT binary)"
    );
    let mut conn = CopyConnection {
        conn: pool.acquire().await?,
        finished: false,
    };
    let mut stream = conn.conn.copy_out_raw(&sql).await?;
    let mut parser = CopyParser::default();
    while let Some(chunk) = stream.next().await {
        parser.feed(&chunk?, &mut ChainTuples(&mut visitor))?;
    }
    drop(stream);
    parser.finish()?;
    conn.finished = true;
    Ok(visitor)
}

/// A connection running a `COPY`. One left unfinished (an error, or a
/// verification that stopped early and dropped the read) is mid-protocol:
/// it is closed rather than returned to the pool.
struct CopyConnection {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    finished: bool,
}

impl Drop for CopyConnection {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// Hands each tuple of the audit log's `COPY` to a [`ChainVisitor`] as a
/// [`ChainRow`].
struct ChainTuples<'v, V>(&'v mut V);

impl<V: ChainVisitor> CopySink for ChainTuples<'_, V> {
    const FIELDS: usize = ROW_COLUMNS;

    fn tuple(&mut self, fields: &[Option<&[u8]>]) -> Result<(), StoreError> {
        let seq = fields[0]
            .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
            .map(i64::from_be_bytes)
            .ok_or(MALFORMED)?;
        let hash = fields[ROW_COLUMNS - 1].and_then(|hash| <[u8; 32]>::try_from(hash).ok());
        let mut texts = [None; 11];
        let mut typed = true;
        for (text, field) in texts.iter_mut().zip(&fields[2..ROW_COLUMNS - 1]) {
            if let Some(bytes) = field {
                match std::str::from_utf8(bytes) {
                    Ok(value) => *text = Some(value),
                    Err(_) => typed = false,
                }
            }
        }
        let columns = fields[1]
            .and_then(|at| <[u8; 8]>::try_from(at).ok())
            .filter(|_| typed)
            .map(|at| EntryColumns {
                seq,
                at: i64::from_be_bytes(at),
                texts,
            });
        self.0.visit(ChainRow { seq, columns, hash });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::copy_binary::CopyParser;
    use crate::store::copy_binary::tests::stream;

    /// Sequence number, `at`, texts and hash of one row.
    type Row = (i64, Option<i64>, Vec<Option<String>>, Option<[u8; 32]>);

    /// Collects what the parser hands out.
    #[derive(Default)]
    struct Seen(Vec<Row>);

    impl ChainVisitor for Seen {
        fn visit(&mut self, row: ChainRow<'_>) {
            self.0.push((
                row.seq,
                row.columns.as_ref().map(|c| c.at),
                row.columns
                    .as_ref()
                    .map(|c| c.texts.iter().map(|t| t.map(str::to_owned)).collect())
                    .unwrap_or_default(),
                row.hash,
            ));
        }
    }

    /// Audit rows as `COPY` sends them: `seq`, `at`, `actor`, ten NULL texts
    /// and a hash.
    fn audit_stream(rows: &[(i64, &[u8])]) -> Vec<u8> {
        let numbers: Vec<([u8; 8], [u8; 8])> = rows
            .iter()
            .map(|&(seq, _)| (seq.to_be_bytes(), (seq * 10).to_be_bytes()))
            .collect();
        let tuples: Vec<Vec<Option<&[u8]>>> = rows
            .iter()
            .zip(&numbers)
            .map(|(&(_, actor), (seq, at))| {
                let mut fields: Vec<Option<&[u8]>> = vec![Some(seq), Some(at), Some(actor)];
                fields.extend([None; 10]);
                fields.push(Some(&[7; 32]));
                fields
            })
            .collect();
        stream(&tuples)
    }

    fn parse(bytes: &[u8]) -> Result<Seen, StoreError> {
        let mut seen = Seen::default();
        let mut parser = CopyParser::default();
        parser.feed(bytes, &mut ChainTuples(&mut seen))?;
        parser.finish()?;
        Ok(seen)
    }

    #[test]
    fn audit_rows_parse_into_their_columns() {
        let seen = parse(&audit_stream(&[(1, b"pd"), (2, b"cbo-north"), (3, b"")])).expect("parse");
        assert_eq!(seen.0.len(), 3);
        assert_eq!(seen.0[1].2[0].as_deref(), Some("cbo-north"));
        assert_eq!(seen.0[1].1, Some(20));
        assert_eq!(seen.0[2].3, Some([7; 32]));
    }

    #[test]
    fn text_that_is_not_utf8_breaks_the_columns_not_the_read() {
        let seen = parse(&audit_stream(&[(1, &[0xff, b'd'])])).expect("parse");
        assert_eq!(seen.0[0].0, 1);
        assert_eq!(seen.0[0].1, None, "no columns");
        assert_eq!(seen.0[0].3, Some([7; 32]));
    }
}
