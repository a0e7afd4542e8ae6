//! Brute-force regulation bans: list, ban by hand, lift. Changes reach the
//! decision path before the answer is sent.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, Ask, ErrorBody};
use crate::app::AppState;
use crate::service;
use crate::service::access::Permission;

/// `GET /api/v1/bans` — bans in force.
/// **Permissions**: `bans:read`.
#[utoipa::path(get, path = "/api/v1/bans", tag = "bans", responses((status = 200, description = "bans in force"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks bans:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::BansRead).await?;
    let bans = st.services.bans.list(&who).await?;
    Ok(Json(json!({ "bans": bans })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    /// `ip` (an address) or `user` (a user name as in `Remote-User`).
    pub kind: String,
    pub value: String,
    /// How long, e.g. `1h`; default the configured `regulation.ban_time`.
    pub duration: Option<String>,
    pub reason: Option<String>,
}

/// `POST /api/v1/bans` — ban an address or a user now.
/// **Permissions**: `bans:write`.
#[utoipa::path(post, path = "/api/v1/bans", tag = "bans", request_body = NewBan, responses((status = 200, description = "the ban"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks bans:write, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ask: Ask,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::BansWrite).await?;
    let req: NewBan =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let ban = st
        .services
        .bans
        .add(
            &who,
            &service::bans::NewBan {
                kind: req.kind,
                value: req.value,
                duration: req.duration,
                reason: req.reason,
            },
        )
        .await?;
    Ok(Json(json!({ "ban": ban })))
}

/// `DELETE /api/v1/bans/{id}` — lift a ban.
/// **Permissions**: `bans:write`.
#[utoipa::path(delete, path = "/api/v1/bans/{id}", tag = "bans", params(("id" = String, Path, description = "ban id")), responses((status = 200, description = "lifted"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks bans:write, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such entry", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn lift(
    State(st): State<AppState>,
    ask: Ask,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::BansWrite).await?;
    let id = st.services.bans.lift(&who, &id).await?;
    Ok(Json(json!({ "lifted": id })))
}
