//! The runtime IP allowlist: add, remove, import (all or nothing, every bad
//! line named). A change is in the decision path's snapshot before the call
//! returns; an entry past its `expires_at` stops matching on time.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use ipnet::IpNet;
use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::clock::{parse_rfc3339, SharedClock};
use crate::decision::{AllowEntry, Allowlist as Snapshot, Policy};
use crate::store::{AllowRecord, Store, StoreError};

/// Most entries one import may add.
pub const MAX_IMPORT: usize = 10_000;

/// A CIDR as the allowlist keeps it: validated by ipnet, host bits refused (a
/// typo would silently widen or narrow the entry), a bare address made /32 or
/// /128, IPv4-mapped IPv6 written as IPv4 (client addresses are compared that way).
pub fn normalise_cidr(s: &str) -> Result<IpNet, String> {
    let n = crate::config::parse_cidr(s)?;
    if let IpNet::V6(v6) = n {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                return Ok(IpNet::V4(
                    ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_err(|e| e.to_string())?,
                ));
            }
        }
    }
    Ok(n)
}

/// One entry as a caller gives it.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub cidr: String,
    pub description: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
}

fn checked(e: &NewEntry, now: i64, by: &str) -> Result<AllowRecord, String> {
    let net = normalise_cidr(&e.cidr)?;
    if e.description.len() > 256 || e.description.chars().any(char::is_control) {
        return Err("description: at most 256 characters, no control characters".into());
    }
    let expires_at = match &e.expires_at {
        None => None,
        Some(t) => {
            let at = parse_rfc3339(t).ok_or_else(|| {
                format!("expires_at: {t:?} is not an RFC 3339 time (2026-12-31T23:59:59Z)")
            })?;
            if at <= now {
                return Err(format!("expires_at: {t} is in the past"));
            }
            Some(at)
        }
    };
    Ok(AllowRecord {
        id: 0,
        cidr: net.to_string(),
        description: e.description.clone(),
        created_by: by.to_string(),
        created_at: now,
        expires_at,
    })
}

/// What the allowlist holds: the configuration's entries (read-only), the
/// runtime ones, and whether only listed addresses pass at all.
pub struct Listing {
    pub static_entries: Vec<IpNet>,
    pub runtime: Vec<AllowRecord>,
    pub enforced: bool,
}

/// The runtime allowlist and the policy snapshot it is swapped into.
#[derive(Debug, Clone)]
pub struct Allowlist {
    store: Store,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    /// The decision path's policy; a change swaps in a copy with the new list.
    policy: Arc<ArcSwap<Policy>>,
    /// `access.allowlist` as last loaded (it changes with a configuration reload).
    static_entries: Arc<ArcSwap<Vec<IpNet>>>,
}

impl Allowlist {
    pub fn new(
        store: Store,
        clock: SharedClock,
        audit: Arc<AuditLog>,
        policy: Arc<ArcSwap<Policy>>,
        static_entries: Vec<IpNet>,
    ) -> Self {
        Allowlist {
            store,
            clock,
            audit,
            policy,
            static_entries: Arc::new(ArcSwap::from_pointee(static_entries)),
        }
    }

    /// The configuration's static entries and the store's runtime entries.
    async fn entries(&self, statics: &[IpNet]) -> Result<Snapshot, StoreError> {
        let mut entries: Vec<AllowEntry> = statics
            .iter()
            .map(|n| AllowEntry {
                net: *n,
                expires_at: None,
            })
            .collect();
        for r in self.store.allowlist().await? {
            match r.cidr.parse() {
                Ok(net) => entries.push(AllowEntry {
                    net,
                    expires_at: r.expires_at,
                }),
                Err(_) => {
                    tracing::error!(id = r.id, "a stored allowlist entry is not a CIDR; skipped")
                }
            }
        }
        Ok(Snapshot::new(entries))
    }

    /// Rebuilds the allowlist from the static and runtime entries and swaps it
    /// into the policy.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let list = Arc::new(self.entries(&self.static_entries.load()).await?);
        // rcu: a concurrent change of another part of the policy (the kill
        // switch's deny) is kept, never overwritten with a stale copy.
        self.policy
            .rcu(|p| Arc::new(p.with_allowlist_arc(list.clone())));
        Ok(())
    }

    /// A reloaded configuration's policy with its static entries and the
    /// runtime entries, ready to install (nothing changes yet).
    pub async fn prepare(
        &self,
        policy: Policy,
        static_entries: Vec<IpNet>,
    ) -> Result<(Policy, Vec<IpNet>), StoreError> {
        let list = self.entries(&static_entries).await?;
        Ok((policy.with_allowlist(list), static_entries))
    }

    /// Installs what [`Allowlist::prepare`] built: one swap, so no decision
    /// sees the new rules without the runtime entries.
    pub fn install(&self, (policy, static_entries): (Policy, Vec<IpNet>)) {
        self.static_entries.store(Arc::new(static_entries));
        // The kill switch's deny is runtime state, not configuration: kept.
        self.policy
            .rcu(|cur| Arc::new(policy.with_lockdown(cur.lockdown)));
    }

    pub async fn list(&self, who: &Admin) -> Result<Listing, DomainError> {
        who.require(Permission::AllowlistRead)?;
        Ok(Listing {
            static_entries: self.static_entries.load().to_vec(),
            runtime: self.store.allowlist().await?,
            enforced: self.policy.load().allowlist_enforced,
        })
    }

    /// Adds one entry (audited); in force on the next decision.
    pub async fn add(&self, who: &Admin, e: &NewEntry) -> Result<AllowRecord, DomainError> {
        who.require(Permission::AllowlistWrite)?;
        let now = self.clock.now();
        let mut rec = checked(e, now, who.actor()).map_err(DomainError::Invalid)?;
        let details = json!({"description": rec.description, "expires_at": rec.expires_at});
        let target = rec.cidr.clone();
        rec.id = audited(&self.audit, who, "allowlist.add", &target, details, async {
            let ids = self
                .store
                .insert_allowlist(std::slice::from_ref(&rec))
                .await?;
            self.reload().await?;
            Ok::<_, DomainError>(ids[0])
        })
        .await?;
        Ok(rec)
    }

    /// Removes a runtime entry by id (audited); static entries are the config's.
    pub async fn remove(&self, who: &Admin, id: &str) -> Result<(), DomainError> {
        who.require(Permission::AllowlistWrite)?;
        if id.starts_with("static-") {
            return Err(DomainError::Invalid(
                "this entry comes from the configuration (access.allowlist); change it there"
                    .into(),
            ));
        }
        let n: i64 = id
            .parse()
            .map_err(|_| DomainError::NotFound("allowlist entry"))?;
        let Some(rec) = self
            .store
            .allowlist()
            .await?
            .into_iter()
            .find(|r| r.id == n)
        else {
            return Err(DomainError::NotFound("allowlist entry"));
        };
        let now = self.clock.now();
        audited(
            &self.audit,
            who,
            "allowlist.remove",
            &rec.cidr,
            json!({"id": n}),
            async {
                if !self.store.delete_allowlist(n, now, who.actor()).await? {
                    return Err(DomainError::NotFound("allowlist entry"));
                }
                self.reload().await?;
                Ok(())
            },
        )
        .await
    }

    /// Imports entries (numbered by their line) all or nothing: any bad,
    /// repeated or already-present entry refuses the whole import, naming each.
    pub async fn import(
        &self,
        who: &Admin,
        parsed: &[(usize, NewEntry)],
    ) -> Result<Vec<i64>, DomainError> {
        who.require(Permission::AllowlistWrite)?;
        if parsed.is_empty() {
            return Err(DomainError::Invalid("nothing to import".into()));
        }
        if parsed.len() > MAX_IMPORT {
            return Err(DomainError::Invalid(format!(
                "at most {MAX_IMPORT} entries per import"
            )));
        }
        let now = self.clock.now();
        let existing: HashMap<String, i64> = self
            .store
            .allowlist()
            .await?
            .into_iter()
            .map(|r| (r.cidr, r.id))
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut records = vec![];
        let mut bad = vec![];
        for (line, e) in parsed {
            match checked(e, now, who.actor()) {
                Ok(r) => {
                    if let Some(id) = existing.get(&r.cidr) {
                        bad.push((
                            *line,
                            format!("{} is already in the allowlist (id {id})", r.cidr),
                        ));
                    } else if let Some(first) = seen.get(&r.cidr) {
                        bad.push((*line, format!("{} repeats line {first}", r.cidr)));
                    } else {
                        seen.insert(r.cidr.clone(), *line);
                        records.push(r);
                    }
                }
                Err(m) => bad.push((*line, m)),
            }
        }
        if !bad.is_empty() {
            return Err(DomainError::InvalidLines(bad));
        }
        let cidrs: Vec<&str> = records.iter().map(|r| r.cidr.as_str()).collect();
        let details = json!({"count": records.len(), "cidrs": cidrs});
        audited(
            &self.audit,
            who,
            "allowlist.import",
            &format!("{} entries", records.len()),
            details,
            async {
                let ids = self.store.insert_allowlist(&records).await?;
                self.reload().await?;
                Ok::<_, DomainError>(ids)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let n = |s: &str| normalise_cidr(s).map(|n| n.to_string());
        assert_eq!(n("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(n("2001:DB8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(n("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(n(" 10.0.0.0/8 ").unwrap(), "10.0.0.0/8");
        assert!(n("10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/8/8", "1.2.3"] {
            assert!(n(bad).is_err(), "{bad}");
        }
    }
}
