//! Session administration: list, terminate one, terminate all (of a user).
//! Termination also revokes bearer tokens — those carrying the session's `sid`,
//! and for a user-wide termination every token of that user issued until now —
//! and the revocation snapshot is swapped before the response, so the next
//! decision already denies.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, audited, ApiError, ApiQuery, Ask, ErrorBody};
use crate::app::{reload_revocations, AppState, Inner};
use crate::identity::revocation::ANY_ISSUER;
use crate::store::{Revocation, RevocationKind, SessionRecord};

/// How long a revocation is kept: longer than any access token should live.
pub const REVOCATION_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    pub user: Option<String>,
}

fn revocation_ttl(st: &Inner) -> i64 {
    let local = st.local.as_ref().map_or(0, |l| l.max_ttl_secs);
    REVOCATION_TTL_SECS.max(local)
}

fn session_json(s: &SessionRecord) -> Value {
    json!({
        "id": s.id, "user": s.username, "sub": s.subject, "issuer": s.issuer,
        "groups": s.groups, "email": s.email, "name": s.name, "acr": s.acr, "amr": s.amr,
        "auth_time": s.auth_time, "sid": s.sid, "client_addr": s.client_addr,
        "user_agent": s.user_agent, "created_at": s.created_at, "last_seen": s.last_seen,
        "expires_at": s.expires_at,
    })
}

fn checked_user(f: &UserFilter) -> Result<Option<&str>, ApiError> {
    match f.user.as_deref() {
        Some("") => Err(ApiError::BadRequest("user must not be empty".into())),
        Some(u) if u.len() > 256 || u.chars().any(char::is_control) => {
            Err(ApiError::BadRequest("user is not a valid name".into()))
        }
        other => Ok(other),
    }
}

/// `GET /api/v1/sessions[?user=]` — live sessions.
/// **Permissions**: an `[admin] roles` member.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(("user" = Option<String>, Query, description = "only this user's sessions")), responses((status = 200, description = "live sessions"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "not an admin, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &ask).await?;
    let user = checked_user(&f)?;
    let sessions = active_sessions(&st, st.clock.now(), user).await?;
    Ok(Json(
        json!({"sessions": sessions.iter().map(session_json).collect::<Vec<_>>()}),
    ))
}

/// Sessions alive at `now` (of one user), with the newest last-seen times: the
/// store's, overlaid with the in-memory table's (written in batches), and
/// without those idle past `session.inactivity`, over even if nobody said so.
pub async fn active_sessions(
    st: &Inner,
    now: i64,
    user: Option<&str>,
) -> Result<Vec<SessionRecord>, ApiError> {
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

async fn revoke_sids(st: &Inner, sessions: &[SessionRecord], now: i64) -> Result<(), ApiError> {
    for s in sessions {
        if let Some(sid) = &s.sid {
            st.store
                .insert_revocation(&Revocation {
                    issuer: s.issuer.clone(),
                    kind: RevocationKind::Sid,
                    value: sid.clone(),
                    not_before: now,
                    created_at: now,
                    expires_at: now + revocation_ttl(st),
                })
                .await?;
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
) -> Result<Vec<String>, ApiError> {
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

/// `DELETE /api/v1/sessions/{id}` — terminate one session.
/// **Permissions**: an `[admin] roles` member.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "session id (64 hex digits)")), responses((status = 200, description = "terminated"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "not an admin, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such entry", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn terminate_one(
    State(st): State<AppState>,
    ask: Ask,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask).await?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound("session"));
    }
    let now = st.clock.now();
    let Some(session) = st
        .store
        .session(&id)
        .await?
        .filter(|s| s.terminated_at.is_none())
    else {
        return Err(ApiError::NotFound("session"));
    };
    let details = json!({"user": session.username, "sid": session.sid});
    audited(&st, &who, &ask, "session.terminate", &id, details, async {
        if end_sessions(&st, std::slice::from_ref(&session), now, &who.actor())
            .await?
            .is_empty()
        {
            return Err(ApiError::NotFound("session"));
        }
        Ok(())
    })
    .await?;
    tracing::info!(actor = %who.actor(), session = %id, "session terminated");
    Ok(Json(json!({"terminated": 1})))
}

/// `POST /api/v1/sessions/terminate-all[?user=]` — terminate every live session
/// (of one user); with `user`, also revoke every token of that user issued until now.
/// **Permissions**: an `[admin] roles` member.
#[utoipa::path(post, path = "/api/v1/sessions/terminate-all", tag = "sessions", params(("user" = Option<String>, Query, description = "only this user's sessions; also revokes the user's tokens issued until now")), responses((status = 200, description = "terminated"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "not an admin, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn terminate_all(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask).await?;
    let user = checked_user(&f)?;
    let now = st.clock.now();
    let target = user.map_or_else(|| "*".to_string(), |u| format!("user:{u}"));
    let ended = audited(
        &st,
        &who,
        &ask,
        "session.terminate_all",
        &target,
        json!({"user": user}),
        async {
            let live = st.store.live_sessions(now, user).await?;
            let ended = end_sessions(&st, &live, now, &who.actor()).await?;
            if let Some(u) = user {
                st.store
                    .insert_revocation(&Revocation {
                        issuer: ANY_ISSUER.into(),
                        kind: RevocationKind::Sub,
                        value: u.to_string(),
                        not_before: now,
                        created_at: now,
                        expires_at: now + revocation_ttl(&st),
                    })
                    .await?;
            }
            reload_revocations(&st).await?;
            Ok(ended)
        },
    )
    .await?;
    tracing::info!(actor = %who.actor(), user = user.unwrap_or("*"), sessions = ended.len(), "sessions terminated");
    Ok(Json(
        json!({"terminated": ended.len(), "tokens_revoked_for_user": user}),
    ))
}
