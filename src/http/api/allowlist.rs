//! The runtime IP allowlist: list, add, remove, import (all or nothing, with
//! every bad line named). A change reaches the decision path before the
//! answer is sent; an entry past its `expires_at` stops matching on time.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, Ask, ErrorBody};
use crate::app::{reload_allowlist, AppState};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::service::access::Permission;
use crate::service::audit::audited;
use crate::store::AllowRecord;

/// Most entries one import may add.
const MAX_IMPORT: usize = 10_000;

/// A CIDR as the allowlist keeps it: validated by ipnet, host bits refused (a
/// typo would silently widen or narrow the entry), a bare address made /32 or
/// /128, IPv4-mapped IPv6 written as IPv4 (client addresses are compared that way).
pub fn normalise_cidr(s: &str) -> Result<IpNet, String> {
    let n = crate::config::parse_cidr(s)?;
    if let IpNet::V6(v6) = n {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                return Ok(IpNet::V4(
                    ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_err(|e| e.to_string())?,
                ));
            }
        }
    }
    Ok(n)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub cidr: String,
    #[serde(default)]
    pub description: String,
    /// RFC 3339; the entry stops matching then.
    pub expires_at: Option<String>,
}

fn checked(e: &NewEntry, now: i64, by: &str) -> Result<AllowRecord, String> {
    let net = normalise_cidr(&e.cidr)?;
    if e.description.len() > 256 || e.description.chars().any(char::is_control) {
        return Err("description: at most 256 characters, no control characters".into());
    }
    let expires_at = match &e.expires_at {
        None => None,
        Some(t) => {
            let at = parse_rfc3339(t).ok_or_else(|| {
                format!("expires_at: {t:?} is not an RFC 3339 time (2026-12-31T23:59:59Z)")
            })?;
            if at <= now {
                return Err(format!("expires_at: {t} is in the past"));
            }
            Some(at)
        }
    };
    Ok(AllowRecord {
        id: 0,
        cidr: net.to_string(),
        description: e.description.clone(),
        created_by: by.to_string(),
        created_at: now,
        expires_at,
    })
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
    admin(&st, &ask, Permission::AllowlistRead).await?;
    let now = st.clock.now();
    let mut out: Vec<Value> = st
        .static_allowlist
        .load()
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
    out.extend(
        st.store
            .allowlist()
            .await?
            .iter()
            .map(|r| entry_json(r, now)),
    );
    Ok(Json(
        json!({ "entries": out, "enforced": st.policy.load().allowlist_enforced }),
    ))
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
    let now = st.clock.now();
    let mut rec = checked(&e, now, who.actor()).map_err(ApiError::BadRequest)?;
    let details = json!({"description": rec.description, "expires_at": rec.expires_at});
    let target = rec.cidr.clone();
    rec.id = audited(&st.audit, &who, "allowlist.add", &target, details, async {
        let ids = st
            .store
            .insert_allowlist(std::slice::from_ref(&rec))
            .await?;
        reload_allowlist(&st).await?;
        Ok::<_, ApiError>(ids[0])
    })
    .await?;
    Ok(Json(json!({ "entry": entry_json(&rec, now) })))
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
    if id.starts_with("static-") {
        return Err(ApiError::BadRequest(
            "this entry comes from the configuration (access.allowlist); change it there".into(),
        ));
    }
    let n: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound("allowlist entry"))?;
    let Some(rec) = st.store.allowlist().await?.into_iter().find(|r| r.id == n) else {
        return Err(ApiError::NotFound("allowlist entry"));
    };
    let now = st.clock.now();
    audited(
        &st.audit,
        &who,
        "allowlist.remove",
        &rec.cidr,
        json!({"id": n}),
        async {
            if !st.store.delete_allowlist(n, now, who.actor()).await? {
                return Err(ApiError::NotFound("allowlist entry"));
            }
            reload_allowlist(&st).await?;
            Ok(())
        },
    )
    .await?;
    Ok(Json(json!({ "removed": id })))
}

/// An import refused as a whole, naming every bad line.
fn import_error(lines: Vec<(usize, String)>) -> Response {
    let n = lines.len();
    super::error_with_lines(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_import",
        format!("{n} line(s) are not valid; nothing was imported"),
        Some(
            lines
                .into_iter()
                .map(|(line, message)| super::LineError { line, message })
                .collect(),
        ),
    )
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
    let now = st.clock.now();
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
                return Ok(import_error(bad));
            }
            out
        }
        _ => return Err(ApiError::BadRequest(
            "Content-Type: text/plain (one CIDR a line) or application/json (an array of entries)"
                .into(),
        )),
    };
    if parsed.is_empty() {
        return Err(ApiError::BadRequest("nothing to import".into()));
    }
    if parsed.len() > MAX_IMPORT {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_IMPORT} entries per import"
        )));
    }
    let existing: std::collections::HashMap<String, i64> = st
        .store
        .allowlist()
        .await?
        .into_iter()
        .map(|r| (r.cidr, r.id))
        .collect();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut records = vec![];
    let mut bad = vec![];
    for (line, e) in &parsed {
        match checked(e, now, who.actor()) {
            Ok(r) => {
                if let Some(id) = existing.get(&r.cidr) {
                    bad.push((
                        *line,
                        format!("{} is already in the allowlist (id {id})", r.cidr),
                    ));
                } else if let Some(first) = seen.get(&r.cidr) {
                    bad.push((*line, format!("{} repeats line {first}", r.cidr)));
                } else {
                    seen.insert(r.cidr.clone(), *line);
                    records.push(r);
                }
            }
            Err(m) => bad.push((*line, m)),
        }
    }
    if !bad.is_empty() {
        return Ok(import_error(bad));
    }
    let cidrs: Vec<&str> = records.iter().map(|r| r.cidr.as_str()).collect();
    let details = json!({"count": records.len(), "cidrs": cidrs});
    let ids = audited(
        &st.audit,
        &who,
        "allowlist.import",
        &format!("{} entries", records.len()),
        details,
        async {
            let ids = st.store.insert_allowlist(&records).await?;
            reload_allowlist(&st).await?;
            Ok::<_, ApiError>(ids)
        },
    )
    .await?;
    Ok(Json(json!({ "imported": ids.len(), "ids": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>() })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let n = |s: &str| normalise_cidr(s).map(|n| n.to_string());
        assert_eq!(n("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(n("2001:DB8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(n("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(n(" 10.0.0.0/8 ").unwrap(), "10.0.0.0/8");
        assert!(n("10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/8/8", "1.2.3"] {
            assert!(n(bad).is_err(), "{bad}");
        }
    }
}
