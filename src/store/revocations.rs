//! The `revocations` table: bearer tokens revoked by IdP session or user.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

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

fn revocation_from_row(r: &AnyRow) -> Result<Revocation, StoreError> {
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
}

impl Store {
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
        self.announce(Change::Revocations).await;
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
        rows.iter().map(revocation_from_row).collect()
    }
}
