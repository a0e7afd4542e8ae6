//! `GET /api/v1/ws` — the admin event stream (first part of issue #12):
//! authentication by bearer token, `?token=` (browsers cannot set headers on a
//! WebSocket) or the session cookie (then the `Origin` must be gatehouse's
//! own); refusals before the upgrade are the API's JSON 401/403, and 429 past
//! [`MAX_PER_USER`] sockets of one user or [`MAX_TOTAL`] in all. After it:
//! `connection_established`, `ping` → `pong`, `get_stats` → `stats_update`,
//! `subscribe` to topics, `event` messages for audit entries as they commit
//! (callers with `audit:read`; a socket that reads too slowly loses events,
//! counted in `/metrics`, and never slows the server), `token_expiring` at
//! most 60 s before a token expires and `refresh` with a new token for the
//! same subject, and a close with 1008 within a second of the credential's
//! end (`token_expired`, `session_ended`, `banned`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{caller, ApiError, Ask};
use super::authz::authenticate;
use super::login::cookie_value;
use crate::app::AppState;
use crate::decision::Identity;
use crate::identity::session::session_id;
use crate::service::access::{self, Admin, Permission};

/// Open admin sockets at most, per user and in all.
pub const MAX_PER_USER: usize = 8;
pub const MAX_TOTAL: usize = 256;
/// `token_expiring` comes this long before the credential expires.
const EXPIRY_WARNING_SECS: i64 = 60;

/// A place among this server's open sockets (`AppState::sockets`), given
/// back when the socket ends.
struct Slot(AppState, String);

impl Slot {
    fn take(st: &AppState, user: &str) -> Option<Slot> {
        let mut map = st.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().sum();
        let mine = map.get(user).copied().unwrap_or(0);
        if total >= MAX_TOTAL || mine >= MAX_PER_USER {
            return None;
        }
        map.insert(user.to_string(), mine + 1);
        Some(Slot(st.clone(), user.to_string()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.0.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Topics a client may subscribe to.
/// (`denials` is accepted; its sampled denial events are still to come.)
const TOPICS: &[&str] = &[
    "audit",
    "sessions",
    "bans",
    "allowlist",
    "control",
    "denials",
];

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    pub token: Option<String>,
}

/// How the socket was authenticated, to check it still holds.
enum Credential {
    Token,
    Session(String),
}

fn topic_of(action: &str) -> &'static str {
    match action.split('.').next().unwrap_or("") {
        "session" | "login" | "logout" => "sessions",
        "ban" => "bans",
        "allowlist" => "allowlist",
        "control" | "action" => "control",
        _ => "audit",
    }
}

/// `GET /api/v1/ws` — the admin event stream (WebSocket); see the module docs.
/// **Permissions**: any; audit entries as events need `audit:read`.
#[utoipa::path(get, path = "/api/v1/ws", tag = "events", params(("token" = Option<String>, Query, description = "a bearer token, for browsers that cannot set headers on a WebSocket")), responses((status = 101, description = "upgraded: JSON text messages with a type (connection_established, pong, stats_update, subscribed, event, error); closed with 1008 and token_expired, session_ended or banned when the credential ends"), (status = 401, description = "no or refused credentials", body = super::api::ErrorBody), (status = 403, description = "no permission at all, banned, or a cookie from another origin", body = super::api::ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn ws(
    State(st): State<AppState>,
    ask: Ask,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (identity, cred) = match q.token.as_deref() {
        Some(t) => (
            authenticate(&st, t)
                .await
                .map_err(|_| ApiError::InvalidToken)?,
            Credential::Token,
        ),
        None => {
            let by_cookie = super::authz::bearer(&ask.headers).is_none();
            let id = caller(&st, &ask).await?;
            if by_cookie {
                let own = st.config.server.public_url.origin().ascii_serialization();
                let origin = ask
                    .headers
                    .get(header::ORIGIN)
                    .and_then(|v| v.to_str().ok());
                if origin != Some(own.as_str()) {
                    return Err(ApiError::CrossSite);
                }
                let v = cookie_value(&ask.headers, &st.config.session.cookie_name)
                    .ok()
                    .flatten()
                    .unwrap_or("");
                (id, Credential::Session(session_id(v)))
            } else {
                (id, Credential::Token)
            }
        }
    };
    let who = access::admit_any(&st.config, identity.clone(), ask.client)?;
    let Some(slot) = Slot::take(&st, &identity.user) else {
        st.metrics
            .ws_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::TooManySockets);
    };
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            serve(st, who, identity, cred, socket).await;
            drop(slot);
        }))
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn close(mut socket: WebSocket, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: reason.into(),
        })))
        .await;
}

/// Why the credential no longer holds, if it does not.
fn ended(st: &AppState, id: &Identity, cred: &Credential) -> Option<&'static str> {
    let now = st.clock.now();
    if st.regulation.user_banned(&id.user, now) {
        return Some("banned");
    }
    match cred {
        Credential::Token if id.exp <= now => Some("token_expired"),
        Credential::Token if st.revocations.load().is_revoked(id) => Some("session_ended"),
        Credential::Session(sid) if st.sessions.get_by_id(sid).is_none() => Some("session_ended"),
        _ => None,
    }
}

/// How often `stats_update` comes without being asked.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Decisions by result so far: (allow, unauthenticated, forbidden).
fn decisions(st: &AppState) -> [u64; 3] {
    let d = &st.metrics.decisions;
    [
        d.sum_where(1, "allow"),
        d.sum_where(1, "unauthenticated"),
        d.sum_where(1, "forbidden"),
    ]
}

/// `stats_update`: decisions by result since `since` (the last update on this
/// socket), and the counts of the moment.
fn stats(st: &AppState, since: &mut ([u64; 3], std::time::Instant)) -> Value {
    let now = st.clock.now();
    let inactivity = st.config.session.inactivity.as_secs() as i64;
    let d = decisions(st);
    let secs = since.1.elapsed().as_secs_f64().max(0.001);
    let per_sec = |i: usize| ((d[i] - since.0[i]) as f64 / secs * 10.0).round() / 10.0;
    let out = json!({
        "type": "stats_update",
        "decisions": {"allow": d[0] - since.0[0], "unauthenticated": d[1] - since.0[1], "forbidden": d[2] - since.0[2]},
        "decisions_per_second": {"allow": per_sec(0), "unauthenticated": per_sec(1), "forbidden": per_sec(2)},
        "interval_secs": (secs * 10.0).round() / 10.0,
        "active_sessions": st.sessions.count_alive(now, inactivity),
        "bans": st.regulation.bans_in_force(now),
        "allowlist_entries": st.policy.load().allowlist.entries().len(),
        "kill_switch": {"engaged": st.services.control.engaged()},
        "server_time": now,
    });
    *since = (d, std::time::Instant::now());
    out
}

async fn serve(
    st: AppState,
    who: Admin,
    mut id: Arc<Identity>,
    cred: Credential,
    mut socket: WebSocket,
) {
    let mut warned = false;
    let mut events = st.services.audit.log().subscribe();
    let mut topics: BTreeSet<&'static str> = TOPICS.iter().copied().collect();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    stats_tick.tick().await;
    let mut since = (decisions(&st), std::time::Instant::now());
    let hello = json!({
        "type": "connection_established",
        "user": id.user,
        "permissions": who.grants().names(),
        "server_time": st.clock.now(),
        "expires_at": id.exp,
    });
    if !send(&mut socket, hello).await {
        return;
    }
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let answer = match v["type"].as_str() {
                    Some("ping") => json!({"type": "pong", "server_time": st.clock.now()}),
                    Some("refresh") => match (&cred, v["token"].as_str()) {
                        (Credential::Token, Some(t)) => match authenticate(&st, t).await {
                            Ok(new) if new.sub == id.sub && new.issuer == id.issuer => {
                                id = new;
                                warned = false;
                                json!({"type": "refreshed", "expires_at": id.exp})
                            }
                            Ok(_) => json!({"type": "error", "code": "other_subject", "message": "a refresh must be for the same subject"}),
                            Err(_) => json!({"type": "error", "code": "invalid_token", "message": "the new token was not accepted"}),
                        },
                        _ => json!({"type": "error", "code": "bad_message", "message": "refresh takes {\"token\": ...} on a token-authenticated socket"}),
                    },
                    Some("get_stats") => stats(&st, &mut since),
                    Some("subscribe") => {
                        let asked: Vec<&str> = v["topics"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                        match asked.iter().find(|t| !TOPICS.contains(t)) {
                            Some(bad) => json!({"type": "error", "code": "unknown_topic", "message": format!("{bad:?} is not a topic; use {}", TOPICS.join(", "))}),
                            None => {
                                topics = TOPICS.iter().copied().filter(|t| asked.contains(t)).collect();
                                json!({"type": "subscribed", "topics": topics})
                            }
                        }
                    }
                    _ => json!({"type": "error", "code": "bad_message", "message": "send {\"type\": \"ping\" | \"get_stats\" | \"subscribe\"}"}),
                };
                if !send(&mut socket, answer).await {
                    return;
                }
            }
            e = events.recv() => {
                let e = match e {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        st.metrics.ws_events_dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        let _ = send(&mut socket, json!({"type": "error", "code": "lagged", "message": format!("{n} events were dropped: this socket read too slowly")})).await;
                        continue;
                    }
                    Err(_) => return,
                };
                let topic = topic_of(&e.action);
                if who.require(Permission::AuditRead).is_ok() && topics.contains(topic) {
                    let ev = json!({"type": "event", "topic": topic, "entry": e});
                    if !send(&mut socket, ev).await {
                        return;
                    }
                }
            }
            _ = stats_tick.tick() => {
                if !send(&mut socket, stats(&st, &mut since)).await {
                    return;
                }
            }
            _ = tick.tick() => {
                if let Some(reason) = ended(&st, &id, &cred) {
                    close(socket, reason).await;
                    return;
                }
                let left = id.exp - st.clock.now();
                if matches!(cred, Credential::Token) && !warned && left <= EXPIRY_WARNING_SECS {
                    warned = true;
                    let msg = json!({"type": "token_expiring", "call_refresh": true, "time_remaining_seconds": left.max(0)});
                    if !send(&mut socket, msg).await {
                        return;
                    }
                }
            }
        }
    }
}
