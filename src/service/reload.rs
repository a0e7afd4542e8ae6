//! Configuration reload (SIGHUP): the `[access]` section — rules, default
//! policy, the static allowlist, two-factor settings — takes effect at once;
//! other sections that changed are reported as needing a restart. An invalid
//! file changes nothing. Either way the attempt is audited.

use std::sync::Arc;

use serde_json::json;

use super::allowlist::Allowlist;
use super::notify::Notifier;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::audit::NewEntry;
use crate::config::{Config, ConfigSource};

/// What a configuration reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadSummary {
    pub rules: usize,
    pub static_allowlist: usize,
    /// Sections that differ from the running ones but only apply after a restart.
    pub needs_restart: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Reload {
    /// The configuration the process started with (sections other than
    /// `[access]` are compared with it).
    running: Arc<Config>,
    audit: Arc<AuditLog>,
    allowlist: Allowlist,
    notify: Notifier,
}

impl Reload {
    pub fn new(
        running: Arc<Config>,
        audit: Arc<AuditLog>,
        allowlist: Allowlist,
        notify: Notifier,
    ) -> Self {
        Reload {
            running,
            audit,
            allowlist,
            notify,
        }
    }

    async fn failed(&self, target: &str, details: serde_json::Value) {
        self.notify.notify(
            "config_reload",
            format!("configuration reload of {target} failed; the running one stays"),
            details.clone(),
        );
        self.audit
            .record(NewEntry::new(
                "gatehouse",
                "",
                "config.reload",
                target,
                "failed",
                details,
            ))
            .await;
    }

    /// Reads `source` again and applies its `[access]` section.
    pub async fn reload(&self, source: &ConfigSource) -> Result<ReloadSummary, DomainError> {
        let new = match Config::load(source) {
            Ok(c) => c,
            Err(errors) => {
                let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
                self.failed(&self.running.source, json!({ "errors": keys }))
                    .await;
                return Err(DomainError::Invalid(errors.to_string()));
            }
        };
        let policy = match new.access.policy() {
            Ok(p) => p,
            Err(e) => {
                self.failed(&new.source, json!({ "errors": ["access"] }))
                    .await;
                return Err(DomainError::Invalid(format!("access: {e}")));
            }
        };
        let summary = ReloadSummary {
            rules: new.access.rules.len(),
            static_allowlist: new.access.allowlist.len(),
            needs_restart: changed_sections(&self.running, &new),
        };
        let prepared = match self
            .allowlist
            .prepare(policy, new.access.allowlist.clone())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.failed(&new.source, json!({ "errors": ["store"] }))
                    .await;
                return Err(DomainError::Internal(format!(
                    "not reloaded: the runtime allowlist could not be read: {e}"
                )));
            }
        };
        // Audited before it applies: a reload that cannot be recorded does not happen.
        self.audit
            .append(NewEntry::new(
                "gatehouse",
                "",
                "config.reload",
                &new.source,
                "ok",
                serde_json::to_value(&summary).unwrap_or_default(),
            ))
            .await
            .map_err(|e| {
                DomainError::Internal(format!(
                    "not reloaded: the audit entry could not be written: {e}"
                ))
            })?;
        self.allowlist.install(prepared);
        self.notify.notify(
            "config_reload",
            format!("configuration reloaded from {}", new.source),
            serde_json::to_value(&summary).unwrap_or_default(),
        );
        Ok(summary)
    }
}

/// The sections other than `[access]` that differ: they apply after a restart.
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    [
        ("server", differs(&old.server, &new.server)),
        ("store", differs(&old.store, &new.store)),
        ("issuers", differs(&old.issuers, &new.issuers)),
        (
            "local_issuer",
            differs(&old.local_issuer, &new.local_issuer),
        ),
        ("session", differs(&old.session, &new.session)),
        ("admin", differs(&old.admin, &new.admin)),
        ("audit", differs(&old.audit, &new.audit)),
        ("regulation", differs(&old.regulation, &new.regulation)),
        ("control", differs(&old.control, &new.control)),
    ]
    .into_iter()
    .filter_map(|(name, d)| d.then_some(name))
    .collect()
}
