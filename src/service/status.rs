//! What `/readyz` and `GET /api/v1/status` report about the parts gatehouse
//! depends on: the store, the issuers' keys, the audit chain, the services
//! and the kill switch, the version and uptime — one call for an overview.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::access::{Admin, Permission};
use super::control::Control;
use super::power::Power;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::clock::SharedClock;
use crate::identity::session::SessionTable;
use crate::identity::TokenValidator;
use crate::store::Store;

#[derive(Clone)]
pub struct Status {
    store: Store,
    clock: SharedClock,
    validator: Arc<TokenValidator>,
    audit: Arc<AuditLog>,
    control: Control,
    power: Power,
    table: Arc<SessionTable>,
    inactivity: i64,
    started_at: i64,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// The overview `GET /api/v1/status` answers.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub version: &'static str,
    pub started_at: i64,
    pub uptime_secs: i64,
    pub store: Value,
    pub issuers: Vec<Value>,
    pub audit: Value,
    pub sessions: Value,
    pub services: Vec<Value>,
    /// Machines with their power state as last read (not asked now).
    pub power: Vec<Value>,
    pub kill_switch: Value,
}

/// The parts of a [`Status`].
pub struct StatusParts {
    pub store: Store,
    pub clock: SharedClock,
    pub validator: Arc<TokenValidator>,
    pub audit: Arc<AuditLog>,
    pub control: Control,
    pub power: Power,
    pub table: Arc<SessionTable>,
    pub inactivity: i64,
}

impl Status {
    pub fn new(p: StatusParts) -> Self {
        Status {
            started_at: p.clock.now(),
            store: p.store,
            clock: p.clock,
            validator: p.validator,
            audit: p.audit,
            control: p.control,
            power: p.power,
            table: p.table,
            inactivity: p.inactivity,
        }
    }

    /// The store's backend name and whether it answered within `within`.
    pub async fn store_health(&self, within: Duration) -> (&'static str, bool) {
        let reachable = matches!(
            tokio::time::timeout(within, self.store.ping()).await,
            Ok(Ok(()))
        );
        (self.store.backend().as_str(), reachable)
    }

    /// Everything at a glance, for an admin who may read the status.
    pub async fn overview(&self, who: &Admin) -> Result<Overview, DomainError> {
        who.require(Permission::StatusRead)?;
        let now = self.clock.now();
        let (backend, reachable) = self.store_health(Duration::from_secs(1)).await;
        let head = if reachable {
            self.store.audit_head().await.ok()
        } else {
            None
        };
        let issuers = self
            .validator
            .issuers()
            .map(|i| {
                json!({
                    "issuer": i.issuer,
                    "keys_loaded": i.is_loaded(),
                    "keys": i.key_ids().len(),
                    "last_refresh": i.last_refresh(),
                })
            })
            .collect();
        let verification = self
            .audit
            .last_verification()
            .map(|(at, r)| json!({"at": at, "ok": r.ok, "entries": r.entries}));
        let checkpoint = self.audit.last_checkpoint_seq();
        Ok(Overview {
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            uptime_secs: now - self.started_at,
            store: json!({"backend": backend, "reachable": reachable}),
            issuers,
            audit: json!({
                "entries": head.as_ref().map(|h| h.0),
                "head": head.as_ref().map(|h| h.1.clone()),
                "last_checkpoint": checkpoint,
                "since_checkpoint": head.as_ref().map(|h| h.0 - checkpoint),
                "last_verification": verification,
                "mirror": self.audit.mirror_report(),
            }),
            sessions: json!({"active": self.table.count_alive(now, self.inactivity)}),
            services: self.control.overview().await,
            power: self.power.overview(),
            kill_switch: json!({
                "engaged": self.control.engaged(),
                "running": self.control.running(),
            }),
        })
    }
}
