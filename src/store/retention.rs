//! Forgetting what no decision needs any more: sessions that ended, expired
//! revocations, bans lifted or run out, allowlist entries removed or expired —
//! once `store.retention` has passed since. In bounded batches, so a purge
//! never holds a table for long. The audit log is never purged here.

use super::{Store, StoreError};

/// A table the purge works on, with the condition that makes a row old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purgeable {
    Sessions,
    Revocations,
    Bans,
    Allowlist,
}

impl Purgeable {
    pub const ALL: [Purgeable; 4] = [
        Purgeable::Sessions,
        Purgeable::Revocations,
        Purgeable::Bans,
        Purgeable::Allowlist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purgeable::Sessions => "sessions",
            Purgeable::Revocations => "revocations",
            Purgeable::Bans => "bans",
            Purgeable::Allowlist => "allowlist",
        }
    }

    /// `(table, key column, condition on $1 = the cutoff)`.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Purgeable::Sessions => (
                "sessions",
                "id",
                "expires_at < $1 OR (terminated_at IS NOT NULL AND terminated_at < $1)",
            ),
            Purgeable::Revocations => ("revocations", "id", "expires_at < $1"),
            Purgeable::Bans => (
                "bans",
                "id",
                "expires_at < $1 OR (lifted_at IS NOT NULL AND lifted_at < $1)",
            ),
            Purgeable::Allowlist => (
                "allowlist",
                "id",
                "(deleted_at IS NOT NULL AND deleted_at < $1) OR (expires_at IS NOT NULL AND expires_at < $1)",
            ),
        }
    }
}

impl Store {
    /// Deletes at most `batch` rows of `t` that became old before `cutoff`
    /// (Unix seconds); returns how many.
    pub async fn purge(&self, t: Purgeable, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
        let (table, key, cond) = t.sql();
        let q = format!(
            "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {cond} LIMIT $2)"
        );
        let r = sqlx::query(&q)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Rows in `t` (for the operator's view and the tests).
    pub async fn count(&self, t: Purgeable) -> Result<i64, StoreError> {
        use sqlx::Row;
        let (table, _, _) = t.sql();
        let r = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<i64, _>("n")?)
    }
}
