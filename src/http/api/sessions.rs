//! Session administration: list, terminate one, terminate all (of a user).
//! Termination also revokes bearer tokens — those carrying the session's `sid`,
//! and for a user-wide termination every token of that user issued until now —
//! and the revocation snapshot is swapped before the response, so the next
//! decision already denies.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, ApiQuery, Ask, ErrorBody};
use crate::app::AppState;
use crate::service::access::Permission;
use crate::store::SessionRecord;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    pub user: Option<String>,
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

/// `GET /api/v1/sessions[?user=]` — live sessions.
/// **Permissions**: `sessions:read`.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(("user" = Option<String>, Query, description = "only this user's sessions")), responses((status = 200, description = "live sessions"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks sessions:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::SessionsRead).await?;
    let sessions = st.services.sessions.list(&who, f.user.as_deref()).await?;
    Ok(Json(
        json!({"sessions": sessions.iter().map(session_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /api/v1/sessions/{id}` — terminate one session.
/// **Permissions**: `sessions:terminate`.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "session id (64 hex digits)")), responses((status = 200, description = "terminated"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks sessions:terminate, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such entry", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn terminate_one(
    State(st): State<AppState>,
    ask: Ask,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::SessionsTerminate).await?;
    st.services.sessions.terminate_one(&who, &id).await?;
    Ok(Json(json!({"terminated": 1})))
}

/// `POST /api/v1/sessions/terminate-all[?user=]` — terminate every live session
/// (of one user); with `user`, also revoke every token of that user issued until now.
/// **Permissions**: `sessions:terminate`.
#[utoipa::path(post, path = "/api/v1/sessions/terminate-all", tag = "sessions", params(("user" = Option<String>, Query, description = "only this user's sessions; also revokes the user's tokens issued until now")), responses((status = 200, description = "terminated"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks sessions:terminate, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn terminate_all(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::SessionsTerminate).await?;
    let user = f.user.as_deref();
    let ended = st.services.sessions.terminate_all(&who, user).await?;
    Ok(Json(
        json!({"terminated": ended.len(), "tokens_revoked_for_user": user}),
    ))
}
