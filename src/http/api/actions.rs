//! Configured actions: list, run (accepted at once with a run id), a run's
//! state and output.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{caller, ApiError, Ask, ErrorBody};
use crate::app::AppState;
use crate::service::access;

async fn any_admin(st: &AppState, ask: &Ask) -> Result<access::Admin, ApiError> {
    let id = caller(st, ask).await?;
    Ok(access::admit_any(&st.config, id, ask.client)?)
}

/// `GET /api/v1/actions` — the configured actions the caller may run, each
/// with its parameters (type and constraints), time limit and permission.
/// **Permissions**: each action's own (default `actions:run`); any to list.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", responses((status = 200, description = "the actions the caller may run"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "no permission at all, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = any_admin(&st, &ask).await?;
    Ok(Json(json!({ "actions": st.services.actions.list(&who) })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Every parameter of the action, by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

/// `POST /api/v1/actions/{name}/run` — checks every parameter (all
/// required; each error named), writes the intent to the audit log, starts
/// the run and answers 202 with its id; `GET /api/v1/actions/runs/{id}` follows it.
/// **Permissions**: the action's own (default `actions:run`).
#[utoipa::path(post, path = "/api/v1/actions/{name}/run", tag = "actions", request_body = RunRequest, params(("name" = String, Path, description = "an [[actions]] name")), responses((status = 202, description = "started; the run with its id"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks the action's permission, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such action", body = ErrorBody), (status = 422, description = "invalid_params: every bad parameter in error.params", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn run(
    State(st): State<AppState>,
    ask: Ask,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = any_admin(&st, &ask).await?;
    let req: RunRequest = if body.is_empty() {
        RunRequest { params: Map::new() }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
    };
    let run = st.services.actions.run(&who, &name, &req.params).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": run.id, "run": run })),
    ))
}

/// `GET /api/v1/actions/runs/{id}` — a run: state (`running`, `succeeded`,
/// `failed`, `timed_out`, `not_started`), exit code, output (at most 64 KiB).
/// The last 200 runs are kept; the audit log has every one.
/// **Permissions**: the run's action's own.
#[utoipa::path(get, path = "/api/v1/actions/runs/{id}", tag = "actions", params(("id" = String, Path, description = "the id a run answered")), responses((status = 200, description = "the run"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks the action's permission, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such run", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_run(
    State(st): State<AppState>,
    ask: Ask,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = any_admin(&st, &ask).await?;
    Ok(Json(
        json!({ "run": st.services.actions.get_run(&who, &id)? }),
    ))
}
