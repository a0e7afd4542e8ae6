//! The `allowlist` table: runtime entries, soft-deleted.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

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

fn allow_from_row(r: &AnyRow) -> Result<AllowRecord, StoreError> {
    Ok(AllowRecord {
        id: r.try_get("id")?,
        cidr: r.try_get("cidr")?,
        description: r.try_get("description")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
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
        self.announce(Change::Allowlist).await;
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
        .map(allow_from_row)
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
        self.announce(Change::Allowlist).await;
        Ok(r.rows_affected() == 1)
    }
}
