//! The only code that speaks SQL. SQLite (embedded default) or PostgreSQL through
//! sqlx's `Any` driver: one query text for both (`$n` placeholders, in order of
//! appearance), per-backend migrations in `migrations/{sqlite,postgres}/`.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::any::{AnyPoolOptions, AnyRow};
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

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// One stored session. `id` is the SHA-256 (hex) of the cookie value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
    pub sid: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub terminated_at: Option<i64>,
    pub terminated_by: Option<String>,
    /// Sealed ID token (the `id_token_hint` at logout); never serialised.
    #[serde(skip)]
    pub id_token: Option<String>,
    /// Sealed refresh token; never serialised.
    #[serde(skip)]
    pub refresh_token: Option<String>,
    /// When to refresh (shortly before the access token would expire).
    pub refresh_at: Option<i64>,
}

/// What a refresh or a step-up login changes in a live session.
#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub refresh_at: Option<i64>,
}

const AUDIT_COLUMNS: &str =
    "seq, time, actor, actor_addr, action, target, result, details, prev_hash, hash";

fn audit_from_row(r: &AnyRow) -> Result<crate::audit::Entry, String> {
    let text = |k: &str| r.try_get::<String, _>(k).map_err(|e| format!("{k}: {e}"));
    let details = text("details")?;
    Ok(crate::audit::Entry {
        seq: r.try_get("seq").map_err(|e| format!("seq: {e}"))?,
        time: text("time")?,
        actor: text("actor")?,
        actor_addr: text("actor_addr")?,
        action: text("action")?,
        target: text("target")?,
        result: text("result")?,
        details: serde_json::from_str(&details).map_err(|e| format!("details: {e}"))?,
        prev_hash: text("prev_hash")?,
        hash: text("hash")?,
    })
}

/// Filters for a page of audit entries. Times are RFC 3339 UTC (`...Z`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// One runtime allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowRecord {
    pub id: i64,
    pub cidr: String,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// One usage counter row: decisions in one minute with these labels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub bucket: i64,
    pub user: String,
    pub host: String,
    pub rule: i64,
    pub result: String,
    pub reason: String,
    pub count: i64,
}

/// A ban of a client address or a user (brute-force regulation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ban {
    pub id: i64,
    /// `ip` or `user`.
    pub kind: String,
    pub value: String,
    pub reason: String,
    pub failures: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub lifted_at: Option<i64>,
    pub lifted_by: Option<String>,
}

/// A bearer-token revocation: by IdP session (`sid`) or by user (`sub`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    pub issuer: String,
    pub kind: RevocationKind,
    pub value: String,
    /// Tokens issued before this time are revoked.
    pub not_before: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    Sid,
    Sub,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sid => "sid",
            Self::Sub => "sub",
        }
    }
}

const SESSION_COLUMNS: &str =
    "id, issuer, subject, username, groups, email, name, acr, amr, auth_time, sid, \
     client_addr, user_agent, created_at, last_seen, expires_at, terminated_at, terminated_by, \
     id_token, refresh_token, refresh_at";

fn json_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

fn session_from_row(r: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: r.try_get("id")?,
        issuer: r.try_get("issuer")?,
        subject: r.try_get("subject")?,
        username: r.try_get("username")?,
        groups: json_list(&r.try_get::<String, _>("groups")?)?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        acr: r.try_get("acr")?,
        amr: json_list(&r.try_get::<String, _>("amr")?)?,
        auth_time: r.try_get("auth_time")?,
        sid: r.try_get("sid")?,
        client_addr: r.try_get("client_addr")?,
        user_agent: r.try_get("user_agent")?,
        created_at: r.try_get("created_at")?,
        last_seen: r.try_get("last_seen")?,
        expires_at: r.try_get("expires_at")?,
        terminated_at: r.try_get("terminated_at")?,
        terminated_by: r.try_get("terminated_by")?,
        id_token: r.try_get("id_token")?,
        refresh_token: r.try_get("refresh_token")?,
        refresh_at: r.try_get("refresh_at")?,
    })
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
        Ok(Store { pool, backend })
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

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let q = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21)"
        );
        sqlx::query(&q)
            .bind(&s.id)
            .bind(&s.issuer)
            .bind(&s.subject)
            .bind(&s.username)
            .bind(serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()))
            .bind(&s.email)
            .bind(&s.name)
            .bind(&s.acr)
            .bind(serde_json::to_string(&s.amr).unwrap_or_else(|_| "[]".into()))
            .bind(s.auth_time)
            .bind(&s.sid)
            .bind(&s.client_addr)
            .bind(&s.user_agent)
            .bind(s.created_at)
            .bind(s.last_seen)
            .bind(s.expires_at)
            .bind(s.terminated_at)
            .bind(&s.terminated_by)
            .bind(&s.id_token)
            .bind(&s.refresh_token)
            .bind(s.refresh_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies a refresh or step-up to a live session; false when it is no longer live.
    pub async fn update_session(&self, id: &str, u: &SessionUpdate) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET groups = $1, email = $2, name = $3, acr = $4, amr = $5, \
             auth_time = $6, id_token = $7, refresh_token = $8, refresh_at = $9 \
             WHERE id = $10 AND terminated_at IS NULL",
        )
        .bind(serde_json::to_string(&u.groups).unwrap_or_else(|_| "[]".into()))
        .bind(&u.email)
        .bind(&u.name)
        .bind(&u.acr)
        .bind(serde_json::to_string(&u.amr).unwrap_or_else(|_| "[]".into()))
        .bind(u.auth_time)
        .bind(&u.id_token)
        .bind(&u.refresh_token)
        .bind(u.refresh_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Live sessions carrying one of the IdP's session ids, or (with `sid` None)
    /// every live session of one subject at one issuer.
    pub async fn live_sessions_by_idp(
        &self,
        now: i64,
        issuer: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut q = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE terminated_at IS NULL AND expires_at > $1 AND issuer = $2"
        );
        let mut binds: Vec<String> = vec![];
        if let Some(sid) = sid {
            binds.push(sid.to_string());
            q.push_str(&format!(" AND sid = ${}", binds.len() + 2));
        }
        if let Some(sub) = sub {
            binds.push(sub.to_string());
            q.push_str(&format!(" AND subject = ${}", binds.len() + 2));
        }
        let mut query = sqlx::query(&q).bind(now).bind(issuer.to_string());
        for b in binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let q = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Live sessions (not terminated, not past their lifetime), optionally of one user.
    pub async fn live_sessions(
        &self,
        now: i64,
        user: Option<&str>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut q = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE terminated_at IS NULL AND expires_at > $1"
        );
        if user.is_some() {
            q.push_str(" AND username = $2");
        }
        q.push_str(" ORDER BY created_at, id");
        let mut query = sqlx::query(&q).bind(now);
        if let Some(u) = user {
            query = query.bind(u.to_string());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    /// Records last-seen times in one transaction (the decision path batches them).
    pub async fn touch_sessions(&self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (id, at) in seen {
            sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                .bind(*at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Terminates one live session; false when there was none to terminate.
    pub async fn terminate_session(
        &self,
        id: &str,
        now: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET terminated_at = $1, terminated_by = $2 WHERE id = $3 AND terminated_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Terminates every live session (of one user, if given); returns their ids.
    pub async fn terminate_sessions(
        &self,
        now: i64,
        by: &str,
        user: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut sel =
            String::from("SELECT id FROM sessions WHERE terminated_at IS NULL AND expires_at > $1");
        if user.is_some() {
            sel.push_str(" AND username = $2");
        }
        let mut q = sqlx::query(&sel).bind(now);
        if let Some(u) = user {
            q = q.bind(u.to_string());
        }
        let ids: Vec<String> = q
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        for id in &ids {
            sqlx::query("UPDATE sessions SET terminated_at = $1, terminated_by = $2 WHERE id = $3")
                .bind(now)
                .bind(by)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Appends one entry to the audit chain in one transaction: the head row is
    /// locked first (a row lock on PostgreSQL, the write lock on SQLite), so
    /// concurrent writers, also in other processes, line up behind each other.
    pub async fn append_audit(
        &self,
        n: &crate::audit::NewEntry,
        time: String,
    ) -> Result<crate::audit::Entry, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let (seq, hash): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
        let prev = (seq > 0).then_some((seq, hash.as_str()));
        let e = crate::audit::chain::seal(n, prev, time);
        sqlx::query(
            "INSERT INTO audit (seq, time, actor, actor_addr, action, target, result, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.seq)
        .bind(&e.time)
        .bind(&e.actor)
        .bind(&e.actor_addr)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.result)
        .bind(crate::audit::chain::canonical_json(&e.details))
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(e.seq)
            .bind(&e.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Every audit entry in sequence order, each read or why it could not be.
    pub async fn audit_entries(&self) -> Result<Vec<crate::audit::chain::Read>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, r)| audit_from_row(r).map_err(|e| (format!("row {}", i + 1), e)))
            .collect())
    }

    /// A page of audit entries, newest first, with optional filters.
    pub async fn audit_page(
        &self,
        f: &AuditFilter,
    ) -> Result<Vec<crate::audit::Entry>, StoreError> {
        let mut q = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE 1 = 1");
        let mut binds: Vec<&str> = vec![];
        for (cond, v) in [
            ("actor =", &f.actor),
            ("action =", &f.action),
            ("time >=", &f.since),
            ("time <", &f.until),
        ] {
            if let Some(v) = v {
                binds.push(v);
                q.push_str(&format!(" AND {cond} ${}", binds.len()));
            }
        }
        if let Some(b) = f.before_seq {
            q.push_str(&format!(" AND seq < {b}"));
        }
        q.push_str(&format!(
            " ORDER BY seq DESC LIMIT {}",
            f.limit.clamp(1, 1000)
        ));
        let query_text = q;
        let mut query = sqlx::query(&query_text);
        for b in binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| audit_from_row(r).map_err(StoreError::Corrupt))
            .collect()
    }

    /// The chain's end: (sequence number, hash); (0, genesis) when empty.
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    /// Adds allowlist entries in one transaction (all or none); returns their ids.
    pub async fn insert_allowlist(&self, entries: &[AllowRecord]) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            let r = sqlx::query(
                "INSERT INTO allowlist (cidr, description, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(&e.cidr)
            .bind(&e.description)
            .bind(&e.created_by)
            .bind(e.created_at)
            .bind(e.expires_at)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(r.try_get::<i64, _>(0)?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Entries not deleted (expired ones included: the caller decides), by id.
    pub async fn allowlist(&self) -> Result<Vec<AllowRecord>, StoreError> {
        sqlx::query(
            "SELECT id, cidr, description, created_by, created_at, expires_at \
             FROM allowlist WHERE deleted_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AllowRecord {
                id: r.try_get("id")?,
                cidr: r.try_get("cidr")?,
                description: r.try_get("description")?,
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .collect()
    }

    /// Removes an entry; false when there was none with that id.
    pub async fn delete_allowlist(&self, id: i64, now: i64, by: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE allowlist SET deleted_at = $1, deleted_by = $2 WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds counted decisions in one transaction (a batch from memory).
    pub async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO usage (bucket, username, host, rule, result, reason, count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (bucket, username, host, rule, result, reason) \
                 DO UPDATE SET count = usage.count + excluded.count",
            )
            .bind(r.bucket)
            .bind(&r.user)
            .bind(&r.host)
            .bind(r.rule)
            .bind(&r.result)
            .bind(&r.reason)
            .bind(r.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Counts since `from` (Unix seconds), summed over minutes.
    pub async fn usage_since(&self, from: i64) -> Result<Vec<UsageRow>, StoreError> {
        sqlx::query(
            "SELECT username, host, rule, result, reason, CAST(SUM(count) AS BIGINT) AS total \
             FROM usage WHERE bucket >= $1 GROUP BY username, host, rule, result, reason",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(UsageRow {
                bucket: from,
                user: r.try_get("username")?,
                host: r.try_get("host")?,
                rule: r.try_get("rule")?,
                result: r.try_get("result")?,
                reason: r.try_get("reason")?,
                count: r.try_get("total")?,
            })
        })
        .collect()
    }

    /// Forgets counters older than `before`.
    pub async fn prune_usage(&self, before: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM usage WHERE bucket < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a ban; returns its id.
    pub async fn insert_ban(&self, b: &Ban) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO bans (kind, value, reason, failures, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&b.kind)
        .bind(&b.value)
        .bind(&b.reason)
        .bind(b.failures)
        .bind(b.created_at)
        .bind(b.expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Bans in force at `now` (not lifted, not expired), oldest first.
    pub async fn live_bans(&self, now: i64) -> Result<Vec<Ban>, StoreError> {
        sqlx::query(
            "SELECT id, kind, value, reason, failures, created_at, expires_at, lifted_at, lifted_by \
             FROM bans WHERE lifted_at IS NULL AND expires_at > $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Ban {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                value: r.try_get("value")?,
                reason: r.try_get("reason")?,
                failures: r.try_get("failures")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                lifted_at: r.try_get("lifted_at")?,
                lifted_by: r.try_get("lifted_by")?,
            })
        })
        .collect()
    }

    /// Lifts a ban in force; false when there was none with that id.
    pub async fn lift_ban(&self, id: i64, now: i64, by: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE bans SET lifted_at = $1, lifted_by = $2 \
             WHERE id = $3 AND lifted_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_revocation(&self, r: &Revocation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocations (issuer, kind, value, not_before, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.issuer)
        .bind(r.kind.as_str())
        .bind(&r.value)
        .bind(r.not_before)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revocations that can still match a live token.
    pub async fn live_revocations(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT issuer, kind, value, not_before, created_at, expires_at FROM revocations \
             WHERE expires_at > $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind = match r.try_get::<String, _>("kind")?.as_str() {
                    "sid" => RevocationKind::Sid,
                    "sub" => RevocationKind::Sub,
                    other => return Err(StoreError::Corrupt(format!("revocation kind {other:?}"))),
                };
                Ok(Revocation {
                    issuer: r.try_get("issuer")?,
                    kind,
                    value: r.try_get("value")?,
                    not_before: r.try_get("not_before")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
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
