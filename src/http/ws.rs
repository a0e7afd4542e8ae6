//! `GET /api/v1/ws` — the admin event stream (issue #12): authentication by
//! bearer token, `?token=` (browsers cannot set headers on a WebSocket) or the
//! session cookie (then the `Origin` must be gatehouse's own or one of
//! `server.allowed_origins`); refusals before the upgrade are the API's JSON
//! 401/403, and 429 past [`MAX_PER_USER`] sockets of one user or
//! [`MAX_TOTAL`] in all. After it: `connection_established`, `ping` → `pong`,
//! `get_stats` → `stats_update` (also every `admin.live.stats_interval`),
//! `subscribe` to topics (each needs `events:read` and the topic's read
//! permission), `event` messages for audit entries as they commit and for
//! sampled denials (`crate::live`), `token_expiring` at most 60 s before a
//! token expires and `refresh` with a new token for the same subject, and a
//! close with 1008 within a second of the credential's end (`token_expired`,
//! `session_ended`, `banned`). The server pings every `ping_interval` and
//! closes a socket silent for `idle_timeout` (1001 `idle_timeout`); a socket
//! that cannot take a message within `send_timeout` is dropped, and one that
//! reads too slowly loses events (told, and counted in `/metrics`): no
//! socket ever slows the server or the others.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use futures_util::SinkExt;
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
        st.metrics.ws_open.fetch_add(1, Ordering::Relaxed);
        Some(Slot(st.clone(), user.to_string()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.metrics.ws_open.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.0.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Topics a client may subscribe to, each with the permission (besides
/// `events:read`) that its events need.
const TOPICS: &[(&str, Permission)] = &[
    ("audit", Permission::AuditRead),
    ("sessions", Permission::SessionsRead),
    ("bans", Permission::BansRead),
    ("allowlist", Permission::AllowlistRead),
    ("control", Permission::StatusRead),
    ("denials", Permission::MonitoringRead),
];

/// The topics whose events `who` may receive.
fn permitted(who: &Admin) -> BTreeSet<&'static str> {
    let g = who.grants();
    TOPICS
        .iter()
        .filter(|(_, p)| g.has(Permission::EventsRead) && g.has(*p))
        .map(|(t, _)| *t)
        .collect()
}

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
/// **Permissions**: any (stats); events need `events:read` and the topic's
/// read permission (audit:read, sessions:read, bans:read, allowlist:read,
/// status:read for control, monitoring:read for denials).
#[utoipa::path(get, path = "/api/v1/ws", tag = "events", params(("token" = Option<String>, Query, description = "a bearer token, for browsers that cannot set headers on a WebSocket")), responses((status = 101, description = "upgraded: JSON text messages with a type (connection_established, pong, stats_update, subscribed, event, token_expiring, refreshed, error); closed with 1008 and token_expired, session_ended or banned when the credential ends, 1001 idle_timeout after admin.live.idle_timeout of silence"), (status = 401, description = "no or refused credentials", body = super::api::ErrorBody), (status = 403, description = "no permission at all, banned, or a cookie from an origin other than public_url's or server.allowed_origins", body = super::api::ErrorBody), (status = 429, description = "too_many_sockets: 8 per user, 256 in all", body = super::api::ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
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
                let origin = ask
                    .headers
                    .get(header::ORIGIN)
                    .and_then(|v| v.to_str().ok());
                if !origin.is_some_and(|o| st.config.server.origin_allowed(o)) {
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
        // Clients send a few small messages. tungstenite zeroes its read buffer
        // up to this size on every read attempt: 128 KiB (the default) per
        // wake-up was most of a socket's cost (measured with perf).
        .read_buffer_size(4 * 1024)
        // What may wait in memory for a socket that does not read: past it
        // the socket ends (send_timeout bounds the time, this the bytes).
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| async move {
            serve(st, who, identity, cred, socket).await;
            drop(slot);
        }))
}

/// One socket's sending side. Answers go out at once; events and periodic
/// stats are queued and written together every [`FLUSH_EVERY`] (fewer,
/// larger writes: on loopback the kernel's cost per write dominated). Any
/// write that cannot finish within `admin.live.send_timeout` ends the socket
/// (the reader stopped reading; the server never waits on it longer).
struct Out<'a> {
    st: &'a AppState,
    socket: WebSocket,
    /// Messages queued but not yet written.
    queued: bool,
}

/// How long an event may wait to be written with others.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

impl Out<'_> {
    /// An answer: written now (with anything queued before it).
    async fn send(&mut self, v: Value) -> bool {
        self.frame(Message::Text(v.to_string().into())).await
    }

    /// A frame, written now.
    async fn frame(&mut self, m: Message) -> bool {
        self.queued = false;
        let st = self.st;
        bounded(st, self.socket.send(m)).await
    }

    /// An event: queued, written at the next flush.
    async fn queue(&mut self, m: Message) -> bool {
        self.queued = true;
        let st = self.st;
        bounded(st, self.socket.feed(m)).await
    }

    async fn flush(&mut self) -> bool {
        self.queued = false;
        let st = self.st;
        bounded(st, self.socket.flush()).await
    }

    async fn close(mut self, code: u16, reason: &'static str) {
        let _ = self
            .frame(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}

/// A write, within `admin.live.send_timeout` or the socket's end.
async fn bounded(
    st: &AppState,
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> bool {
    match tokio::time::timeout(st.config.admin.live.send_timeout, write).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            st.metrics.ws_closed_slow.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Why the credential no longer holds, if it does not.
fn ended(st: &AppState, id: &Identity, cred: &Credential) -> Option<&'static str> {
    let now = st.clock.now();
    if st.regulation.user_banned(&id.user, now) {
        return Some("banned");
    }
    match cred {
        // `exp` is the IdP's instant: the wall clock's reading.
        Credential::Token if id.exp <= st.clock.wall() => Some("token_expired"),
        Credential::Token if st.revocations.load().is_revoked(id) => Some("session_ended"),
        Credential::Session(sid) if st.sessions.get_by_id(sid).is_none() => Some("session_ended"),
        _ => None,
    }
}

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

/// What a client asked for, as the JSON answer.
async fn answer(
    st: &AppState,
    v: &Value,
    id: &mut Arc<Identity>,
    cred: &Credential,
    warned: &mut bool,
    subs: &mut Subscriptions,
    since: &mut ([u64; 3], std::time::Instant),
) -> Value {
    match v["type"].as_str() {
        Some("ping") => json!({"type": "pong", "server_time": st.clock.now()}),
        Some("refresh") => match (cred, v["token"].as_str()) {
            (Credential::Token, Some(t)) => match authenticate(st, t).await {
                Ok(new) if new.sub == id.sub && new.issuer == id.issuer => {
                    *id = new;
                    *warned = false;
                    json!({"type": "refreshed", "expires_at": id.exp})
                }
                Ok(_) => {
                    json!({"type": "error", "code": "other_subject", "message": "a refresh must be for the same subject"})
                }
                Err(_) => {
                    json!({"type": "error", "code": "invalid_token", "message": "the new token was not accepted"})
                }
            },
            _ => {
                json!({"type": "error", "code": "bad_message", "message": "refresh takes {\"token\": ...} on a token-authenticated socket"})
            }
        },
        Some("get_stats") => stats(st, since),
        Some("subscribe") => {
            let asked: Vec<&str> = v["topics"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match asked.iter().find(|t| !TOPICS.iter().any(|(n, _)| n == *t)) {
                Some(bad) => {
                    let names: Vec<&str> = TOPICS.iter().map(|(n, _)| *n).collect();
                    json!({"type": "error", "code": "unknown_topic", "message": format!("{bad:?} is not a topic; use {}", names.join(", "))})
                }
                None => {
                    subs.set(st, &asked);
                    let not_permitted: Vec<&str> = asked
                        .iter()
                        .copied()
                        .filter(|t| !subs.permitted.contains(t))
                        .collect();
                    json!({"type": "subscribed", "topics": subs.topics, "not_permitted": not_permitted})
                }
            }
        }
        _ => {
            json!({"type": "error", "code": "bad_message", "message": "send {\"type\": \"ping\" | \"get_stats\" | \"subscribe\" | \"refresh\"}"})
        }
    }
}

/// The topics a socket receives, and its place on the denial feed while
/// `denials` is one of them.
struct Subscriptions {
    permitted: BTreeSet<&'static str>,
    topics: BTreeSet<&'static str>,
    denials: Option<crate::live::DenialListener>,
}

impl Subscriptions {
    /// Every topic `who` may receive: where a socket starts.
    fn all_permitted(st: &AppState, who: &Admin) -> Self {
        let permitted = permitted(who);
        let mut subs = Subscriptions {
            topics: BTreeSet::new(),
            denials: None,
            permitted,
        };
        let all: Vec<&str> = subs.permitted.iter().copied().collect();
        subs.set(st, &all);
        subs
    }

    fn set(&mut self, st: &AppState, asked: &[&str]) {
        self.topics = self
            .permitted
            .iter()
            .copied()
            .filter(|t| asked.contains(t))
            .collect();
        match (self.topics.contains("denials"), self.denials.is_some()) {
            (true, false) => self.denials = Some(st.denials.listen()),
            (false, true) => self.denials = None,
            _ => {}
        }
    }

    /// The next sampled denial, or never when not subscribed.
    async fn next_denial(&mut self) -> Result<Arc<str>, tokio::sync::broadcast::error::RecvError> {
        match &mut self.denials {
            Some(l) => l.recv().await,
            None => std::future::pending().await,
        }
    }
}

async fn serve(
    st: AppState,
    who: Admin,
    mut id: Arc<Identity>,
    cred: Credential,
    socket: WebSocket,
) {
    let live = st.config.admin.live.clone();
    let mut out = Out {
        st: &st,
        socket,
        queued: false,
    };
    let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    let mut events = st.services.audit.log().subscribe();
    let mut subs = Subscriptions::all_permitted(&st, &who);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut stats_tick = tokio::time::interval(live.stats_interval);
    stats_tick.tick().await;
    let mut ping_tick = tokio::time::interval(live.ping_interval);
    ping_tick.tick().await;
    let mut heard = std::time::Instant::now();
    let mut since = (decisions(&st), std::time::Instant::now());
    let hello = json!({
        "type": "connection_established",
        "user": id.user,
        "permissions": who.grants().names(),
        "topics": subs.topics,
        "server_time": st.clock.now(),
        "expires_at": id.exp,
    });
    if !out.send(hello).await {
        return;
    }
    loop {
        let sent = tokio::select! {
            msg = out.socket.recv() => {
                heard = std::time::Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let a = answer(&st, &v, &mut id, &cred, &mut warned, &mut subs, &mut since).await;
                out.send(a).await
            }
            e = events.recv() => match e {
                Ok(e) => {
                    let topic = topic_of(&e.action);
                    !subs.topics.contains(topic)
                        || out.queue(Message::Text(json!({"type": "event", "topic": topic, "entry": e}).to_string().into())).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged(&mut out, n).await,
                Err(_) => return,
            },
            d = subs.next_denial() => match d {
                Ok(m) => out.queue(Message::Text(String::from(&*m).into())).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged(&mut out, n).await,
                Err(_) => return,
            },
            _ = stats_tick.tick() => out.queue(Message::Text(stats(&st, &mut since).to_string().into())).await,
            _ = flush_tick.tick(), if out.queued => out.flush().await,
            _ = ping_tick.tick() => out.frame(Message::Ping(Default::default())).await,
            _ = tick.tick() => {
                if let Some(reason) = ended(&st, &id, &cred) {
                    out.close(1008, reason).await;
                    return;
                }
                if heard.elapsed() > live.idle_timeout {
                    st.metrics.ws_closed_idle.fetch_add(1, Ordering::Relaxed);
                    out.close(1001, "idle_timeout").await;
                    return;
                }
                let left = id.exp - st.clock.wall();
                if matches!(cred, Credential::Token) && !warned && left <= EXPIRY_WARNING_SECS {
                    warned = true;
                    out.send(json!({"type": "token_expiring", "call_refresh": true, "time_remaining_seconds": left.max(0)})).await
                } else {
                    true
                }
            }
        };
        if !sent {
            return;
        }
    }
}

/// Events this socket missed because it read too slowly: counted, and told.
async fn lagged(out: &mut Out<'_>, n: u64) -> bool {
    out.st
        .metrics
        .ws_events_dropped
        .fetch_add(n, Ordering::Relaxed);
    out.send(json!({"type": "error", "code": "lagged", "message": format!("{n} events were dropped: this socket read too slowly")})).await
}
