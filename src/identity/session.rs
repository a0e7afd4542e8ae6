//! Browser sessions on the decision path: an in-memory table from the cookie's
//! hash to the session's identity, kept current by the store layer. A lookup is
//! a hash and a read lock, never an await; last-seen times are kept in memory
//! and written to the store in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::crypto::Sha256;

use crate::decision::{Identity, PrincipalParts};
use crate::store::SessionRecord;

/// Bytes of randomness in a session cookie (256 bits; the issue asks for ≥ 128).
pub const SESSION_COOKIE_BYTES: usize = 32;

/// The stored id of a session: SHA-256 of the cookie value, as 64 hex digits.
pub fn session_id(cookie_value: &str) -> String {
    hex(&Sha256::digest(cookie_value.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A cookie value gatehouse could have issued: 43 base64url characters.
pub fn plausible_cookie(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One live session as the decision path sees it.
#[derive(Debug)]
pub struct LiveSession {
    pub id: String,
    pub identity: Arc<Identity>,
    pub created_at: i64,
    /// Absolute end (`session.lifetime` after login).
    pub expires_at: i64,
    /// Last request seen, in memory; flushed to the store in batches.
    pub last_seen: AtomicI64,
    /// The last value written to the store, to flush only what changed.
    pub flushed_seen: AtomicI64,
    /// When the IdP's tokens should be refreshed, if there is a refresh token.
    pub refresh_at: Option<i64>,
    /// After a refresh that failed for a passing reason (IdP unreachable), not
    /// before this time.
    pub retry_after: AtomicI64,
}

/// The identity a stored session carries, with `groups` as its roles (the
/// record's own, or what a refresh at the IdP brought).
pub fn session_identity(r: &SessionRecord, groups: Vec<String>) -> Identity {
    Identity::new(
        PrincipalParts {
            issuer: r.issuer.clone(),
            sub: r.subject.clone(),
            preferred_username: Some(r.username.clone()),
            email: r.email.clone(),
            name: r.name.clone(),
            groups,
            acr: r.acr.clone(),
            amr: r.amr.clone(),
            sid: r.sid.clone(),
        },
        r.auth_time,
        r.expires_at,
    )
}

impl LiveSession {
    pub fn from_record(r: &SessionRecord) -> LiveSession {
        let identity = session_identity(r, r.groups.clone());
        LiveSession {
            id: r.id.clone(),
            identity: Arc::new(identity),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_seen: AtomicI64::new(r.last_seen),
            flushed_seen: AtomicI64::new(r.last_seen),
            refresh_at: r.refresh_at,
            retry_after: AtomicI64::new(0),
        }
    }

    /// Says what the stored record says (last-seen time aside).
    fn same_as(&self, r: &SessionRecord) -> bool {
        let id = &self.identity;
        self.id == r.id
            && self.created_at == r.created_at
            && self.expires_at == r.expires_at
            && self.refresh_at == r.refresh_at
            && id.exp == r.expires_at
            && id.iat == r.auth_time
            && id.issuer == r.issuer
            && id.sub == r.subject
            && id.user == r.username
            && id.email == r.email
            && id.name == r.name
            && id.groups == r.groups
            && id.acr == r.acr
            && id.amr == r.amr
            && id.sid == r.sid
    }

    /// Alive at `now` under an inactivity limit of `inactivity` seconds.
    pub fn alive(&self, now: i64, inactivity: i64) -> bool {
        now < self.expires_at && now - self.last_seen.load(Ordering::Relaxed) < inactivity
    }
}

/// Why a session cookie did not identify anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMiss {
    Unknown,
    Expired,
    Inactive,
}

impl SessionMiss {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "session_unknown",
            Self::Expired => "session_expired",
            Self::Inactive => "session_inactive",
        }
    }
}

/// Every live session, by the SHA-256 of its cookie.
#[derive(Debug, Default)]
pub struct SessionTable {
    map: RwLock<HashMap<[u8; 32], Arc<LiveSession>>>,
    /// Held by whoever changes sessions in the store and then here (login,
    /// termination, refresh, reload), so that a reload reading the store can
    /// never bring back a session terminated while it was reading. The decision
    /// path never takes it.
    pub write_gate: tokio::sync::Mutex<()>,
}

fn key_of_id(id: &str) -> Option<[u8; 32]> {
    if id.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in id.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl SessionTable {
    /// The live session a cookie names, touched at `now`.
    pub fn lookup(
        &self,
        cookie_value: &str,
        now: i64,
        inactivity: i64,
    ) -> Result<Arc<LiveSession>, SessionMiss> {
        if !plausible_cookie(cookie_value) {
            return Err(SessionMiss::Unknown);
        }
        let key: [u8; 32] = Sha256::digest(cookie_value.as_bytes());
        let found = {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            map.get(&key).cloned()
        };
        let s = found.ok_or(SessionMiss::Unknown)?;
        if now >= s.expires_at {
            return Err(SessionMiss::Expired);
        }
        if now - s.last_seen.load(Ordering::Relaxed) >= inactivity {
            return Err(SessionMiss::Inactive);
        }
        s.last_seen.fetch_max(now, Ordering::Relaxed);
        Ok(s)
    }

    pub fn get_by_id(&self, id: &str) -> Option<Arc<LiveSession>> {
        let key = key_of_id(id)?;
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&key).cloned()
    }

    pub fn insert(&self, s: LiveSession) -> Option<Arc<LiveSession>> {
        let key = key_of_id(&s.id)?;
        let s = Arc::new(s);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.insert(key, s.clone());
        Some(s)
    }

    /// Replaces a session's entry (refresh, step-up), keeping its last-seen time.
    pub fn replace(&self, s: LiveSession) {
        if let Some(old) = self.get_by_id(&s.id) {
            s.last_seen
                .fetch_max(old.last_seen.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.insert(s);
    }

    pub fn remove(&self, id: &str) -> bool {
        let Some(key) = key_of_id(id) else {
            return false;
        };
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&key).is_some()
    }

    /// Replaces the whole table with the store's live sessions; last-seen times
    /// already known here are kept when newer. Call with `write_gate` held
    /// across the store read.
    pub fn load(&self, records: &[SessionRecord]) {
        let mut next = HashMap::with_capacity(records.len());
        self.load_page(&mut next, records);
        self.swap(next);
    }

    /// Adds one page of the store's live sessions to `next` (a table being
    /// rebuilt; [`Self::swap`] puts it in place). A session this table holds
    /// unchanged is kept as it is (its last-seen time moved forward to the
    /// store's), so a reload allocates only for what changed.
    pub fn load_page(
        &self,
        next: &mut HashMap<[u8; 32], Arc<LiveSession>>,
        records: &[SessionRecord],
    ) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let Some(key) = key_of_id(&r.id) else {
                continue;
            };
            let s = match map.get(&key) {
                Some(old) if old.same_as(r) => {
                    old.last_seen.fetch_max(r.last_seen, Ordering::Relaxed);
                    old.flushed_seen.fetch_max(r.last_seen, Ordering::Relaxed);
                    old.clone()
                }
                Some(old) => {
                    let s = LiveSession::from_record(r);
                    let seen = old.last_seen.load(Ordering::Relaxed);
                    s.last_seen.fetch_max(seen, Ordering::Relaxed);
                    s.flushed_seen.store(
                        old.flushed_seen.load(Ordering::Relaxed).max(r.last_seen),
                        Ordering::Relaxed,
                    );
                    Arc::new(s)
                }
                None => Arc::new(LiveSession::from_record(r)),
            };
            next.insert(key, s);
        }
    }

    /// Puts a rebuilt table in place.
    pub fn swap(&self, next: HashMap<[u8; 32], Arc<LiveSession>>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        *map = next;
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every session whose last-seen time moved since the last flush.
    pub fn unflushed(&self) -> Vec<(String, i64)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter_map(|s| {
                let seen = s.last_seen.load(Ordering::Relaxed);
                (seen > s.flushed_seen.load(Ordering::Relaxed)).then(|| (s.id.clone(), seen))
            })
            .collect()
    }

    pub fn mark_flushed(&self, flushed: &[(String, i64)]) {
        for (id, seen) in flushed {
            if let Some(s) = self.get_by_id(id) {
                s.flushed_seen.fetch_max(*seen, Ordering::Relaxed);
            }
        }
    }

    /// Sessions that are alive at `now` (for the active-sessions gauge).
    pub fn count_alive(&self, now: i64, inactivity: i64) -> usize {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|s| s.alive(now, inactivity)).count()
    }

    /// Sessions due for a token refresh at `now`.
    pub fn due_for_refresh(&self, now: i64, inactivity: i64) -> Vec<Arc<LiveSession>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|s| {
                s.refresh_at.is_some_and(|t| t <= now)
                    && s.retry_after.load(Ordering::Relaxed) <= now
                    && s.alive(now, inactivity)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cookie: &str, refresh_at: Option<i64>) -> SessionRecord {
        SessionRecord {
            id: session_id(cookie),
            issuer: "i".into(),
            subject: "alice".into(),
            username: "alice".into(),
            groups: vec![],
            email: None,
            name: None,
            acr: None,
            amr: vec![],
            auth_time: Some(0),
            sid: None,
            client_addr: None,
            user_agent: None,
            created_at: 0,
            last_seen: 0,
            expires_at: 1000,
            terminated_at: None,
            terminated_by: None,
            id_token: None,
            refresh_token: None,
            refresh_at,
        }
    }

    #[test]
    fn lookup_expiry_inactivity_and_refresh_backoff() {
        let t = SessionTable::default();
        let cookie = "a".repeat(43);
        t.insert(LiveSession::from_record(&record(&cookie, Some(100))));
        assert!(t.lookup(&cookie, 10, 60).is_ok());
        assert_eq!(
            t.lookup(&"b".repeat(43), 10, 60).err(),
            Some(SessionMiss::Unknown)
        );
        assert_eq!(t.lookup("short", 10, 60).err(), Some(SessionMiss::Unknown));
        assert!(
            t.lookup(&cookie, 69, 60).is_ok(),
            "touched at 10, idle 59 s"
        );
        assert_eq!(
            t.lookup(&cookie, 129, 60).err(),
            Some(SessionMiss::Inactive)
        );
        let other = "c".repeat(43);
        t.insert(LiveSession::from_record(&record(&other, Some(100))));
        assert_eq!(
            t.lookup(&other, 1000, 2000).err(),
            Some(SessionMiss::Expired)
        );
        // Refresh: due at 100; after a failed try, not again before retry_after.
        let t = SessionTable::default();
        let fresh = "d".repeat(43);
        let mut r = record(&fresh, Some(100));
        r.last_seen = 95;
        t.insert(LiveSession::from_record(&r));
        assert_eq!(t.due_for_refresh(101, 600).len(), 1);
        t.get_by_id(&r.id)
            .unwrap()
            .retry_after
            .store(161, Ordering::Relaxed);
        assert!(t.due_for_refresh(120, 600).is_empty());
        assert_eq!(t.due_for_refresh(161, 600).len(), 1);
        assert!(t.remove(&r.id));
        assert!(t.due_for_refresh(161, 600).is_empty());
    }
}
