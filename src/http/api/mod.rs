//! The companion API under `/api/v1`: JSON in and out, errors as
//! `{"error":{"code","message"}}`. Every request authenticates itself through the
//! same identity engine as the decision endpoints (bearer token for now); it
//! never trusts `Remote-*` headers from the network.

pub mod sessions;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::AppState;
use crate::decision::Identity;
use crate::http::authz::{authenticate, bearer};

/// Every way an API call can fail; `into_response` is the one mapping to HTTP.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated,
    InvalidToken,
    Forbidden,
    NotFound(&'static str),
    BadRequest(String),
    /// Details go to the log once; the client gets a generic message.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "credentials are required".to_string(),
            ),
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the presented credentials were not accepted".to_string(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "an admin role is required".to_string(),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}"),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "companion API failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_string(),
                )
            }
        };
        let mut resp = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The caller, identified from `Authorization: Bearer` exactly as the decision
/// endpoints identify it (same parsing, validation and revocations).
pub async fn caller(st: &AppState, headers: &HeaderMap) -> Result<Arc<Identity>, ApiError> {
    match bearer(headers) {
        None => Err(ApiError::Unauthenticated),
        Some(Err(())) => Err(ApiError::InvalidToken),
        Some(Ok(token)) => authenticate(st, token)
            .await
            .map_err(|_| ApiError::InvalidToken),
    }
}

fn is_admin(st: &AppState, id: &Identity) -> bool {
    st.config
        .admin
        .roles
        .iter()
        .any(|r| id.groups.binary_search(r).is_ok())
}

/// Proof that the caller holds one of `[admin] roles`. Handlers for dangerous
/// operations take one, so they cannot run without the check having passed.
#[derive(Debug, Clone)]
pub struct Admin {
    pub identity: Arc<Identity>,
}

impl Admin {
    /// Who did it, for `terminated_by` and (later) the audit log.
    pub fn actor(&self) -> String {
        self.identity.user.clone()
    }
}

pub async fn admin(st: &AppState, headers: &HeaderMap) -> Result<Admin, ApiError> {
    let id = caller(st, headers).await?;
    if !is_admin(st, &id) {
        return Err(ApiError::Forbidden);
    }
    Ok(Admin { identity: id })
}

/// `GET /api/v1/me` — the caller as the decision engine sees it.
/// **Permissions**: any authenticated caller.
pub async fn me(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = caller(&st, &headers).await?;
    let admin = is_admin(&st, &id);
    Ok(Json(json!({
        "user": id.user,
        "sub": id.sub,
        "issuer": id.issuer,
        "groups": id.groups,
        "email": id.email,
        "name": id.name,
        "acr": id.acr,
        "amr": id.amr,
        "sid": id.sid,
        "expires_at": id.exp,
        "admin": admin,
    })))
}

/// Unknown `/api/v1` paths and methods answer in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("endpoint")
}
