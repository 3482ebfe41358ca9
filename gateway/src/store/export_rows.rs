//! The rows an export reads, through the native drivers on a connection of
//! their own, one snapshot for all of an export's passes.
//!
//! An export reads every referral in its window twice (quasi-identifiers, then
//! the rows themselves), every outcome once, and the case statuses; a study's
//! first export reads the quasi-identifiers of every referral recorded so far,
//! to plan over them (`crate::exports::plan`); each pass names its window.
//!
//! Through sqlx's `Any` driver each row was a hop from SQLite's worker thread and a
//! conversion into owned `Any` values, and the builder waited for each: about
//! half of a million-referral export's time. So [`ExportReader`] reads on a
//! thread (SQLite, `rusqlite`) or task (PostgreSQL, sqlx's native driver) of
//! its own and hands rows over in batches of [`BATCH`] through a short queue:
//! reading runs on one core while the builder transforms, encrypts and hashes
//! on the other, and memory holds at most a few batches.
//!
//! # Snapshot
//! The reader opens one read transaction before its first pass and keeps it
//! until it is dropped (SQLite: a deferred `BEGIN`, whose snapshot starts at
//! the first read; PostgreSQL: `REPEATABLE READ READ ONLY`), so the two passes
//! over the referrals see the same rows in the same order and the outcomes and
//! cases belong to the same state. Passes run one at a time, in the order they
//! are asked for; a pass whose [`Rows`] is dropped early stops at its next
//! batch.

use futures_util::TryStreamExt as _;
use sqlx::Connection as _;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};
use tokio::sync::mpsc;

use super::chain::NativeSource;
use super::{Store, StoreError, Tx};

/// Rows per batch handed from the reader to the builder.
pub const BATCH: usize = 1024;

/// Batches read ahead of the builder.
const READ_AHEAD: usize = 4;

/// First pass: a referral's sealed identity, for its quasi-identifiers.
#[derive(Debug)]
pub struct ReferralIdentity {
    pub referral_id: String,
    /// The current subject (merges followed): k counts people.
    pub subject_id: String,
    pub identity_id: String,
    pub sealed: Vec<u8>,
    pub contact_at: i64,
    pub district: String,
}

/// Second pass: a referral's exportable columns.
#[derive(Debug)]
pub struct ExportReferral {
    pub id: String,
    /// The current subject (merges followed).
    pub subject_id: String,
    pub status: String,
    pub workflow_state: String,
    pub resources: String,
    pub follow_up_by: Option<String>,
}

/// An outcome of one of the export's referrals.
#[derive(Debug)]
pub struct ExportOutcome {
    pub id: String,
    pub referral_id: String,
    pub subject_id: String,
    pub kind: String,
    pub resource: Option<String>,
    pub occurred_at: i64,
    pub contact_at: i64,
}

/// A health case status (the export keeps those of its people).
#[derive(Debug)]
pub struct ExportCase {
    pub id: String,
    pub subject_id: String,
    pub program: String,
    pub status: String,
    pub part2: bool,
    pub effective_at: i64,
    /// The contact of the first referral recorded for the subject the case
    /// was linked to (by `created_at`, so a referral recorded later never
    /// moves it; by the case's own subject, so a later merge does not
    /// either): the anchor of `days_from_first_referral`, the same in every
    /// export. `None` if there is none.
    pub anchor_contact_at: Option<i64>,
}

/// The export's referrals: contact in `[from, to)`, written by `cutoff`
/// (unix microseconds).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub cutoff: i64,
}

/// Whether any referral falls in `window`. `EXISTS` stops at the first one:
/// a `COUNT(*)` here read the whole table through the pool connection, whose
/// page cache (64 MiB on SQLite) then stayed full — a third of a
/// million-referral export's peak memory — while holding the write lock.
#[tracing::instrument(name = "db.referrals.any_in_window", skip_all)]
pub async fn any_referrals(tx: &mut Tx<'_>, window: Window) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM referrals r WHERE {REFERRALS_IN_WINDOW}) \
         THEN 1 ELSE 0 END AS BIGINT)"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(window.from)
        .bind(window.to)
        .bind(window.cutoff)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>(0)? == 1)
}

/// `$1`, `$2`, `$3`: the window's `from`, `to` and `cutoff`. Both drivers bind
/// them by position; SQLite numbers `$N` parameters in order of first
/// appearance, so every statement here names them first in numeric order.
const REFERRALS_IN_WINDOW: &str = "r.contact_at >= $1 AND r.contact_at < $2 AND r.created_at <= $3";

fn identities_sql() -> String {
    format!(
        "SELECT r.id, COALESCE(s.merged_into, r.subject_id), r.identity_id, i.sealed, \
         r.contact_at, r.district FROM referrals r \
         JOIN identities i ON i.id = r.identity_id JOIN subjects s ON s.id = r.subject_id \
         WHERE {REFERRALS_IN_WINDOW} ORDER BY r.id"
    )
}

fn referrals_sql() -> String {
    format!(
        "SELECT r.id, COALESCE(s.merged_into, r.subject_id), \
         r.status, r.workflow_state, r.resources, r.follow_up_by \
         FROM referrals r JOIN subjects s ON s.id = r.subject_id \
         WHERE {REFERRALS_IN_WINDOW} ORDER BY r.id"
    )
}

fn outcomes_sql() -> String {
    format!(
        "SELECT o.id, o.referral_id, COALESCE(s.merged_into, r.subject_id), \
         o.kind, o.resource, o.occurred_at, r.contact_at \
         FROM outcomes o JOIN referrals r ON r.id = o.referral_id \
         JOIN subjects s ON s.id = r.subject_id \
         WHERE {REFERRALS_IN_WINDOW} AND o.created_at <= $3 \
         ORDER BY o.referral_id, o.occurred_at, o.id"
    )
}

/// `$1`: the window's cutoff (cases are not limited to the contact range).
/// The anchor is one indexed look-up per case (`referrals_subject`).
const CASES_SQL: &str = "SELECT c.id, COALESCE(s.merged_into, c.subject_id), \
     c.program, c.status, c.part2, c.effective_at, \
     (SELECT r.contact_at FROM referrals r WHERE r.subject_id = c.subject_id \
      AND r.created_at <= $1 ORDER BY r.created_at, r.id LIMIT 1) \
     FROM cases c JOIN subjects s ON s.id = c.subject_id \
     WHERE c.created_at <= $1 ORDER BY c.effective_at, c.id";

/// One row type's SQL and its decoding from either driver: the four
/// row types above, nothing else.
pub trait Pass: Sized + Send + 'static {
    fn sql() -> String;
    /// The values of `$1`, `$2`, ... in [`Pass::sql`].
    fn params(window: Window) -> Vec<i64> {
        vec![window.from, window.to, window.cutoff]
    }
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
    fn from_postgres(row: &PgRow) -> Result<Self, sqlx::Error>;
    fn request(sender: Sender<Self>) -> Request;
}

pub type Sender<T> = mpsc::Sender<Result<Vec<T>, StoreError>>;

/// A pass asked of the reader's worker, with where its batches go.
pub enum Request {
    Identities(Sender<ReferralIdentity>),
    Referrals(Sender<ExportReferral>),
    Outcomes(Sender<ExportOutcome>),
    Cases(Sender<ExportCase>),
}

impl Pass for ReferralIdentity {
    fn sql() -> String {
        identities_sql()
    }
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            referral_id: r.get(0)?,
            subject_id: r.get(1)?,
            identity_id: r.get(2)?,
            sealed: r.get(3)?,
            contact_at: r.get(4)?,
            district: r.get(5)?,
        })
    }
    fn from_postgres(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            referral_id: r.try_get(0)?,
            subject_id: r.try_get(1)?,
            identity_id: r.try_get(2)?,
            sealed: r.try_get(3)?,
            contact_at: r.try_get(4)?,
            district: r.try_get(5)?,
        })
    }
    fn request(sender: Sender<Self>) -> Request {
        Request::Identities(sender)
    }
}

impl Pass for ExportReferral {
    fn sql() -> String {
        referrals_sql()
    }
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            subject_id: r.get(1)?,
            status: r.get(2)?,
            workflow_state: r.get(3)?,
            resources: r.get(4)?,
            follow_up_by: r.get(5)?,
        })
    }
    fn from_postgres(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get(0)?,
            subject_id: r.try_get(1)?,
            status: r.try_get(2)?,
            workflow_state: r.try_get(3)?,
            resources: r.try_get(4)?,
            follow_up_by: r.try_get(5)?,
        })
    }
    fn request(sender: Sender<Self>) -> Request {
        Request::Referrals(sender)
    }
}

impl Pass for ExportOutcome {
    fn sql() -> String {
        outcomes_sql()
    }
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            referral_id: r.get(1)?,
            subject_id: r.get(2)?,
            kind: r.get(3)?,
            resource: r.get(4)?,
            occurred_at: r.get(5)?,
            contact_at: r.get(6)?,
        })
    }
    fn from_postgres(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get(0)?,
            referral_id: r.try_get(1)?,
            subject_id: r.try_get(2)?,
            kind: r.try_get(3)?,
            resource: r.try_get(4)?,
            occurred_at: r.try_get(5)?,
            contact_at: r.try_get(6)?,
        })
    }
    fn request(sender: Sender<Self>) -> Request {
        Request::Outcomes(sender)
    }
}

impl Pass for ExportCase {
    fn sql() -> String {
        CASES_SQL.to_owned()
    }
    fn params(window: Window) -> Vec<i64> {
        vec![window.cutoff]
    }
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            subject_id: r.get(1)?,
            program: r.get(2)?,
            status: r.get(3)?,
            part2: r.get::<_, i64>(4)? != 0,
            effective_at: r.get(5)?,
            anchor_contact_at: r.get(6)?,
        })
    }
    fn from_postgres(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.try_get(0)?,
            subject_id: r.try_get(1)?,
            program: r.try_get(2)?,
            status: r.try_get(3)?,
            part2: r.try_get::<i64, _>(4)? != 0,
            effective_at: r.try_get(5)?,
            anchor_contact_at: r.try_get(6)?,
        })
    }
    fn request(sender: Sender<Self>) -> Request {
        Request::Cases(sender)
    }
}

/// Reads an export's passes in one snapshot; see the module docs.
pub struct ExportReader {
    requests: mpsc::UnboundedSender<(Request, Window)>,
    window: Window,
}

impl ExportReader {
    /// Opens the reader's connection and its read transaction for `window`.
    pub async fn open(store: &Store, window: Window) -> Result<Self, StoreError> {
        let (requests, queue) = mpsc::unbounded_channel();
        match store.native() {
            NativeSource::Sqlite(path) => {
                let conn = open_sqlite(path)?;
                std::thread::Builder::new()
                    .name("export-reader".into())
                    .spawn(move || sqlite_worker(&conn, queue))
                    .map_err(|_| StoreError::ReaderStopped)?;
            }
            NativeSource::SqliteInMemory => return Err(StoreError::InMemory),
            NativeSource::Postgres(options) => {
                let mut conn = PgConnection::connect_with(options.as_ref()).await?;
                sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut conn)
                    .await?;
                tokio::spawn(postgres_worker(conn, queue));
            }
        }
        Ok(Self { requests, window })
    }

    /// The next pass over rows of type `T` in the reader's window, once the
    /// passes asked for before it are done (or dropped).
    pub fn rows<T: Pass>(&self) -> Rows<T> {
        self.rows_over(self.window)
    }

    /// The same over another window (the same snapshot).
    pub fn rows_over<T: Pass>(&self, window: Window) -> Rows<T> {
        let (sender, batches) = mpsc::channel(READ_AHEAD);
        // A reader that stopped shows as the pass ending with `ReaderStopped`.
        let _ = self.requests.send((T::request(sender), window));
        Rows {
            batches,
            current: Vec::new().into_iter(),
            ended: false,
        }
    }
}

/// One pass's rows, in the order of its query.
pub struct Rows<T> {
    batches: mpsc::Receiver<Result<Vec<T>, StoreError>>,
    current: std::vec::IntoIter<T>,
    ended: bool,
}

impl<T> Rows<T> {
    /// The next row, `None` after the last. A pass that ends because its reader
    /// went away, rather than after its last row, is an error.
    pub async fn next(&mut self) -> Result<Option<T>, StoreError> {
        loop {
            if let Some(row) = self.current.next() {
                return Ok(Some(row));
            }
            if self.ended {
                return Ok(None);
            }
            match self.batches.recv().await {
                // An empty batch is the end marker: the pass read all its rows.
                Some(Ok(batch)) if batch.is_empty() => self.ended = true,
                Some(Ok(batch)) => self.current = batch.into_iter(),
                Some(Err(e)) => return Err(e),
                None => return Err(StoreError::ReaderStopped),
            }
        }
    }
}

fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = super::chain::open_sqlite(path)?;
    // The passes read each page about once: a small cache keeps memory flat.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.execute_batch("BEGIN DEFERRED")?;
    Ok(conn)
}

fn sqlite_worker(
    conn: &rusqlite::Connection,
    mut queue: mpsc::UnboundedReceiver<(Request, Window)>,
) {
    while let Some((request, window)) = queue.blocking_recv() {
        match request {
            Request::Identities(s) => sqlite_pass(conn, window, &s),
            Request::Referrals(s) => sqlite_pass(conn, window, &s),
            Request::Outcomes(s) => sqlite_pass(conn, window, &s),
            Request::Cases(s) => sqlite_pass(conn, window, &s),
        }
    }
    // Dropping the connection ends its read transaction.
}

fn sqlite_pass<T: Pass>(conn: &rusqlite::Connection, window: Window, sender: &Sender<T>) {
    let read = || -> Result<bool, StoreError> {
        let mut statement = conn.prepare(&T::sql())?;
        let mut rows = statement.query(rusqlite::params_from_iter(T::params(window)))?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = rows.next()? {
            batch.push(T::from_sqlite(row)?);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if sender.blocking_send(Ok(full)).is_err() {
                    return Ok(false);
                }
            }
        }
        if !batch.is_empty() && sender.blocking_send(Ok(batch)).is_err() {
            return Ok(false);
        }
        Ok(true)
    };
    match read() {
        Ok(true) => {
            let _ = sender.blocking_send(Ok(Vec::new()));
        }
        Ok(false) => {}
        Err(e) => {
            let _ = sender.blocking_send(Err(e));
        }
    }
}

async fn postgres_worker(
    mut conn: PgConnection,
    mut queue: mpsc::UnboundedReceiver<(Request, Window)>,
) {
    while let Some((request, window)) = queue.recv().await {
        let done = match request {
            Request::Identities(s) => postgres_pass(&mut conn, window, &s).await,
            Request::Referrals(s) => postgres_pass(&mut conn, window, &s).await,
            Request::Outcomes(s) => postgres_pass(&mut conn, window, &s).await,
            Request::Cases(s) => postgres_pass(&mut conn, window, &s).await,
        };
        // A pass dropped mid-way leaves its query unfinished on the wire:
        // the connection is not used again.
        if !done {
            break;
        }
    }
    // Read only: closing it without COMMIT loses nothing.
    let _ = conn.close().await;
}

/// Reads one pass; `false` when the connection cannot be used for another.
async fn postgres_pass<T: Pass>(
    conn: &mut PgConnection,
    window: Window,
    sender: &Sender<T>,
) -> bool {
    let sql = T::sql();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in T::params(window) {
        query = query.bind(value);
    }
    let mut rows = query.fetch(&mut *conn);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let row = match rows.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                let _ = sender.send(Err(e.into())).await;
                return false;
            }
        };
        match T::from_postgres(&row) {
            Ok(row) => batch.push(row),
            Err(e) => {
                let _ = sender.send(Err(e.into())).await;
                return false;
            }
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if sender.send(Ok(full)).await.is_err() {
                return false;
            }
        }
    }
    if !batch.is_empty() && sender.send(Ok(batch)).await.is_err() {
        return false;
    }
    let _ = sender.send(Ok(Vec::new())).await;
    true
}

#[cfg(test)]
mod tests {
    use super::Window;
    use super::{ExportReader, ExportReferral, ReferralIdentity};
    use crate::store::Store;

    const WINDOW: Window = Window {
        from: 0,
        to: 1_000,
        cutoff: 1_000,
    };

    async fn fill(store: &Store) {
        let mut tx = store.begin().await.expect("begin");
        crate::store::testing::insert_person(&mut tx).await;
        for (id, at) in [("r1", 10_i64), ("r2", 20)] {
            sqlx::query(
                "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
                 status, workflow_state, contact_at, district, arrested, resources, follow_up_by, \
                 created_at, updated_at, sealed) VALUES ($1, 'pd', 's', 'i', 'cbo-north', 'new', \
                 'open', $2, 'd1', NULL, '[]', NULL, $2, $2, NULL)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .expect("referral");
        }
        tx.commit().await.expect("commit");
    }

    async fn statuses(reader: &ExportReader) -> Vec<(String, String)> {
        let mut rows = reader.rows::<ExportReferral>();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.expect("a row") {
            out.push((row.id, row.status));
        }
        out
    }

    /// The passes of one export see one state of the database: a write
    /// committed between them is not in the second (the two passes over the
    /// referrals must agree row for row); a new reader sees it.
    async fn the_passes_read_one_snapshot(store: Store) {
        fill(&store).await;
        let reader = ExportReader::open(&store, WINDOW).await.expect("reader");
        let mut first = reader.rows::<ReferralIdentity>();
        let mut ids = Vec::new();
        while let Some(row) = first.next().await.expect("a row") {
            ids.push(row.referral_id);
        }
        assert_eq!(ids, ["r1", "r2"]);

        let mut tx = store.begin().await.expect("begin");
        sqlx::query("UPDATE referrals SET status = 'closed' WHERE id = 'r1'")
            .execute(&mut *tx)
            .await
            .expect("update");
        tx.commit().await.expect("commit");

        let old = [("r1".into(), "new".into()), ("r2".into(), "new".into())];
        assert_eq!(statuses(&reader).await, old);
        drop(reader);
        let fresh = ExportReader::open(&store, WINDOW).await.expect("reader");
        assert_eq!(statuses(&fresh).await[0], ("r1".into(), "closed".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_passes_read_one_snapshot_on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("export.db").display());
        let store = Store::connect(&url).await.expect("open SQLite");
        store.migrate().await.expect("migrate");
        the_passes_read_one_snapshot(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_passes_read_one_snapshot_on_postgres() {
        if let Some(store) = crate::store::testing::postgres_store("export_rows").await {
            the_passes_read_one_snapshot(store).await;
        }
    }
}
