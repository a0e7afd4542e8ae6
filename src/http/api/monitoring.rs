//! Usage monitoring: requests and denials per user, host, rule, result and
//! reason over a window, and each live session's last activity.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, ApiError, ApiQuery, Ask, ErrorBody};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::service::access::Permission;

/// Longest window the usage endpoint answers for (the store keeps 31 days).
const MAX_WINDOW_SECS: u64 = 31 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// e.g. `15m`, `1h`, `7d`; default `1h`.
    pub window: Option<String>,
}

#[derive(Default)]
struct Tally {
    requests: i64,
    denials: i64,
}

fn table(m: BTreeMap<String, Tally>) -> Vec<Value> {
    let mut rows: Vec<(String, Tally)> = m.into_iter().collect();
    rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
    rows.into_iter()
        .map(|(k, t)| json!({"key": k, "requests": t.requests, "denials": t.denials}))
        .collect()
}

/// `GET /api/v1/monitoring/usage?window=1h` — decisions in the window, grouped.
/// **Permissions**: `monitoring:read`.
#[utoipa::path(get, path = "/api/v1/monitoring/usage", tag = "monitoring", params(("window" = Option<String>, Query, description = "e.g. 15m, 1h, 7d (default 1h, at most 31d)")), responses((status = 200, description = "requests and denials grouped by user, host, rule, result and reason; over time in at most 60 slots (series); live sessions"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "lacks monitoring:read, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn usage(
    State(st): State<AppState>,
    ask: Ask,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&st, &ask, Permission::MonitoringRead).await?;
    let window = crate::config::parse_duration(q.window.as_deref().unwrap_or("1h"))
        .map_err(|e| ApiError::BadRequest(format!("window: {e}")))?;
    if window.as_secs() == 0 || window.as_secs() > MAX_WINDOW_SECS {
        return Err(ApiError::BadRequest("window: between 1m and 31d".into()));
    }
    let now = st.clock.now();
    let (from, rows) = st.services.usage.rows(&who, window.as_secs(), now).await?;
    let mut total = Tally::default();
    let (mut by_user, mut by_host, mut by_rule, mut by_result, mut by_reason) = (
        BTreeMap::<String, Tally>::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    for r in &rows {
        let denied = if r.result == "allow" { 0 } else { r.count };
        total.requests += r.count;
        total.denials += denied;
        let user = if r.user.is_empty() {
            "(anonymous)".to_string()
        } else {
            r.user.clone()
        };
        let rule = if r.rule < 0 {
            "default".to_string()
        } else {
            r.rule.to_string()
        };
        for (m, k) in [
            (&mut by_user, user),
            (&mut by_host, r.host.clone()),
            (&mut by_rule, rule),
            (&mut by_result, r.result.clone()),
            (&mut by_reason, r.reason.clone()),
        ] {
            let t = m.entry(k).or_default();
            t.requests += r.count;
            t.denials += denied;
        }
    }
    let (step, series) = st
        .services
        .usage
        .series(&who, window.as_secs(), now)
        .await?;
    let series: Vec<Value> = series
        .iter()
        .map(|(t, requests, denials)| json!({"from": rfc3339(*t), "requests": requests, "denials": denials}))
        .collect();
    let mut sessions: Vec<Value> = st.services.usage.live_sessions(&who, now)
        .await?
        .into_iter()
        .map(|s| json!({"id": s.id, "user": s.username, "last_seen": rfc3339(s.last_seen), "client_addr": s.client_addr}))
        .collect();
    sessions.sort_by(|a, b| b["last_seen"].as_str().cmp(&a["last_seen"].as_str()));
    Ok(Json(json!({
        "window": {"from": rfc3339(from), "to": rfc3339(now)},
        "requests": total.requests,
        "denials": total.denials,
        "by_user": table(by_user),
        "by_host": table(by_host),
        "by_rule": table(by_rule),
        "by_result": table(by_result),
        "by_reason": table(by_reason),
        "sessions": sessions,
        "series": {"step_secs": step, "points": series},
    })))
}
