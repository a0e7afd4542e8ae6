//! The audit log: pages of entries with filters, and chain verification.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, ApiQuery, Ask, ErrorBody};
use crate::app::AppState;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::service::access::Permission;
use crate::store::AuditFilter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// RFC 3339 or Unix seconds, inclusive.
    pub since: Option<String>,
    /// RFC 3339 or Unix seconds, exclusive.
    pub until: Option<String>,
    /// Entries with a smaller sequence number (the next page).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339(s).map(rfc3339).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name}: use RFC 3339 (2026-11-23T10:00:00Z) or Unix seconds"
                ))
            })
        })
        .transpose()
}

/// `GET /api/v1/audit` — entries, newest first; `before` pages back.
/// **Permissions**: `audit:read`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(("actor" = Option<String>, Query, description = "who"), ("action" = Option<String>, Query, description = "e.g. login, allowlist.add"), ("since" = Option<String>, Query, description = "RFC 3339 or Unix seconds, inclusive"), ("until" = Option<String>, Query, description = "RFC 3339 or Unix seconds, exclusive"), ("before" = Option<i64>, Query, description = "entries with a smaller sequence number (next page)"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")), responses((status = 200, description = "entries, newest first, and next_before"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks audit:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::AuditRead).await?;
    let f = AuditFilter {
        actor: q.actor.clone(),
        action: q.action.clone(),
        since: time_param("since", &q.since)?,
        until: time_param("until", &q.until)?,
        before_seq: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let (entries, next) = st.services.audit.page(&who, &f).await?;
    Ok(Json(json!({ "entries": entries, "next_before": next })))
}

/// `GET /api/v1/audit/verify` — verifies the whole chain against the signed
/// checkpoints: `ok`, or the first entry that breaks it and how.
/// **Permissions**: `audit:read`.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, description = "ok, or the first break and how"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks audit:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn verify(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::AuditRead).await?;
    let report = st.services.audit.verify(&who).await?;
    let message = match &report.error {
        None => format!("ok: {} entries, head {}", report.entries, report.head),
        Some(b) => b.to_string(),
    };
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("message".into(), json!(message));
    }
    Ok(Json(v))
}
