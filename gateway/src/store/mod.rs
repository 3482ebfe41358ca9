//! Storage: repositories over sqlx, one code path for SQLite and PostgreSQL.
//!
//! The gateway talks to its database through sqlx's `Any` driver: the same
//! runtime-checked queries (with `$1`-style placeholders, which the SQLite driver
//! accepts too) run on the embedded SQLite default and on PostgreSQL. Columns stay
//! integers, text and blobs so that both backends decode them the same way. Nothing
//! outside this module writes SQL, and nothing in here knows about HTTP.
//!
//! Four bulk reads do not go through `Any`, because at a million rows the
//! `Any` driver's cost per row was most of their time; each reads through the
//! native drivers (`rusqlite` on a SQLite file, sqlx's own PostgreSQL driver,
//! with binary `COPY` parsed by [`copy_binary`]) on connections of its own:
//! - [`chain`]: the whole audit log, for `crosswalk audit verify`;
//! - [`record_ids`]: the ids of every audited table's rows, in one snapshot,
//!   which `audit verify` checks against the chain's create entries;
//! - [`export_rows`]: an evaluator export's passes, in one snapshot;
//! - [`aggregates`] on a SQLite file: a table's months, grouped in Rust
//!   (SQLite's GROUP BY sorts; PostgreSQL's hashes, so it keeps the SQL).
//!
//! # Adding a migration
//! Add `NNNN_what.sql` to **both** `migrations/sqlite/` and `migrations/postgres/`
//! with the same number, written in each dialect. Migrations are embedded in the
//! binary at build time; `crosswalk migrate` and `serve` apply what is missing.
//!
//! # Adding a repository
//! Add a submodule `store/<table>.rs` with an `impl Store` block (or free
//! functions taking a [`Tx`]) and one method per query. A method
//! that looks a row up returns `Result<Option<T>, StoreError>`: "not found" is a
//! value, not an error. Give each query a span named `db.<table>.<op>`.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Row as _};

pub mod aggregates;
pub mod audit;
pub mod cases;
pub(crate) mod chain;
pub mod consents;
pub(crate) mod copy_binary;
pub(crate) mod export_rows;
pub mod exports;
pub mod holders;
pub mod idempotency;
pub mod outcomes;
pub mod record_ids;
pub mod referrals;
pub mod study_plans;
pub mod subjects;
#[cfg(test)]
pub(crate) mod testing;
mod vault_keys;
pub mod witness;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// SQLite's page cache per connection, in KiB (a negative `cache_size`).
///
/// The default is 2 MiB. A batch chunk inserts thousands of rows at random
/// places in the linkage-token and identity indexes; with a small cache the
/// B-tree pages those inserts need are read back from the file again and again,
/// and dirty pages spill into the WAL before the commit, some of them several
/// times per transaction. 64 MiB holds the hot pages of a registry of a few
/// hundred thousand identities; it is memory the connection takes only as it
/// reads, at most four connections' worth.
const SQLITE_CACHE_PRAGMA: &str = "PRAGMA cache_size = -65536";

/// When a committing SQLite connection checkpoints the WAL by itself, in
/// pages (4 KiB each): a safety net only, far above SQLite's default of 1,000.
///
/// A checkpoint copies the WAL's pages into the database file and syncs it.
/// Left to SQLite, it runs inside whichever commit crosses the limit — the
/// intake writer's, which then holds every waiting referral for that long (the
/// tail of single-referral latency). `serve` checkpoints in the background
/// instead ([`Store::spawn_wal_checkpoints`]), concurrently with the writer;
/// this limit only bounds the WAL where nothing does that (the CLI's commands,
/// benches). Not higher: reads slow down as the WAL grows (each page looked up
/// in its index), ~15% on an export over a 64 MiB WAL.
const SQLITE_AUTOCHECKPOINT_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 4096";

/// How much of the database file SQLite reads through a memory map rather
/// than `pread` into its page cache: up to 2 GiB (SQLite's own ceiling).
///
/// Past a few hundred thousand identities the linkage-token index outgrows
/// the 64 MiB page cache, and every candidate lookup reads its B-tree pages
/// from the file again. Through the map, a page already in the operating
/// system's cache costs a memory access, not a system call and a copy; pages
/// are shared with the OS cache, so this is address space, not memory the
/// process takes. Measured (`cargo bench --bench registry`, chunks of 500):
/// the candidate lookup per identity went from 48 to 41 µs at 100,000
/// identities and from 127 to 114 µs at 1,000,000 — better, not flat. The
/// rest of the growth is not explained yet; the likely part is the lookup
/// finding more candidates as more people share the weak keys, which no
/// cache would change.
const SQLITE_MMAP_PRAGMA: &str = "PRAGMA mmap_size = 2147418112";

/// A transaction on either backend: writes and their audit entries share one.
pub type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Which database the gateway is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "this database was created with a different master secret; refusing to start \
         (pseudonyms and links would silently break)"
    )]
    KeyMismatch,
    #[error("the database holds data the gateway cannot read: {what}")]
    Corrupt { what: &'static str },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the audit log can only be verified in a database file, not in memory")]
    InMemory,
    #[error("a database reader thread stopped unexpectedly")]
    ReaderStopped,
}

/// The database handle shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Where the audit chain's native reader connects ([`chain`]).
    native: std::sync::Arc<chain::NativeSource>,
}

impl std::fmt::Debug for Store {
    // The URL may hold a password, so it is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `url`: `sqlite://PATH` (file created if missing, WAL journal) or
    /// `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, prepare_sqlite_url(url)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let native = match backend {
            // sqlx parses the path (percent-decoded) exactly as it opens it.
            Backend::Sqlite if url.contains(":memory:") || url.contains("mode=memory") => {
                chain::NativeSource::SqliteInMemory
            }
            Backend::Sqlite => chain::NativeSource::Sqlite(
                sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .get_filename()
                    .to_owned(),
            ),
            Backend::Postgres => chain::NativeSource::Postgres(Box::new(
                sqlx::postgres::PgConnectOptions::from_str(&url)?,
            )),
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // SQLite has one writer at a time; a few readers are all WAL can use.
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            // Two kept open so that a quick side query (the vault confirming a data
            // key has committed) finds a free connection without waiting.
            .min_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query(SQLITE_CACHE_PRAGMA).execute(&mut *conn).await?;
                        sqlx::query(SQLITE_MMAP_PRAGMA).execute(&mut *conn).await?;
                        sqlx::query(SQLITE_AUTOCHECKPOINT_PRAGMA)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // WAL is a property of the file: once set it holds for every connection.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Self {
            pool,
            backend,
            native: std::sync::Arc::new(native),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite: checkpoints the WAL every `every` on a task of its own, so that
    /// no commit pays for it (see [`SQLITE_AUTOCHECKPOINT_PRAGMA`]). `PASSIVE`
    /// copies what no reader still needs without waiting for anyone or
    /// blocking the writer; SQLite restarts the WAL from its beginning at the
    /// next write once everything in it was copied. Nothing on PostgreSQL.
    pub fn spawn_wal_checkpoints(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let pool = self.pool.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "the background WAL checkpoint failed");
                }
            }
        }))
    }

    /// Starts a transaction. Everything a request writes, and its audit entry,
    /// goes through one.
    ///
    /// On SQLite it begins `IMMEDIATE`, taking the write lock up front: a deferred
    /// transaction that reads and then writes fails outright (`SQLITE_BUSY`, not
    /// retried) when another writer committed in between, whereas an immediate
    /// one waits its turn (up to the busy timeout).
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Starts a read-only transaction (a consistent snapshot that takes no write
    /// lock). Anything that appends to the audit log must use [`Store::begin`].
    pub async fn begin_read(&self) -> Result<Tx<'static>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Where the native chain reader connects, for [`chain`] only.
    fn native(&self) -> &chain::NativeSource {
        &self.native
    }

    /// The pool, for repository submodules of this module only.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the migrations this binary carries that the database lacks.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers, for `/readyz`.
    #[tracing::instrument(name = "db.ping", skip(self))]
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records the master secret's key-check value on first start and refuses a
    /// database that was created under another one.
    #[tracing::instrument(name = "db.gateway_meta.check_key", skip_all)]
    pub async fn check_master_key(&self, key_check: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT value FROM gateway_meta WHERE name = $1")
            .bind("master_key_check")
            .fetch_optional(&mut *tx)
            .await?;
        match existing {
            Some(row) => {
                let stored: String = row.try_get("value")?;
                if stored != key_check {
                    return Err(StoreError::KeyMismatch);
                }
            }
            None => {
                sqlx::query("INSERT INTO gateway_meta (name, value) VALUES ($1, $2)")
                    .bind("master_key_check")
                    .bind(key_check)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A fact from `gateway_meta`.
    #[tracing::instrument(name = "db.gateway_meta.get", skip(tx))]
    pub async fn meta_get(tx: &mut Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM gateway_meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a fact in `gateway_meta`.
    #[tracing::instrument(name = "db.gateway_meta.set", skip(tx, value))]
    pub async fn meta_set(tx: &mut Tx<'_>, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO gateway_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Removes a fact from `gateway_meta`.
    #[tracing::instrument(name = "db.gateway_meta.delete", skip(tx))]
    pub async fn meta_delete(tx: &mut Tx<'_>, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gateway_meta WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure the SQLite file can be created: its directory exists and the URL
/// asks for create-if-missing.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if !path.is_empty()
        && path != ":memory:"
        && let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
