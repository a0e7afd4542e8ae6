//! Session domain operations: the live sessions with their newest activity, and
//! ending sessions everywhere gatehouse looks (store, in-memory table, bearer
//! tokens carrying their IdP `sid`), with the revocation snapshot swapped
//! before the caller answers. Also keeps the in-memory table and the
//! revocation snapshot in step with the store (other processes' changes).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::clock::SharedClock;
use crate::identity::revocation::{Revocations, ANY_ISSUER};
use crate::identity::session::{LiveSession, SessionTable};
use crate::snapshot::Sparse;
use crate::store::{Revocation, RevocationKind, SessionRecord, Store, StoreError};

/// How long a revocation is kept: longer than any access token should live.
pub const REVOCATION_TTL_SECS: i64 = 24 * 3600;

/// The sessions service and the handles it works on.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    /// The live table the decision path reads.
    table: Arc<SessionTable>,
    /// The revocation snapshot the decision path reads.
    revocations: Arc<Sparse<Revocations>>,
    /// `session.inactivity` in seconds.
    inactivity: i64,
    /// How long a revocation is kept (see [`REVOCATION_TTL_SECS`]).
    revocation_ttl: i64,
}

impl Sessions {
    /// `local_token_ttl`: the longest lifetime of the local issuer's tokens (0 without one).
    pub fn new(
        store: Store,
        clock: SharedClock,
        audit: Arc<AuditLog>,
        table: Arc<SessionTable>,
        revocations: Arc<Sparse<Revocations>>,
        inactivity: i64,
        local_token_ttl: i64,
    ) -> Self {
        Sessions {
            store,
            clock,
            audit,
            table,
            revocations,
            inactivity,
            revocation_ttl: REVOCATION_TTL_SECS.max(local_token_ttl),
        }
    }

    /// Sessions alive at `now` (of one user), with the newest last-seen times:
    /// the store's, overlaid with the in-memory table's (written in batches),
    /// and without those idle past `session.inactivity`, over even if nobody
    /// said so.
    pub async fn active(
        &self,
        now: i64,
        user: Option<&str>,
    ) -> Result<Vec<SessionRecord>, DomainError> {
        let mut sessions = self.store.live_sessions(now, user).await?;
        for s in &mut sessions {
            if let Some(live) = self.table.get_by_id(&s.id) {
                s.last_seen = s.last_seen.max(live.last_seen.load(Ordering::Relaxed));
            }
        }
        sessions.retain(|s| now - s.last_seen < self.inactivity);
        Ok(sessions)
    }

    /// One stored session by id, terminated or not.
    pub async fn get(&self, id: &str) -> Result<Option<SessionRecord>, DomainError> {
        Ok(self.store.session(id).await?)
    }

    /// Stores a revocation of tokens issued up to `now`.
    async fn revoke(
        &self,
        issuer: &str,
        kind: RevocationKind,
        value: &str,
    ) -> Result<(), DomainError> {
        // Compared with tokens' `iat`: the wall clock.
        let now = self.clock.wall();
        self.store
            .insert_revocation(&Revocation {
                issuer: issuer.to_string(),
                kind,
                value: value.to_string(),
                not_before: now,
                created_at: now,
                expires_at: now + self.revocation_ttl,
            })
            .await?;
        Ok(())
    }

    /// Re-reads live revocations from the store and swaps the snapshot. On a
    /// store error the previous snapshot stays (it only ever loses entries by
    /// expiring).
    pub async fn reload_revocations(&self) -> Result<(), StoreError> {
        let records = self.store.live_revocations(self.clock.wall()).await?;
        self.revocations.store(Revocations::from_records(&records));
        Ok(())
    }

    /// Ends these sessions everywhere gatehouse looks: the store, the in-memory
    /// table (under the sessions' write gate, so no reload brings them back) and
    /// bearer tokens carrying their IdP `sid`. Returns the ids actually ended.
    pub async fn end(
        &self,
        sessions: &[SessionRecord],
        now: i64,
        by: &str,
    ) -> Result<Vec<String>, DomainError> {
        let mut ended = Vec::new();
        {
            let _gate = self.table.write_gate.lock().await;
            for s in sessions {
                if self.store.terminate_session(&s.id, now, by).await? {
                    ended.push(s.id.clone());
                }
                self.table.remove(&s.id);
            }
        }
        for s in sessions {
            if let Some(sid) = &s.sid {
                self.revoke(&s.issuer, RevocationKind::Sid, sid).await?;
            }
        }
        self.reload_revocations().await?;
        Ok(ended)
    }

    /// Live sessions (of one user), for an admin who may read them.
    pub async fn list(
        &self,
        who: &Admin,
        user: Option<&str>,
    ) -> Result<Vec<SessionRecord>, DomainError> {
        who.require(Permission::SessionsRead)?;
        let user = checked_user(user)?;
        self.active(self.clock.now(), user).await
    }

    /// Terminates one live session by id (audited); the next decision denies it.
    pub async fn terminate_one(&self, who: &Admin, id: &str) -> Result<(), DomainError> {
        who.require(Permission::SessionsTerminate)?;
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DomainError::NotFound("session"));
        }
        let now = self.clock.now();
        let Some(session) = self
            .store
            .session(id)
            .await?
            .filter(|s| s.terminated_at.is_none())
        else {
            return Err(DomainError::NotFound("session"));
        };
        let details = json!({"user": session.username, "sid": session.sid});
        audited(&self.audit, who, "session.terminate", id, details, async {
            if self
                .end(std::slice::from_ref(&session), now, who.actor())
                .await?
                .is_empty()
            {
                return Err(DomainError::NotFound("session"));
            }
            Ok(())
        })
        .await?;
        tracing::info!(actor = %who.actor(), session = %id, "session terminated");
        Ok(())
    }

    /// Terminates every live session (of one user; then also revokes every
    /// token of that user issued until now), audited. Returns the ids ended.
    pub async fn terminate_all(
        &self,
        who: &Admin,
        user: Option<&str>,
    ) -> Result<Vec<String>, DomainError> {
        who.require(Permission::SessionsTerminate)?;
        let user = checked_user(user)?;
        let now = self.clock.now();
        let target = user.map_or_else(|| "*".to_string(), |u| format!("user:{u}"));
        let ended = audited(
            &self.audit,
            who,
            "session.terminate_all",
            &target,
            json!({"user": user}),
            async {
                let live = self.store.live_sessions(now, user).await?;
                let ended = self.end(&live, now, who.actor()).await?;
                if let Some(u) = user {
                    self.revoke(ANY_ISSUER, RevocationKind::Sub, u).await?;
                }
                self.reload_revocations().await?;
                Ok::<_, DomainError>(ended)
            },
        )
        .await?;
        tracing::info!(actor = %who.actor(), user = user.unwrap_or("*"), sessions = ended.len(), "sessions terminated");
        Ok(ended)
    }

    /// Re-reads live sessions from the store (other processes' logins and
    /// terminations) and swaps the table, under the sessions' write gate.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _gate = self.table.write_gate.lock().await;
        load_table(&self.store, &self.table, self.clock.now()).await
    }

    /// Re-reads one session (another process created, changed or ended it)
    /// into the table, under the sessions' write gate.
    pub async fn reload_one(&self, id: &str) -> Result<(), StoreError> {
        let _gate = self.table.write_gate.lock().await;
        match self.store.session(id).await? {
            Some(r) if r.terminated_at.is_none() && r.expires_at > self.clock.now() => {
                self.table.replace(LiveSession::from_record(&r));
            }
            _ => {
                self.table.remove(id);
            }
        }
        Ok(())
    }

    /// Writes the last-seen times that moved since the last flush, in one batch.
    pub async fn flush_last_seen(&self) -> Result<(), StoreError> {
        let pending = self.table.unflushed();
        if pending.is_empty() {
            return Ok(());
        }
        self.store.touch_sessions(&pending).await?;
        self.table.mark_flushed(&pending);
        Ok(())
    }
}

/// Sessions read from the store at a time when the table is rebuilt: few
/// enough that a reload never holds every record at once (the table keeps
/// only what the decision path needs) nor stops the runtime for long.
const LOAD_PAGE: i64 = 500;

/// Rebuilds `table` from the store's live sessions at `now`, a page at a time
/// (at start, and in each reload round). The caller holds the write gate.
pub async fn load_table(store: &Store, table: &SessionTable, now: i64) -> Result<(), StoreError> {
    let mut next = HashMap::with_capacity(table.len());
    let mut after = String::new();
    loop {
        let page = store.live_sessions_page(now, &after, LOAD_PAGE).await?;
        table.load_page(&mut next, &page);
        match page.last() {
            Some(last) if page.len() as i64 == LOAD_PAGE => after.clone_from(&last.id),
            _ => break,
        }
    }
    table.swap(next);
    Ok(())
}

/// A user name as a filter: not empty, at most 256 characters, no control characters.
pub fn checked_user(user: Option<&str>) -> Result<Option<&str>, DomainError> {
    match user {
        Some("") => Err(DomainError::Invalid("user must not be empty".into())),
        Some(u) if u.len() > 256 || u.chars().any(char::is_control) => {
            Err(DomainError::Invalid("user is not a valid name".into()))
        }
        other => Ok(other),
    }
}
