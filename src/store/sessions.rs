//! The `sessions` table: browser sessions, their activity and their end.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

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

const SESSION_COLUMNS: &str =
    "id, issuer, subject, username, groups, email, name, acr, amr, auth_time, sid, \
     client_addr, user_agent, created_at, last_seen, expires_at, terminated_at, terminated_by, \
     id_token, refresh_token, refresh_at";

/// The columns the decision path's table needs: the sealed tokens and the
/// client's description stay in the store (read as NULL).
const LIVE_COLUMNS: &str =
    "id, issuer, subject, username, groups, email, name, acr, amr, auth_time, sid, \
     NULL AS client_addr, NULL AS user_agent, created_at, last_seen, expires_at, terminated_at, \
     NULL AS terminated_by, NULL AS id_token, NULL AS refresh_token, refresh_at";

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

impl Store {
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
        self.announce(Change::Session(s.id.clone())).await;
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
        self.announce(Change::Session(id.to_string())).await;
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

    /// One page of live sessions for the decision path's table: those with an
    /// id after `after`, in id order, at most `limit`; without the sealed
    /// tokens and the client's description (`None` here).
    pub async fn live_sessions_page(
        &self,
        now: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let q = format!(
            "SELECT {LIVE_COLUMNS} FROM sessions WHERE terminated_at IS NULL AND expires_at > $1 \
             AND id > $2 ORDER BY id LIMIT $3"
        );
        sqlx::query(&q)
            .bind(now)
            .bind(after.to_string())
            .bind(limit)
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
        self.announce(Change::Session(id.to_string())).await;
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
        if !ids.is_empty() {
            self.announce(Change::Sessions).await;
        }
        Ok(ids)
    }
}
