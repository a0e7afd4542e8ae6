//! The `audit` table and its head row: appends serialised across processes,
//! pages with filters, every entry for verification.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

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

impl Store {
    /// Appends one entry to the audit chain in one transaction: the head row is
    /// locked first (a row lock on PostgreSQL, the write lock on SQLite), so
    /// concurrent writers, also in other processes, line up behind each other.
    /// The entry is what `seal` makes from the chain's head (`None` while the
    /// chain is empty): the chain's rules stay in `audit::chain`, and `seal`
    /// returns the entry with its details as the canonical JSON text to store.
    pub async fn append_audit<F>(&self, seal: F) -> Result<crate::audit::Entry, StoreError>
    where
        F: FnOnce(Option<(i64, &str)>) -> (crate::audit::Entry, String),
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let (seq, hash): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
        let prev = (seq > 0).then_some((seq, hash.as_str()));
        let (e, details) = seal(prev);
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
        .bind(details)
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
        self.announce(Change::Audit).await;
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

    /// Entries after sequence number `seq`, oldest first, at most `limit`.
    pub async fn audit_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<crate::audit::Entry>, StoreError> {
        sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq)
        .bind(limit)
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
}
