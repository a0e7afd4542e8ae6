//! The only code that speaks SQL. SQLite (embedded default) or PostgreSQL through
//! sqlx's `Any` driver: one query text for both (`$n` placeholders, in order of
//! appearance), per-backend migrations in `migrations/{sqlite,postgres}/`.
//! One module per table, each with its record types and one row mapping.

mod allowlist;
mod audit;
mod bans;
pub mod changes;
mod control;
mod retention;
mod revocations;
mod sessions;
mod usage;

pub use allowlist::AllowRecord;
pub use audit::AuditFilter;
pub use bans::Ban;
pub use control::ControlValue;
pub use retention::Purgeable;
pub use revocations::{Revocation, RevocationKind};
pub use sessions::{SessionRecord, SessionUpdate};
pub use usage::UsageRow;

use std::borrow::Cow;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Migrations compiled into the binary: (version, description, SQL).
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE_MIGRATIONS: Embedded = &[
    (
        1,
        "sessions",
        include_str!("../../migrations/sqlite/0001_sessions.sql"),
    ),
    (
        2,
        "login",
        include_str!("../../migrations/sqlite/0002_login.sql"),
    ),
    (
        3,
        "bans",
        include_str!("../../migrations/sqlite/0003_bans.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../../migrations/sqlite/0004_audit.sql"),
    ),
    (
        5,
        "allowlist",
        include_str!("../../migrations/sqlite/0005_allowlist.sql"),
    ),
    (
        6,
        "usage",
        include_str!("../../migrations/sqlite/0006_usage.sql"),
    ),
    (
        7,
        "control",
        include_str!("../../migrations/sqlite/0007_control.sql"),
    ),
];
const POSTGRES_MIGRATIONS: Embedded = &[
    (
        1,
        "sessions",
        include_str!("../../migrations/postgres/0001_sessions.sql"),
    ),
    (
        2,
        "login",
        include_str!("../../migrations/postgres/0002_login.sql"),
    ),
    (
        3,
        "bans",
        include_str!("../../migrations/postgres/0003_bans.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../../migrations/postgres/0004_audit.sql"),
    ),
    (
        5,
        "allowlist",
        include_str!("../../migrations/postgres/0005_allowlist.sql"),
    ),
    (
        6,
        "usage",
        include_str!("../../migrations/postgres/0006_usage.sql"),
    ),
    (
        7,
        "control",
        include_str!("../../migrations/postgres/0007_control.sql"),
    ),
];

/// Advisory-lock key for migrations ("gatehous" in ASCII).
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

async fn applied(conn: &mut sqlx::AnyConnection) -> Result<Vec<i64>, StoreError> {
    let rows =
        sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
        .collect()
}

#[derive(Debug)]
struct EmbeddedSource(Embedded);

impl<'s> MigrationSource<'s> for EmbeddedSource {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.url: {0}")]
    Url(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The database could not be reached (down, restarting, unreachable),
    /// as opposed to refusing a statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08 (connection exception) and 57P (shutdown).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            _ => false,
        }
    }
}

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL as configured (the change listener opens its own connection).
    url: std::sync::Arc<str>,
    /// This process's name in change announcements (`changes`).
    origin: std::sync::Arc<str>,
}

/// A random name for this process (16 hex digits).
fn new_origin() -> std::sync::Arc<str> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator failed");
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        .into()
}

/// The file a SQLite URL names (`None` for an in-memory database).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.into())
}

/// Claims a SQLite database for this process: one serving process per file
/// (each keeps its snapshots in memory; a second would not see the first's
/// changes at once). The claim is a lock on `<file>.lock`, held while the
/// returned file is open; `None` for PostgreSQL and in-memory databases.
pub fn claim_sqlite(url: &str) -> Result<Option<std::fs::File>, StoreError> {
    use std::io::{Read, Seek, Write};
    let Some(db) = sqlite_path(url) else {
        return Ok(None);
    };
    let mut lock_path = db.clone().into_os_string();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StoreError::Url(format!("cannot open {}: {e}", lock_path.display())))?;
    match f.try_lock() {
        Ok(()) => {
            let _ = f.set_len(0);
            let _ = f.rewind();
            let _ = writeln!(f, "{}", std::process::id());
            Ok(Some(f))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            Err(StoreError::Url(format!(
                "another gatehouse process (pid {}) serves {}: one process per SQLite database; \
                 for several replicas use one PostgreSQL (store.url = \"postgres://...\")",
                pid.trim(),
                db.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Url(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// A SQLite URL that creates the file if it is missing.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Store {
    /// Connects (the SQLite file is created if missing). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let configured: std::sync::Arc<str> = url.into();
        let backend = Backend::of(url)
            .ok_or_else(|| StoreError::Url("must start with sqlite:// or postgres://".into()))?;
        let (url, max) = match backend {
            // SQLite serialises writers anyway; a few connections serve the readers.
            Backend::Sqlite => (sqlite_url(url), 4),
            Backend::Postgres => (url.to_string(), 10),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // 512 KiB of page cache a connection, not SQLite's 2 MiB:
                        // the store is off the decision path, the kernel caches
                        // the file anyway, and four full caches were a third of
                        // gatehouse's memory with 10,000 sessions.
                        conn.execute("PRAGMA cache_size = -512").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite && !url.contains(":memory:") {
            // WAL lets readers proceed while a writer commits.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Store {
            pool,
            backend,
            url: configured,
            origin: new_origin(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations (idempotent). On PostgreSQL a gatehouse advisory
    /// lock, held on the connection the migrator uses, makes concurrent starts of
    /// several processes migrate once and count exactly. Returns how many this call applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let source = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrator = Migrator::new(EmbeddedSource(source)).await?;
        let mut conn = self.pool.acquire().await?;
        let pg = self.backend == Backend::Postgres;
        if pg {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let before = applied(&mut conn).await.unwrap_or_default();
        // run_direct on the connection itself: run() via Acquire is not provably Send.
        let ran = migrator.run_direct(&mut *conn).await;
        let result = match ran {
            Ok(()) => applied(&mut conn)
                .await
                .map(|after| after.len().saturating_sub(before.len())),
            Err(e) => Err(StoreError::from(e)),
        };
        if pg {
            // Released on disconnect too; unlock now so the pooled connection is clean.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        result
    }

    /// Versions recorded in sqlx's migrations table (empty before the first run).
    pub async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        applied(&mut conn).await
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends must have the same migration numbers, every file embedded.
    #[test]
    fn migrations_are_embedded_and_paired() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (sub, embedded) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let mut files: Vec<String> = std::fs::read_dir(dir.join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".sql"))
                .collect();
            files.sort();
            let versions: Vec<i64> = files.iter().map(|f| f[..4].parse().unwrap()).collect();
            let embedded_versions: Vec<i64> = embedded.iter().map(|m| m.0).collect();
            assert_eq!(
                versions, embedded_versions,
                "{sub}: every migration file must be embedded"
            );
            for (f, m) in files.iter().zip(embedded) {
                let text = std::fs::read_to_string(dir.join(sub).join(f)).unwrap();
                assert_eq!(text, m.2, "{sub}/{f} differs from the embedded text");
            }
        }
        let a: Vec<i64> = SQLITE_MIGRATIONS.iter().map(|m| m.0).collect();
        let b: Vec<i64> = POSTGRES_MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(
            a, b,
            "sqlite and postgres migrations must have the same numbers"
        );
    }

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::of("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://x"), None);
        assert_eq!(sqlite_url("sqlite://x.db"), "sqlite://x.db?mode=rwc");
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
