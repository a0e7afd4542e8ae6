//! Admin changes between two audit entries: the intent (`requested`), written
//! first — if it cannot be written the change does not happen — and the outcome
//! (`ok`, or `failed` with the error code). Knows nothing of HTTP.

use serde_json::{json, Value};

use super::access::{Admin, Permission};
use super::DomainError;
use std::sync::Arc;

use super::notify::Notifier;
use crate::audit::log::AuditLog;
use crate::audit::{Entry, NewEntry};
use crate::store::{AuditFilter, Store};

/// An error that has a stable code for the outcome entry.
pub trait Coded {
    fn code(&self) -> &'static str;
    /// What ran, for the outcome entry of a failed action (each step).
    fn outcome(&self) -> Option<&Value> {
        None
    }
}

impl Coded for DomainError {
    fn code(&self) -> &'static str {
        DomainError::code(self)
    }
    fn outcome(&self) -> Option<&Value> {
        match self {
            DomainError::ActionFailed(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs `change` between the intent and the outcome entries of `action` on
/// `target`, done by `who`.
pub async fn audited<T, E: Coded + From<DomainError>>(
    log: &AuditLog,
    who: &Admin,
    action: &str,
    target: &str,
    details: Value,
    change: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    audited_with(log, who, action, target, details, change, |_| Value::Null).await
}

/// [`audited`], with what the change did in the outcome entry: `describe`
/// of the result when it succeeded, the error's `outcome` (each step) when
/// it failed.
pub async fn audited_with<T, E: Coded + From<DomainError>>(
    log: &AuditLog,
    who: &Admin,
    action: &str,
    target: &str,
    details: Value,
    change: impl std::future::Future<Output = Result<T, E>>,
    describe: impl FnOnce(&T) -> Value,
) -> Result<T, E> {
    let addr = who.client().to_string();
    log.append(NewEntry::new(
        who.actor(),
        &addr,
        action,
        target,
        "requested",
        details.clone(),
    ))
    .await
    .map_err(|e| {
        let crate::audit::log::AuditError::Store(se) = &e;
        let m = format!("audit intent not written, change refused: {e}");
        E::from(if se.is_unavailable() {
            DomainError::Unavailable(m)
        } else {
            DomainError::Internal(m)
        })
    })?;
    let r = change.await;
    let result = if r.is_ok() { "ok" } else { "failed" };
    let mut details = details;
    if let Some(obj) = details.as_object_mut() {
        match &r {
            Ok(t) => {
                let d = describe(t);
                if !d.is_null() {
                    obj.insert("outcome".into(), d);
                }
            }
            Err(e) => {
                obj.insert("error".into(), json!(e.code()));
                if let Some(o) = e.outcome() {
                    obj.insert("outcome".into(), o.clone());
                }
            }
        }
    }
    log.record(NewEntry::new(
        who.actor(),
        &addr,
        action,
        target,
        result,
        details,
    ))
    .await;
    r
}

/// Reading the audit log: pages of entries and verification of the chain.
#[derive(Debug, Clone)]
pub struct Audit {
    log: Arc<AuditLog>,
    store: Store,
    notify: Notifier,
}

impl Audit {
    pub fn new(log: Arc<AuditLog>, store: Store, notify: Notifier) -> Self {
        Audit { log, store, notify }
    }

    /// The log itself, for services and system events that write entries.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// A page of entries, newest first, and the `before` value of the next page.
    pub async fn page(
        &self,
        who: &Admin,
        f: &AuditFilter,
    ) -> Result<(Vec<Entry>, Option<i64>), DomainError> {
        who.require(Permission::AuditRead)?;
        if !(1..=1000).contains(&f.limit) {
            return Err(DomainError::Invalid("limit: 1 to 1000".into()));
        }
        let entries = self.store.audit_page(f).await?;
        let next = if entries.len() as i64 == f.limit {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok((entries, next))
    }

    /// Verifies the whole chain against the signed checkpoints.
    pub async fn verify(&self, who: &Admin) -> Result<crate::audit::chain::Report, DomainError> {
        who.require(Permission::AuditRead)?;
        let report = self.log.verify().await?;
        if !report.ok {
            self.notify.notify(
                "audit_failed",
                "audit chain verification failed",
                json!({"error": report.error.as_ref().map(|e| e.to_string()), "entries": report.entries, "by": who.actor()}),
            );
        }
        Ok(report)
    }

    /// Records an entry done by gatehouse itself (start, reload, automatic bans).
    pub async fn record_system(&self, action: &str, target: &str, result: &str, details: Value) {
        self.log
            .record(NewEntry::new(
                "gatehouse",
                "",
                action,
                target,
                result,
                details,
            ))
            .await;
    }
}
