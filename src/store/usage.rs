//! The `usage` table: decision counters per minute and labels.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

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

/// A summed row (`total`) of a window starting at `bucket`.
fn usage_from_row(r: &AnyRow, bucket: i64) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        bucket,
        user: r.try_get("username")?,
        host: r.try_get("host")?,
        rule: r.try_get("rule")?,
        result: r.try_get("result")?,
        reason: r.try_get("reason")?,
        count: r.try_get("total")?,
    })
}

impl Store {
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
        .map(|r| usage_from_row(r, from))
        .collect()
    }

    /// Requests and denials since `from`, in slots of `step` seconds:
    /// `(slot start, requests, denials)`, oldest first, empty slots left out.
    pub async fn usage_series(
        &self,
        from: i64,
        step: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        sqlx::query(
            "SELECT (bucket - $1) / $2 AS slot, CAST(SUM(count) AS BIGINT) AS total, \
             CAST(SUM(CASE WHEN result = 'allow' THEN 0 ELSE count END) AS BIGINT) AS denied \
             FROM usage WHERE bucket >= $1 GROUP BY (bucket - $1) / $2 ORDER BY slot",
        )
        .bind(from)
        .bind(step)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let slot: i64 = r.try_get("slot")?;
            Ok((
                from + slot * step,
                r.try_get("total")?,
                r.try_get("denied")?,
            ))
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
}
