//! The runtime IP allowlist: list, add, remove, import (all or nothing, with
//! every bad line named). A change reaches the decision path before the
//! answer is sent; an entry past its `expires_at` stops matching on time.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, Ask, ErrorBody};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::service;
use crate::service::access::Permission;
use crate::store::AllowRecord;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub cidr: String,
    #[serde(default)]
    pub description: String,
    /// RFC 3339; the entry stops matching then.
    pub expires_at: Option<String>,
}

impl From<NewEntry> for service::allowlist::NewEntry {
    fn from(e: NewEntry) -> Self {
        service::allowlist::NewEntry {
            cidr: e.cidr,
            description: e.description,
            expires_at: e.expires_at,
        }
    }
}

fn entry_json(r: &AllowRecord, now: i64) -> Value {
    json!({
        "id": r.id.to_string(), "cidr": r.cidr, "description": r.description,
        "created_by": r.created_by, "created_at": rfc3339(r.created_at),
        "expires_at": r.expires_at.map(rfc3339),
        "expired": r.expires_at.is_some_and(|t| t <= now),
        "read_only": false,
    })
}

/// `GET /api/v1/allowlist` — runtime entries, and the configuration's (read-only).
/// **Permissions**: `allowlist:read`.
#[utoipa::path(get, path = "/api/v1/allowlist", tag = "allowlist", responses((status = 200, description = "runtime and static entries"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks allowlist:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list(State(st): State<AppState>, ask: Ask) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::AllowlistRead).await?;
    let l = st.services.allowlist.list(&who).await?;
    let now = st.clock.now();
    let mut out: Vec<Value> = l
        .static_entries
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "id": format!("static-{i}"), "cidr": n.to_string(),
                "description": "from the configuration (access.allowlist)",
                "created_by": "config", "created_at": null, "expires_at": null,
                "expired": false, "read_only": true,
            })
        })
        .collect();
    out.extend(l.runtime.iter().map(|r| entry_json(r, now)));
    Ok(Json(json!({ "entries": out, "enforced": l.enforced })))
}

/// `POST /api/v1/allowlist` — add one entry `{"cidr","description","expires_at"?}`.
/// **Permissions**: `allowlist:write`.
#[utoipa::path(post, path = "/api/v1/allowlist", tag = "allowlist", request_body = NewEntry, responses((status = 200, description = "the new entry"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks allowlist:write, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn add(
    State(st): State<AppState>,
    ask: Ask,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::AllowlistWrite).await?;
    let e: NewEntry =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let rec = st.services.allowlist.add(&who, &e.into()).await?;
    Ok(Json(json!({ "entry": entry_json(&rec, st.clock.now()) })))
}

/// `DELETE /api/v1/allowlist/{id}` — remove a runtime entry.
/// **Permissions**: `allowlist:write`.
#[utoipa::path(delete, path = "/api/v1/allowlist/{id}", tag = "allowlist", params(("id" = String, Path, description = "entry id")), responses((status = 200, description = "removed"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks allowlist:write, banned, or a cross-site request", body = ErrorBody), (status = 404, description = "no such entry", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn remove(
    State(st): State<AppState>,
    ask: Ask,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::AllowlistWrite).await?;
    st.services.allowlist.remove(&who, &id).await?;
    Ok(Json(json!({ "removed": id })))
}

/// `POST /api/v1/allowlist/import` — `text/plain` (one CIDR a line, `#`
/// comments; a comment after the CIDR becomes its description) or a JSON array
/// of entries. All or nothing: any bad line refuses the whole import.
/// **Permissions**: `allowlist:write`.
#[utoipa::path(post, path = "/api/v1/allowlist/import", tag = "allowlist", request_body(content((String = "text/plain"), (Vec<NewEntry> = "application/json")), description = "one CIDR a line with # comments, or a JSON array of entries"), responses((status = 200, description = "imported (all lines)"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks allowlist:write, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn import(
    State(st): State<AppState>,
    ask: Ask,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let who = admin(&st, &ask, Permission::AllowlistWrite).await?;
    let ctype = ask
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let parsed: Vec<(usize, NewEntry)> = match ctype.as_str() {
        "text/plain" => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
            text.lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let (cidr, comment) = match l.split_once('#') {
                        Some((c, d)) => (c.trim(), d.trim()),
                        None => (l.trim(), ""),
                    };
                    (!cidr.is_empty()).then(|| {
                        (
                            i + 1,
                            NewEntry {
                                cidr: cidr.into(),
                                description: comment.into(),
                                expires_at: None,
                            },
                        )
                    })
                })
                .collect()
        }
        "application/json" => {
            let items: Vec<Value> = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("body: a JSON array of entries: {e}")))?;
            let mut out = vec![];
            let mut bad = vec![];
            for (i, v) in items.into_iter().enumerate() {
                match serde_json::from_value::<NewEntry>(v) {
                    Ok(e) => out.push((i + 1, e)),
                    Err(e) => bad.push((i + 1, e.to_string())),
                }
            }
            if !bad.is_empty() {
                return Err(ApiError::InvalidImport(bad));
            }
            out
        }
        _ => return Err(ApiError::BadRequest(
            "Content-Type: text/plain (one CIDR a line) or application/json (an array of entries)"
                .into(),
        )),
    };
    let parsed: Vec<(usize, service::allowlist::NewEntry)> =
        parsed.into_iter().map(|(n, e)| (n, e.into())).collect();
    let ids = st.services.allowlist.import(&who, &parsed).await?;
    Ok(Json(json!({ "imported": ids.len(), "ids": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>() })).into_response())
}
