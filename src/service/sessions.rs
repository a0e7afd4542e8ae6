//! Session domain operations: the live sessions with their newest activity, and
//! ending sessions everywhere gatehouse looks (store, in-memory table, bearer
//! tokens carrying their IdP `sid`), with the revocation snapshot swapped
//! before the caller answers.

use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::DomainError;
use crate::app::{reload_revocations, Inner};
use crate::identity::revocation::ANY_ISSUER;
use crate::store::{Revocation, RevocationKind, SessionRecord};

/// How long a revocation is kept: longer than any access token should live.
pub const REVOCATION_TTL_SECS: i64 = 24 * 3600;

pub fn revocation_ttl(st: &Inner) -> i64 {
    let local = st.local.as_ref().map_or(0, |l| l.max_ttl_secs);
    REVOCATION_TTL_SECS.max(local)
}

/// Sessions alive at `now` (of one user), with the newest last-seen times: the
/// store's, overlaid with the in-memory table's (written in batches), and
/// without those idle past `session.inactivity`, over even if nobody said so.
pub async fn active_sessions(
    st: &Inner,
    now: i64,
    user: Option<&str>,
) -> Result<Vec<SessionRecord>, DomainError> {
    let inactivity = st.config.session.inactivity.as_secs() as i64;
    let mut sessions = st.store.live_sessions(now, user).await?;
    for s in &mut sessions {
        if let Some(live) = st.sessions.get_by_id(&s.id) {
            s.last_seen = s
                .last_seen
                .max(live.last_seen.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
    sessions.retain(|s| now - s.last_seen < inactivity);
    Ok(sessions)
}

/// Stores a revocation of tokens issued up to `now`, kept for [`revocation_ttl`].
async fn revoke(
    st: &Inner,
    issuer: &str,
    kind: RevocationKind,
    value: &str,
    now: i64,
) -> Result<(), DomainError> {
    st.store
        .insert_revocation(&Revocation {
            issuer: issuer.to_string(),
            kind,
            value: value.to_string(),
            not_before: now,
            created_at: now,
            expires_at: now + revocation_ttl(st),
        })
        .await?;
    Ok(())
}

async fn revoke_sids(st: &Inner, sessions: &[SessionRecord], now: i64) -> Result<(), DomainError> {
    for s in sessions {
        if let Some(sid) = &s.sid {
            revoke(st, &s.issuer, RevocationKind::Sid, sid, now).await?;
        }
    }
    Ok(())
}

/// Ends these sessions everywhere gatehouse looks: the store, the in-memory
/// table (under the sessions' write gate, so no reload brings them back) and
/// bearer tokens carrying their IdP `sid`. Returns the ids actually ended.
pub async fn end_sessions(
    st: &Inner,
    sessions: &[SessionRecord],
    now: i64,
    by: &str,
) -> Result<Vec<String>, DomainError> {
    let mut ended = Vec::new();
    {
        let _gate = st.sessions.write_gate.lock().await;
        for s in sessions {
            if st.store.terminate_session(&s.id, now, by).await? {
                ended.push(s.id.clone());
            }
            st.sessions.remove(&s.id);
        }
    }
    revoke_sids(st, sessions, now).await?;
    reload_revocations(st).await?;
    Ok(ended)
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

/// Live sessions (of one user), for an admin who may read them.
pub async fn list(
    st: &Inner,
    who: &Admin,
    user: Option<&str>,
) -> Result<Vec<SessionRecord>, DomainError> {
    who.require(Permission::SessionsRead)?;
    let user = checked_user(user)?;
    active_sessions(st, st.clock.now(), user).await
}

/// Terminates one live session by id (audited); the next decision denies it.
pub async fn terminate_one(st: &Inner, who: &Admin, id: &str) -> Result<(), DomainError> {
    who.require(Permission::SessionsTerminate)?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::NotFound("session"));
    }
    let now = st.clock.now();
    let Some(session) = st
        .store
        .session(id)
        .await?
        .filter(|s| s.terminated_at.is_none())
    else {
        return Err(DomainError::NotFound("session"));
    };
    let details = json!({"user": session.username, "sid": session.sid});
    audited(&st.audit, who, "session.terminate", id, details, async {
        if end_sessions(st, std::slice::from_ref(&session), now, who.actor())
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

/// Terminates every live session (of one user; then also revokes every token of
/// that user issued until now), audited. Returns the ids ended.
pub async fn terminate_all(
    st: &Inner,
    who: &Admin,
    user: Option<&str>,
) -> Result<Vec<String>, DomainError> {
    who.require(Permission::SessionsTerminate)?;
    let user = checked_user(user)?;
    let now = st.clock.now();
    let target = user.map_or_else(|| "*".to_string(), |u| format!("user:{u}"));
    let ended = audited(
        &st.audit,
        who,
        "session.terminate_all",
        &target,
        json!({"user": user}),
        async {
            let live = st.store.live_sessions(now, user).await?;
            let ended = end_sessions(st, &live, now, who.actor()).await?;
            if let Some(u) = user {
                revoke(st, ANY_ISSUER, RevocationKind::Sub, u, now).await?;
            }
            reload_revocations(st).await?;
            Ok::<_, DomainError>(ended)
        },
    )
    .await?;
    tracing::info!(actor = %who.actor(), user = user.unwrap_or("*"), sessions = ended.len(), "sessions terminated");
    Ok(ended)
}
