//! The `bans` table: bans of a client address or a user.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

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

fn ban_from_row(r: &AnyRow) -> Result<Ban, StoreError> {
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
}

impl Store {
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
        self.announce(Change::Bans).await;
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
        .map(ban_from_row)
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
        self.announce(Change::Bans).await;
        Ok(r.rows_affected() == 1)
    }
}
