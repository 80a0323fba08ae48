//! Opening the database, migrating it, and the few places where SQLite and PostgreSQL differ.

use super::{StoreError, StoreResult};
use crate::config::redact_url;
use crate::ids::AccountId;
use crate::time::Timestamp;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, Row};
use std::os::unix::fs::OpenOptionsExt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store over a pool of either backend.
#[derive(Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    url: String,
    /// SQLite only: this process's write transactions take turns here, in arrival order.
    /// SQLite allows one writer at a time; without the gate, concurrent writers (every LMTP
    /// session storing at once) wait for the lock in SQLite's busy handler, which *sleeps*
    /// with backoff (1 ms up to 100 ms) instead of queueing, and throughput collapses
    /// (measured by bench/inbound: 750 sleeps per 200 messages). Other processes on the same
    /// file still meet the busy timeout, which is correct, just slower.
    write_gate: Arc<tokio::sync::Mutex<()>>,
    /// SQLite only: rate-limit windows counted in this process (one host, no round trip).
    pub(super) local_hits: Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), u64>>>,
    /// Told of every event after its transaction commits.
    pub(super) bus: crate::bus::EventBus,
    /// Inbound messages are stored through this group commit; `None` in the committer's own
    /// copy of the store (see [`super::group_commit::GroupCommit::start`]).
    pub(super) inbound: Option<super::group_commit::GroupCommit>,
}

/// A write transaction (see [`SqlStore::begin_write`]); derefs to its connection, so it is
/// used as `&mut *tx` like a plain transaction.
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    // Released after the commit or rollback, never before.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl SqlStore {
    /// Opens (creating a SQLite file if missing), applies pending migrations and returns the
    /// pooled store. Several processes may call this at once against one database.
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(redact_url(url)));
        };
        if url.contains(":memory:") || url.contains("mode=memory") {
            // Every pooled connection would see its own empty database.
            return Err(StoreError::BadUrl("in-memory SQLite is not supported; use a file".into()));
        }
        match backend {
            Backend::Sqlite => migrate_sqlite(url).await?,
            Backend::Postgres => migrate_postgres(url).await?,
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // The Any driver builds connections from the URL alone, which cannot
                        // carry these; set them on every new connection instead.
                        sqlx::query(&format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis()))
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        tracing::debug!(backend = ?backend, url = %redact_url(url), "database ready");
        let mut store = Self {
            pool,
            backend,
            url: url.to_owned(),
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
            local_hits: Arc::default(),
            bus: crate::bus::EventBus::new(),
            inbound: None,
        };
        store.inbound = Some(super::group_commit::GroupCommit::start(store.clone()));
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL (for the PostgreSQL notification listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write transactions already
    /// exclude each other.
    pub(super) fn lock_rows(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Locks the account's row for the rest of `tx` (PostgreSQL; SQLite's write transaction
    /// already excludes every other writer): per-account caps and uniqueness checks run under it.
    pub(super) async fn lock_account(
        &self,
        tx: &mut sqlx::AnyConnection,
        account: &crate::ids::AccountId,
    ) -> StoreResult<()> {
        let sql = format!("SELECT id FROM accounts WHERE id = $1{}", self.lock_rows());
        sqlx::query(&sql).bind(account.as_str()).fetch_optional(&mut *tx).await?;
        Ok(())
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes can fail
    /// with SQLITE_BUSY without waiting for the busy timeout.
    /// In this process, SQLite writers queue on `write_gate` first.
    pub(super) async fn begin_write(&self) -> StoreResult<WriteTx> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let turn = Arc::clone(&self.write_gate).lock_owned().await;
                WriteTx { tx: self.pool.begin_with("BEGIN IMMEDIATE").await?, _turn: Some(turn) }
            }
            Backend::Postgres => WriteTx { tx: self.pool.begin().await?, _turn: None },
        })
    }
}

/// How long a SQLite writer waits for another (thread or process) before SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

async fn migrate_sqlite(url: &str) -> StoreResult<()> {
    let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        // WAL is a property of the file: set once here, every later connection uses it.
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let path = opts.get_filename().to_path_buf();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // The database holds mail and sealed secrets: create it private. SQLite gives its -wal
    // and -shm files the database file's mode.
    create_private(&path).map_err(io)?;
    // sqlx takes no lock around SQLite migrations; two processes starting on a new file
    // would both try to create the tables. An exclusive lock on a side file serialises them.
    let lock_path = path.with_file_name(format!(
        "{}.migrate-lock",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?
    .map_err(io)?;
    // A one-connection pool rather than a bare connection: `Migrator::run(&mut conn)` makes
    // the future !Send, and `open` must be spawnable.
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
    let migrated = SQLITE_MIGRATIONS.run(&pool).await;
    pool.close().await;
    drop(lock);
    migrated?;
    Ok(())
}

/// Creates `path` empty with mode 0600 unless it exists.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

async fn migrate_postgres(url: &str) -> StoreResult<()> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    // sqlx's migrator holds pg_advisory_lock (keyed on the database name) while it runs, so
    // replicas starting together apply each migration exactly once; we assert that lock is on.
    debug_assert!(POSTGRES_MIGRATIONS.locking);
    POSTGRES_MIGRATIONS.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// `$1, $2, …, $n`: the placeholders of an `IN (…)` list of `n` values bound first.
/// `($1, …, $w), ($w+1, …), …` for `rows` rows of `width` values: a multi-row `VALUES`.
pub(super) fn value_rows(rows: usize, width: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        out += if r == 0 { "(" } else { ", (" };
        for c in 0..width {
            if c > 0 {
                out += ", ";
            }
            out += &format!("${}", r * width + c + 1);
        }
        out += ")";
    }
    out
}

pub(super) fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Unique-constraint violations become `Conflict(what)`; everything else stays a database error.
pub(super) fn conflict_as(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

pub(super) fn ts(row: &AnyRow, col: &str) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_micros(row.try_get::<i64, _>(col)?))
}

pub(super) fn opt_ts(row: &AnyRow, col: &str) -> StoreResult<Option<Timestamp>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp::from_micros))
}

pub(super) fn flag(row: &AnyRow, col: &str) -> StoreResult<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

impl SqlStore {
    /// One page of an account's rows. `sql` binds `$1` account, `$2`/`$3` the keyset
    /// position (created_at, tie-breaker key; strictly after it, newest first) and `$4` the
    /// row limit, which is the page size plus one so the caller can tell whether more exist.
    pub(super) async fn fetch_page<T>(
        &self,
        sql: &str,
        account: &AccountId,
        page: &super::PageQuery,
        map: fn(&AnyRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let (at, key) = match &page.after {
            Some(a) => (a.created_at.as_micros(), a.key.clone()),
            None => (i64::MAX, String::new()),
        };
        let rows = sqlx::query(sql)
            .bind(account.as_str())
            .bind(at)
            .bind(key)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(map).collect()
    }

    /// The row `sql` selects by its one bind value `$1`, if any.
    pub(super) async fn fetch_by<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&AnyRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = sqlx::query(sql).bind(key).fetch_optional(&self.pool).await?;
        row.as_ref().map(map).transpose()
    }
}

#[async_trait::async_trait]
impl super::StoreHealth for SqlStore {
    async fn gauges(&self) -> StoreResult<super::Gauges> {
        let count = |sql: &'static str| async move {
            let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("k")?, r.try_get::<i64, _>("n")?)))
                .collect::<StoreResult<Vec<_>>>()
        };
        Ok(super::Gauges {
            jobs: count("SELECT kind AS k, COUNT(*) AS n FROM jobs GROUP BY kind ORDER BY kind").await?,
            holds: count("SELECT state AS k, COUNT(*) AS n FROM holds GROUP BY state ORDER BY state").await?,
            outbound: count(
                "SELECT status AS k, COUNT(*) AS n FROM messages WHERE direction = 'outbound' GROUP BY status ORDER BY status",
            )
            .await?,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A vocabulary column: a stored value that is not a word is an error naming it.
pub(super) fn word<T: crate::vocab::Word>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let text: String = row.try_get(col)?;
    T::parse(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// An optional vocabulary column: NULL or the empty text is `None`.
pub(super) fn opt_word<T: crate::vocab::Word>(row: &AnyRow, col: &str) -> StoreResult<Option<T>> {
    let text: Option<String> = row.try_get(col)?;
    crate::vocab::parse_optional(text.as_deref().unwrap_or(""))
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// A JSON list of vocabulary words.
pub(super) fn word_list<T: crate::vocab::Word>(row: &AnyRow, col: &str) -> StoreResult<Vec<T>> {
    let text: String = row.try_get(col)?;
    let words: Vec<String> =
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))?;
    words.iter().map(|w| T::parse(w).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))).collect()
}

/// The JSON list a [`word_list`] column keeps.
pub(super) fn word_list_json<T: crate::vocab::Word>(words: &[T]) -> String {
    let texts: Vec<&str> = words.iter().map(|w| w.as_str()).collect();
    serde_json::to_string(&texts).unwrap_or_else(|_| "[]".into())
}
