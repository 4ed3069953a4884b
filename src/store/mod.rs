//! The durable store: SQLite (embedded, the default) or PostgreSQL, through one set
//! of runtime queries and one set of migrations (sqlx's `Any` driver, so no query is
//! written twice).
//!
//! It owns the change sequence (every IAM change bumps it in the same transaction) and
//! the append-only audit log. It knows nothing of HTTP or of tokens; the rows it hands
//! out are plain data, and secrets in them are already hashed or encrypted.

pub mod audit;
pub mod directory;
pub mod federation;
pub mod iam;
pub mod keys;
pub mod oidc;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Connection, Executor, SqlSafeStr};

use crate::config::{DatabaseKind, database_kind};

pub use audit::AuditEvent;

/// The migrations, applied in order; the same SQL serves both backends.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("migrations/0001_foundation.sql"),
    ),
    (2, "iam", include_str!("migrations/0002_iam.sql")),
    (3, "oidc", include_str!("migrations/0003_oidc.sql")),
    (
        4,
        "federation",
        include_str!("migrations/0004_federation.sql"),
    ),
];

/// Makes the audit log append-only on SQLite.
const SQLITE_APPEND_ONLY: &str = "
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
";

/// Makes the audit log append-only on PostgreSQL (rows and TRUNCATE).
const POSTGRES_APPEND_ONLY: &str = "
CREATE OR REPLACE FUNCTION gatehouse_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION gatehouse_append_only();
CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_append_only();
";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule or a precondition was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data could not be read back (corrupt or from a newer version).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Maps unique-constraint violations to [`StoreError::Conflict`].
    fn from_write(e: sqlx::Error, what: &str) -> StoreError {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(format!("{what} already exists"));
        }
        StoreError::Database(e)
    }
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A write transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The durable store. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    kind: DatabaseKind,
}

impl Store {
    /// Connects to the database named by `url`, creating the SQLite file (in WAL mode)
    /// when needed. It does not migrate; see [`Store::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let kind = database_kind(url)
            .map_err(|e| StoreError::Unavailable(e.0.replace("GATEHOUSE_DATABASE_URL: ", "")))?;
        if kind == DatabaseKind::Sqlite {
            prepare_sqlite(url).await?;
        }
        let sqlite = kind == DatabaseKind::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Store { pool, kind })
    }

    /// Applies pending migrations (idempotent; safe when several nodes start at once).
    pub async fn migrate(&self) -> Result<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Corrupt(format!("migration failed: {e}")))?;
        // Triggers are the one thing the two dialects cannot share: applied here,
        // idempotently, after the shared migrations.
        let guard = match self.kind {
            DatabaseKind::Sqlite => SQLITE_APPEND_ONLY,
            DatabaseKind::Postgres => POSTGRES_APPEND_ONLY,
        };
        self.pool
            .execute(guard)
            .await
            .map_err(|e| StoreError::Corrupt(format!("audit log guard: {e}")))?;
        Ok(())
    }

    /// Which backend this is.
    pub fn kind(&self) -> &DatabaseKind {
        &self.kind
    }

    /// The connection pool, for the store's modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Round trip to the database.
    pub async fn ping(&self) -> Result<()> {
        self.pool
            .execute("SELECT 1")
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// (connections open, connections idle) of the pool.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so concurrent writers wait instead of failing.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.kind {
            DatabaseKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DatabaseKind::Postgres => self.pool.begin().await,
        };
        tx.map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// The changes recorded after `after` up to `upto`, in order, as (seq, kind,
    /// target); at most `limit` of them.
    pub async fn changes_between(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT seq, kind, target FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The latest committed value of the change sequence.
    pub async fn current_seq(&self) -> Result<i64> {
        let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM change_counter WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    /// Reads an instance metadata value.
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bumps the change sequence inside `tx` and records what changed; returns the new
/// sequence number. Nodes reload what changed when they see a higher number.
pub async fn bump_change(tx: &mut AnyConnection, kind: &str, target: &str) -> Result<i64> {
    let (seq,): (i64,) =
        sqlx::query_as("UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("INSERT INTO changes (seq, at, kind, target) VALUES ($1, $2, $3, $4)")
        .bind(seq)
        .bind(crate::now_unix())
        .bind(kind)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    Ok(seq)
}

/// Writes an instance metadata value inside `tx`.
pub async fn set_meta(tx: &mut AnyConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates the SQLite file and its directory if needed and switches it to WAL mode
/// (a persistent property of the file).
async fn prepare_sqlite(url: &str) -> Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    conn.close()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Converts a stored 0/1 flag.
pub(crate) fn flag(v: i64) -> bool {
    v != 0
}
