//! The browser side: `GET /login`, `GET /callback`, `GET|POST /logout`,
//! `POST /backchannel-logout`, and the background refresh of sessions' IdP
//! tokens. The protocol checks live in `identity::oidc`; this module moves
//! cookies, redirects and store writes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::app::{note_failure, AppState, Inner};
use crate::http::api::{error_response, request_client};
use crate::identity::oidc::{
    authorization_url, check_logout_token, constant_time_eq, safe_redirect, short_code,
    token_request, Endpoints, LoginError, PreLogin, LOGIN_TTL_SECS,
};
use crate::identity::seal::random_token;
use crate::identity::session::{session_id, LiveSession, SESSION_COOKIE_BYTES};
use crate::identity::TokenKind;
use crate::service::login::{next_refresh, verify_login_tokens};
use crate::store::SessionRecord;

/// A cookie name that appears more than once: ambiguous, so refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateCookie;

/// The value of one cookie; `Err` when the name appears more than once (a
/// second cookie with our name, e.g. set by a sibling subdomain, is ambiguous).
pub fn cookie_value<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, DuplicateCookie> {
    cookie_in(
        h.get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// [`cookie_value`] over `Cookie` header values already read as text (values
/// that are not text are skipped by the caller).
pub fn cookie_in<'a>(
    values: impl Iterator<Item = &'a str>,
    name: &str,
) -> Result<Option<&'a str>, DuplicateCookie> {
    let mut found = None;
    for v in values {
        for pair in v.split(';') {
            let (k, val) = match pair.trim().split_once('=') {
                Some(kv) => kv,
                None => continue,
            };
            if k == name {
                if found.is_some() {
                    return Err(DuplicateCookie);
                }
                found = Some(val.trim_matches('"'));
            }
        }
    }
    Ok(found)
}

fn set_cookie(st: &Inner, name: &str, value: &str, max_age: i64, domain_wide: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if !st.config.session.insecure_http {
        c.push_str("; Secure");
    }
    if domain_wide {
        if let Some(d) = &st.config.session.cookie_domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The pre-login cookie of one login attempt: several tabs may log in at once.
fn prelogin_cookie_name(st: &Inner, state: &str) -> String {
    format!(
        "{}_login_{}",
        st.config.session.cookie_name,
        state.get(..10).unwrap_or(state)
    )
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// What the login handlers leave on a response for the audit entry the
/// wrapper writes (they build responses in many places; one place records).
#[derive(Debug, Clone)]
struct AuditNote {
    actor: String,
    result: &'static str,
    details: Value,
}

fn login_failed(status: StatusCode, e: &LoginError) -> Response {
    tracing::warn!(target: "gatehouse::login", code = e.code(), reason = %e, "login failed");
    let mut r = error_response(status, e.code(), e.to_string());
    no_store(&mut r);
    r.extensions_mut().insert(AuditNote {
        actor: String::new(),
        result: "failed",
        details: serde_json::json!({"error": e.code()}),
    });
    r
}

fn banned_page() -> Response {
    let mut r = error_response(
        StatusCode::FORBIDDEN,
        "banned",
        "too many refused credentials; try again later".into(),
    );
    no_store(&mut r);
    r
}

/// Where to send the browser: `rd` if it is safe, else the configured default.
pub fn safe_rd(st: &Inner, rd: Option<&str>) -> String {
    rd.and_then(|rd| {
        safe_redirect(
            rd,
            &st.config.session.redirect_domains,
            st.config.session.insecure_http,
        )
    })
    .unwrap_or_else(|| st.config.session.default_redirect.clone())
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub rd: Option<String>,
    /// Set by the decision endpoints when a rule needs a second factor.
    pub step_up: Option<String>,
}

/// `GET /login?rd=URL[&step_up=1]` — starts the authorization code flow.
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let client = request_client(&st, peer.ip(), &headers);
    if st.regulation.ip_banned(client, st.clock.now()) {
        return banned_page();
    }
    let Some(setup) = &st.login else {
        return login_failed(
            StatusCode::NOT_FOUND,
            &LoginError::NotConfigured("no [[issuers]] entry has a client_id"),
        );
    };
    let ep = match Endpoints::of(&setup.issuer, setup.allow_http) {
        Ok(ep) => ep,
        Err(e) => return login_failed(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let now = st.clock.now();
    let step_up = q.step_up.as_deref() == Some("1");
    // A step-up upgrades the browser's current session, if it has one.
    let upgrade = if step_up {
        current_session(&st, &headers, now).map(|s| s.id.clone())
    } else {
        None
    };
    let pre = PreLogin {
        state: random_token(32),
        nonce: random_token(32),
        verifier: random_token(48),
        rd: safe_rd(&st, q.rd.as_deref()),
        issuer: setup.issuer.issuer.clone(),
        exp: now + LOGIN_TTL_SECS,
        max_age: if step_up {
            st.config
                .session
                .step_up_max_age
                .map(|d| d.as_secs() as i64)
        } else {
            None
        },
        upgrade,
    };
    let acr = if step_up {
        st.config.session.step_up_acr_values.as_deref()
    } else {
        None
    };
    let url = authorization_url(&ep, &setup.client_id, &setup.redirect_uri, &pre, acr);
    let sealed = st
        .login_sealer
        .seal(&serde_json::to_vec(&pre).unwrap_or_default());
    let mut r = redirect(&url);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &st,
            &prelogin_cookie_name(&st, &pre.state),
            &sealed,
            LOGIN_TTL_SECS,
            false,
        ),
    );
    r
}

/// The live session the browser's cookie names, if any.
fn current_session(st: &Inner, headers: &HeaderMap, now: i64) -> Option<Arc<LiveSession>> {
    let v = cookie_value(headers, &st.config.session.cookie_name).ok()??;
    st.sessions
        .lookup(v, now, st.config.session.inactivity.as_secs() as i64)
        .ok()
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: when present, the issuer the answer comes from.
    pub iss: Option<String>,
}

/// `GET /callback` — the IdP's answer: checks state against the pre-login
/// cookie, exchanges the code (with the PKCE verifier), verifies the ID token,
/// creates the session and sends the browser to `rd`.
pub async fn callback(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Query<CallbackQuery>,
) -> Response {
    let client = request_client(&st, peer.ip(), &headers);
    let r = callback_inner(&st, client, headers, q).await;
    if let Some(n) = r.extensions().get::<AuditNote>() {
        st.audit
            .record(crate::audit::NewEntry::new(
                &n.actor,
                &client.to_string(),
                "login",
                "",
                n.result,
                n.details.clone(),
            ))
            .await;
    }
    r
}

async fn callback_inner(
    st: &AppState,
    client: std::net::IpAddr,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(setup) = &st.login else {
        return login_failed(
            StatusCode::NOT_FOUND,
            &LoginError::NotConfigured("no [[issuers]] entry has a client_id"),
        );
    };
    let now = st.clock.now();
    if st.regulation.ip_banned(client, now) {
        return banned_page();
    }
    // Failures that point at tampering count towards a ban of the address.
    let fail = |status: StatusCode, e: LoginError| {
        if matches!(
            e,
            LoginError::StateMismatch | LoginError::IdToken(_) | LoginError::TokenEndpoint(_)
        ) {
            note_failure(st, Some(client), None, e.code());
        }
        login_failed(status, &e)
    };
    let state = q.state.as_deref().unwrap_or("");
    if state.len() != 43 {
        return fail(StatusCode::BAD_REQUEST, LoginError::StateMismatch);
    }
    let cookie_name = prelogin_cookie_name(st, state);
    let clear = set_cookie(st, &cookie_name, "", 0, false);
    let with_clear = |mut r: Response| {
        r.headers_mut().append(header::SET_COOKIE, clear.clone());
        r
    };
    let pre: Option<PreLogin> = match cookie_value(&headers, &cookie_name) {
        Ok(Some(v)) => st
            .login_sealer
            .open(v)
            .and_then(|b| serde_json::from_slice(&b).ok()),
        _ => None,
    };
    let Some(pre) = pre.filter(|p| p.exp > now && p.issuer == setup.issuer.issuer) else {
        return with_clear(login_failed(
            StatusCode::BAD_REQUEST,
            &LoginError::BadPreLogin,
        ));
    };
    if !constant_time_eq(pre.state.as_bytes(), state.as_bytes()) {
        return with_clear(fail(StatusCode::BAD_REQUEST, LoginError::StateMismatch));
    }
    if q.iss.as_deref().is_some_and(|i| i != pre.issuer) {
        return with_clear(login_failed(
            StatusCode::BAD_REQUEST,
            &LoginError::IdpError("the answer names another issuer".into()),
        ));
    }
    if let Some(e) = &q.error {
        return with_clear(login_failed(
            StatusCode::UNAUTHORIZED,
            &LoginError::IdpError(short_code(e)),
        ));
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return with_clear(login_failed(
            StatusCode::BAD_REQUEST,
            &LoginError::IdpError("no code".into()),
        ));
    };
    let ep = match Endpoints::of(&setup.issuer, setup.allow_http) {
        Ok(ep) => ep,
        Err(e) => return with_clear(login_failed(StatusCode::SERVICE_UNAVAILABLE, &e)),
    };
    let tokens = match token_request(
        &st.oidc_http,
        &ep,
        &setup.client_id,
        setup.client_secret.as_ref().map(|s| s.expose()),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &setup.redirect_uri),
            ("code_verifier", &pre.verifier),
        ],
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return with_clear(fail(StatusCode::UNAUTHORIZED, e)),
    };
    let (identity, id_token) =
        match verify_login_tokens(st, &tokens, Some(&pre.nonce), pre.max_age, &pre.issuer).await {
            Ok(x) => x,
            Err(e) => return with_clear(fail(StatusCode::UNAUTHORIZED, e)),
        };
    if st.regulation.user_banned(&identity.user, now) {
        return with_clear(banned_page());
    }
    let lifetime = st.config.session.lifetime.as_secs() as i64;
    let cookie = random_token(SESSION_COOKIE_BYTES);
    let record = SessionRecord {
        id: session_id(&cookie),
        issuer: identity.issuer.clone(),
        subject: identity.sub.clone(),
        username: identity.user.clone(),
        groups: identity.groups.clone(),
        email: identity.email.clone(),
        name: identity.name.clone(),
        acr: identity.acr.clone(),
        amr: identity.amr.clone(),
        auth_time: identity.iat,
        sid: identity.sid.clone(),
        client_addr: Some(client.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        created_at: now,
        last_seen: now,
        expires_at: now + lifetime,
        terminated_at: None,
        terminated_by: None,
        id_token: Some(st.token_sealer.seal(id_token.as_bytes())),
        refresh_token: tokens
            .refresh_token
            .as_deref()
            .map(|t| st.token_sealer.seal(t.as_bytes())),
        refresh_at: tokens
            .refresh_token
            .as_ref()
            .map(|_| next_refresh(tokens.expires_in, now)),
    };
    {
        let _gate = st.sessions.write_gate.lock().await;
        // A step-up replaces the session it upgrades: a new cookie for new rights.
        if let Some(old) = &pre.upgrade {
            if let Err(e) = st.store.terminate_session(old, now, "step-up").await {
                return with_clear(login_failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &LoginError::TokenEndpoint(format!("store: {e}")),
                ));
            }
            st.sessions.remove(old);
        }
        if let Err(e) = st.store.insert_session(&record).await {
            tracing::error!(error = %e, "cannot store a new session");
            return with_clear(login_failed(
                StatusCode::SERVICE_UNAVAILABLE,
                &LoginError::TokenEndpoint("the session could not be stored".into()),
            ));
        }
        st.sessions.insert(LiveSession::from_record(&record));
    }
    tracing::info!(
        target: "gatehouse::login",
        user = %record.username,
        client = %client,
        step_up = pre.upgrade.is_some(),
        "login"
    );
    let mut r = with_clear(redirect(&pre.rd));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(st, &st.config.session.cookie_name, &cookie, lifetime, true),
    );
    r.extensions_mut().insert(AuditNote {
        actor: record.username.clone(),
        result: "ok",
        details: serde_json::json!({
            // The session id's first 16 hex digits: enough to find it, never the cookie.
            "session": &record.id[..16],
            "acr": record.acr, "amr": record.amr, "sid": record.sid,
            "step_up": pre.upgrade.is_some(),
        }),
    });
    r
}

#[derive(Debug, Deserialize)]
pub struct LogoutQuery {
    pub rd: Option<String>,
}

/// `GET|POST /logout[?rd=URL]` — ends the browser's session here and at the IdP.
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LogoutQuery>,
) -> Response {
    let now = st.clock.now();
    let rd = safe_rd(&st, q.rd.as_deref());
    let mut id_token_hint = None;
    if let Ok(Some(v)) = cookie_value(&headers, &st.config.session.cookie_name) {
        let id = session_id(v);
        if let Ok(Some(rec)) = st.store.session(&id).await {
            id_token_hint = rec
                .id_token
                .as_deref()
                .and_then(|t| st.token_sealer.open(t));
            if rec.terminated_at.is_none() {
                if let Err(e) = crate::service::sessions::end_sessions(
                    &st,
                    std::slice::from_ref(&rec),
                    now,
                    "logout",
                )
                .await
                {
                    tracing::error!(error = ?e, "logout could not end the session");
                    return login_failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &LoginError::TokenEndpoint(
                            "the session could not be ended; try again".into(),
                        ),
                    );
                }
                tracing::info!(target: "gatehouse::login", user = %rec.username, "logout");
                st.audit
                    .record(crate::audit::NewEntry::new(
                        &rec.username,
                        rec.client_addr.as_deref().unwrap_or(""),
                        "logout",
                        &rec.id[..16],
                        "ok",
                        serde_json::json!({}),
                    ))
                    .await;
            }
        }
    }
    let target = match st
        .login
        .as_ref()
        .and_then(|s| {
            Endpoints::of(&s.issuer, s.allow_http)
                .ok()
                .map(|ep| (s, ep))
        })
        .and_then(|(s, ep)| ep.end_session.map(|u| (s, u)))
    {
        Some((setup, mut u)) => {
            {
                let mut qp = u.query_pairs_mut();
                qp.append_pair("client_id", &setup.client_id);
                if let Some(h) = id_token_hint
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                {
                    qp.append_pair("id_token_hint", h);
                }
                if q.rd.is_some() {
                    qp.append_pair("post_logout_redirect_uri", &rd);
                }
            }
            u.to_string()
        }
        None => rd,
    };
    let mut r = redirect(&target);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&st, &st.config.session.cookie_name, "", 0, true),
    );
    r
}

#[derive(Debug, Deserialize)]
pub struct BackchannelForm {
    pub logout_token: Option<String>,
}

fn backchannel_error(e: &LoginError) -> Response {
    tracing::warn!(target: "gatehouse::login", reason = %e, "back-channel logout refused");
    let mut r = error_response(StatusCode::BAD_REQUEST, "invalid_request", e.to_string());
    no_store(&mut r);
    r
}

/// Most logout token ids remembered (each only until its token expires).
const MAX_REMEMBERED_JTIS: usize = 100_000;

/// `POST /backchannel-logout` — OIDC back-channel logout: a `sid` ends that IdP
/// session's sessions here; a token with only `sub` ends all of that user's.
pub async fn backchannel_logout(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let form: BackchannelForm = match serde_urlencoded_form(&body) {
        Some(f) => f,
        None => return backchannel_error(&LoginError::LogoutToken("the body is not a form")),
    };
    let Some(token) = form.logout_token.filter(|t| !t.is_empty()) else {
        return backchannel_error(&LoginError::LogoutToken("no logout_token"));
    };
    let (issuer, claims) = match st.validator.verify_signed(&token, TokenKind::Logout).await {
        Ok(x) => x,
        Err(e) => return backchannel_error(&LoginError::LogoutToken(e.as_str())),
    };
    let Some(client_id) = issuer.client_id() else {
        return backchannel_error(&LoginError::LogoutToken("the issuer has no client_id here"));
    };
    let now = st.clock.now();
    let req = match check_logout_token(&issuer, &claims, client_id, now) {
        Ok(r) => r,
        Err(e) => return backchannel_error(&e),
    };
    {
        let mut seen = st.logout_jtis.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, exp| *exp + issuer.leeway_secs() > now);
        let key = format!("{}\u{0}{}", req.issuer, req.jti);
        if seen.contains_key(&key) {
            drop(seen);
            return backchannel_error(&LoginError::LogoutToken("replayed (jti already used)"));
        }
        if seen.len() >= MAX_REMEMBERED_JTIS {
            // Forget the soonest-expiring: a logout must never be refused for space.
            if let Some(k) = seen.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                seen.remove(&k);
            }
        }
        seen.insert(key, req.exp);
    }
    let sessions = match st
        .store
        .live_sessions_by_idp(
            now,
            &req.issuer,
            req.sid.as_deref(),
            // With a sid the sid decides (the sub is checked below).
            if req.sid.is_none() {
                req.sub.as_deref()
            } else {
                None
            },
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout cannot read sessions");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    // With both, the sid decides, and the sub must agree.
    let sessions: Vec<SessionRecord> = sessions
        .into_iter()
        .filter(|s| req.sub.as_deref().is_none_or(|sub| s.subject == sub))
        .collect();
    if let Err(e) =
        crate::service::sessions::end_sessions(&st, &sessions, now, "backchannel-logout").await
    {
        tracing::error!(error = ?e, "back-channel logout cannot end sessions");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    tracing::info!(
        target: "gatehouse::login",
        sessions = sessions.len(),
        by = if req.sid.is_some() { "sid" } else { "sub" },
        "back-channel logout"
    );
    st.audit
        .record(crate::audit::NewEntry::new(
            &req.issuer,
            "",
            "session.backchannel_logout",
            req.sub.as_deref().unwrap_or(""),
            "ok",
            serde_json::json!({
                "by": if req.sid.is_some() { "sid" } else { "sub" },
                "sessions": sessions.iter().map(|s| &s.id[..16]).collect::<Vec<_>>(),
            }),
        ))
        .await;
    let mut r = StatusCode::OK.into_response();
    no_store(&mut r);
    r
}

fn serde_urlencoded_form(body: &[u8]) -> Option<BackchannelForm> {
    if body.len() > 64 * 1024 {
        return None;
    }
    let mut token = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == "logout_token" {
            if token.is_some() {
                return None;
            }
            token = Some(v.into_owned());
        }
    }
    Some(BackchannelForm {
        logout_token: token,
    })
}
