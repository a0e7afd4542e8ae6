//! The runtime IP allowlist: add, remove, import (all or nothing, every bad
//! line named). A change is in the decision path's snapshot before the call
//! returns; an entry past its `expires_at` stops matching on time.

use std::collections::HashMap;

use ipnet::IpNet;
use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::DomainError;
use crate::app::{reload_allowlist, Inner};
use crate::clock::parse_rfc3339;
use crate::store::AllowRecord;

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

pub async fn list(st: &Inner, who: &Admin) -> Result<Listing, DomainError> {
    who.require(Permission::AllowlistRead)?;
    Ok(Listing {
        static_entries: st.static_allowlist.load().to_vec(),
        runtime: st.store.allowlist().await?,
        enforced: st.policy.load().allowlist_enforced,
    })
}

/// Adds one entry (audited); in force on the next decision.
pub async fn add(st: &Inner, who: &Admin, e: &NewEntry) -> Result<AllowRecord, DomainError> {
    who.require(Permission::AllowlistWrite)?;
    let now = st.clock.now();
    let mut rec = checked(e, now, who.actor()).map_err(DomainError::Invalid)?;
    let details = json!({"description": rec.description, "expires_at": rec.expires_at});
    let target = rec.cidr.clone();
    rec.id = audited(&st.audit, who, "allowlist.add", &target, details, async {
        let ids = st
            .store
            .insert_allowlist(std::slice::from_ref(&rec))
            .await?;
        reload_allowlist(st).await?;
        Ok::<_, DomainError>(ids[0])
    })
    .await?;
    Ok(rec)
}

/// Removes a runtime entry by id (audited); static entries are the config's.
pub async fn remove(st: &Inner, who: &Admin, id: &str) -> Result<(), DomainError> {
    who.require(Permission::AllowlistWrite)?;
    if id.starts_with("static-") {
        return Err(DomainError::Invalid(
            "this entry comes from the configuration (access.allowlist); change it there".into(),
        ));
    }
    let n: i64 = id
        .parse()
        .map_err(|_| DomainError::NotFound("allowlist entry"))?;
    let Some(rec) = st.store.allowlist().await?.into_iter().find(|r| r.id == n) else {
        return Err(DomainError::NotFound("allowlist entry"));
    };
    let now = st.clock.now();
    audited(
        &st.audit,
        who,
        "allowlist.remove",
        &rec.cidr,
        json!({"id": n}),
        async {
            if !st.store.delete_allowlist(n, now, who.actor()).await? {
                return Err(DomainError::NotFound("allowlist entry"));
            }
            reload_allowlist(st).await?;
            Ok(())
        },
    )
    .await
}

/// Imports entries (numbered by their line) all or nothing: any bad,
/// repeated or already-present entry refuses the whole import, naming each.
pub async fn import(
    st: &Inner,
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
    let now = st.clock.now();
    let existing: HashMap<String, i64> = st
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
        &st.audit,
        who,
        "allowlist.import",
        &format!("{} entries", records.len()),
        details,
        async {
            let ids = st.store.insert_allowlist(&records).await?;
            reload_allowlist(st).await?;
            Ok::<_, DomainError>(ids)
        },
    )
    .await
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
