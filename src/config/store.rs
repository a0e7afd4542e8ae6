//! `[store]`: the database (SQLite embedded, or a shared PostgreSQL).

use serde::Deserialize;

use super::values::V;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawStore {
    url: Option<String>,
    reload_interval: Option<String>,
    retention: Option<String>,
    max_staleness: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    /// How often everything other processes may have changed is re-read (the
    /// backstop: on PostgreSQL each change is announced and applied at once).
    pub reload_interval: std::time::Duration,
    /// Ended sessions, expired revocations, lifted or expired bans and
    /// removed allowlist entries are deleted this long after they ended.
    pub retention: std::time::Duration,
    /// With several replicas: how long session decisions go on from this
    /// process's snapshot while it cannot hear the others' changes.
    pub max_staleness: std::time::Duration,
}

impl RawStore {
    pub(super) fn validate(self, v: &mut V) -> StoreConfig {
        let raw = self;
        let store_url = raw.url.unwrap_or_else(|| "sqlite://gatehouse.db".into());
        if !(store_url.starts_with("sqlite:")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            v.err(
            "store.url",
            "must start with sqlite:// (embedded) or postgres:// (shared); e.g. \"sqlite://gatehouse.db\"",
        );
        }
        // A relative SQLite path resolves against the config file's directory, like every path.
        let store_url = match store_url.strip_prefix("sqlite://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.starts_with(':') => {
                format!("sqlite://{}", v.path(rest).display())
            }
            _ => store_url,
        };

        let reload_interval = v.duration(
            "store.reload_interval",
            raw.reload_interval.as_deref(),
            "5s",
        );
        if reload_interval < std::time::Duration::from_secs(1) {
            v.err("store.reload_interval", "must be at least 1s");
        }
        let retention = v.duration("store.retention", raw.retention.as_deref(), "7d");
        if retention < std::time::Duration::from_secs(3600) {
            v.err(
                "store.retention",
                "must be at least 1h (revocations must outlive the tokens they refuse)",
            );
        }
        let max_staleness = v.duration("store.max_staleness", raw.max_staleness.as_deref(), "60s");
        StoreConfig {
            url: store_url,
            reload_interval,
            retention,
            max_staleness,
        }
    }
}
