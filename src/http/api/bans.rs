//! Brute-force regulation bans: list, ban by hand, lift. Changes reach the
//! decision path before the answer is sent.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, Ask, ErrorBody};
use crate::app::AppState;
use crate::identity::regulation::BanKey;
use crate::service::access::Permission;
use crate::service::audit::audited;
use crate::store::Ban;

async fn reload(st: &AppState) -> Result<Vec<Ban>, ApiError> {
    let bans = st.store.live_bans(st.clock.now()).await?;
    st.regulation.load(&bans);
    Ok(bans)
}

/// `GET /api/v1/bans` — bans in force.
/// **Permissions**: `bans:read`.
#[utoipa::path(get, path = "/api/v1/bans", tag = "bans", responses((status = 200, description = "bans in force"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks bans:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    admin(&st, &ask, Permission::BansRead).await?;
    let bans = reload(&st).await?;
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
    let key = match req.kind.as_str() {
        "ip" => BanKey::Ip(
            req.value
                .trim()
                .parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::BadRequest(format!("{:?} is not an IP address", req.value)))?
                .to_canonical(),
        ),
        "user"
            if !req.value.is_empty()
                && req.value.len() <= 256
                && !req.value.chars().any(char::is_control) =>
        {
            BanKey::User(req.value.clone())
        }
        "user" => {
            return Err(ApiError::BadRequest(
                "value is not a valid user name".into(),
            ))
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "kind {other:?} is neither \"ip\" nor \"user\""
            )))
        }
    };
    let secs = match &req.duration {
        Some(d) => crate::config::parse_duration(d)
            .map_err(|e| ApiError::BadRequest(format!("duration: {e}")))?
            .as_secs() as i64,
        None => st.config.regulation.ban_time.as_secs() as i64,
    };
    if secs <= 0 {
        return Err(ApiError::BadRequest("duration must be positive".into()));
    }
    let now = st.clock.now();
    let mut ban = Ban {
        id: 0,
        kind: key.kind().into(),
        value: key.value(),
        reason: format!(
            "manual by {}: {}",
            who.actor(),
            req.reason
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        ),
        failures: 0,
        created_at: now,
        expires_at: now.saturating_add(secs),
        lifted_at: None,
        lifted_by: None,
    };
    let target = format!("{}:{}", ban.kind, ban.value);
    let details = json!({"expires_at": ban.expires_at, "reason": ban.reason});
    ban.id = audited(&st.audit, &who, "ban.add", &target, details, async {
        let id = st.store.insert_ban(&ban).await?;
        reload(&st).await?;
        Ok::<_, ApiError>(id)
    })
    .await?;
    tracing::warn!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban added by hand");
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
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound("ban"))?;
    let now = st.clock.now();
    let live = st.store.live_bans(now).await?;
    let Some(ban) = live.iter().find(|b| b.id == id) else {
        return Err(ApiError::NotFound("ban"));
    };
    let target = format!("{}:{}", ban.kind, ban.value);
    audited(
        &st.audit,
        &who,
        "ban.lift",
        &target,
        json!({"id": id}),
        async {
            if !st.store.lift_ban(id, now, who.actor()).await? {
                return Err(ApiError::NotFound("ban"));
            }
            if let Some(k) = BanKey::of(ban) {
                st.regulation.forgive(&k);
            }
            reload(&st).await?;
            Ok(())
        },
    )
    .await?;
    tracing::info!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban lifted");
    Ok(Json(json!({ "lifted": id })))
}
