//! The `control_state` table: named values the control service shares across
//! restarts and replicas (the kill switch's deny, its last run).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::Change;
use super::{Store, StoreError};

/// One named value, with who set it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlValue {
    pub name: String,
    pub value: String,
    pub updated_at: i64,
    pub updated_by: String,
}

fn control_from_row(r: &AnyRow) -> Result<ControlValue, StoreError> {
    Ok(ControlValue {
        name: r.try_get("name")?,
        value: r.try_get("value")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

impl Store {
    /// The value named `name`, if it was ever set.
    pub async fn control_value(&self, name: &str) -> Result<Option<ControlValue>, StoreError> {
        sqlx::query("SELECT name, value, updated_at, updated_by FROM control_state WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(control_from_row)
            .transpose()
    }

    /// Sets (or replaces) the value named `name`.
    pub async fn set_control_value(&self, v: &ControlValue) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO control_state (name, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&v.name)
        .bind(&v.value)
        .bind(v.updated_at)
        .bind(&v.updated_by)
        .execute(&self.pool)
        .await?;
        self.announce(Change::Control).await;
        Ok(())
    }
}
