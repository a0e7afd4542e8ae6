//! Control: the configured services and the kill switch. Every refusal of an
//! authenticated caller (permission, second factor, confirmation) is audited
//! as `refused` by `service::control`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{caller, ApiError, Ask, ErrorBody};
use crate::app::AppState;
use crate::service::access::{self, Admin, Permission, SteppedUp};
use crate::service::control::ServiceAction;
use crate::service::DomainError;

/// `caller()` and `admit` for a control request; a refusal of a known caller
/// is audited as `audit_action` on `target`.
async fn admitted(
    st: &AppState,
    ask: &Ask,
    need: Permission,
    audit_action: &str,
    target: &str,
) -> Result<Admin, ApiError> {
    let id = caller(st, ask).await?;
    let user = id.user.clone();
    match access::admit(&st.config, id, ask.client, need) {
        Ok(a) => Ok(a),
        Err(e) => Err(refused(st, ask, &user, audit_action, target, e).await),
    }
}

/// As [`admitted`], and a second factor with an authentication no older than
/// `control.fresh_auth`; otherwise `step_up_required` with the login URL.
async fn stepped_up(
    st: &AppState,
    ask: &Ask,
    need: Permission,
    audit_action: &str,
    target: &str,
) -> Result<SteppedUp, ApiError> {
    let id = caller(st, ask).await?;
    let user = id.user.clone();
    let policy = st.policy.load();
    // The authentication time is the IdP's instant: compared with the wall clock.
    match access::admit_stepped_up(&st.config, &policy, id, ask.client, need, st.clock.wall()) {
        Ok(a) => Ok(a),
        Err(e) => Err(refused(st, ask, &user, audit_action, target, e).await),
    }
}

async fn refused(
    st: &AppState,
    ask: &Ask,
    user: &str,
    audit_action: &str,
    target: &str,
    e: DomainError,
) -> ApiError {
    st.services
        .control
        .refused(user, &ask.client.to_string(), audit_action, target, &e)
        .await;
    match e {
        DomainError::StepUpRequired(message) => ApiError::StepUp {
            message,
            login_url: Some(format!("{}/login?step_up=1", st.public_base)),
        },
        e => e.into(),
    }
}

/// `GET /api/v1/control/services` — the configured services, each with its
/// state (`running`, `stopped`, `failed`, `unknown`), since when this process
/// has seen it, and the last action on it and who did it.
/// **Permissions**: `control:services`.
#[utoipa::path(get, path = "/api/v1/control/services", tag = "control", responses((status = 200, description = "the configured services"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks control:services, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn services(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admitted(
        &st,
        &ask,
        Permission::ControlServices,
        "control.services",
        "*",
    )
    .await?;
    let list = st.services.control.services(&who).await?;
    Ok(Json(json!({ "services": list })))
}

/// `POST /api/v1/control/services/{name}/{action}` — `start`, `stop` or
/// `restart` a configured service; answers the outcome of each step (exit
/// code, capped output) and the state after. One action per service at a time.
/// **Permissions**: `control:services`.
#[utoipa::path(post, path = "/api/v1/control/services/{name}/{action}", tag = "control", params(("name" = String, Path, description = "a [[control.services]] name"), ("action" = String, Path, description = "start, stop or restart")), responses((status = 200, description = "every step succeeded; the outcome"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks control:services, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such service or action", body = ErrorBody), (status = 409, description = "an action on this service is running", body = ErrorBody), (status = 502, description = "a step failed; the outcome is in error.outcome", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn service_action(
    State(st): State<AppState>,
    ask: Ask,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let act = ServiceAction::parse(&action).ok_or(ApiError::NotFound("action"))?;
    let audit_action = format!("control.service.{}", act.as_str());
    let who = admitted(&st, &ask, Permission::ControlServices, &audit_action, &name).await?;
    let outcome = st.services.control.service_action(&who, &name, act).await?;
    Ok(Json(json!({ "outcome": outcome })))
}

/// `GET /api/v1/control/kill-switch` — whether the deny is engaged (by whom,
/// since when), whether a run is in progress, and the last run.
/// **Permissions**: `control:kill`.
#[utoipa::path(get, path = "/api/v1/control/kill-switch", tag = "control", responses((status = 200, description = "the kill switch"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks control:kill, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn kill_switch(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admitted(
        &st,
        &ask,
        Permission::ControlKill,
        "control.kill_switch.read",
        "*",
    )
    .await?;
    Ok(Json(json!(st.services.control.kill_switch(&who).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Press {
    /// Exactly `CONFIRM_EMERGENCY_STOP`.
    pub confirm: Option<String>,
    /// Why, for the audit log (at most 500 characters).
    pub reason: Option<String>,
}

/// `POST /api/v1/control/kill-switch` — stops every `kill_switch.services` in
/// parallel, then runs the `after` commands in order; with `engage_deny`, every
/// non-bypass rule denies until released. A press while a run is in progress
/// joins it. Answers the run: each stop and command with its result.
/// **Permissions**: `control:kill`, a second factor, an authentication no
/// older than `control.fresh_auth`, and `{"confirm":"CONFIRM_EMERGENCY_STOP"}`.
#[utoipa::path(post, path = "/api/v1/control/kill-switch", tag = "control", request_body = Press, responses((status = 200, description = "the run (result ok or failed, per step)"), (status = 400, description = "confirmation_required, or invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks control:kill, step_up_required (with login_url), banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn press(
    State(st): State<AppState>,
    ask: Ask,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = stepped_up(
        &st,
        &ask,
        Permission::ControlKill,
        "control.kill_switch",
        "*",
    )
    .await?;
    let req: Press = if body.is_empty() {
        Press {
            confirm: None,
            reason: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
    };
    let run = st
        .services
        .control
        .press(
            &who,
            req.confirm.as_deref(),
            req.reason.as_deref().unwrap_or(""),
        )
        .await?;
    Ok(Json(json!({ "run": run })))
}

/// `POST /api/v1/control/kill-switch/release` — lifts the kill switch's deny:
/// rules apply again. Stopped services stay stopped.
/// **Permissions**: `control:kill`, a second factor and a fresh authentication.
#[utoipa::path(post, path = "/api/v1/control/kill-switch/release", tag = "control", responses((status = 200, description = "released"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks control:kill, step_up_required (with login_url), banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn release(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = stepped_up(
        &st,
        &ask,
        Permission::ControlKill,
        "control.kill_switch.release",
        "*",
    )
    .await?;
    let was = st.services.control.release(&who).await?;
    Ok(Json(json!({ "released": true, "was_engaged": was })))
}

/// `GET /api/v1/status` — one call for an overview: version and uptime, the
/// store, each issuer's keys, the audit chain (entries, since the last
/// checkpoint, the last verification), active sessions, each service's
/// state, and the kill switch.
/// **Permissions**: `status:read`.
#[utoipa::path(get, path = "/api/v1/status", tag = "control", responses((status = 200, description = "the overview"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks status:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn status(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = super::admin(&st, &ask, Permission::StatusRead).await?;
    Ok(Json(json!(st.services.status.overview(&who).await?)))
}

/// `GET /api/v1/control/power` — the configured machines, each with its power
/// state as read now (`On`, `Off`, `Unknown` with the error), the services
/// stopped before a graceful off, and the last operation.
/// **Permissions**: `power:read`.
#[utoipa::path(get, path = "/api/v1/control/power", tag = "control", responses((status = 200, description = "the configured machines"), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks power:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn power(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admitted(&st, &ask, Permission::PowerRead, "control.power.read", "*").await?;
    Ok(Json(
        json!({ "machines": st.services.power.machines(&who).await? }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    /// `CONFIRM_POWER_OFF` for `off`, `CONFIRM_POWER_RESET` for `reset`.
    pub confirm: Option<String>,
    /// `off` only: a hard off at once, without stopping services or waiting.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/v1/control/power/{machine}/{op}` — `on`, `off` (graceful: stop
/// the machine's services → soft off → wait for `Off` → hard off after
/// `graceful_timeout`; `"force":true` for a hard off at once) or `reset`.
/// Answers each step and the power state reached. One operation per machine
/// at a time.
/// **Permissions**: `power:control`, a second factor, an authentication no
/// older than `control.fresh_auth`, and for `off`/`reset` the confirmation phrase.
#[utoipa::path(post, path = "/api/v1/control/power/{machine}/{op}", tag = "control", request_body = PowerRequest, params(("machine" = String, Path, description = "a [[control.power]] name"), ("op" = String, Path, description = "on, off or reset")), responses((status = 200, description = "the machine reached the state asked for; the steps"), (status = 400, description = "confirmation_required, or invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks power:control, step_up_required (with login_url), banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such machine or operation", body = ErrorBody), (status = 409, description = "an operation on this machine is running", body = ErrorBody), (status = 502, description = "the device failed or did not reach the state; the steps are in error.outcome", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn power_action(
    State(st): State<AppState>,
    ask: Ask,
    Path((machine, op)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::service::power::PowerOp;
    let op = PowerOp::parse(&op).ok_or(ApiError::NotFound("operation"))?;
    let audit_action = format!("control.power.{}", op.as_str());
    let who = stepped_up(&st, &ask, Permission::PowerControl, &audit_action, &machine).await?;
    let req: PowerRequest = if body.is_empty() {
        PowerRequest {
            confirm: None,
            force: false,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
    };
    if req.force && op != PowerOp::Off {
        return Err(ApiError::BadRequest("force is for off only".into()));
    }
    let outcome = st
        .services
        .power
        .act(&who, &machine, op, req.confirm.as_deref(), req.force)
        .await?;
    Ok(Json(json!({ "outcome": outcome })))
}
